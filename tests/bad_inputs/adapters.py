"""Bad adapter folders, saves and AdapterBank requests."""

from __future__ import annotations

import json
import shutil

from pbft_widgets import errors as E

from .bench import ROWS, Bench, Case, template


def _load_adapter(*args, **kwargs):
    from pbft_widgets import load_adapter

    return load_adapter(*args, **kwargs)


def _truncated_adapter(bench: Bench):
    from pbft_widgets import load_adapter

    path = bench.fresh_copy(bench.adapter("lora"), "adapter-truncated")
    weights = path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    return load_adapter(bench.lm(), path)


def _bit_flipped_adapter(bench: Bench):
    from pbft_widgets import load_adapter

    path = bench.fresh_copy(bench.adapter("lora"), "adapter-flipped")
    weights = path / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    return load_adapter(bench.lm(), path)


def _corrupted_manifest(bench: Bench):
    from pbft_widgets import load_adapter

    path = bench.fresh_copy(bench.adapter("lora"), "adapter-bad-manifest")
    (path / "pbft_adapter.json").write_text('{"format": "pbft-adapter", "meth')
    return load_adapter(bench.lm(), path)


def _incomplete_checkpoint(bench: Bench):
    """A run killed while the Trainer wrote checkpoint-3: files, but no completion marker."""
    from pbft_widgets import load_adapter

    run = bench.path("killed-run")
    good, partial = run / "checkpoint-2", run / "checkpoint-3"
    shutil.copytree(bench.adapter("lora"), good)
    (good / "pbft_checkpoint_complete.json").write_text(json.dumps({"step": 2}))
    shutil.copytree(bench.adapter("lora"), partial)
    (run / "pbft_run.json").write_text(json.dumps({"method": "lora"}))
    return load_adapter(bench.lm(), partial)


def _save_over_adapter(bench: Bench):
    from pbft_widgets import apply_method, save_adapter

    return save_adapter(apply_method(bench.lm(), "lora"), bench.adapter("lora"))


def _save_into_foreign_folder(bench: Bench):
    from pbft_widgets import apply_method, save_adapter

    folder = bench.path("thesis")
    folder.mkdir(exist_ok=True)
    (folder / "chapter1.tex").write_text("...")
    return save_adapter(apply_method(bench.lm(), "lora"), folder, overwrite=True)


def _other_architecture(bench: Bench):
    from transformers import LlamaConfig, LlamaForCausalLM

    from pbft_widgets import load_adapter

    config = LlamaConfig(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2)
    return load_adapter(LlamaForCausalLM(config), bench.adapter("prompt-tuning"))


def _future_format(bench: Bench):
    from pbft_widgets import load_adapter

    path = bench.fresh_copy(bench.adapter("lora"), "adapter-future")
    manifest = json.loads((path / "pbft_adapter.json").read_text())
    (path / "pbft_adapter.json").write_text(json.dumps({**manifest, "format_version": manifest["format_version"] + 1}))
    return load_adapter(bench.lm(), path)


def _plain_peft_folder(bench: Bench):
    """An adapter saved by peft's save_pretrained (e.g. a trainer checkpoint): no manifest."""
    from pbft_widgets import apply_method

    path = bench.path("plain-peft")
    if not path.exists():
        apply_method(bench.lm(), "p-tuning", num_virtual_tokens=4).model.save_pretrained(str(path))
    return path


def _plain_peft_truncated(bench: Bench):
    from pbft_widgets import load_adapter

    path = bench.fresh_copy(_plain_peft_folder(bench), "plain-peft-truncated")
    weights = path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:20])
    return load_adapter(bench.lm(), path)


def _bank_call(call, *, adapters=(("legal", "lora"), ("nahuatl", "prompt-tuning"))):
    """``call(bank, bench)`` on a causal-LM bank holding ``adapters`` (task, method)."""
    def run(bench: Bench):
        from pbft_widgets import AdapterBank

        bank = AdapterBank(bench.lm(), bench.tokenizer)
        for task, method in adapters:
            bank.add(task, bench.adapter(method))
        return call(bank, bench)
    return run


def _add_adapter_of_other_weights(bank, bench: Bench):
    from pbft_widgets import apply_method, save_adapter

    path = bench.path("adapter-of-other-weights")
    save_adapter(apply_method(bench.other_lm(), "lora"), path)
    return bank.add("stranger", path)


def _empty_folder(bench: Bench):
    from pbft_widgets import load_adapter

    path = bench.path("empty-folder")
    path.mkdir(exist_ok=True)
    return load_adapter(bench.lm(), path)


def _bank_of_a_peft_model(bench: Bench):
    from pbft_widgets import AdapterBank, apply_method

    return AdapterBank(apply_method(bench.lm(), "lora").model, None)


LABELS = ["O", "B-DIS", "I-DIS"]


def _sequence_adapter(bench: Bench):
    """A LoRA adapter for a tiny BERT sequence classifier."""
    from pbft_widgets import apply_method, save_adapter

    path = bench.path("bert-sequence-adapter")
    if not path.exists():
        model = bench.bert("sequence-classification", LABELS)
        save_adapter(apply_method(model, "lora", task="sequence-classification"), path)
    return path


