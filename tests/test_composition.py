"""Prompt transfer, soups and ensembles (composition), and the robustness helpers, on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_llama

from pbft_widgets import apply_method, evaluate, save_adapter
from pbft_widgets.composition import ensemble, prompt_soup, start_from
from pbft_widgets.evaluation import EvalResult
from pbft_widgets.inspection import soft_prompt
from pbft_widgets.robustness import PERTURBATIONS, perturb, spread
from pbft_widgets.templates import PromptTemplate, Verbalizer

TEMPLATE = PromptTemplate(input_template="Review: {text}", output_indicator="Sentiment:", style="cloze",
                          verbalizer=Verbalizer({"pos": "positive", "neg": "negative"}))
ROWS = [{"text": "a fine film", "label": "pos"}, {"text": "dull and long", "label": "neg"},
        {"text": "moving", "label": "pos"}]


def _prompt_setup(tokenizer, seed=0, method="prompt-tuning"):
    return apply_method(tiny_llama(tokenizer, seed=seed), method, tokenizer=tokenizer, num_virtual_tokens=4,
                        init="random")


@pytest.mark.parametrize("method", ["prompt-tuning", "prompt+lora"])
def test_start_from_puts_the_source_prompt_into_the_model_as_its_input(smol_tokenizer, method, tmp_path):
    source = _prompt_setup(smol_tokenizer, seed=1)
    with torch.no_grad():
        source.model.prompt_encoder["default"].embedding.weight.mul_(3.0)
    target = _prompt_setup(smol_tokenizer, method=method)
    copied = start_from(target.model, source.model)
    assert torch.equal(soft_prompt(target.model), soft_prompt(source.model)) and torch.equal(copied, soft_prompt(source.model))
    folder = save_adapter(source, tmp_path / "source")  # the same from a saved adapter, without loading it
    other = _prompt_setup(smol_tokenizer)
    start_from(other.model, folder)
    assert torch.equal(soft_prompt(other.model), soft_prompt(source.model))


def test_prompt_soup_is_the_elementwise_mean(smol_tokenizer):
    prompts = [soft_prompt(_prompt_setup(smol_tokenizer, seed=s).model) for s in (0, 1, 2)]
    soup = prompt_soup(prompts)
    assert torch.allclose(soup, (prompts[0] + prompts[1] + prompts[2]) / 3)
    model = _prompt_setup(smol_tokenizer).model
    start_from(model, soup)
    assert torch.allclose(soft_prompt(model), soup)


def test_ensemble_averages_probabilities_and_rescores(smol_tokenizer):
    results = []
    for seed in (0, 1, 2):
        setup = _prompt_setup(smol_tokenizer, seed=seed)
        results.append(evaluate(setup.model, smol_tokenizer, ROWS, template=TEMPLATE, task_kind="classification",
                                name=f"seed {seed}"))
    combined = ensemble(results, name="three")
    mean = np.mean([r.probabilities for r in results], axis=0)
    assert np.allclose(combined.probabilities, mean) and combined.name == "three"
    assert combined.predictions == [combined.labels[i] for i in mean.argmax(axis=1)]
    hits = np.mean([p == r for p, r in zip(combined.predictions, combined.references)])
    assert combined.scores["accuracy"] == pytest.approx(hits) and {"macro_f1", "ece", "brier"} <= set(combined.scores)


def test_ensemble_of_one_confident_and_one_unsure_member_follows_the_average():
    a = EvalResult("a", "classification", {}, ["x", "y"], ["x", "y"], ["r1", "r2"], 1.0,
                   probabilities=[[0.6, 0.4], [0.2, 0.8]], labels=["x", "y"])
    b = EvalResult("b", "classification", {}, ["y", "y"], ["x", "y"], ["r1", "r2"], 1.0,
                   probabilities=[[0.1, 0.9], [0.45, 0.55]], labels=["x", "y"])
    combined = ensemble([a, b])
    assert combined.predictions == ["y", "y"] and combined.scores["accuracy"] == 0.5 and combined.seconds == 2.0


@pytest.mark.parametrize("kind", PERTURBATIONS)
def test_perturb_is_seeded_changes_only_the_text_and_never_the_input_rows(kind):
    rows = [{"text": "The Licensor grants you a worldwide licence to copy and distribute the Software", "label": "grant"}]
    before = [dict(r) for r in rows]
    first, again = perturb(rows, kind, rate=0.5, seed=3), perturb(rows, kind, rate=0.5, seed=3)
    assert first == again and rows == before and first[0]["label"] == "grant" and first[0]["text"] != rows[0]["text"]
    if kind in ("typos", "whitespace"):
        assert perturb(rows, kind, rate=0.5, seed=4) != first  # another seed, other positions
    if kind == "typos":
        assert sorted(first[0]["text"]) == sorted(rows[0]["text"])  # letters swapped, none lost
    if kind == "whitespace":
        assert first[0]["text"].split() == rows[0]["text"].split()


def test_spread_reads_results_or_plain_scores():
    runs = {"a": 0.5, "b": 0.2, "c": EvalResult("c", "classification", {"accuracy": 0.35}, [], [], [], 0.0)}
    summary = spread(runs)
    assert summary["worst_name"] == "b" and summary["best"] == 0.5 and summary["n"] == 3
    assert summary["mean"] == pytest.approx(0.35) and summary["sd"] == pytest.approx(0.15)
