"""Adapters on disk (atomic save, manifest, base-model and corruption checks) and the AdapterBank.

Adapters here are made by nudging freshly initialised trainable weights with seeded noise: that
gives each task distinct, deterministic outputs in milliseconds, which is all serving needs.
"""

from __future__ import annotations

import copy
import itertools
import json
import random

import pytest
import torch
from peft import PeftModel
from transformers import BertForSequenceClassification, BertForTokenClassification, LlamaConfig, LlamaForCausalLM

from conftest import nudged, spice
from pbft_widgets import PromptTemplate, Verbalizer, evaluate, load_model
from pbft_widgets.adapters import FORMAT_VERSION, MANIFEST, load_adapter, save_adapter
from pbft_widgets.errors import AdapterError
from pbft_widgets.registry import METHODS, methods_for_task, spec_of
from pbft_widgets.serve import AdapterBank

PROMPTS = ["Translate to Nahuatl: water", "Summarise: the licence grants a worldwide right to use the code",
           "Hi", "Docstring for def add(a, b): return a + b"]
LABELS = {0: "O", 1: "B-DIS", 2: "I-DIS"}


@pytest.fixture
def lm(tiny_causal_lm):
    return spice(tiny_causal_lm)


def make_adapter(base, method, path, *, seed, task="causal-lm", **options):
    """Save a distinct adapter of ``method`` for a copy of ``base``; return its setup."""
    setup = nudged(base, method, seed=seed, task=task, **options)
    save_adapter(setup, path)
    return setup


def generate_alone(model, tokenizer, prompt, n=8) -> str:
    """Plain greedy generate() of one unpadded prompt: the answer's new text, stripped."""
    enc = tokenizer([prompt], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=n, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


# ----------------------------------------------------------------------------- save/load on disk
def test_save_is_atomic_and_refuses_to_overwrite_by_default(lm, tmp_path, monkeypatch):
    path = tmp_path / "adapter"
    first = make_adapter(lm, "lora", path, seed=1)
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["format_version"] == FORMAT_VERSION and manifest["method"] == "lora"
    assert manifest["task"] == "causal-lm"
    assert manifest["base_model"]["vocab_size"] == lm.config.vocab_size
    assert manifest["base_model"]["num_layers"] == 2 and len(manifest["base_model"]["embedding_probe"]) == 64
    assert set(manifest["files"]) >= {"adapter_config.json", "adapter_model.safetensors"}
    with pytest.raises(AdapterError):
        save_adapter(first, path)

    second = make_adapter(lm, "lora", tmp_path / "other", seed=2)
    before = (path / "adapter_model.safetensors").read_bytes()
    monkeypatch.setattr(type(second.model), "save_pretrained",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        save_adapter(second, path, overwrite=True)
    monkeypatch.undo()
    assert (path / "adapter_model.safetensors").read_bytes() == before  # the old adapter is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "other"]  # no temp dirs left

    save_adapter(second, path, overwrite=True)
    assert (path / "adapter_model.safetensors").read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "other"]


def test_another_base_is_refused_and_another_precision_of_the_same_base_is_not(lm, smol_tokenizer, tmp_path):
    path = tmp_path / "adapter"
    make_adapter(lm, "prompt-tuning", path, seed=1)
    other_weights = spice(copy.deepcopy(lm), seed=7)
    with pytest.raises(AdapterError):
        load_adapter(other_weights, path)
    config = LlamaConfig(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2)
    with pytest.raises(AdapterError):
        load_adapter(LlamaForCausalLM(config), path)
    # the same base loaded in another precision is still the same base
    assert load_adapter(copy.deepcopy(lm).to(torch.bfloat16), path).method == "prompt-tuning"


def test_plain_peft_folders_load_and_truncation_is_still_caught(lm, smol_tokenizer, tmp_path):
    setup = make_adapter(lm, "p-tuning", tmp_path / "ours", seed=3)
    plain = tmp_path / "plain"
    setup.model.save_pretrained(str(plain))  # e.g. a trainer checkpoint: no manifest, no encoder
    loaded = load_adapter(copy.deepcopy(lm), plain)
    assert loaded.method == "p-tuning"
    prompt = PROMPTS[0]
    assert generate_alone(loaded.model, smol_tokenizer, prompt) == generate_alone(setup.model, smol_tokenizer, prompt)
    with pytest.raises(AdapterError):
        load_adapter(copy.deepcopy(lm), plain, is_trainable=True)
    weights = plain / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:20])
    with pytest.raises(AdapterError):
        load_adapter(copy.deepcopy(lm), plain)


