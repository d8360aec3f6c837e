"""evaluate() on tiny random models: generation, classification heads, padding, comparison tables."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig, get_peft_model
from transformers import (
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    PretrainedConfig,
)

from pbft_widgets import generation
from pbft_widgets.comparison import compare, to_markdown
from pbft_widgets.errors import ConfigError, DataError
from pbft_widgets.evaluation import EvalResult, evaluate
from pbft_widgets.generation import generate_texts, plan_batches
from pbft_widgets.model_facts import inserts_virtual_tokens
from pbft_widgets.metrics import chrf
from pbft_widgets.templates import PromptTemplate, Verbalizer

# Prompts of different lengths, so batches need padding.
ROWS = [
    {"text": "a great film", "answer": "yes"},
    {"text": "a dull, long and rather painful evening at the cinema, sadly", "answer": "no"},
    {"text": "ok", "answer": "maybe"},
    {"text": "the actors were wonderful and the music was lovely", "answer": "yes"},
    {"text": "bad", "answer": "no"},
]
TEMPLATE = PromptTemplate(input_template="Review: {text}", output_indicator="Answer:", target_field="answer")
# Forbid repeats so a random model writes varied tokens: a mix-up of rows would show.
VARIED = {"no_repeat_ngram_size": 1}


def one_at_a_time(model, tokenizer, prompts, max_new_tokens):
    """Reference: plain unpadded greedy generation of each prompt alone."""
    texts = []
    for prompt in prompts:
        encoded = tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(
                **encoded, max_new_tokens=max_new_tokens, do_sample=False,
                pad_token_id=tokenizer.pad_token_id, **VARIED,
            )
        new = out[0, encoded["input_ids"].shape[1]:].tolist()
        if tokenizer.eos_token_id in new:
            new = new[: new.index(tokenizer.eos_token_id)]
        texts.append(tokenizer.decode(new, skip_special_tokens=True).strip())
    return texts


def sharpen(model, scale=10.0):
    """Scale query/key weights so attention is peaked and positions matter, as in a trained model.

    A freshly initialised model attends almost uniformly, so a padding bug would barely move its
    outputs; sharpened, a position shift changes which tokens greedy decoding picks.
    """
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(scale)
            layer.self_attn.k_proj.weight.mul_(scale)
    return model


def prompt_tuned(model):
    torch.manual_seed(1)
    peft_model = get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    with torch.no_grad():  # a soft prompt far from zero, so it visibly steers the model
        peft_model.prompt_encoder["default"].embedding.weight.normal_(0, 1)
    return peft_model.eval()


# ------------------------------------------------------------------------------------ generation


def test_generation_batched_equals_one_by_one_and_reports_everything(tiny_causal_lm, smol_tokenizer):
    sharpen(tiny_causal_lm).train()
    result = evaluate(
        tiny_causal_lm, smol_tokenizer, ROWS, template=TEMPLATE, task_kind="generation",
        batch_size=3, max_new_tokens=6, generation_kwargs=VARIED, name="zero-shot",
    )
    assert tiny_causal_lm.training  # the caller's mode is restored
    prompts = [TEMPLATE.render_prompt(row, smol_tokenizer) for row in ROWS]
    tiny_causal_lm.eval()
    assert result.predictions == one_at_a_time(tiny_causal_lm, smol_tokenizer, prompts, 6)
    assert len(set(result.predictions)) > 1
    assert result.inputs == prompts and result.references == [r["answer"] for r in ROWS]
    assert list(result.scores) == ["rouge_l", "bleu", "chrf", "exact_match"]
    assert result.scores["chrf"] == pytest.approx(chrf(result.predictions, result.references))
    table = result.table()
    assert [set(row) for row in table] == [{"input", "reference", "prediction", "correct"}] * len(ROWS)
    assert table[1]["reference"] == "no" and table[1]["prediction"] == result.predictions[1]
    summary = result.summary()
    assert list(summary)[:2] == ["name", "rouge_l"] and summary["name"] == "zero-shot"
    assert summary["n"] == 5 and summary["seconds"] > 0


def test_generate_texts_stops_at_eos_and_keeps_only_new_text(tiny_causal_lm, smol_tokenizer):
    eos = smol_tokenizer.eos_token_id
    # Bias the model to end at once: the answer is empty, not the prompt or the eos token text.
    texts = generate_texts(
        tiny_causal_lm, smol_tokenizer, ["Review: ok\nAnswer:", "Hi"], max_new_tokens=4,
        generation_kwargs={"sequence_bias": {(eos,): 100.0}},
    )
    assert texts == ["", ""]
    with pytest.raises(DataError):
        generate_texts(tiny_causal_lm, smol_tokenizer, [""])
    unpadded = copy.deepcopy(smol_tokenizer)
    unpadded.pad_token = None
    with pytest.raises(ConfigError):
        generate_texts(tiny_causal_lm, unpadded, ["Hi"])


def test_prompt_tuning_batched_equals_one_by_one(tiny_causal_lm, smol_tokenizer, monkeypatch):
    model = prompt_tuned(sharpen(tiny_causal_lm))
    options = dict(template=TEMPLATE, task_kind="generation", max_new_tokens=6, generation_kwargs=VARIED)
    batched = evaluate(model, smol_tokenizer, ROWS, batch_size=5, **options)
    single = evaluate(model, smol_tokenizer, ROWS, batch_size=1, **options)
    assert batched.predictions == single.predictions
    prompts = [TEMPLATE.render_prompt(row, smol_tokenizer) for row in ROWS]
    assert batched.predictions == one_at_a_time(model, smol_tokenizer, prompts, 6)
    # The check has teeth: left-padding this model like a plain one changes what it generates.
    monkeypatch.setattr(generation, "inserts_virtual_tokens", lambda model: False)
    padded = evaluate(model, smol_tokenizer, ROWS, batch_size=5, **options)
    assert padded.predictions != single.predictions


def _first_step_scores(model, tokenizer, prompts):
    encoded = tokenizer(prompts, padding=True, padding_side="left", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(
            **encoded, max_new_tokens=1, do_sample=False, pad_token_id=tokenizer.pad_token_id,
            output_scores=True, return_dict_in_generate=True,
        )
    return out.scores[0]


def test_why_prompt_tuning_is_not_left_padded(tiny_causal_lm, smol_tokenizer):
    """Left padding moves the text away from the soft prompt (peft #1093); a plain model is unaffected.

    If this starts failing, PEFT has fixed positions for padded prompt tuning and evaluation could
    pad such models like any other.
    """
    prompts = ["Review: ok\nAnswer:", "Review: a dull and painful evening at the cinema\nAnswer:"]
    plain = _first_step_scores(tiny_causal_lm, smol_tokenizer, prompts)[0]
    plain_alone = _first_step_scores(tiny_causal_lm, smol_tokenizer, prompts[:1])[0]
    assert torch.allclose(plain, plain_alone, atol=1e-5)
    model = prompt_tuned(tiny_causal_lm)
    tuned = _first_step_scores(model, smol_tokenizer, prompts)[0]
    tuned_alone = _first_step_scores(model, smol_tokenizer, prompts[:1])[0]
    assert (tuned - tuned_alone).abs().max() > 1e-4


def test_only_input_inserted_virtual_tokens_force_equal_length_batches(tiny_causal_lm):
    assert not inserts_virtual_tokens(tiny_causal_lm)
    lora_config = LoraConfig(task_type="CAUSAL_LM", r=2, target_modules=["q_proj"])
    lora = get_peft_model(copy.deepcopy(tiny_causal_lm), lora_config)
    prefix_config = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2)
    prefix = get_peft_model(copy.deepcopy(tiny_causal_lm), prefix_config)
    assert not inserts_virtual_tokens(lora) and not inserts_virtual_tokens(prefix)
    assert inserts_virtual_tokens(prompt_tuned(tiny_causal_lm))


def test_plan_batches_longest_first_and_equal_length_groups():
    lengths = [3, 5, 3, 5, 5, 1]
    assert plan_batches(lengths, 2, equal_length=False) == [[1, 3], [4, 0], [2, 5]]
    assert plan_batches(lengths, 2, equal_length=True) == [[1, 3], [4], [0, 2], [5]]


def test_classification_by_generation_reads_labels_through_the_verbalizer(tiny_causal_lm, smol_tokenizer):
    template = PromptTemplate(
        input_template="Review: {text}", target_field="label", style="cloze",
        verbalizer=Verbalizer({"pos": "positive", "neg": "negative"}),
    )
    rows = [{"text": t, "label": label} for t, label in [("great", "pos"), ("awful", "neg"), ("fine", "pos")]]
    positive = smol_tokenizer(" positive", add_special_tokens=False)["input_ids"]
    forced = evaluate(tiny_causal_lm, smol_tokenizer, rows, template=template, task_kind="classification",
                      scoring="generate", generation_kwargs={"sequence_bias": {tuple(positive): 100.0}})
    assert forced.predictions == ["pos", "pos", "pos"]
    assert forced.scores["accuracy"] == pytest.approx(2 / 3) and forced.scores["unparsed"] == 0
    assert forced.table()[0]["generated"].startswith("positive")
    # An untrained model writes no label word: every prediction is unparsed and wrong.
    random_model = evaluate(
        tiny_causal_lm, smol_tokenizer, rows, template=template, task_kind="classification", max_new_tokens=3,
        scoring="generate",
    )
    assert random_model.predictions == [None, None, None]
    assert random_model.scores["unparsed"] == 3 and random_model.scores["accuracy"] == 0.0
    assert random_model.probabilities is None and "ece" not in random_model.scores


def test_classification_defaults_to_label_words_with_probabilities(tiny_causal_lm, smol_tokenizer):
    """The same untrained model, scored by label words: every row gets a label and probabilities."""
    template = PromptTemplate(input_template="Review: {text}", style="cloze",
                              verbalizer=Verbalizer({"pos": ["positive", "good"], "neg": "negative"}))
    rows = [{"text": t, "label": label} for t, label in [("great", "pos"), ("awful", "neg"), ("fine", "pos")]]
    result = evaluate(tiny_causal_lm, smol_tokenizer, rows, template=template, task_kind="classification")
    assert result.scoring == "label-words" and result.labels == ["pos", "neg"]
    assert set(result.predictions) <= {"pos", "neg"} and result.scores["unparsed"] == 0
    assert all(abs(sum(p) - 1) < 1e-9 for p in result.probabilities)
    assert {"ece", "brier", "nll"} <= set(result.scores) and 0 <= result.scores["ece"] <= 1
    assert [row["confidence"] for row in result.table()] == [max(p) for p in result.probabilities]
    # Calibration moves the probabilities; a large temperature flattens them towards uniform.
    from pbft_widgets.calibration import Calibration

    flat = evaluate(tiny_causal_lm, smol_tokenizer, rows, template=template, task_kind="classification",
                    calibration=Calibration(["pos", "neg"], np.zeros(2), temperature=1e6))
    assert flat.predictions == result.predictions
    np.testing.assert_allclose(flat.probabilities, 0.5, atol=1e-5)


def test_ner_by_generation_uses_parse_and_counts_failures(tiny_causal_lm, smol_tokenizer):
    rows = [
        {"text": "fever and cough", "tokens": ["fever", "and", "cough"], "tags": ["B-D", "O", "B-D"]},
        {"text": "no problem", "tokens": ["no", "problem"], "tags": ["O", "O"]},
    ]
    template = PromptTemplate(
        input_template="Sentence: {text}", output_indicator="Diseases:", target_field="tags"
    )
    seen = []

    def parse(text, row):
        seen.append(text)
        return ["B-D", "O", "B-D"] if row["text"].startswith("fever") else None

    result = evaluate(tiny_causal_lm, smol_tokenizer, rows, template=template, task_kind="ner",
                      parse=parse, max_new_tokens=3)
    assert seen == result.generations
    assert result.predictions == [["B-D", "O", "B-D"], ["O", "O"]]
    assert result.scores["f1"] == 1.0 and result.scores["unparsed"] == 1
    with pytest.raises(ConfigError):
        evaluate(tiny_causal_lm, smol_tokenizer, rows, template=template, task_kind="ner")
    # metric_options reach the metric: an entity opened by I- only counts under conlleval rules
    def lenient_parse(text, row):
        return ["I-D", "O", "I-D"] if row["text"].startswith("fever") else ["O", "O"]

    options = dict(template=template, task_kind="ner", parse=lenient_parse, max_new_tokens=1)
    assert evaluate(tiny_causal_lm, smol_tokenizer, rows, **options).scores["f1"] == 0.0
    lenient = evaluate(tiny_causal_lm, smol_tokenizer, rows, metric_options={"strict": False}, **options)
    assert lenient.scores["f1"] == 1.0


# --------------------------------------------------------------------------- classification heads

NER_LABELS = {0: "O", 1: "B-Disease", 2: "I-Disease"}
NER_ROWS = [
    {
        "tokens": ["Patients", "with", "hyperglycaemia", "and", "retinopathy"],
        "tags": ["O", "O", "B-Disease", "O", "B-Disease"],
    },
    {"tokens": ["Type", "2", "diabetes"], "tags": ["B-Disease", "I-Disease", "I-Disease"]},
    {"tokens": ["No", "findings"], "tags": ["O", "O"]},
]


def labelled(config, id2label):
    config = copy.deepcopy(config)
    config.id2label = id2label
    config.label2id = {v: k for k, v in id2label.items()}
    return config


def test_token_classification_batched_equals_one_by_one(tiny_bert_config, bert_tokenizer):
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_config(labelled(tiny_bert_config, NER_LABELS)).eval()
    batched = evaluate(model, bert_tokenizer, NER_ROWS, task_kind="ner", batch_size=3)
    single = evaluate(model, bert_tokenizer, NER_ROWS, task_kind="ner", batch_size=1)
    assert batched.predictions == single.predictions
    assert [len(p) for p in batched.predictions] == [5, 3, 2]
    assert set(tag for p in batched.predictions for tag in p) <= set(NER_LABELS.values())
    assert batched.scores["unaligned_words"] == 0 and "f1" in batched.scores
    assert batched.inputs[1] == "Type 2 diabetes" and batched.generations is None
    # Integer tag ids (a ClassLabel column) are named through id2label.
    label2id = {name: i for i, name in NER_LABELS.items()}
    ids = [{"tokens": r["tokens"], "ner_tags": [label2id[t] for t in r["tags"]]} for r in NER_ROWS]
    by_id = evaluate(model, bert_tokenizer, ids, task_kind="ner", label_field="ner_tags")
    assert by_id.references == [r["tags"] for r in NER_ROWS] and by_id.scores == batched.scores


def test_prompt_tuned_token_head_drops_virtual_token_outputs(tiny_bert_config, bert_tokenizer):
    torch.manual_seed(0)
    base = AutoModelForTokenClassification.from_config(labelled(tiny_bert_config, NER_LABELS))
    model = get_peft_model(base, PromptTuningConfig(task_type="TOKEN_CLS", num_virtual_tokens=4)).eval()
    batched = evaluate(model, bert_tokenizer, NER_ROWS, task_kind="ner", batch_size=3)
    single = evaluate(model, bert_tokenizer, NER_ROWS, task_kind="ner", batch_size=1)
    assert batched.predictions == single.predictions
    assert [len(p) for p in batched.predictions] == [5, 3, 2]


class SubTokenProbe(torch.nn.Module):
    """A stand-in token head that labels a word-start piece B-X and a '##' continuation piece I-X."""

    def __init__(self, tokenizer):
        super().__init__()
        self.config = PretrainedConfig(id2label={0: "O", 1: "B-X", 2: "I-X"})
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        self.continues = torch.tensor([piece.startswith("##") for piece in pieces])
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        continues = self.continues[input_ids].float()
        logits = torch.stack([torch.zeros_like(continues), 1 - continues, continues], -1)
        return SimpleNamespace(logits=logits)


def test_words_take_their_first_sub_token_label(bert_tokenizer):
    assert len(bert_tokenizer.tokenize("hyperglycaemia")) > 1
    rows = [{"tokens": ["hyperglycaemia", "in", "retinopathy"], "tags": ["B-X", "O", "B-X"]}]
    result = evaluate(SubTokenProbe(bert_tokenizer), bert_tokenizer, rows, task_kind="ner")
    assert result.predictions == [["B-X", "B-X", "B-X"]]  # never the I-X of a later piece


def test_words_beyond_the_context_are_tagged_o_and_counted(bert_tokenizer):
    words = ["hyperglycaemia"] * 200  # ~800 word pieces, far over the 512-token limit
    result = evaluate(SubTokenProbe(bert_tokenizer), bert_tokenizer,
                      [{"tokens": words, "tags": ["B-X"] * 200}], task_kind="ner")
    tags = result.predictions[0]
    kept = tags.count("B-X")
    assert 0 < kept < 200 and tags[kept:] == ["O"] * (200 - kept)
    assert result.scores["unaligned_words"] == 200 - kept


def test_sequence_classification_head(tiny_bert_config, bert_tokenizer):
    torch.manual_seed(0)
    config = labelled(tiny_bert_config, {0: "neg", 1: "pos"})
    model = AutoModelForSequenceClassification.from_config(config).eval()
    rows = [{"text": r["text"], "label": "pos" if r["answer"] == "yes" else "neg"} for r in ROWS]
    batched = evaluate(model, bert_tokenizer, rows, task_kind="classification", batch_size=4)
    single = evaluate(model, bert_tokenizer, rows, task_kind="classification", batch_size=1)
    assert batched.predictions == single.predictions
    assert set(batched.predictions) <= {"neg", "pos"} and batched.inputs == [r["text"] for r in rows]
    assert batched.scores["accuracy"] == pytest.approx(
        sum(p == r["label"] for p, r in zip(batched.predictions, rows)) / len(rows)
    )
    with pytest.raises(ConfigError):
        evaluate(model, bert_tokenizer, NER_ROWS, task_kind="ner")
    with pytest.raises(ConfigError):
        evaluate(model, bert_tokenizer, ROWS, task_kind="generation", label_field="answer")


# ------------------------------------------------------------------------------------ comparison


def result(name, f1, n=4, kind="ner"):
    scores = {"f1": f1, "precision": f1, "recall": f1, "per_type": {}}
    return EvalResult(name, kind, scores, [[]] * n, [[]] * n, [""] * n, seconds=1.25)


def test_compare_gives_deltas_against_the_first_row():
    table = compare({"zero-shot": result("a", 0.25), "few-shot": result("b", 0.5),
                     "tuned": result("c", 0.75)}, intervals=False)
    assert [row["name"] for row in table] == ["zero-shot", "few-shot", "tuned"]
    assert table[0]["delta_f1"] is None
    assert table[2]["delta_f1"] == pytest.approx(0.5) and table[1]["delta_recall"] == pytest.approx(0.25)
    assert list(table[0]) == ["name", "f1", "precision", "recall", "delta_f1", "delta_precision",
                              "delta_recall", "n", "seconds"]


def test_a_subset_is_rescored_on_its_rows_alone_with_its_probabilities():
    translation = EvalResult("tuned", "translation", {}, ["atl", "casa", "calli"], ["atl", "calli", "calli"],
                             ["agua", "casa", "casa"], 2.0, metric_options={})
    part = translation.subset([2, 0])
    assert part.references == ["calli", "atl"] and part.inputs == ["casa", "agua"] and part.seconds == 2.0
    assert part.scores["chrf"] == pytest.approx(100.0)  # "casa" (row 1, wrong) is left out
    labelled = EvalResult("tuned", "classification", {}, ["a", "b"], ["a", "a"], ["x", "y"], 1.0,
                          probabilities=[[0.9, 0.1], [0.2, 0.8]], labels=["a", "b"], metric_options={})
    assert labelled.subset([0]).scores["accuracy"] == 1.0 and "ece" in labelled.subset([0]).scores
    with pytest.raises(DataError):
        translation.subset([3])


def test_to_markdown_formats_a_comparison():
    table = compare({"zero-shot": result("a", 0.25), "tuned": result("b", 0.875)}, intervals=False)
    shown = [{k: row[k] for k in ("name", "f1", "delta_f1", "n", "seconds")} for row in table]
    assert to_markdown(shown) == (
        "| name | f1 | Δ f1 | n | seconds |\n"
        "| --- | ---: | ---: | ---: | ---: |\n"
        "| zero-shot | 0.250 | — | 4 | 1.2 |\n"
        "| tuned | 0.875 | +0.625 | 4 | 1.2 |\n"
    )
    assert to_markdown([{"name": "a|b"}]) == "| name |\n| --- |\n| a\\|b |\n"
    assert to_markdown([{"bleu": 3.04, "delta_chrf": 13.55, "rouge_l": 0.2684}]) == (
        "| bleu | Δ chrf | rouge_l |\n| ---: | ---: | ---: |\n| 3.0 | +13.6 | 0.268 |\n")
    assert to_markdown([{"chrF++": 9.512, "delta_BLEU": -0.834}]) == (  # columns renamed for display
        "| chrF++ | Δ BLEU |\n| ---: | ---: |\n| 9.5 | -0.8 |\n")
    with pytest.raises(DataError):
        to_markdown([])
    assert to_markdown([{"accuracy": 0.5, "accuracy_low": 0.25, "accuracy_high": 0.75, "delta_chrf": 1.25,
                         "delta_chrf_low": -0.5, "delta_chrf_high": 3.0}]) == (
        "| accuracy [CI] | Δ chrf [CI] |\n| ---: | ---: |\n| 0.500 [0.250, 0.750] | +1.2 [-0.5, +3.0] |\n")


def test_columns_keeps_each_chosen_column_with_its_interval_under_its_display_name():
    from pbft_widgets.comparison import columns

    row = {"name": "t", "chrf": 9.5, "chrf_low": 8.0, "chrf_high": 11.0, "delta_chrf": 1.5,
           "delta_chrf_low": -0.5, "delta_chrf_high": 3.5, "bleu": 0.4, "n": 20}
    picked = columns(row, "bleu", chrf="chrF++", delta_chrf="delta_chrF++")
    assert picked == {"bleu": 0.4, "chrF++": 9.5, "chrF++_low": 8.0, "chrF++_high": 11.0, "delta_chrF++": 1.5,
                      "delta_chrF++_low": -0.5, "delta_chrF++_high": 3.5}
    assert to_markdown([picked]).splitlines()[0] == "| bleu | chrF++ [CI] | Δ chrF++ [CI] |"
    with pytest.raises(DataError, match="no column 'rouge_l'"):
        columns(row, "rouge_l")


def scored(name, kind, predictions, references, **options):
    """An EvalResult whose scores are computed from its predictions, as evaluate() would."""
    from pbft_widgets.metrics import compute_metrics

    scores = compute_metrics(kind, references, predictions, **options)
    return EvalResult(name, kind, scores, predictions, references, list(references), 1.0, metric_options=options)


def test_compare_adds_paired_bootstrap_intervals_for_every_task_kind():
    labels = ["a", "b", "c"]
    refs = labels * 12
    base = scored("zero-shot", "classification", ["a"] * 36, refs, labels=labels)
    tuned = scored("tuned", "classification", refs[:30] + ["a"] * 6, refs, labels=labels)
    table = compare({"zero-shot": base, "tuned": tuned})
    for row, result in zip(table, (base, tuned)):
        for metric in ("accuracy", "macro_f1"):
            assert row[f"{metric}_low"] <= result.scores[metric] <= row[f"{metric}_high"]
    low, high = table[1]["delta_accuracy_low"], table[1]["delta_accuracy_high"]
    assert 0 < low <= table[1]["delta_accuracy"] <= high  # a real improvement excludes 0
    assert compare({"zero-shot": base, "tuned": tuned}) == table  # seeded: reproducible
    assert compare({"zero-shot": base, "tuned": tuned}, seed=1) != table
    # A model against itself: every paired difference is exactly 0 (the same rows in every resample).
    same = compare({"a": tuned, "b": tuned})[1]
    assert same["delta_accuracy_low"] == same["delta_accuracy_high"] == 0
    # Corpus metrics are recomputed from the resampled sentences, so the interval brackets the corpus score.
    hyps = ["the cat sat on the mat", "a dog barks", "it rains today", "we go home", "she reads a book"] * 2
    refs_text = ["the cat sat on a mat", "the dog barks", "it is raining today", "we went home", "she reads books"] * 2
    translation = scored("tuned", "translation", hyps, refs_text)
    row = compare({"zero": scored("zero", "translation", ["x"] * 10, refs_text), "tuned": translation})[1]
    assert row["chrf_low"] <= translation.scores["chrf"] <= row["chrf_high"] and row["chrf_low"] < row["chrf_high"]
    tags = [["B-D", "O"], ["O", "B-D"], ["B-D", "I-D"], ["O", "O"]]
    ner = compare({"zero": scored("zero", "ner", [["O", "O"]] * 4, tags), "tuned": scored("t", "ner", tags, tags)})
    assert ner[1]["f1_low"] == ner[1]["f1_high"] == 1.0 and ner[1]["delta_f1_low"] > 0
