"""train(): streaming events, stop/resume, checkpoints, output-dir safety, classification, real model."""

from __future__ import annotations

import contextlib
import importlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from pbft_widgets import ConfigError, DataError, TrainingError
from pbft_widgets.methods import apply_method
from pbft_widgets.templates import PromptTemplate, Verbalizer
from pbft_widgets.checkpoints import CHECKPOINT_MARKER, checkpoint_is_complete, latest_complete_checkpoint
from pbft_widgets.training import TrainingControl, train

REVIEWS = [("a wonderful, moving film", "pos"), ("dull and far too long", "neg"),
           ("I loved every minute", "pos"), ("a waste of an evening", "neg")] * 6


def _template() -> PromptTemplate:
    return PromptTemplate(instruction="Is the review positive or negative?", input_template="Review: {text}",
                          output_indicator="Sentiment:", style="cloze",
                          verbalizer=Verbalizer({"pos": "positive", "neg": "negative"}))


def _rows() -> list[dict]:
    return [{"text": text, "label": label} for text, label in REVIEWS]


def _prompt_tuning(tiny_causal_lm, smol_tokenizer):
    return apply_method(tiny_causal_lm, "prompt-tuning", tokenizer=smol_tokenizer, num_virtual_tokens=4,
                        init="random")


def test_events_checkpoints_and_adapter(tiny_causal_lm, smol_tokenizer, tmp_path):
    events = []
    setup = _prompt_tuning(tiny_causal_lm, smol_tokenizer)
    result = train(setup, _rows(), eval_rows=_rows()[:4], tokenizer=smol_tokenizer, template=_template(),
                   output_dir=tmp_path / "run", max_steps=6, batch_size=4, eval_every=3,
                   listeners=[events.append], smoke=False)
    logs = [e for e in events if e.kind == "log"]
    assert [e.step for e in logs] == [1, 2, 3, 4, 5, 6]
    assert all(e.loss is not None and e.memory_bytes > 0 for e in logs)
    assert all(e.tokens_per_second and e.tokens_per_second > 0 for e in logs[1:])
    assert [e.step for e in events if e.kind == "eval"] == [3, 6]
    assert all("loss" in e.metrics for e in events if e.kind == "eval")
    assert events[-1].kind == "end" and events[-1].step == 6
    assert result.last_checkpoint == tmp_path / "run" / "checkpoint-6"
    assert (result.last_checkpoint / CHECKPOINT_MARKER).is_file()
    assert (result.adapter_path / "pbft_adapter.json").is_file()
    assert not result.stopped_by_user
    assert not setup.model.training, "a finished run hands back its model in eval mode (dropout off, KV cache on)"


def test_stop_keeps_a_complete_checkpoint_and_resume_continues(tiny_causal_lm, smol_tokenizer, tmp_path):
    control = TrainingControl()

    def stop_at_three(event):
        if event.kind == "log" and event.step == 3:
            control.stop()

    setup = _prompt_tuning(tiny_causal_lm, smol_tokenizer)
    out = tmp_path / "run"
    first = train(setup, _rows(), tokenizer=smol_tokenizer, template=_template(), output_dir=out,
                  max_steps=8, batch_size=4, save_every=100, control=control, listeners=[stop_at_three],
                  smoke=False)
    assert first.stopped_by_user
    assert latest_complete_checkpoint(out) == out / "checkpoint-3"

    with pytest.raises(TrainingError):
        train(setup, _rows(), tokenizer=smol_tokenizer, template=_template(), output_dir=out, max_steps=8,
              batch_size=4, smoke=False)
    events = []
    second = train(setup, _rows(), tokenizer=smol_tokenizer, template=_template(), output_dir=out,
                   max_steps=5, batch_size=4, resume=True, listeners=[events.append], smoke=False)
    assert [e.step for e in events if e.kind == "log"] == [4, 5]
    assert second.last_checkpoint == out / "checkpoint-5"


