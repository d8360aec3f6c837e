"""How good are the probabilities, not only the argmax: ECE, Brier score, NLL, reliability and coverage.

A classifier that says 0.9 should be right nine times in ten. These metrics measure that for label
probabilities (from label-word scoring or a classification head), before and after calibration.
Brier score and NLL come from scikit-learn; the expected calibration error uses the usual 15 equal-
width bins over the top label's confidence (Guo et al. 2017), which scikit-learn has no multi-class
form of.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import DataError

ECE_BINS = 15


def _columns(references: Sequence[Any], labels: Sequence[str], probabilities: np.ndarray) -> np.ndarray:
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2 or probabilities.shape != (len(references), len(labels)):
        raise DataError(f"probabilities of shape {probabilities.shape} do not fit {len(references)} references and "
                        f"{len(labels)} labels; pass one row per reference and one column per label")
    index = {str(label): j for j, label in enumerate(labels)}
    unknown = sorted({str(r) for r in references} - set(index))
    if unknown:
        raise DataError(f"reference label(s) {unknown[:5]} are not among the scored labels {list(labels)}; fix the "
                        "rows or the verbalizer")
    return np.array([index[str(r)] for r in references], dtype=int)


def reliability_bins(probabilities: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Rows per non-empty confidence bin: its range, mean confidence, accuracy and row count."""
    confidence = np.asarray(probabilities).max(axis=1)
    correct = np.asarray(correct, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        if inside.any():
            rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": int(inside.sum()),
                         "confidence": float(confidence[inside].mean()), "accuracy": float(correct[inside].mean())})
    return rows


def expected_calibration_error(probabilities: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Mean |accuracy - confidence| over confidence bins, weighted by the bins' share of rows."""
    total = len(correct)
    return float(sum(row["count"] / total * abs(row["accuracy"] - row["confidence"])
                     for row in reliability_bins(probabilities, correct, bins)))


def accuracy_coverage(probabilities: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy on the most confident fraction of rows, for every fraction (coverage 1/n .. 1).

    Answering only when confident should raise accuracy; a flat curve means the confidence carries
    no information about correctness.
    """
    order = np.argsort(-np.asarray(probabilities).max(axis=1), kind="stable")
    hits = np.cumsum(np.asarray(correct, dtype=float)[order])
    answered = np.arange(1, len(order) + 1)
    return answered / len(order), hits / answered


def probability_scores(probabilities: np.ndarray, references: Sequence[Any], labels: Sequence[str]) -> dict[str, float]:
    """ECE (15 bins), multi-class Brier score and NLL of ``probabilities`` against ``references``.

    Args:
        probabilities: array (rows, labels), each row summing to 1.
        references: the true label of each row.
        labels: the label of each column.

    Returns:
        ``{"ece": ..., "brier": ..., "nll": ...}``, each lower-is-better.

    Example:
        >>> import numpy as np
        >>> from pbft_widgets.probability_metrics import probability_scores
        >>> scores = probability_scores(np.array([[0.9, 0.1], [0.4, 0.6]]), ["a", "a"], ["a", "b"])
        >>> {name: round(value, 3) for name, value in scores.items()}
        {'ece': 0.35, 'brier': 0.37, 'nll': 0.511}
    """
    from sklearn.metrics import brier_score_loss, log_loss

    columns = _columns(references, labels, probabilities)
    probabilities = np.asarray(probabilities, dtype=float)
    correct = probabilities.argmax(axis=1) == columns
    ids = list(range(len(labels)))
    return {"ece": expected_calibration_error(probabilities, correct),
            # the multi-class Brier score (sum over labels) for two labels too, so values compare across tasks
            "brier": float(brier_score_loss(columns, probabilities, labels=ids, scale_by_half=False)),
            "nll": float(log_loss(columns, probabilities, labels=ids))}
