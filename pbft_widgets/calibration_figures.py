"""Figures of how trustworthy label probabilities are: the reliability diagram and the
accuracy-coverage curve, one trace per evaluation (e.g. before and after calibration)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from .errors import DataError
from .probability_metrics import ECE_BINS, accuracy_coverage, expected_calibration_error, reliability_bins

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from .evaluation import EvalResult


def _probabilities_and_hits(name: str, result: EvalResult) -> tuple[np.ndarray, np.ndarray]:
    if result.probabilities is None:
        raise DataError(f"result {name!r} has no label probabilities (it was scored by generation); evaluate with "
                        "label-word scoring or a classification head")
    probabilities = np.asarray(result.probabilities)
    return probabilities, np.array([p == r for p, r in zip(result.predictions, result.references)])


def reliability_figure(results: Mapping[str, EvalResult], *, bins: int = ECE_BINS) -> go.Figure:
    """Accuracy against confidence per confidence bin (marker area ~ rows in the bin), with the diagonal
    a calibrated model would follow; each trace's name carries its ECE.

    Example:
        >>> from pbft_widgets.calibration_figures import reliability_figure
        >>> from pbft_widgets.evaluation import EvalResult
        >>> result = EvalResult("tuned", "classification", {}, ["a", "b"], ["a", "a"], ["x", "y"], 0.0,
        ...                     probabilities=[[0.9, 0.1], [0.4, 0.6]], labels=["a", "b"])
        >>> [trace.name for trace in reliability_figure({"tuned": result}).data]
        ['calibrated', 'tuned (ECE 0.350)']
    """
    import plotly.graph_objects as go

    figure = go.Figure()
    figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="calibrated", line={"dash": "dot", "color": "grey"})
    for name, result in results.items():
        probabilities, hits = _probabilities_and_hits(name, result)
        rows = reliability_bins(probabilities, hits, bins)
        counts = np.array([row["count"] for row in rows])
        ece = expected_calibration_error(probabilities, hits, bins)
        figure.add_scatter(
            x=[row["confidence"] for row in rows], y=[row["accuracy"] for row in rows], mode="lines+markers",
            name=f"{name} (ECE {ece:.3f})", marker={"size": 6 + 18 * np.sqrt(counts / counts.max())},
            customdata=counts, hovertemplate="confidence %{x:.2f}<br>accuracy %{y:.2f}<br>%{customdata} rows")
    figure.update_layout(title=f"Reliability ({bins} confidence bins)", xaxis_title="confidence (top label)",
                         yaxis_title="accuracy", xaxis_range=[0, 1], yaxis_range=[0, 1.02], height=420, width=560)
    return figure


def coverage_figure(results: Mapping[str, EvalResult]) -> go.Figure:
    """Accuracy on the most confident fraction of rows against that fraction: useful confidence rises to the left.

    Example:
        >>> from pbft_widgets.calibration_figures import coverage_figure
        >>> from pbft_widgets.evaluation import EvalResult
        >>> result = EvalResult("tuned", "classification", {}, ["a", "b"], ["a", "a"], ["x", "y"], 0.0,
        ...                     probabilities=[[0.9, 0.1], [0.4, 0.6]], labels=["a", "b"])
        >>> [float(y) for y in coverage_figure({"tuned": result}).data[0].y]
        [1.0, 0.5]
    """
    import plotly.graph_objects as go

    figure = go.Figure()
    for name, result in results.items():
        probabilities, hits = _probabilities_and_hits(name, result)
        coverage, accuracy = accuracy_coverage(probabilities, hits)
        figure.add_scatter(x=coverage, y=accuracy, mode="lines", name=name)
    figure.update_layout(title="Accuracy when answering only the most confident rows", xaxis_title="coverage",
                         yaxis_title="accuracy", xaxis_range=[0, 1], yaxis_range=[0, 1.02], height=420, width=560)
    return figure