# ----------------------------------------------------------------------------- the bank (causal LM)
@pytest.fixture
def causal_bank(lm, smol_tokenizer, tmp_path):
    """A bank over one base with two LoRA tasks, a prompt, a prefix, a P-tuning and a hybrid task."""
    setups = {
        "legal": make_adapter(lm, "lora", tmp_path / "legal", seed=1),
        "code": make_adapter(lm, "lora", tmp_path / "code", seed=2, r=4, target_modules=["q_proj", "o_proj"]),
        "nahuatl": make_adapter(lm, "prompt-tuning", tmp_path / "nahuatl", seed=3, num_virtual_tokens=6),
        "clinical": make_adapter(lm, "prefix-tuning", tmp_path / "clinical", seed=4, num_virtual_tokens=6),
        "ptune": make_adapter(lm, "p-tuning", tmp_path / "ptune", seed=5, num_virtual_tokens=6),
        "hybrid": make_adapter(lm, "prompt+lora", tmp_path / "hybrid", seed=6, num_virtual_tokens=6),
    }
    base_copy = copy.deepcopy(lm)
    bank = AdapterBank(lm, smol_tokenizer, max_new_tokens=8)
    for task in setups:
        bank.add(task, tmp_path / task)
    return bank, setups, base_copy


def test_each_task_matches_its_adapter_alone_and_switching_back_is_exact(causal_bank, smol_tokenizer):
    bank, setups, base = causal_bank
    assert bank.tasks == list(setups)
    first = {task: bank.generate(task, PROMPTS) for task in setups}
    for task, setup in setups.items():
        assert first[task] == [generate_alone(setup.model, smol_tokenizer, p) for p in PROMPTS], task
    assert len({tuple(v) for v in first.values()}) == len(setups)  # every task answers differently
    assert bank.generate(None, PROMPTS) == [generate_alone(base, smol_tokenizer, p) for p in PROMPTS]
    for task in ["code", "legal", "hybrid", "nahuatl", "legal", "clinical", "ptune", "code"]:  # A -> B -> A
        assert bank.generate(task, PROMPTS) == first[task], task
    assert bank.generate("legal", PROMPTS[0]) == first["legal"][0]  # a str in gives a str out
    # prompt adapters wrap the bank's base model itself: no copy of the weights per task
    assert all(bank._tasks[t].model.get_base_model() is bank.model for t in ("nahuatl", "clinical", "ptune"))


def test_batched_generation_equals_one_by_one(causal_bank):
    bank, setups, _ = causal_bank
    for task in [None, *setups]:
        one_by_one = [bank.generate(task, p) for p in PROMPTS]
        assert bank.generate(task, PROMPTS) == one_by_one, task
        bank.batch_size = 2
        assert bank.generate(task, PROMPTS) == one_by_one, task
        bank.batch_size = 8


def test_generate_many_groups_by_task_and_keeps_order(causal_bank):
    bank, _, _ = causal_bank
    requests = [("legal", PROMPTS[0]), ("nahuatl", PROMPTS[1]), ("legal", PROMPTS[2]), (None, PROMPTS[3]),
                ("clinical", PROMPTS[0]), ("nahuatl", PROMPTS[3])]
    assert bank.generate_many(requests, mixed=False) == [bank.generate(task, prompt) for task, prompt in requests]


# ----------------------------------------------------------------------------- mixed-task batches
MIXABLE = [None, "legal", "code", "nahuatl", "ptune", "hybrid"]  # base, two LoRAs, prompt, P-tuning, hybrid


def mixed_stream(tasks, seed=0, n=10):
    """A seeded stream of (task, prompt) requests over ``tasks``, every task at least once."""
    generator = torch.Generator().manual_seed(seed)
    picks = [*tasks, *(tasks[i] for i in torch.randint(len(tasks), (n - len(tasks),), generator=generator))]
    order = torch.randperm(len(picks), generator=generator).tolist()
    return [(picks[i], PROMPTS[(i + k) % len(PROMPTS)]) for k, i in enumerate(order)]


