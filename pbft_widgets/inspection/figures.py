"""Plotly figures of the inspections: the neighbour map, attention shares and token maps, prefix
norms, and the neighbour trace over checkpoints. Each takes the computed data; none runs a model
except :func:`neighbour_figure`, which computes its map first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
import torch
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ..errors import ConfigError
from ..registry import spec_of
from .attention import AttentionReport
from .neighbours import CAVEAT, neighbour_map, shown
from .trace import NeighbourTrace


def _caveat(fig: go.Figure) -> None:
    """The caveat sits a fixed number of pixels under the plot, clear of the x-axis title at any height."""
    fig.add_annotation(text=CAVEAT, xref="paper", yref="paper", x=0, y=0, yshift=-66, xanchor="left",
                       yanchor="top", showarrow=False, font={"size": 11, "color": "#555"})
    fig.update_layout(margin={"b": 96})


def neighbour_figure(model, tokenizer, *, k: int = 5, prompt: torch.Tensor | None = None,
                     initial: torch.Tensor | None = None) -> go.Figure:
    """2-D PCA map of the virtual tokens among their nearest vocabulary tokens (and where they started).

    See :func:`pbft_widgets.inspection.neighbours.neighbour_map` for the projection.
    """
    m = neighbour_map(model, tokenizer, k=k, prompt=prompt, initial=initial)
    xy, n, n_words = m.points, m.n_virtual, len(m.word_ids)
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[p[0] for p in xy[n:n + n_words]], y=[p[1] for p in xy[n:n + n_words]], mode="markers+text",
        name="nearest vocabulary tokens", text=[shown(t) for t in m.words], textposition="top center",
        textfont={"size": 9, "color": "#52606d"},
        marker={"color": "#9aa5b1", "size": 7}, hovertemplate="%{text}<extra>vocabulary token</extra>"))
    if m.with_initial:
        start = xy[n + n_words:]
        fig.add_trace(go.Scatter(
            x=[p[0] for p in start], y=[p[1] for p in start], mode="markers", name="virtual tokens before training",
            marker={"symbol": "circle-open", "color": "#d62728", "size": 9},
            text=[f"v{i}" for i in range(len(start))], hovertemplate="%{text} (initial)<extra></extra>"))
    hover = [f"v{r['index']} · norm {r['norm']:.2f}<br>" + "<br>".join(f"{shown(t)}: {c:.3f}" for t, c in
                                                                       r["neighbours"]) for r in m.rows]
    fig.add_trace(go.Scatter(
        x=[p[0] for p in xy[:n]], y=[p[1] for p in xy[:n]], mode="markers+text", name="virtual tokens (learned)",
        text=[f"v{i}" for i in range(n)], textposition="bottom center", hovertext=hover, hoverinfo="text",
        marker={"symbol": "diamond", "color": "#d62728", "size": 11, "line": {"width": 1, "color": "black"}}))
    fig.update_layout(
        title=f"Soft prompt among its nearest vocabulary tokens<br><sup>{k} per virtual token by cosine; "
              "PCA of unit vectors</sup>", height=520,
        xaxis_title=f"principal component 1 ({m.explained[0]:.0%} of variance)",
        yaxis_title=f"principal component 2 ({m.explained[1]:.0%} of variance)", legend_title="point")
    _caveat(fig)
    return fig


def attention_share_figure(report: AttentionReport) -> go.Figure:
    """Heatmap layers x heads of the attention share on the prompt (and the shift from the base model)."""
    prompt_name = "prefix" if spec_of(report.kind).prompt_in_cache else "virtual tokens"
    layers, heads = report.share.shape
    panels = [(report.share, f"share of attention on the {prompt_name}", "Viridis")]
    if report.shift is not None:
        panels.append((report.shift, "change vs. base model among input tokens (total variation)", "Magma"))
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[1] for p in panels], horizontal_spacing=0.12)
    for col, (values, label, scale) in enumerate(panels, start=1):
        bar_x = 0.44 if (col == 1 and len(panels) == 2) else 1.0
        fig.add_trace(go.Heatmap(
            z=values.tolist(), x=list(range(heads)), y=list(range(layers)), zmin=0.0, zmax=1.0, colorscale=scale,
            colorbar={"x": bar_x, "len": 0.9}, name=label,
            hovertemplate="layer %{y}, head %{x}<br>" + label + ": %{z:.3f}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text="attention head", row=1, col=col)
        fig.update_yaxes(title_text="layer (0 = nearest the input)", row=1, col=col)
    fig.update_layout(title=f"How much the input tokens attend to the learned {prompt_name} ({report.kind}, "
                            f"{report.n_virtual} {prompt_name}, {len(report.tokens)} input tokens; mean over queries)")
    return fig


def token_attention_figure(report: AttentionReport, layer: int, head: int) -> go.Figure:
    """Token-level map for one head: input tokens (queries) x [virtual tokens + input tokens] (keys)."""
    layers, heads = report.share.shape
    if not (0 <= layer < layers and 0 <= head < heads):
        raise ConfigError(f"layer={layer}, head={head}; this model has layers 0..{layers - 1} and heads 0..{heads - 1}")
    queries = report.query_labels
    panels = [(report.attentions[layer, head], report.key_labels, "with the learned prompt")]
    if report.base_attentions is not None:
        panels.append((report.base_attentions[layer, head], queries, "base model (no adapter)"))
    zmax = max(float(p[0].max()) for p in panels)
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[2] for p in panels], shared_yaxes=True,
                        column_widths=[len(p[1]) for p in panels], horizontal_spacing=0.04)
    for col, (values, keys, _) in enumerate(panels, start=1):
        fig.add_trace(go.Heatmap(z=values.tolist(), x=keys, y=queries, coloraxis="coloraxis",
                                 hovertemplate="query %{y} → key %{x}: %{z:.3f}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text="attended token (key)", type="category", tickangle=-60, row=1, col=col)
    fig.update_yaxes(title_text="input token (query)", type="category", autorange="reversed", row=1, col=1)
    if report.n_virtual:
        fig.add_vline(x=report.n_virtual - 0.5, line={"color": "white", "dash": "dash"}, row=1, col=1)
    prompt_name = "prefix positions" if spec_of(report.kind).prompt_in_cache else "virtual tokens"
    fig.update_layout(title=f"Attention of layer {layer}, head {head}: v0..v{report.n_virtual - 1} are the "
                            f"{prompt_name} ({report.share[layer, head]:.0%} of this head's attention)",
                      coloraxis={"colorscale": "Viridis", "cmin": 0.0, "cmax": zmax,
                                 "colorbar": {"title": {"text": "attention weight"}}})
    return fig


def prefix_figure(summary: Sequence[dict[str, Any]]) -> go.Figure:
    """Line chart of prefix key and value norms per layer (from prefix_summary)."""
    layers = [row["layer"] for row in summary]
    fig = go.Figure([go.Scatter(x=layers, y=[row[f"{part}_norm"] for row in summary], mode="lines+markers",
                                name=f"prefix {part}s") for part in ("key", "value")])
    fig.update_layout(title="Size of the learned prefix in each layer (larger = the prefix can pull harder on "
                            "attention)", xaxis_title="layer (0 = nearest the input)",
                      yaxis_title="mean L2 norm per prefix position", legend_title="learned")
    return fig


def trace_figure(trace: NeighbourTrace) -> go.Figure:
    """Checkpoints on x, virtual tokens on y; each cell shows the top-1 word, coloured by its cosine."""
    n_virtual = len(trace.neighbours[0])
    top1 = [[rows[i]["neighbours"][0] for rows in trace.neighbours] for i in range(n_virtual)]
    cosine = [[score for _, score in row] for row in top1]
    words = [[shown(token) for token, _ in row] for row in top1]
    fig = go.Figure(go.Heatmap(
        z=cosine, x=trace.labels, y=[f"v{i}" for i in range(n_virtual)], text=words, texttemplate="%{text}",
        colorscale="Blues", zmin=0.0, zmax=1.0, colorbar={"title": {"text": "cosine to nearest word"}},
        hovertemplate="%{y} at %{x}: nearest %{text} (cosine %{z:.3f})<extra></extra>"))
    fig.update_layout(title="Nearest vocabulary token of each virtual token during training",
                      xaxis_title="checkpoint (training step)", yaxis_title="virtual token",
                      yaxis={"autorange": "reversed"})
    _caveat(fig)
    return fig


def ablation_figure(rows: Sequence[dict[str, Any]]) -> go.Figure:
    """Bars of the accuracy (top) and loss (bottom) change when one virtual token is replaced (from ablate_tokens).

    Error bars are the 95 % paired-bootstrap interval of the accuracy change; a bar whose interval
    stays below 0 marks a token the prompt relies on.
    """
    if not rows:
        raise ConfigError("ablation_figure got no rows; pass the list ablate_tokens(...) returned")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=["change in accuracy (95 % paired-bootstrap interval)",
                                        "change in loss (label-set cross-entropy)"])
    for colour, kind in zip(qualitative.Plotly, dict.fromkeys(row["replacement"] for row in rows)):
        mine = [row for row in rows if row["replacement"] == kind]
        x = [f"v{row['token']} {shown(row['neighbour'])}" for row in mine]
        fig.add_trace(go.Bar(x=x, y=[row["delta_accuracy"] for row in mine], name=f"replaced by {kind}",
                             legendgroup=kind, marker_color=colour, error_y={"type": "data", "symmetric": False,
                                                        "array": [row["delta_accuracy_high"] - row["delta_accuracy"] for row in mine],
                                                        "arrayminus": [row["delta_accuracy"] - row["delta_accuracy_low"] for row in mine]},
                             hovertemplate="%{x}: Δ accuracy %{y:+.3f}<extra>" + kind + "</extra>"), row=1, col=1)
        fig.add_trace(go.Bar(x=x, y=[row["delta_nll"] for row in mine], name=f"replaced by {kind}", legendgroup=kind,
                             marker_color=colour, showlegend=False, hovertemplate="%{x}: Δ loss %{y:+.3f}<extra>" + kind + "</extra>"),
                      row=2, col=1)
    fig.update_layout(title="What each virtual token is worth: the task score without it", barmode="group",
                      height=560, legend_title="virtual token")
    fig.update_xaxes(title_text="virtual token (and its nearest word)", type="category", tickangle=-60, row=2, col=1)
    fig.update_yaxes(title_text="Δ accuracy", row=1, col=1)
    fig.update_yaxes(title_text="Δ loss", row=2, col=1)
    return fig


def layer_ablation_figure(rows: Sequence[dict[str, Any]]) -> go.Figure:
    """Bars of the answer-loss change when one layer's prefix is replaced (from ablate_layers), per layer.

    Error bars are the 95 % paired-bootstrap interval over the rows; a bar whose interval stays above
    0 marks a layer whose prefix the answers rely on. With accuracy in the rows, a second panel shows it.
    """
    if not rows:
        raise ConfigError("layer_ablation_figure got no rows; pass the list ablate_layers(...) returned")
    panels = [("delta_loss", "change in answer loss (nats per token, 95 % paired-bootstrap interval)", "Δ loss")]
    if "delta_accuracy" in rows[0]:
        panels.append(("delta_accuracy", "change in accuracy (95 % paired-bootstrap interval)", "Δ accuracy"))
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=[title for _, title, _ in panels])
    for colour, kind in zip(qualitative.Plotly, dict.fromkeys(row["replacement"] for row in rows)):
        mine = [row for row in rows if row["replacement"] == kind]
        for panel, (key, _, label) in enumerate(panels, start=1):
            fig.add_trace(go.Bar(x=[row["layer"] for row in mine], y=[row[key] for row in mine],
                                 name=f"prefix replaced by {kind}", legendgroup=kind, showlegend=panel == 1,
                                 marker_color=colour,
                                 error_y={"type": "data", "symmetric": False,
                                          "array": [row[f"{key}_high"] - row[key] for row in mine],
                                          "arrayminus": [row[key] - row[f"{key}_low"] for row in mine]},
                                 hovertemplate="layer %{x}: " + label + " %{y:+.3f}<extra>" + kind + "</extra>"),
                          row=panel, col=1)
    for panel, (_, _, label) in enumerate(panels, start=1):
        fig.update_yaxes(title_text=label, row=panel, col=1)
    fig.update_layout(title="What each layer's prefix is worth: the answers without it", barmode="group",
                      height=300 + 220 * len(panels))
    fig.update_xaxes(title_text="layer", dtick=1, row=len(panels), col=1)
    return fig