def _token_model_of_the_same_encoder(bench: Bench):
    """A token classifier whose encoder is the sequence classifier's: only the head differs."""
    model = bench.bert("token-classification", LABELS)
    encoder = bench.bert("sequence-classification", LABELS).bert.state_dict()
    model.bert.load_state_dict(encoder, strict=False)  # the token model has no pooler
    return model


def _sequence_adapter_on_token_model(bench: Bench):
    from pbft_widgets import load_adapter

    return load_adapter(_token_model_of_the_same_encoder(bench), _sequence_adapter(bench))


def _token_bank_probabilities(bench: Bench):
    from pbft_widgets import AdapterBank

    bank = AdapterBank(bench.bert("token-classification", LABELS), bench.bert_tokenizer)
    return bank.predict(None, ["no findings"], probabilities=True)


def _sequence_adapter_in_token_bank(bench: Bench):
    from pbft_widgets import AdapterBank

    bank = AdapterBank(_token_model_of_the_same_encoder(bench), bench.bert_tokenizer)
    return bank.add("seq", _sequence_adapter(bench))


def _bert_adapter_in_llama_bank(bench: Bench):
    from pbft_widgets import AdapterBank

    return AdapterBank(bench.lm(), None).add("seq", _sequence_adapter(bench))


def _generate_on_classifier_bank(bench: Bench):
    from pbft_widgets import AdapterBank

    bank = AdapterBank(bench.bert("sequence-classification", LABELS), bench.bert_tokenizer)
    bank.add("seq", _sequence_adapter(bench))
    return bank.generate("seq", "text")


def _card_with_metrics_of_another_adapter(bench: Bench):
    from pbft_widgets import apply_method, evaluate, save_adapter

    scored = evaluate(apply_method(bench.lm(), "lora").model, bench.tokenizer, ROWS, template=template(),
                      task_kind="classification")
    other = apply_method(bench.lm(), "prompt-tuning", num_virtual_tokens=4)
    return save_adapter(other, bench.path("card-of-another"), metrics=[scored])


def _mixed_on_classifier_bank(bench: Bench):
    from pbft_widgets import AdapterBank

    bank = AdapterBank(bench.bert("sequence-classification", LABELS), bench.bert_tokenizer)
    bank.add("seq", _sequence_adapter(bench))
    return bank.predict_many([("seq", "text"), (None, "text")], template=None)