def test_a_mixed_batch_answers_what_each_task_answers_alone(causal_bank):
    """Rows of every mixable method (and the bare base) in shared batches: the strings served one task at a time."""
    bank, _, _ = causal_bank
    alone = {(task, p): bank.generate(task, p) for task in MIXABLE for p in PROMPTS}
    requests = mixed_stream(MIXABLE, n=16)
    for batch_size in (16, 3):
        bank.batch_size = batch_size
        assert bank.generate_many(requests) == [alone[r] for r in requests], batch_size
    assert len({alone[r] for r in requests}) > 6  # tasks answer differently: the comparison has teeth
    for pair in itertools.combinations(MIXABLE, 2):  # every pair of methods alone in a batch
        requests = mixed_stream(list(pair), seed=len(pair[1] or ""), n=6)
        assert bank.generate_many(requests) == [alone[r] for r in requests], pair
    assert bank.generate("legal", PROMPTS) == [alone[("legal", p)] for p in PROMPTS]  # switching still exact


@pytest.mark.parametrize("tiny_causal_lm", ["gemma3"], indirect=True)
def test_a_mixed_batch_on_gemma3_answers_as_each_adapter_alone(causal_bank, smol_tokenizer, one_thread):
    """Mixed generation lays the prefilled keys and values side by side by hand; Gemma-3's sliding-window
    layers keep only their window of them. Its prompts (up to 19 positions with a soft prompt) are longer
    than the tiny model's 8-token window, so the cache of those layers is cut here."""
    bank, setups, base = causal_bank
    models = {None: base, **{task: setup.model for task, setup in setups.items()}}
    requests = mixed_stream(MIXABLE, n=12)
    alone = {(task, p): generate_alone(models[task], smol_tokenizer, p) for task, p in set(requests)}
    for batch_size in (12, 3):
        bank.batch_size = batch_size
        assert bank.generate_many(requests) == [alone[r] for r in requests], batch_size
    assert len(set(alone.values())) > 6  # tasks answer differently: the comparison has teeth


def test_a_mixed_batch_scores_label_words_as_each_task_alone(causal_bank, smol_tokenizer):
    bank, _, _ = causal_bank
    requests = [(task, review) for task in MIXABLE for review in REVIEWS]
    random.Random(0).shuffle(requests)
    alone = [bank.predict(task, [review], template=CLOZE, probabilities=True)[0] for task, review in requests]
    bank.batch_size = 5
    mixed = bank.predict_many(requests, template=CLOZE, probabilities=True)
    assert [m["label"] for m in mixed] == [a["label"] for a in alone]
    for m, a in zip(mixed, alone):
        assert list(m["probabilities"].values()) == pytest.approx(list(a["probabilities"].values()), abs=1e-5)
    assert len({round(a["probabilities"]["pos"], 4) for a in alone}) > 6
    two_label_sets = {task: CLOZE if task != "code" else CODE_CLOZE for task in MIXABLE}
    assert bank.predict_many(requests, template=two_label_sets) == [
        bank.predict(task, [review], template=two_label_sets[task])[0] for task, review in requests]


def test_a_mixed_batch_on_a_4bit_base_answers_as_each_task_alone(lm, smol_tokenizer, tmp_path):
    """QLoRA rows, soft-prompt rows and base rows share batches on a 4-bit base."""
    folder, _, base = saved_adapter(lm, smol_tokenizer, tmp_path, "qlora")
    make_adapter(load_model(folder, quantization="4bit").model, "prompt-tuning", tmp_path / "prompt", seed=4,
                 num_virtual_tokens=5)
    bank = AdapterBank(load_model(folder, quantization="4bit").model, base.tokenizer, max_new_tokens=8, batch_size=4)
    bank.add("qlora", tmp_path / "qlora")
    bank.add("prompt", tmp_path / "prompt")
    requests = mixed_stream([None, "qlora", "prompt"], n=9)
    assert bank.generate_many(requests) == [bank.generate(task, prompt) for task, prompt in requests]
    assert len({bank.generate(task, PROMPTS[1]) for task in (None, "qlora", "prompt")}) == 3


def test_prefix_tuning_cannot_mix_and_says_what_to_do(causal_bank):
    bank, _, _ = causal_bank
    with pytest.raises(AdapterError, match="mixed=False"):
        bank.generate_many([("legal", PROMPTS[0]), ("clinical", PROMPTS[1])])
    assert bank.generate_many([("clinical", PROMPTS[1])], mixed=False) == [bank.generate("clinical", PROMPTS[1])]