def test_old_checkpoints_are_rotated_away_whole_and_a_dead_runs_trash_is_cleared(tiny_causal_lm, smol_tokenizer,
                                                                                    tmp_path):
    out = tmp_path / "run"
    setup = _prompt_tuning(tiny_causal_lm, smol_tokenizer)
    train(setup, _rows(), tokenizer=smol_tokenizer, template=_template(), output_dir=out, max_steps=4,
          batch_size=4, save_every=1, smoke=False)
    assert sorted(p.name for p in out.glob("*checkpoint-*")) == ["checkpoint-3", "checkpoint-4"]

    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs: the owner of this trash was killed mid-deletion
    trash = out / f".checkpoint-1.trash-{dead.pid}-0000abcd"
    trash.mkdir()
    (trash / CHECKPOINT_MARKER).write_text("{}")
    train(setup, _rows(), tokenizer=smol_tokenizer, template=_template(), output_dir=out, max_steps=5,
          batch_size=4, save_every=1, resume=True, smoke=False)
    assert sorted(p.name for p in out.glob("*checkpoint-*")) == ["checkpoint-4", "checkpoint-5"]


def test_a_run_killed_while_deleting_an_old_checkpoint_leaves_no_marked_checkpoint_with_missing_files(
        tiny_causal_lm, smol_tokenizer, tmp_path, monkeypatch):
    def interrupted_rmtree(path, *args, **kwargs):
        next(p for p in Path(path).iterdir() if p.name != CHECKPOINT_MARKER).unlink()
        raise KeyboardInterrupt  # stands for a SIGKILL halfway through the deletion

    out = tmp_path / "run"
    setup = _prompt_tuning(tiny_causal_lm, smol_tokenizer)
    monkeypatch.setattr(shutil, "rmtree", interrupted_rmtree)
    with pytest.raises(KeyboardInterrupt):  # the first rotation, after checkpoint-3 is sealed
        train(setup, _rows(), tokenizer=smol_tokenizer, template=_template(), output_dir=out, max_steps=4,
              batch_size=4, save_every=1, smoke=False)
    monkeypatch.undo()
    marked = [p for p in out.glob("checkpoint-*") if (p / CHECKPOINT_MARKER).is_file()]
    assert marked and all(checkpoint_is_complete(p) for p in marked)
    assert latest_complete_checkpoint(out) == out / "checkpoint-3"


def test_incomplete_checkpoint_is_never_resumed(tmp_path):
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / CHECKPOINT_MARKER).write_text("{}")
    (tmp_path / "checkpoint-4").mkdir()  # written partly, then the process died: no marker
    assert latest_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-2"


