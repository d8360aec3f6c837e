"""NeighbourExplorer: the learned soft prompt's nearest vocabulary tokens, as a table and a map.

Search, drift and the projection are :mod:`pbft_widgets.inspection`'s; this view picks a virtual
token (or all), shows the result, and falls back to per-layer prefix norms for prefix tuning,
whose prompt lives in the attention layers rather than among the input embeddings.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as w
import plotly.graph_objects as go
import torch

from ..errors import ConfigError, PbftError
from ..inspection import (CAVEAT, drift, initial_prompt, nearest_tokens, neighbour_figure, prefix_figure,
                          prefix_summary, prompt_spec, soft_prompt)
from ._common import CheckedIntSlider, MessageBox, View, html_table, replace_figure

MAX_K = 50
ALL = -1  # the dropdown's "all" entry: None would read as "nothing selected" and show an empty box


class NeighbourExplorer(View):
    """Pick a virtual token (or "all"): its nearest vocabulary tokens, a PCA map, and drift from the start.

    ``initial`` is the prompt before training (default: the last ``snapshot_prompt(model)``, if one
    was taken). ``.refresh()`` (the Refresh button) re-reads the prompt after more training.
    """

    def __init__(self, model: Any, tokenizer: Any, *, initial: torch.Tensor | None = None, k: int = 5) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.initial = initial if initial is not None else _snapshot_or_none(model)
        self.rows: list[dict[str, Any]] = []  # what the table shows
        self._keep_note = False  # an out-of-range note survives the redraw it causes
        self.message = MessageBox()
        self.token = w.Dropdown(options=[("all", ALL)], value=ALL, description="Virtual token")
        self.k = CheckedIntSlider(value=min(max(k, 1), MAX_K), min=1, max=MAX_K, description="k",
                                  continuous_update=False, on_out_of_range=self._out_of_range)
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.table = w.HTML()
        self.figure = go.FigureWidget()
        self.widget = w.VBox([w.HBox([self.token, self.k, self.refresh_button]), self.message.html,
                              self.table, self.figure])
        self.token.observe(self._show, names="value")
        self.k.observe(self._show, names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.refresh()
        if not 1 <= k <= MAX_K and self.rows:
            self._out_of_range(self.k, k, self.k.value)

    def refresh(self) -> None:
        """Re-read the model's prompt (it may have trained since) and redraw."""
        try:
            if prompt_spec(self.model).prompt_in_cache:
                self._show_prefix()
                return
            n_virtual = soft_prompt(self.model).shape[0]
        except PbftError as exc:
            self._fail(exc)
            return
        options = [("all", ALL)] + [(f"v{i}", i) for i in range(n_virtual)]
        if list(self.token.options) != options:
            self.token.options = options  # resets the value to "all", which redraws
        self._show()

    # ------------------------------------------------------------------------- internals
    def _show(self, change: Any = None) -> None:
        if self.token.disabled:
            return
        index = None if self.token.value == ALL else self.token.value
        k = self.k.value
        try:
            learned = soft_prompt(self.model)
            initial = self.initial
            if initial is not None and initial.shape != learned.shape:
                raise ConfigError(f"initial prompt {tuple(initial.shape)} and learned prompt "
                                  f"{tuple(learned.shape)} differ in shape; pass initial=snapshot_prompt(model) "
                                  "taken from this model before training")
            if index is not None:
                learned = learned[index:index + 1]
                initial = None if initial is None else initial[index:index + 1]
            rows = nearest_tokens(self.model, self.tokenizer, k=k, prompt=learned)
            moved = None if initial is None else drift(initial, learned, model=self.model, tokenizer=self.tokenizer)
            figure = neighbour_figure(self.model, self.tokenizer, k=k, prompt=learned, initial=initial)
        except PbftError as exc:
            self._fail(exc)
            return
        if index is not None:
            _relabel(figure, index)
        if not self._keep_note:
            self.message.clear()
        self._keep_note = False
        self.rows = self._table_rows(rows, moved, index)
        self.table.value = html_table(self.rows) + f'<div style="font-size:85%;color:#555">{html.escape(CAVEAT)}</div>'
        replace_figure(self.figure, figure)

    @staticmethod
    def _table_rows(rows: list[dict], moved: list[dict] | None, index: int | None) -> list[dict[str, Any]]:
        if index is not None:  # one token: one line per neighbour
            table = [{"rank": rank, "token": token, "cosine": cosine}
                     for rank, (token, cosine) in enumerate(rows[0]["neighbours"], 1)]
            if moved:
                table[0] |= {"top-1 before training": moved[0]["top1_initial"],
                             "cosine to start": moved[0]["cosine"]}
            return table
        table = []
        for i, row in enumerate(rows):
            line = {"virtual token": f"v{row['index']}", "norm": row["norm"],
                    "neighbours (cosine)": [f"{t} ({c:.2f})" for t, c in row["neighbours"]]}
            if moved:
                line |= {"top-1 before training": moved[i]["top1_initial"], "cosine to start": moved[i]["cosine"]}
            table.append(line)
        return table

    def _show_prefix(self) -> None:
        """Prefix tuning has no input-space prompt: show its per-layer key/value norms instead."""
        summary = prefix_summary(self.model)
        self.token.disabled = self.k.disabled = True
        self.message.note("prefix tuning learns keys and values inside every layer, not input tokens, so there "
                          "are no vocabulary neighbours; showing the size of the prefix per layer instead")
        self.rows = summary
        self.table.value = html_table(summary)
        replace_figure(self.figure, prefix_figure(summary))

    def _fail(self, exc: BaseException) -> None:
        self.rows = []
        self.message.error(exc)
        self.table.value = ""
        replace_figure(self.figure, go.Figure())

    def _out_of_range(self, slider: w.IntSlider, asked: int, shown: int) -> None:
        self.message.note(f"k={asked} is outside {slider.min}..{slider.max}; showing k={shown}")
        self._keep_note = asked != shown and slider.value != shown  # a redraw follows only if the value changes


def _snapshot_or_none(model: Any) -> torch.Tensor | None:
    try:
        return initial_prompt(model)
    except ConfigError:  # no snapshot was taken
        return None


def _relabel(figure: go.Figure, index: int) -> None:
    """The core numbers the tokens it is given from v0; one selected token keeps its own number."""
    for trace in figure.data:
        if trace.name and trace.name.startswith("virtual tokens"):
            trace.text = [f"v{index}"]
            if trace.hovertext:
                trace.hovertext = [text.replace("v0", f"v{index}", 1) for text in trace.hovertext]