def test_merge_gives_a_standalone_model_and_keeps_the_bank(causal_bank, smol_tokenizer):
    bank, setups, _ = causal_bank
    expected = {task: bank.generate(task, PROMPTS) for task in ("legal", "nahuatl", None)}
    merged = bank.merge("legal")
    assert not isinstance(merged, PeftModel)
    assert not any("lora" in name for name, _ in merged.named_modules())
    assert [generate_alone(merged, smol_tokenizer, p) for p in PROMPTS] == expected["legal"]
    for task, outputs in expected.items():  # the bank still serves everything
        assert bank.generate(task, PROMPTS) == outputs
    with pytest.raises(AdapterError):
        bank.merge("nahuatl")


def test_compare_puts_base_and_tuned_side_by_side(causal_bank):
    bank, _, _ = causal_bank
    rows = bank.compare("legal", PROMPTS[:2])
    assert [r["prompt"] for r in rows] == PROMPTS[:2]
    assert [r["base"] for r in rows] == bank.generate(None, PROMPTS[:2])
    assert [r["tuned"] for r in rows] == bank.generate("legal", PROMPTS[:2])
    assert rows[0]["base"] != rows[0]["tuned"]


# ----------------------------------------------------------------------------- the bank (encoders)
def bert(config, task):
    torch.manual_seed(0)
    cls = BertForTokenClassification if task == "token-classification" else BertForSequenceClassification
    config = copy.deepcopy(config)
    config.id2label, config.label2id = LABELS, {v: k for k, v in LABELS.items()}
    return spice(cls(config))


SENTENCES = ["aspirin relieved the migraine", "no signs of diabetes were found in the patient", "fever"]


@pytest.mark.parametrize("task", ["sequence-classification", "token-classification"])
def test_classification_bank_predicts_like_each_adapter_alone(tiny_bert_config, bert_tokenizer, tmp_path, task):
    base = bert(tiny_bert_config, task)
    methods = {"lora": "lora", "deep": "prefix-tuning"}
    if task == "sequence-classification":
        methods["soft"] = "prompt-tuning"
    setups = {name: make_adapter(base, method, tmp_path / name, seed=i, task=task, num_virtual_tokens=4)
              if method != "lora" else make_adapter(base, method, tmp_path / name, seed=i, task=task)
              for i, (name, method) in enumerate(methods.items())}
    base_copy = copy.deepcopy(base)
    bank = AdapterBank(base, bert_tokenizer)
    for name in setups:
        bank.add(name, tmp_path / name)

    def alone(model):
        if task == "sequence-classification":
            enc = bert_tokenizer(SENTENCES, return_tensors="pt", padding=True)
            with torch.no_grad():
                return [LABELS[i] for i in model(**enc).logits.argmax(-1).tolist()]
        labels = []
        for sentence in SENTENCES:
            enc = bert_tokenizer(sentence.split(), is_split_into_words=True, return_tensors="pt")
            with torch.no_grad():
                predicted = model(**enc).logits[0].argmax(-1).tolist()
            firsts = {}
            for position, word in enumerate(enc.word_ids(0)):
                if word is not None:
                    firsts.setdefault(word, position)
            labels.append([LABELS[predicted[firsts[w]]] for w in sorted(firsts)])
        return labels

    expected = {name: alone(setup.model) for name, setup in setups.items()}
    expected[None] = alone(base_copy)
    for name in [*setups, None, *reversed(list(setups)), None]:
        assert bank.predict(name, SENTENCES) == expected[name], name
    if task == "token-classification":
        assert [len(labels) for labels in expected["lora"]] == [len(s.split()) for s in SENTENCES]
    rows = bank.compare("deep", SENTENCES)
    assert [r["tuned"] for r in rows] == expected["deep"] and [r["base"] for r in rows] == expected[None]
    with pytest.raises(AdapterError):
        bank.generate("lora", "text")


# ----------------------------------------------------------------------------- bank == evaluate()
ROWS = [{"text": text, "answer": "a"} for text in PROMPTS]
GENERATION = PromptTemplate(input_template="{text}", output_indicator="Answer:", target_field="answer")


