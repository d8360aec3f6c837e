"""Figures of a sweep: a score against one knob, mean ± SD over seeds, every seed shown as a dot.

The dots matter: with three seeds a standard deviation is itself rough, and a reader should see the
three runs behind each bar rather than trust the bar alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from .sweeps import SweepResult


def sweep_figure(result: SweepResult, metric: str, x: str, *, color: str | None = None, log_x: bool = False,
                 title: str | None = None) -> go.Figure:
    """`metric` against parameter `x`: one line per value of `color`, error bars = SD over seeds.

    Args:
        result: a sweep's finished cells.
        metric: the score on the y axis (e.g. validation accuracy).
        x: the parameter on the x axis (numbers are spaced as numbers, other values as categories).
        color: a parameter whose values get one line each (e.g. ``"method"``).
        log_x: a logarithmic x axis (learning rates, prompt lengths).
        title: the figure's title (default: "<metric> by <x>").

    Returns:
        A plotly figure.

    Example:
        >>> from pbft_widgets.sweep_figures import sweep_figure
        >>> from pbft_widgets.sweeps import SweepResult
        >>> rows = [{"r": r, "seed": s, "acc": 0.1 * r + 0.01 * s} for r in (2, 8) for s in (0, 1, 2)]
        >>> fig = sweep_figure(SweepResult(rows, ("r",)), "acc", "r")
        >>> [(trace.mode, len(trace.x)) for trace in fig.data]
        [('lines+markers', 2), ('markers', 6)]
    """
    import plotly.graph_objects as go

    for name in (x, color):
        if name is not None and name not in result.params:
            raise ConfigError(f"{name!r} is not a parameter of this sweep; use one of {list(result.params)}")
    groups = [None] if color is None else list(dict.fromkeys(row[color] for row in result.rows))
    fig = go.Figure()
    for index, group in enumerate(groups):
        part = result if color is None else result.where(**{color: group})
        table = sorted(part.summary(metric), key=lambda row: _order(row[x]))
        name = metric if color is None else f"{color}={group}"
        shade = _PALETTE[index % len(_PALETTE)]
        fig.add_trace(go.Scatter(
            x=[row[x] for row in table], y=[row["mean"] for row in table], mode="lines+markers", name=name,
            line={"color": shade}, legendgroup=name,
            error_y={"type": "data", "array": [0.0 if row["sd"] != row["sd"] else row["sd"] for row in table]},
            customdata=[[row["seeds"], row["sd"]] for row in table],
            hovertemplate=f"{x}=%{{x}}<br>mean %{{y:.3f}} ± %{{customdata[1]:.3f}} (%{{customdata[0]}} seeds)"
                          "<extra></extra>"))
        fig.add_trace(go.Scatter(
            x=[row[x] for row in part.rows], y=[row[metric] for row in part.rows], mode="markers",
            marker={"color": shade, "size": 6, "opacity": 0.35}, showlegend=False, legendgroup=name,
            text=[f"seed {row['seed']}" for row in part.rows],
            hovertemplate=f"{x}=%{{x}}<br>%{{text}}: %{{y:.3f}}<extra></extra>"))
    fig.update_layout(title=title or f"{metric} by {x} (mean ± SD over seeds; dots: single seeds)",
                      xaxis_title=x, yaxis_title=metric, height=380, width=620, margin={"t": 50, "b": 50})
    if log_x:
        fig.update_xaxes(type="log")
    elif not all(isinstance(row[x], (int, float)) for row in result.rows):
        fig.update_xaxes(type="category")
    return fig


_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")


def _order(value):
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))
