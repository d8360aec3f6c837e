"""Prefix tuning, layer by layer: one layer's learned prefix replaced, the answers' loss measured.

Each result is checked against the same computation done another way: a model whose prefix table
really holds the replacement, and the completion loss summed by hand from the model's logits.
"""

from __future__ import annotations

import copy

import pytest
import torch

from pbft_widgets import PromptTemplate, Verbalizer
from pbft_widgets.inspection import (ablate_layers, completion_losses, layer_ablation_figure, prefix_summary,
                                     replaced_prefix_layer)
from pbft_widgets.methods import apply_method

TEMPLATE = PromptTemplate(input_template="Review: {text}", output_indicator="Sentiment:", style="cloze",
                          verbalizer=Verbalizer({"pos": "positive", "neg": "negative"}))
SUMMARY = PromptTemplate(input_template="Function: {text}", output_indicator="Summary:")
ROWS = [{"text": text, "label": label} for text, label in
        [("a wonderful film", "pos"), ("dull and far too long", "neg"), ("I loved every minute", "pos"),
         ("the worst plot this year", "neg"), ("bright and funny", "pos")]]
DOCS = [{"text": "def add(a, b): return a + b", "label": "Add two numbers."},
        {"text": "def name(self): return self._name", "label": "Return the name of this object, as given."},
        {"text": "def clear(self): self.items = []", "label": "Remove every item."}]


@pytest.fixture
def prefix_model(tiny_causal_lm, smol_tokenizer):
    """Prefix tuning with 3 positions per layer, the table spread so that it matters."""
    model = apply_method(tiny_causal_lm, "prefix-tuning", tokenizer=smol_tokenizer, num_virtual_tokens=3).model
    torch.manual_seed(3)
    with torch.no_grad():
        table(model).normal_(0.0, 1.0)
    return model.eval()


def table(model) -> torch.Tensor:
    """PEFT's prefix table: [positions, layers * 2 * hidden], layer L's keys then values at [2L, 2L + 2) * hidden."""
    return model.prompt_encoder["default"].embedding.weight


def test_completion_losses_are_the_mean_answer_token_cross_entropy(tiny_causal_lm, smol_tokenizer):
    losses = completion_losses(tiny_causal_lm, smol_tokenizer, SUMMARY, DOCS, batch_size=2)
    for row, loss in zip(DOCS, losses):
        shown = SUMMARY.render(row, smol_tokenizer)
        prompt = smol_tokenizer(shown.prompt)["input_ids"]
        answer = smol_tokenizer(shown.completion, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = tiny_causal_lm(input_ids=torch.tensor([prompt + answer])).logits[0].log_softmax(-1)
        by_hand = -sum(logits[len(prompt) - 1 + i, token] for i, token in enumerate(answer)) / len(answer)
        assert loss == pytest.approx(float(by_hand), abs=1e-4)


def test_a_replaced_layer_is_what_a_model_holding_the_replacement_computes(prefix_model, smol_tokenizer):
    learned = table(prefix_model).detach().clone()
    hidden = learned.shape[1] // (2 * 2)  # two layers, keys and values
    holder = copy.deepcopy(prefix_model)
    with torch.no_grad():
        table(holder)[:, 2 * hidden:4 * hidden] = 0.0  # layer 1 zeroed
    expected = completion_losses(holder, smol_tokenizer, SUMMARY, DOCS)
    with replaced_prefix_layer(prefix_model, 1, "zero"):
        assert prefix_summary(prefix_model)[1] == {"layer": 1, "key_norm": 0.0, "value_norm": 0.0}
        assert prefix_summary(prefix_model)[0]["key_norm"] > 0
        replaced = completion_losses(prefix_model, smol_tokenizer, SUMMARY, DOCS)
    assert replaced == pytest.approx(expected, abs=1e-5)
    assert torch.equal(table(prefix_model), learned)  # the learned prefix is back
    assert "get_prompt" not in vars(prefix_model)


def test_the_mean_replacement_gives_every_position_the_layers_mean(prefix_model):
    learned = prefix_model.get_prompt(batch_size=1).layers[0]
    with replaced_prefix_layer(prefix_model, 0, "mean"):
        layer = prefix_model.get_prompt(batch_size=2).layers[0]
    for before, after in ((learned.keys, layer.keys), (learned.values, layer.values)):
        mean = before.mean(dim=2, keepdim=True)
        assert torch.allclose(after, mean.expand(2, -1, before.shape[2], -1))


def test_the_learned_prefix_comes_back_when_the_block_raises(prefix_model):
    with pytest.raises(RuntimeError), replaced_prefix_layer(prefix_model, 0, "zero"):
        raise RuntimeError("boom")
    assert prefix_summary(prefix_model)[0]["key_norm"] > 0


def test_ablate_layers_rows_match_losses_and_accuracy_measured_by_hand(prefix_model, smol_tokenizer):
    from pbft_widgets import evaluate

    found = ablate_layers(prefix_model, smol_tokenizer, TEMPLATE, ROWS, replacements=["zero", "mean"], batch_size=2)
    assert [(row["layer"], row["replacement"]) for row in found] == [
        (0, "zero"), (0, "mean"), (1, "zero"), (1, "mean")]
    reference = completion_losses(prefix_model, smol_tokenizer, TEMPLATE, ROWS).mean()
    accuracy = evaluate(prefix_model, smol_tokenizer, ROWS, template=TEMPLATE, task_kind="classification").scores["accuracy"]
    for row in found:
        with replaced_prefix_layer(prefix_model, row["layer"], row["replacement"]):
            by_hand = completion_losses(prefix_model, smol_tokenizer, TEMPLATE, ROWS).mean()
            scored = evaluate(prefix_model, smol_tokenizer, ROWS, template=TEMPLATE, task_kind="classification")
        assert row["loss"] == pytest.approx(by_hand, abs=1e-5)
        assert row["delta_loss"] == pytest.approx(by_hand - reference, abs=1e-5)
        assert row["delta_loss_low"] <= row["delta_loss"] <= row["delta_loss_high"]
        assert row["accuracy"] == scored.scores["accuracy"]
        assert row["delta_accuracy"] == pytest.approx(scored.scores["accuracy"] - accuracy)
    assert any(abs(row["delta_loss"]) > 1e-3 for row in found)  # the spread prefix matters


def test_a_generation_template_gets_the_loss_only_and_a_one_panel_figure(prefix_model, smol_tokenizer):
    found = ablate_layers(prefix_model, smol_tokenizer, SUMMARY, DOCS, layers=[1])
    assert [row["layer"] for row in found] == [1] and "accuracy" not in found[0]
    figure = layer_ablation_figure(found)
    assert [trace.name for trace in figure.data] == ["prefix replaced by zero"]
    assert list(figure.data[0].x) == [1] and figure.data[0].y[0] == pytest.approx(found[0]["delta_loss"])
    with_accuracy = layer_ablation_figure(ablate_layers(prefix_model, smol_tokenizer, TEMPLATE, ROWS))
    assert len(with_accuracy.data) == 2 and with_accuracy.data[1].yaxis == "y2"
    assert with_accuracy.data[0].marker.color == with_accuracy.data[1].marker.color  # one colour per kind