def saved_adapter(lm, tokenizer, tmp_path, method):
    """Save ``lm`` as a base folder and a distinct adapter of ``method`` at tmp_path/method."""
    folder = tmp_path / "base"
    lm.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    quantization = "4bit" if spec_of(method).needs_4bit else None
    base = load_model(folder, quantization=quantization)
    options = {"r": 4} if spec_of(method).mergeable else {"num_virtual_tokens": 5}
    make_adapter(base.model, method, tmp_path / method, seed=3, tokenizer=base.tokenizer, **options)
    return folder, quantization, base


@pytest.mark.parametrize("method", METHODS)
def test_the_bank_serves_exactly_what_evaluate_scored(lm, smol_tokenizer, tmp_path, method):
    """Same rows, same adapter: AdapterBank.generate and evaluate() return the same strings, for every method."""
    folder, quantization, base = saved_adapter(lm, smol_tokenizer, tmp_path, method)
    scored = evaluate(load_adapter(load_model(folder, quantization=quantization).model, tmp_path / method).model,
                      base.tokenizer, ROWS, template=GENERATION, task_kind="generation", max_new_tokens=8,
                      batch_size=3)
    bank = AdapterBank(load_model(folder, quantization=quantization).model, base.tokenizer, max_new_tokens=8,
                       batch_size=3)
    bank.add("task", tmp_path / method)
    served = bank.generate("task", [GENERATION.render_prompt(row, base.tokenizer) for row in ROWS])
    assert served == scored.generations
    assert len(set(served)) > 1  # varied answers: the comparison has teeth


@pytest.mark.parametrize("task", ["sequence-classification", "token-classification"])
def test_the_classification_bank_predicts_exactly_what_evaluate_scored(tiny_bert_config, bert_tokenizer, tmp_path,
                                                                       task):
    base = bert(tiny_bert_config, task)
    bank = AdapterBank(copy.deepcopy(base), bert_tokenizer, batch_size=2)
    kind = "ner" if task == "token-classification" else "classification"
    rows = [{"tokens": s.split(), "tags": ["O"] * len(s.split()), "text": s, "label": "O"} for s in SENTENCES]
    for i, method in enumerate(methods_for_task(task)):
        if spec_of(method).needs_4bit:
            continue
        options = {} if spec_of(method).mergeable else {"num_virtual_tokens": 4}
        setup = make_adapter(base, method, tmp_path / method, seed=i, task=task, **options)
        bank.add(method, tmp_path / method)
        scored = evaluate(setup.model, bert_tokenizer, rows, task_kind=kind, batch_size=2,
                          input_field="tokens" if kind == "ner" else "text")
        assert bank.predict(method, SENTENCES) == scored.predictions, method


CLOZE = PromptTemplate(input_template="Review: {text}", output_indicator="Sentiment:", style="cloze",
                       verbalizer=Verbalizer({"pos": ["positive", "good"], "neg": "negative", "mixed": "mixed"}))
REVIEWS = [{"text": text, "label": label} for text, label in
           [("a wonderful film", "pos"), ("dull", "neg"), ("some good scenes, too long", "mixed"), ("fine", "pos")]]
CODE_CLOZE = CLOZE.with_changes(verbalizer=Verbalizer({"bug": "broken", "ok": ["fine", "correct"]}))


@pytest.mark.parametrize("method", METHODS)
def test_the_bank_classifies_with_the_probabilities_evaluate_scored(lm, smol_tokenizer, tmp_path, method):
    """Label-word scoring through the bank equals evaluate()'s, labels and probabilities, for every method."""
    folder, quantization, base = saved_adapter(lm, smol_tokenizer, tmp_path, method)
    scored = evaluate(load_adapter(load_model(folder, quantization=quantization).model, tmp_path / method).model,
                      base.tokenizer, REVIEWS, template=CLOZE, task_kind="classification", batch_size=3)
    bank = AdapterBank(load_model(folder, quantization=quantization).model, base.tokenizer, batch_size=3)
    bank.add("task", tmp_path / method)
    served = bank.predict("task", REVIEWS, template=CLOZE, probabilities=True)
    assert [item["label"] for item in served] == scored.predictions
    for item, expected in zip(served, scored.probabilities):
        assert list(item["probabilities"].values()) == pytest.approx(expected, abs=1e-6)
    assert len({item["label"] for item in served}) > 1  # varied answers: the comparison has teeth
    assert bank.predict("task", [CLOZE.render_prompt(r, base.tokenizer) for r in REVIEWS], template=CLOZE) == \
        scored.predictions
