"""Calibrated label probabilities: contextual calibration and temperature scaling.

Label-word scores carry the model's prior for each word: a frozen model that says "warranty" for
almost anything has a prior, not an opinion. Two remedies, which compose:

* **contextual calibration** (Zhao et al. 2021, "Calibrate before use"): score the template with
  content-free inputs ("N/A", "", "[MASK]") and divide every row's probabilities by their mean,
  so an input that says nothing gets uniform probabilities. Needs no labelled rows.
* **temperature scaling** (Guo et al. 2017): one number T fitted on validation rows so that
  softmax(scores / T) has the lowest negative log-likelihood. It changes confidence, never the
  predicted label.

A `Calibration` holds both (either may be off) and applies them to `LabelScores`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .errors import DataError
from .scoring import LabelScores, score_rows

CONTENT_FREE = ("N/A", "", "[MASK]")
_TEMPERATURE_RANGE = (0.01, 100.0)  # a model no better than chance runs to the top: uniform


@dataclass(frozen=True)
class Calibration:
    """A per-label shift (log of the content-free probabilities) and a temperature, applied in that order.

    Attributes:
        labels: the label order the shift refers to.
        shift: log mean content-free probability per label (zeros: no contextual calibration).
        temperature: divides the shifted scores (1.0: none).
    """

    labels: list[str]
    shift: np.ndarray
    temperature: float = 1.0

    def apply(self, scores: LabelScores) -> LabelScores:
        """Calibrated scores for ``scores`` (same rows, same label order)."""
        if list(scores.labels) != list(self.labels):
            raise DataError(f"this calibration was fitted for labels {self.labels}, not {scores.labels}; fit it "
                            "with the same template's verbalizer")
        return LabelScores(scores.labels, (scores.log_probs - self.shift) / self.temperature)

    def fit_temperature(self, scores: LabelScores, references: Sequence[Any]) -> Calibration:
        """This calibration with the temperature that minimises the NLL of ``references`` (validation rows).

        The temperature is fitted on the already shifted scores, so it completes this calibration.
        """
        from scipy.optimize import minimize_scalar

        references = [str(r) for r in references]
        if not references:
            raise DataError("temperature scaling is fitted on labelled validation rows, and none were given; "
                            "pass validation rows (never the test rows), or use contextual calibration alone")
        if len(references) != scores.log_probs.shape[0]:
            raise DataError(f"{len(references)} references for {scores.log_probs.shape[0]} scored rows; pass one "
                            "reference per row")
        unknown = sorted(set(references) - set(self.labels))
        if unknown:
            raise DataError(f"validation label(s) {unknown[:5]} are not among the verbalizer's labels {self.labels}; "
                            "fix the rows or the verbalizer")
        shifted = LabelScores(scores.labels, scores.log_probs - self.shift)
        columns = np.array([self.labels.index(r) for r in references])

        def nll(log_t: float) -> float:
            logits = shifted.log_probs / np.exp(log_t)
            logits = logits - logits.max(axis=1, keepdims=True)
            log_norm = np.log(np.exp(logits).sum(axis=1))
            return float(np.mean(log_norm - logits[np.arange(len(columns)), columns]))

        low, high = np.log(_TEMPERATURE_RANGE)
        best = minimize_scalar(nll, bounds=(low, high), method="bounded")
        return replace(self, temperature=float(np.exp(best.x)))


def no_calibration(labels: Sequence[str]) -> Calibration:
    """The identity: no shift, temperature 1 (start here to fit a temperature alone)."""
    return Calibration(list(labels), np.zeros(len(labels)))


def contextual_calibration(
    model: Any,
    tokenizer: Any,
    template: Any,
    *,
    content_free: Sequence[str] = CONTENT_FREE,
    batch_size: int = 8,
) -> Calibration:
    """Fit contextual calibration: the template's label probabilities for inputs that say nothing.

    Args:
        model: the causal LM (with or without an adapter) the calibration is for.
        tokenizer: its tokenizer.
        template: a template with a verbalizer and an output indicator; every input field is filled
            with each content-free string in turn.
        content_free: the content-free inputs (Zhao et al. use "N/A", "" and "[MASK]").
        batch_size: prompts per forward pass.

    Returns:
        `Calibration` whose shift is the log of the mean content-free probabilities.

    Example:
        >>> from pbft_widgets import PromptTemplate, Verbalizer, load_model
        >>> lm = load_model()
        >>> template = PromptTemplate(input_template="Review: {text}", output_indicator="Sentiment:",
        ...                           style="cloze", verbalizer=Verbalizer({"pos": "positive", "neg": "negative"}))
        >>> from pbft_widgets.calibration import contextual_calibration
        >>> calibration = contextual_calibration(lm.model, lm.tokenizer, template)
        >>> calibration.labels, calibration.temperature
        (['pos', 'neg'], 1.0)
    """
    if not content_free:
        raise DataError("contextual calibration needs at least one content-free input; use the default "
                        f"{CONTENT_FREE}")
    rows = [{field: text for field in template.fields} for text in content_free]
    scores = score_rows(model, tokenizer, template, rows, batch_size=batch_size)
    mean = scores.probabilities.mean(axis=0)
    return Calibration(scores.labels, np.log(mean))


def calibrate(
    model: Any,
    tokenizer: Any,
    template: Any,
    validation_rows: Iterable[Mapping[str, Any]],
    *,
    contextual: bool = True,
    temperature: bool = True,
    batch_size: int = 8,
) -> Calibration:
    """Contextual calibration and/or a temperature fitted on ``validation_rows`` (never the test rows).

    Args:
        model, tokenizer: the model to calibrate and its tokenizer.
        template: the template the model is scored with (verbalizer and output indicator).
        validation_rows: labelled rows (``template.target_field``) the temperature is fitted on.
        contextual: start from :func:`contextual_calibration` (else from no shift).
        temperature: fit a temperature after the shift.
        batch_size: prompts per forward pass.

    Returns:
        `Calibration` to pass to ``evaluate(..., calibration=...)`` or apply to `LabelScores`.

    Example:
        >>> from pbft_widgets import PromptTemplate, Verbalizer, calibrate, load_model
        >>> lm = load_model()
        >>> template = PromptTemplate(input_template="Review: {text}", output_indicator="Sentiment:",
        ...                           style="cloze", verbalizer=Verbalizer({"pos": "positive", "neg": "negative"}))
        >>> rows = [{"text": "a wonderful film", "label": "pos"}, {"text": "dull and long", "label": "neg"}]
        >>> calibration = calibrate(lm.model, lm.tokenizer, template, rows)
        >>> calibration.temperature > 0
        True
    """
    rows = list(validation_rows)
    if temperature and not rows:
        raise DataError("calibrate fits a temperature on validation rows, and none were given; pass labelled "
                        "validation rows (not the test rows), or temperature=False for contextual calibration alone")
    labels = template.verbalizer.labels if template.verbalizer is not None else []
    base = (contextual_calibration(model, tokenizer, template, batch_size=batch_size) if contextual
            else no_calibration(labels))
    if not temperature:
        return base
    scores = score_rows(model, tokenizer, template, rows, batch_size=batch_size)
    column = template.target_field
    missing = [i for i, row in enumerate(rows) if column not in row]
    if missing:
        raise DataError(f"validation row {missing[0]} has no {column!r} column (the template's target_field); "
                        "give every validation row its label")
    return base.fit_temperature(scores, [row[column] for row in rows])
