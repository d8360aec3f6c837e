"""Calibration (contextual, temperature), probability metrics, their figures, and the seed helper."""

from __future__ import annotations

import numpy as np
import pytest

from pbft_widgets import PromptTemplate, Verbalizer, calibrate, evaluate, over_seeds
from pbft_widgets.calibration import Calibration, contextual_calibration, no_calibration
from pbft_widgets.calibration_figures import coverage_figure, reliability_figure
from pbft_widgets.probability_metrics import accuracy_coverage, probability_scores, reliability_bins
from pbft_widgets.scoring import LabelScores, score_rows

TEMPLATE = PromptTemplate(instruction="Is the review positive or negative?", input_template="Review: {text}",
                          output_indicator="Sentiment:", style="cloze",
                          verbalizer=Verbalizer({"pos": "positive", "neg": "negative", "mixed": "mixed"}))
ROWS = [{"text": t, "label": label} for t, label in [
    ("a wonderful film", "pos"), ("dull and far too long", "neg"), ("good cast, weak plot", "mixed"),
    ("moving", "pos"), ("awful", "neg"), ("some fine scenes", "mixed"), ("superb", "pos"), ("boring", "neg")]]


def test_contextual_calibration_makes_content_free_inputs_uniform(tiny_causal_lm, smol_tokenizer):
    calibration = contextual_calibration(tiny_causal_lm, smol_tokenizer, TEMPLATE, content_free=("N/A",))
    content_free = score_rows(tiny_causal_lm, smol_tokenizer, TEMPLATE, [{"text": "N/A"}])
    np.testing.assert_allclose(calibration.apply(content_free).probabilities, 1 / 3, atol=1e-9)
    assert not np.allclose(content_free.probabilities, 1 / 3)  # the raw model has a prior the shift removes
    # With several content-free inputs the shift is the log of their mean probabilities.
    three = contextual_calibration(tiny_causal_lm, smol_tokenizer, TEMPLATE)
    raw = score_rows(tiny_causal_lm, smol_tokenizer, TEMPLATE, [{"text": t} for t in ("N/A", "", "[MASK]")])
    np.testing.assert_allclose(three.shift, np.log(raw.probabilities.mean(axis=0)))


def test_temperature_minimises_validation_nll_and_keeps_the_argmax(tiny_causal_lm, smol_tokenizer):
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 60)
    logits = rng.normal(0, 1, (60, 3))
    logits[np.arange(60), truth] += 1.5  # informative but overconfident once multiplied
    scores = LabelScores(["pos", "neg", "mixed"], 4 * logits)
    references = [scores.labels[t] for t in truth]
    fitted = no_calibration(scores.labels).fit_temperature(scores, references)
    assert 1.5 < fitted.temperature < 20

    def nll(temperature: float) -> float:
        probabilities = Calibration(scores.labels, np.zeros(3), temperature).apply(scores).probabilities
        return probability_scores(probabilities, references, scores.labels)["nll"]

    nearby = (fitted.temperature * 0.9, fitted.temperature * 1.1, 1.0)
    assert nll(fitted.temperature) < min(nll(t) for t in nearby)
    assert fitted.apply(scores).predictions == scores.predictions
    both = calibrate(tiny_causal_lm, smol_tokenizer, TEMPLATE, ROWS)
    assert both.temperature > 0 and not np.allclose(both.shift, 0)
    alone = calibrate(tiny_causal_lm, smol_tokenizer, TEMPLATE, [], temperature=False)
    assert alone.temperature == 1.0
    calibrated = evaluate(tiny_causal_lm, smol_tokenizer, ROWS, template=TEMPLATE, task_kind="classification",
                          calibration=both)
    model_scores = score_rows(tiny_causal_lm, smol_tokenizer, TEMPLATE, ROWS)
    np.testing.assert_allclose(calibrated.probabilities, both.apply(model_scores).probabilities)


def test_probability_metrics_by_hand():
    probabilities = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.9, 0.1]])
    references = ["a", "b", "b", "a"]
    scores = probability_scores(probabilities, references, ["a", "b"])
    # bins: 0.8 and 0.9 (hits 1, 1), 0.6 (miss), 0.7 (hit): |1-0.8|, |1-0.9|, |0-0.6|, |1-0.7| each 1/4
    assert scores["ece"] == pytest.approx((0.2 + 0.1 + 0.6 + 0.3) / 4)
    brier = np.mean([(0.2**2 + 0.2**2), (0.6**2 + 0.6**2), (0.3**2 + 0.3**2), (0.1**2 + 0.1**2)])
    assert scores["brier"] == pytest.approx(brier)
    assert scores["nll"] == pytest.approx(-np.mean(np.log([0.8, 0.4, 0.7, 0.9])))
    hits = probabilities.argmax(1) == np.array([0, 1, 1, 0])
    assert sum(row["count"] for row in reliability_bins(probabilities, hits)) == 4
    coverage, accuracy = accuracy_coverage(probabilities, hits)
    assert list(coverage) == [0.25, 0.5, 0.75, 1.0] and list(accuracy) == [1.0, 1.0, 1.0, 0.75]


def test_figures_show_one_trace_per_result(tiny_causal_lm, smol_tokenizer):
    raw = evaluate(tiny_causal_lm, smol_tokenizer, ROWS, template=TEMPLATE, task_kind="classification")
    results = {"raw": raw, "calibrated": evaluate(tiny_causal_lm, smol_tokenizer, ROWS, template=TEMPLATE,
                                                  task_kind="classification",
                                                  calibration=Calibration(raw.labels, np.zeros(3), 3.0))}
    names = [trace.name for trace in reliability_figure(results).data]
    assert names[0] == "calibrated" and names[1] == f"raw (ECE {raw.scores['ece']:.3f})"
    assert [trace.name for trace in coverage_figure(results).data] == ["raw", "calibrated"]


def test_over_seeds_reports_mean_and_sample_sd(tiny_causal_lm, smol_tokenizer):
    from pbft_widgets.evaluation import EvalResult

    runs = over_seeds(lambda seed: EvalResult("r", "classification", {"accuracy": [0.5, 0.7, 0.6][seed]},
                                              [], [], [], 1.0), seeds=(0, 1, 2))
    mean, sd = runs.summary()["accuracy"]
    assert mean == pytest.approx(0.6) and sd == pytest.approx(0.1)
    assert runs.table()[-1] == {"seed": "mean ± SD", "accuracy": "0.600 ± 0.100"}


def test_label_scores_probabilities_are_a_softmax():
    scores = LabelScores(["a", "b"], np.log(np.array([[0.2, 0.6], [0.5, 0.5]])))
    np.testing.assert_allclose(scores.probabilities, [[0.25, 0.75], [0.5, 0.5]])
    assert scores.predictions == ["b", "a"]