def test_output_dir_of_someone_else_or_another_method_is_refused(tiny_causal_lm, smol_tokenizer, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    setup = _prompt_tuning(tiny_causal_lm, smol_tokenizer)
    with pytest.raises(TrainingError):
        train(setup, _rows(), tokenizer=smol_tokenizer, template=_template(), output_dir=foreign, max_steps=1,
              batch_size=4, smoke=False)
    assert (foreign / "notes.txt").read_text() == "mine"

    other = tmp_path / "other"
    other.mkdir()
    (other / "pbft_run.json").write_text(json.dumps({"method": "lora", "task": "causal-lm", "base": {}}))
    with pytest.raises(TrainingError):
        train(setup, _rows(), tokenizer=smol_tokenizer, template=_template(), output_dir=other, max_steps=1,
              batch_size=4, smoke=False)


def test_early_stopping_on_a_task_metric(tiny_causal_lm, smol_tokenizer, tmp_path):
    scores = iter([0.9, 0.5, 0.4, 0.3, 0.2])
    setup = _prompt_tuning(tiny_causal_lm, smol_tokenizer)
    events = []
    result = train(setup, _rows(), eval_rows=_rows()[:4], tokenizer=smol_tokenizer, template=_template(),
                   output_dir=tmp_path / "run", max_steps=10, batch_size=4, eval_every=2,
                   metric_fn=lambda model: {"accuracy": next(scores)}, metric_name="accuracy",
                   early_stopping_patience=1,
                   listeners=[events.append], smoke=False)
    evals = [e for e in events if e.kind == "eval"]
    assert [e.metrics["accuracy"] for e in evals] == [0.9, 0.5]
    assert events[-1].step == 4 and not result.stopped_by_user


def test_label_word_accuracy_is_reported_at_every_evaluation(tiny_causal_lm, smol_tokenizer, tmp_path):
    """The dashboard's live validation accuracy: label-word scoring as train()'s metric_fn."""
    from pbft_widgets.evaluation import label_word_metric

    setup = _prompt_tuning(tiny_causal_lm, smol_tokenizer)
    rows = _rows()
    events = []
    train(setup, rows, eval_rows=rows[:4], tokenizer=smol_tokenizer, template=_template(),
          output_dir=tmp_path / "run", max_steps=4, batch_size=4, eval_every=2,
          metric_fn=label_word_metric(smol_tokenizer, _template(), rows[:4]), listeners=[events.append], smoke=False)
    evals = [e for e in events if e.kind == "eval"]
    assert len(evals) == 2
    for event in evals:
        assert {"accuracy", "macro_f1", "ece"} <= set(event.metrics) and 0 <= event.metrics["accuracy"] <= 1


def test_same_seed_same_losses(smol_tokenizer, tmp_path, tiny_causal_lm):
    """Seed before apply_method too: LoRA's A matrices are initialised randomly there."""
    from transformers import LlamaForCausalLM, set_seed

    curves = []
    for run in range(2):
        set_seed(7)
        model = LlamaForCausalLM(tiny_causal_lm.config)
        model.load_state_dict(tiny_causal_lm.state_dict())
        setup = apply_method(model, "lora", tokenizer=smol_tokenizer, r=4)
        result = train(setup, _rows(), tokenizer=smol_tokenizer, template=_template(),
                       output_dir=tmp_path / f"run{run}", max_steps=4, batch_size=4, seed=7,
                       save_final_adapter=False, smoke=False)
        curves.append([loss for _, loss in result.losses()])
    assert curves[0] == pytest.approx(curves[1], abs=1e-6)


def test_smoke_mode_shrinks_steps(tiny_causal_lm, smol_tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("PBFT_SMOKE", "1")
    setup = _prompt_tuning(tiny_causal_lm, smol_tokenizer)
    result = train(setup, _rows(), tokenizer=smol_tokenizer, template=_template(), output_dir=tmp_path / "r",
                   max_steps=500, batch_size=4, save_final_adapter=False)
    assert max(step for step, _ in result.losses()) == 4


def test_token_classification_reports_entity_f1(tiny_bert_config, bert_tokenizer, tmp_path):
    from transformers import AutoModelForTokenClassification

    labels = ["O", "B-DISEASE", "I-DISEASE"]
    tiny_bert_config.id2label = dict(enumerate(labels))
    tiny_bert_config.label2id = {label: i for i, label in enumerate(labels)}
    model = AutoModelForTokenClassification.from_config(tiny_bert_config)
    rows = [{"tokens": ["history", "of", "type", "2", "diabetes", "."],
             "tags": ["O", "O", "B-DISEASE", "I-DISEASE", "I-DISEASE", "O"]},
            {"tokens": ["no", "asthma", "reported", "."], "tags": ["O", "B-DISEASE", "O", "O"]}] * 4
    setup = apply_method(model, "lora", tokenizer=bert_tokenizer, task="token-classification", r=4)
    events = []
    train(setup, rows, eval_rows=rows[:2], tokenizer=bert_tokenizer, output_dir=tmp_path / "ner", max_steps=4,
          batch_size=4, eval_every=2, learning_rate=5e-3, listeners=[events.append], smoke=False)
    evals = [e for e in events if e.kind == "eval"]
    assert len(evals) == 2 and all({"f1", "precision", "recall"} <= set(e.metrics) for e in evals)

    bad = [{"tokens": ["fever"], "tags": ["B-SYMPTOM"]}] * 4
    with pytest.raises(DataError):
        train(setup, bad, tokenizer=bert_tokenizer, output_dir=tmp_path / "bad", max_steps=1, batch_size=4,
              smoke=False)


@pytest.mark.slow
def test_prompt_tuning_on_embedded_smollm2_lowers_the_loss(tmp_path):
    from pbft_widgets import load_model

    torch.manual_seed(0)
    loaded = load_model()
    template = _template()
    setup = apply_method(loaded.model, "prompt-tuning", tokenizer=loaded.tokenizer, template=template,
                         num_virtual_tokens=8, init="text")
    result = train(setup, _rows(), tokenizer=loaded.tokenizer, template=template, output_dir=tmp_path / "real",
                   max_steps=12, batch_size=4, learning_rate=3e-2, save_final_adapter=False, smoke=False)
    losses = [loss for _, loss in result.losses()]
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses


def _trainable(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method", ["p-tuning", "prompt+lora"])
def test_resume_restores_every_trainable_weight(method, smol_tokenizer, tiny_causal_lm, tmp_path):
    """Trainer checkpoints miss the P-tuning encoder and the hybrid's LoRA; ours restore them."""
    from transformers import LlamaForCausalLM, set_seed

    def fresh_setup():
        set_seed(1)
        model = LlamaForCausalLM(tiny_causal_lm.config)
        model.load_state_dict(tiny_causal_lm.state_dict())
        return apply_method(model, method, tokenizer=smol_tokenizer, num_virtual_tokens=4)

    straight = fresh_setup()
    train(straight, _rows(), tokenizer=smol_tokenizer, template=_template(), output_dir=tmp_path / "straight",
          max_steps=4, batch_size=4, save_every=2, save_final_adapter=False, smoke=False)

    interrupted = fresh_setup()
    control = TrainingControl()
    train(interrupted, _rows(), tokenizer=smol_tokenizer, template=_template(), output_dir=tmp_path / "split",
          max_steps=4, batch_size=4, save_every=100, control=control,
          listeners=[lambda e: e.kind == "log" and e.step == 2 and control.stop()], save_final_adapter=False,
          smoke=False)
    resumed = fresh_setup()  # a new process would start from fresh weights like these
    train(resumed, _rows(), tokenizer=smol_tokenizer, template=_template(), output_dir=tmp_path / "split",
          max_steps=4, batch_size=4, save_every=100, resume=True, save_final_adapter=False, smoke=False)
    expected, got = _trainable(straight.model), _trainable(resumed.model)
    assert expected.keys() == got.keys()
    if method == "prompt+lora":
        assert any("lora_" in name for name in got)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-4)


def test_hybrid_trains_prompt_and_lora_with_their_own_learning_rates(smol_tokenizer, tiny_causal_lm, tmp_path):
    setup = apply_method(tiny_causal_lm, "prompt+lora", tokenizer=smol_tokenizer, num_virtual_tokens=4)
    before = _trainable(setup.model)
    result = train(setup, _rows(), tokenizer=smol_tokenizer, template=_template(), output_dir=tmp_path / "h",
                   max_steps=3, batch_size=4, learning_rate=1e-3, prompt_learning_rate=5e-2, smoke=False)
    after = _trainable(setup.model)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert any("prompt" in n for n in changed) and any("lora_" in n for n in changed)
    assert (result.adapter_path / "pbft_adapter.json").is_file()
    from transformers import LlamaForCausalLM

    other = _prompt_tuning(LlamaForCausalLM(tiny_causal_lm.config), smol_tokenizer)
    with pytest.raises(ConfigError):
        train(other, _rows(), tokenizer=smol_tokenizer,
              template=_template(), output_dir=tmp_path / "x", prompt_learning_rate=1e-2, smoke=False)


def _lora_losses(tiny_causal_lm, smol_tokenizer, output_dir, model_class=None) -> list[float]:
    from transformers import LlamaForCausalLM, set_seed

    set_seed(3)
    model = (model_class or LlamaForCausalLM)(tiny_causal_lm.config)
    model.load_state_dict(tiny_causal_lm.state_dict())
    setup = apply_method(model, "lora", tokenizer=smol_tokenizer, r=4, lora_dropout=0.0)
    result = train(setup, _rows(), tokenizer=smol_tokenizer, template=_template(), output_dir=output_dir,
                   max_steps=3, batch_size=4, seed=3, save_final_adapter=False, smoke=False)
    return [loss for _, loss in result.losses()]


def test_lora_trains_padding_free_with_the_losses_of_padded_batches(tiny_causal_lm, smol_tokenizer, tmp_path,
                                                                   monkeypatch):
    """Padding-free batches are a speed default only: the loss each step sees must not change."""
    train_module = importlib.import_module("pbft_widgets.training")

    collators = []
    build_trainer = train_module._sft_trainer

    def recording_trainer(*args, **kwargs):
        trainer = build_trainer(*args, **kwargs)
        collators.append(trainer.data_collator)
        return trainer

    monkeypatch.setattr(train_module, "_sft_trainer", recording_trainer)
    packed = _lora_losses(tiny_causal_lm, smol_tokenizer, tmp_path / "packed")
    monkeypatch.setattr(train_module, "keeps_rows_apart", lambda model: False)
    padded = _lora_losses(tiny_causal_lm, smol_tokenizer, tmp_path / "padded")

    assert [collator.padding_free for collator in collators] == [True, False]
    batch = collators[0]([{"input_ids": [5, 6, 7], "completion_mask": [0, 1, 1]},
                          {"input_ids": [8, 9], "completion_mask": [0, 1]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9]]  # one row, no pad tokens
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert packed == pytest.approx(padded, abs=1e-5)


def test_models_that_ignore_position_ids_keep_padded_batches(tiny_causal_lm, smol_tokenizer, tmp_path, monkeypatch):
    """Packed rows of such a model attend to each other (its losses change), so train() must not pack them."""
    from transformers import LlamaForCausalLM, LlamaModel

    train_module = importlib.import_module("pbft_widgets.training")

    class PositionBlindDecoder(LlamaModel):
        def forward(self, *args, position_ids=None, **kwargs):
            return super().forward(*args, **kwargs)

    class PositionBlindLlama(LlamaForCausalLM):
        def __init__(self, config):
            super().__init__(config)
            self.model.__class__ = PositionBlindDecoder

    assert train_module.keeps_rows_apart(tiny_causal_lm)
    assert not train_module.keeps_rows_apart(PositionBlindLlama(tiny_causal_lm.config))

    padded = _lora_losses(tiny_causal_lm, smol_tokenizer, tmp_path / "padded", model_class=PositionBlindLlama)
    monkeypatch.setattr(train_module, "keeps_rows_apart", lambda model: True)
    # row-by-row attention happens to rescue this RoPE model (scores see relative positions only);
    # models it does not cover (another attention, sliding windows) attend across the packed rows
    monkeypatch.setattr(train_module, "rows_apart", lambda model: contextlib.nullcontext(False))
    mixed = _lora_losses(tiny_causal_lm, smol_tokenizer, tmp_path / "mixed", model_class=PositionBlindLlama)
    assert abs(padded[0] - mixed[0]) > 1e-4  # what packing would have cost this model


@pytest.mark.parametrize("method", ["lora", "prompt-tuning", "prefix-tuning", "prompt+lora"])
def test_completion_only_logits_train_with_the_losses_of_full_logits(method, tiny_causal_lm, smol_tokenizer,
                                                                     tmp_path):
    """The output layer at completion positions only is a speed default: losses and eval loss must not move.

    Plain SGD: Adam's first steps are nearly sign(gradient), so gradient elements within float noise of
    zero (LoRA's A has none at all at step 1) flip whole updates, hiding whether the gradients agree.
    """
    def run(completion_logits_only: bool) -> tuple[list[float], float, list[int]]:
        model = type(tiny_causal_lm)(tiny_causal_lm.config)
        model.load_state_dict(tiny_causal_lm.state_dict())
        options = {"r": 4, "lora_dropout": 0.0} if "lora" in method else {"num_virtual_tokens": 4}
        torch.manual_seed(0)  # the same initial adapter weights in both runs
        setup = apply_method(model, method, tokenizer=smol_tokenizer, **options)
        seen_rows: list[int] = []

        def count_rows(module, args, output) -> None:
            if module.training:
                seen_rows.append(output.shape[:-1].numel())

        hook = model.get_output_embeddings().register_forward_hook(count_rows)
        before = {n: p.detach().clone() for n, p in setup.model.named_parameters() if p.requires_grad}
        result = train(setup, _rows(), tokenizer=smol_tokenizer, template=_template(), eval_rows=_rows()[:8],
                       output_dir=tmp_path / f"{method}-{completion_logits_only}", max_steps=3, batch_size=4,
                       seed=3, eval_every=3, save_final_adapter=False, smoke=False, learning_rate=0.5,
                       trainer_overrides={"optim": "sgd"}, completion_logits_only=completion_logits_only)
        hook.remove()
        assert any(not torch.equal(before[n], p) for n, p in setup.model.named_parameters() if n in before)
        eval_loss = next(e.metrics["loss"] for e in result.history if e.kind == "eval")
        return [loss for _, loss in result.losses()], eval_loss, seen_rows

    fast_losses, fast_eval, fast_rows = run(True)
    full_losses, full_eval, _ = run(False)
    assert fast_losses == pytest.approx(full_losses, abs=1e-5)
    assert fast_eval == pytest.approx(full_eval, abs=1e-5)
    # training steps: the label word and its end token reach the output layer, not the ~20-token prompts
    assert len(fast_rows) == 3 and all(0 < rows <= 4 * 3 for rows in fast_rows)


def test_packed_rows_attend_row_by_row_with_the_logits_of_each_row_alone(tiny_causal_lm, monkeypatch):
    """Per-row SDPA in a padding-free batch: same logits as each row alone, no packed-length attention."""
    from pbft_widgets import packed_attention

    rows = [torch.tensor([5, 6, 7, 8, 9]), torch.tensor([10, 11, 12]), torch.tensor([13, 14, 15, 16])]
    alone = [tiny_causal_lm(input_ids=row[None]).logits[0] for row in rows]
    lengths = torch.tensor([len(r) for r in rows])
    bounds = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)]).to(torch.int32)
    packed = {"input_ids": torch.cat(rows)[None], "position_ids": torch.cat([torch.arange(n) for n in lengths])[None],
              "cu_seq_lens_q": bounds, "cu_seq_lens_k": bounds, "max_length_q": 5, "max_length_k": 5}
    attended = []
    sdpa = packed_attention._sdpa()
    monkeypatch.setattr(packed_attention, "_sdpa", lambda: lambda module, query, *args, **kwargs: (
        attended.append(query.shape[2]) or sdpa(module, query, *args, **kwargs)))
    with packed_attention.rows_apart(tiny_causal_lm) as applied:
        logits = tiny_causal_lm(**packed).logits[0]
    assert applied and tiny_causal_lm.config._attn_implementation == "sdpa"  # restored afterwards
    assert attended == [5, 3, 4] * tiny_causal_lm.config.num_hidden_layers
    torch.testing.assert_close(logits, torch.cat(alone), atol=1e-5, rtol=1e-5)