CASES: list[Case] = [
    Case("adapter-other-base", "adapter", "an adapter loaded onto another base model",
         E.AdapterError, "pass it to load_adapter",
         lambda bench: _load_adapter(bench.other_lm(), bench.adapter("lora")),
         says=("trained on an unnamed model (llama, vocab 49152, hidden 64, 2 layers), "
               "but the given model is a model with other weights",)),
    Case("adapter-other-architecture", "adapter", "an adapter loaded onto a model of another size",
         E.AdapterError, "pass it to load_adapter", _other_architecture,
         says=("given model is an unnamed model (llama, vocab 1000, hidden 32, 3 layers",)),
    Case("adapter-other-method", "adapter", "a prompt-tuning adapter loaded with method='lora'",
         E.AdapterError, "point to a lora adapter",
         lambda bench: _load_adapter(bench.lm(), bench.adapter("prompt-tuning"), method="lora")),
    Case("adapter-truncated", "adapter", "an adapter file cut short by an interrupted copy",
         E.AdapterError, "re-save the adapter with save_adapter(..., overwrite=True)", _truncated_adapter,
         says=("adapter-truncated/adapter_model.safetensors is truncated", "last good checkpoint")),
    Case("adapter-corrupted", "adapter", "an adapter file with one flipped byte",
         E.AdapterError, "load the last good checkpoint", _bit_flipped_adapter, says=("corrupted",)),
    Case("adapter-manifest-corrupted", "adapter", "a half-written adapter manifest",
         E.AdapterError, "re-save the adapter", _corrupted_manifest),
    Case("adapter-missing", "adapter", "load_adapter on a path that does not exist",
         E.AdapterError, "save one there with save_adapter(setup, path)",
         lambda bench: _load_adapter(bench.lm(), bench.path("no-adapter")), says=("no adapter at",)),
    Case("adapter-folder-empty", "adapter", "load_adapter on an empty folder",
         E.AdapterError, "point to a directory written by save_adapter()", _empty_folder,
         says=("is not an adapter",)),
    Case("adapter-newer-format", "adapter", "an adapter saved by a newer pbft-widgets",
         E.AdapterError, "upgrade pbft-widgets", _future_format),
    Case("plain-peft-folder-trainable", "adapter", "a plain peft folder loaded with is_trainable=True",
         E.AdapterError, "load it with is_trainable=False for inference, or re-save with save_adapter()",
         lambda bench: _load_adapter(bench.lm(), _plain_peft_folder(bench), is_trainable=True)),
    Case("plain-peft-folder-truncated", "adapter", "a plain peft folder whose weights were cut short",
         E.AdapterError, "re-save", _plain_peft_truncated, says=("plain-peft-truncated",)),
    Case("adapter-incomplete-checkpoint", "adapter", "a checkpoint the run was killed while writing",
         E.AdapterError, "load the last complete one", _incomplete_checkpoint),
    Case("adapter-save-exists", "adapter", "save_adapter onto an existing adapter",
         E.AdapterError, "pass overwrite=True to replace it, or choose a new path", _save_over_adapter),
    Case("adapter-save-foreign-folder", "adapter", "save_adapter(..., overwrite=True) into a folder of other files",
         E.AdapterError, "choose a new path", _save_into_foreign_folder),
    Case("bank-unknown-task", "adapter", "AdapterBank asked for a task it does not hold",
         E.AdapterError, "known tasks: legal, nahuatl",
         _bank_call(lambda bank, bench: bank.generate("medical", "Summarise: ...")), says=("unknown task 'medical'",)),
    Case("bank-merge-non-lora", "adapter", "bank.merge() of a prompt-tuning task",
         E.AdapterError, "merge works for LoRA tasks (legal)",
         _bank_call(lambda bank, bench: bank.merge("nahuatl"))),
    Case("bank-task-twice", "adapter", "adding a task name the bank already holds",
         E.AdapterError, "choose another name",
         _bank_call(lambda bank, bench: bank.add("legal", bench.adapter("lora"))), says=("already in the bank",)),
    Case("bank-predict-on-causal-lm", "adapter", "bank.predict() on a bank of a causal LM without a template",
         E.AdapterError, "pass template= (the PromptTemplate with the verbalizer the task was trained with)",
         _bank_call(lambda bank, bench: bank.predict("legal", ["text"])), says=("classifies by label words",)),
    Case("bank-adapter-other-base", "adapter", "adding an adapter trained on other base weights",
         E.AdapterError, "load that base model", _bank_call(_add_adapter_of_other_weights),
         says=("the given model is a model with other weights",)),
    Case("bank-of-a-peft-model", "adapter", "AdapterBank over a model that already carries an adapter",
         E.AdapterError, "pass a freshly loaded one (load_model(...).model)", _bank_of_a_peft_model,
         says=("needs the plain base model",)),
    Case("bank-generate-on-classifier", "adapter", "bank.generate() on a bank of a classifier",
         E.AdapterError, "use bank.predict(task, texts)", _generate_on_classifier_bank),
    Case("bank-adapter-of-another-architecture", "adapter", "a BERT adapter added to a Llama bank",
         E.AdapterError, "load that base model", _bert_adapter_in_llama_bank,
         says=("trained on an unnamed model (bert",)),
    Case("adapter-other-task-head", "adapter", "a sequence-classification adapter loaded onto a token classifier",
         E.AdapterError, "load_model(..., task='sequence-classification')", _sequence_adapter_on_token_model,
         says=("is for sequence-classification",)),
    Case("bank-adapter-other-task-head", "adapter", "a sequence-classification adapter in a token-classification bank",
         E.AdapterError, "put it in a bank built on a matching base model", _sequence_adapter_in_token_bank,
         says=("for sequence-classification but this bank serves a token-classification",)),
    Case("bank-mixed-unknown-task", "adapter", "a mixed batch with a row for a task the bank does not hold",
         E.AdapterError, "known tasks: legal, nahuatl",
         _bank_call(lambda bank, bench: bank.generate_many([("legal", "Hi"), ("medical", "Summarise: ...")])),
         says=("unknown task 'medical'",)),
    Case("bank-mixed-prefix-tuning", "adapter", "a mixed batch with a row for a prefix-tuning task",
         E.AdapterError, "bank.generate_many(requests, mixed=False)",
         _bank_call(lambda bank, bench: bank.generate_many([("legal", "Hi"), ("clinical", "Hi")]),
                    adapters=(("legal", "lora"), ("clinical", "prefix-tuning"))),
         says=("'clinical' use prefix tuning",)),
    Case("bank-mixed-template-missing", "adapter", "predict_many with per-task templates that leave a task out",
         E.AdapterError, "give one per task that has requests",
         _bank_call(lambda bank, bench: bank.predict_many([("legal", "Review: fine. Sentiment:"), ("nahuatl", "x")],
                                                          template={"legal": template()})),
         says=("no template for task 'nahuatl'",)),
    Case("bank-mixed-on-classifier", "adapter", "predict_many on a bank of a classifier",
         E.AdapterError, "call bank.predict(task, texts) once per task", _mixed_on_classifier_bank),
    Case("card-metrics-of-another-adapter", "adapter", "save_adapter(..., metrics=[...]) with an evaluation of "
         "another adapter", E.AdapterError, "evaluate this adapter (evaluate(setup.model, ...)) and pass that result",
         _card_with_metrics_of_another_adapter, says=("was made on another adapter",)),
    Case("bank-probabilities-per-word", "adapter", "bank.predict(..., probabilities=True) on a token-classification bank",
         E.AdapterError, "call predict(task, texts) without probabilities=", _token_bank_probabilities),
]
