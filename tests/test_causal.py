"""Causal inspection: the soft prompt replaced, discretised to its nearest tokens, and ablated token by token.

Each result is checked against the same computation done another way in the test: a model whose
prompt table really holds the replacement, the hard prompt's token ids fed as plain input, argmax
of a hand-written similarity, log-probabilities summed by hand.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from pbft_widgets import PromptTemplate, Verbalizer, evaluate
from pbft_widgets.errors import ConfigError
from pbft_widgets.evaluation import EvalResult
from pbft_widgets.inspection import (ablate_tokens, ablation_figure, discretise, faithfulness, fluency,
                                     hard_prompt_embeddings, replaced_prompt, snapshot_prompt, soft_prompt)
from pbft_widgets.methods import apply_method
from pbft_widgets.uncertainty import accuracy_differences

TEMPLATE = PromptTemplate(input_template="Review: {text}", output_indicator="Sentiment:", style="cloze",
                          verbalizer=Verbalizer({"pos": "positive", "neg": "negative"}))
ROWS = [{"text": text, "label": label} for text, label in
        [("a wonderful film", "pos"), ("dull and far too long", "neg"), ("I loved every minute", "pos"),
         ("the worst plot this year", "neg"), ("bright and funny", "pos"), ("a waste of an evening", "neg")]]
VOCAB_IDS = [3907, 1520, 260, 5000]  # rows of the vocabulary copied into the prompt


@pytest.fixture
def prompt_model(tiny_causal_lm, smol_tokenizer):
    """Prompt tuning with 4 virtual tokens, rows spread like real embeddings."""
    model = apply_method(tiny_causal_lm, "prompt-tuning", tokenizer=smol_tokenizer, num_virtual_tokens=4).model
    with torch.no_grad():
        model.prompt_encoder["default"].embedding.weight.normal_(0.0, 0.05)
    return model


def table_of(model) -> torch.Tensor:
    return model.prompt_encoder["default"].embedding.weight


def run(model, tokenizer, rows=ROWS, template=TEMPLATE) -> EvalResult:
    return evaluate(model, tokenizer, rows, template=template, task_kind="classification", batch_size=4)


def test_a_replaced_prompt_scores_like_a_model_that_holds_it_and_is_put_back(prompt_model, smol_tokenizer):
    before = run(prompt_model, smol_tokenizer)
    replacement = torch.randn(4, table_of(prompt_model).shape[1]) * 0.05
    holder = copy.deepcopy(prompt_model)
    with torch.no_grad():
        table_of(holder).copy_(replacement)
    with replaced_prompt(prompt_model, replacement):
        replaced = run(prompt_model, smol_tokenizer)
        assert torch.equal(soft_prompt(prompt_model), replacement)
    np.testing.assert_allclose(replaced.probabilities, run(holder, smol_tokenizer).probabilities, atol=1e-6)
    assert not np.allclose(replaced.probabilities, before.probabilities, atol=1e-6)
    np.testing.assert_array_equal(run(prompt_model, smol_tokenizer).probabilities, before.probabilities)


def test_the_learned_prompt_comes_back_when_the_block_raises(prompt_model):
    learned = soft_prompt(prompt_model).clone()
    with pytest.raises(RuntimeError), replaced_prompt(prompt_model, torch.zeros_like(learned)):
        raise RuntimeError("inside the block")
    assert torch.equal(soft_prompt(prompt_model), learned)


def test_a_replacement_of_another_shape_is_refused(prompt_model):
    with pytest.raises(ConfigError, match="one vector per virtual token"), replaced_prompt(prompt_model, torch.zeros(3, 8)):
        pass


def test_discretise_finds_copied_vocabulary_rows_by_either_similarity(prompt_model, smol_tokenizer):
    weight = prompt_model.get_input_embeddings().weight
    with torch.no_grad():
        table_of(prompt_model).copy_(weight[VOCAB_IDS] * 1.0)
    for similarity in ("cosine", "dot"):
        hard = discretise(prompt_model, smol_tokenizer, similarity=similarity)
        assert hard.ids == VOCAB_IDS
        assert hard.text == smol_tokenizer.decode(VOCAB_IDS)
        assert hard.similarity == similarity


def test_dot_and_cosine_neighbours_are_the_hand_computed_argmaxes(prompt_model, smol_tokenizer):
    vocab = prompt_model.get_input_embeddings().weight.detach()[: len(smol_tokenizer)]
    prompt = soft_prompt(prompt_model)
    dot = (prompt @ vocab.T).argmax(1).tolist()
    cosine = (torch.nn.functional.normalize(prompt, dim=1) @ torch.nn.functional.normalize(vocab, dim=1).T).argmax(1)
    assert discretise(prompt_model, smol_tokenizer, similarity="dot").ids == dot
    assert discretise(prompt_model, smol_tokenizer, similarity="cosine").ids == cosine.tolist()


def test_a_hard_prompt_run_as_soft_prompt_is_its_token_ids_in_front_of_the_input(prompt_model, smol_tokenizer):
    ids = VOCAB_IDS[:4]
    text = smol_tokenizer("Review: bright and funny", return_tensors="pt")["input_ids"]
    with torch.no_grad(), replaced_prompt(prompt_model, hard_prompt_embeddings(prompt_model, ids)):
        soft = prompt_model(input_ids=text).logits[0, -1]
    plain = prompt_model.get_base_model()(input_ids=torch.cat([torch.tensor([ids]), text], 1)).logits[0, -1]
    torch.testing.assert_close(soft, plain, atol=1e-5, rtol=1e-5)


def test_fluency_is_the_mean_next_token_log_probability_under_the_base(prompt_model, smol_tokenizer):
    ids = smol_tokenizer("Classify the review", add_special_tokens=False)["input_ids"]
    logits = prompt_model.get_base_model()(input_ids=torch.tensor([ids])).logits[0].detach().log_softmax(-1)
    by_hand = np.mean([logits[k - 1, ids[k]].item() for k in range(1, len(ids))])
    assert fluency(prompt_model, smol_tokenizer, "Classify the review") == pytest.approx(by_hand, abs=1e-5)
    assert fluency(prompt_model, smol_tokenizer, ids) == pytest.approx(by_hand, abs=1e-5)


def test_faithfulness_scores_the_soft_prompt_its_readings_and_the_instruction(prompt_model, smol_tokenizer):
    instructed = TEMPLATE.with_changes(instruction="Is the review positive or negative?")
    found = faithfulness(prompt_model, smol_tokenizer, TEMPLATE, ROWS, instruction_template=instructed, batch_size=4)
    assert list(found.runs) == ["soft prompt (learned)", "nearest tokens (cosine)", "nearest tokens (dot)",
                                "hand-written instruction"]
    np.testing.assert_array_equal(found.runs["soft prompt (learned)"].probabilities,
                                  run(prompt_model, smol_tokenizer).probabilities)
    np.testing.assert_allclose(found.runs["hand-written instruction"].probabilities,
                               run(prompt_model.get_base_model(), smol_tokenizer, template=instructed).probabilities)
    hard = discretise(prompt_model, smol_tokenizer)
    with replaced_prompt(prompt_model, hard_prompt_embeddings(prompt_model, hard.ids)):
        np.testing.assert_array_equal(found.runs["nearest tokens (cosine)"].probabilities,
                                      run(prompt_model, smol_tokenizer).probabilities)
    assert found.prompts["nearest tokens (cosine)"] == hard
    assert found.fluency["hand-written instruction"] == pytest.approx(
        fluency(prompt_model, smol_tokenizer, instructed.instruction))
    table = found.table()
    assert [row["prompt"] for row in table] == list(found.runs)
    assert table[0]["delta_accuracy"] is None and table[1]["text"] == hard.text
    assert all(row["accuracy_low"] <= row["accuracy"] <= row["accuracy_high"] for row in table)


def test_faithfulness_needs_a_prompt_in_the_input(tiny_causal_lm, smol_tokenizer):
    model = apply_method(tiny_causal_lm, "prefix-tuning", tokenizer=smol_tokenizer, num_virtual_tokens=3).model
    with pytest.raises(ConfigError, match="input embedding space"):
        faithfulness(model, smol_tokenizer, TEMPLATE, ROWS)


def test_ablation_rows_match_evaluations_with_the_token_replaced_by_hand(prompt_model, smol_tokenizer):
    snapshot_prompt(prompt_model)
    learned = soft_prompt(prompt_model).clone()
    with torch.no_grad():
        table_of(prompt_model).mul_(3.0)  # "training" moved the prompt away from its start
    table = ablate_tokens(prompt_model, smol_tokenizer, TEMPLATE, ROWS, replacements=["mean", "initial", "zero"],
                          batch_size=4)
    assert [(row["token"], row["replacement"]) for row in table] == [
        (i, kind) for i in range(4) for kind in ("mean", "initial", "zero")]
    reference = run(prompt_model, smol_tokenizer)
    vocabulary_mean = prompt_model.get_input_embeddings().weight.detach().mean(0)
    for row in table:
        holder = copy.deepcopy(prompt_model)
        value = {"mean": vocabulary_mean, "initial": learned[row["token"]], "zero": torch.zeros_like(learned[0])}
        with torch.no_grad():
            table_of(holder)[row["token"]] = value[row["replacement"]]
        by_hand = run(holder, smol_tokenizer)
        assert row["accuracy"] == by_hand.scores["accuracy"]
        assert row["delta_accuracy"] == pytest.approx(by_hand.scores["accuracy"] - reference.scores["accuracy"])
        assert row["delta_nll"] == pytest.approx(by_hand.scores["nll"] - reference.scores["nll"], abs=1e-6)
        assert row["delta_accuracy_low"] <= row["delta_accuracy"] <= row["delta_accuracy_high"]
    assert torch.equal(soft_prompt(prompt_model), learned * 3.0)  # the model is left as it was


def test_ablating_a_token_by_itself_changes_nothing(prompt_model, smol_tokenizer):
    table = ablate_tokens(prompt_model, smol_tokenizer, TEMPLATE, ROWS, replacements=["initial"],
                          initial=soft_prompt(prompt_model), tokens=[1, 3])
    assert [row["token"] for row in table] == [1, 3]
    assert all(row["delta_accuracy"] == 0 and row["delta_nll"] == 0 for row in table)
    assert all(row["delta_accuracy_low"] == row["delta_accuracy_high"] == 0 for row in table)


@pytest.mark.parametrize("options, message", [
    ({"replacements": ["noise"]}, "use one of 'mean', 'initial', 'zero'"),
    ({"tokens": [4]}, r"tokens \[4\] do not exist"),
    ({"replacements": ["initial"]}, "call snapshot_prompt"),
])
def test_ablation_refuses_what_it_cannot_do_before_any_evaluation(prompt_model, smol_tokenizer, options, message):
    with pytest.raises(ConfigError, match=message):
        ablate_tokens(prompt_model, smol_tokenizer, TEMPLATE, ROWS, **options)


def test_accuracy_differences_are_a_percentile_bootstrap_of_the_paired_marks():
    refs = ["a", "b"] * 10
    base = EvalResult("learned", "classification", {}, refs, refs, refs, 0.0)
    half = EvalResult("ablated", "classification", {}, refs[:10] + ["c"] * 10, refs, refs, 0.0)
    (low, high), (same_low, same_high) = accuracy_differences(base, [half, base], seed=3)
    draws = np.random.default_rng(3).integers(0, 20, (1000, 20))
    marks = np.array([1.0] * 10 + [0.0] * 10) - 1.0
    expected = np.percentile(marks[draws].mean(1), [2.5, 97.5])
    assert (low, high) == pytest.approx(tuple(expected))
    assert high < 0 and same_low == same_high == 0


def test_the_ablation_figure_has_accuracy_bars_with_intervals_and_loss_bars(prompt_model, smol_tokenizer):
    table = ablate_tokens(prompt_model, smol_tokenizer, TEMPLATE, ROWS, replacements=["mean", "zero"], tokens=[0, 2])
    fig = ablation_figure(table)
    accuracy = [trace for trace in fig.data if trace.yaxis == "y"]
    loss = [trace for trace in fig.data if trace.yaxis == "y2"]
    assert [trace.name for trace in accuracy] == ["replaced by mean", "replaced by zero"]
    assert len(loss) == 2 and all(len(trace.x) == 2 for trace in fig.data)
    assert [trace.marker.color for trace in loss] == [trace.marker.color for trace in accuracy]  # one colour per kind
    assert accuracy[0].marker.color != accuracy[1].marker.color
    first = [row for row in table if row["replacement"] == "mean"]
    assert list(accuracy[0].error_y.arrayminus) == pytest.approx(
        [row["delta_accuracy"] - row["delta_accuracy_low"] for row in first])
    with pytest.raises(ConfigError, match="ablate_tokens"):
        ablation_figure([])
