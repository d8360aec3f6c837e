"""NeighbourExplorer: the learned soft prompt's nearest vocabulary tokens, as a table and a map, and what they cause.

Search, drift and the projection are :mod:`pbft_widgets.inspection`'s; this view picks a virtual
token (or all), shows the result, and falls back to per-layer prefix norms for prefix tuning,
whose prompt lives in the attention layers rather than among the input embeddings. Given a
template and rows, "Test causally" checks the neighbours instead of trusting them: the
nearest-token text scored against the soft prompt (the faithfulness gap) and the task score lost
when each virtual token (or each layer's prefix) is replaced.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as w
import plotly.graph_objects as go
import torch

from ..errors import ConfigError, PbftError
from ..inspection import (CAVEAT, Faithfulness, ablate_layers, ablate_tokens, ablation_figure, drift, faithfulness,
                          initial_prompt, layer_ablation_figure, nearest_tokens, neighbour_figure, prefix_figure,
                          prefix_summary, prompt_spec, soft_prompt)
from ._common import CheckedIntSlider, MessageBox, View, html_table, replace_figure

MAX_K = 50
ALL = -1  # the dropdown's "all" entry: None would read as "nothing selected" and show an empty box


class NeighbourExplorer(View):
    """Pick a virtual token (or "all"): its nearest vocabulary tokens, a PCA map, and drift from the start.

    ``initial`` is the prompt before training (default: the last ``snapshot_prompt(model)``, if one
    was taken). ``.refresh()`` (the Refresh button) re-reads the prompt after more training.
    ``template`` (the one the prompt was trained with) and ``eval_rows`` (labelled rows) enable
    ``.test_causally()`` (the Test causally button); ``instruction_template`` adds the frozen model
    with a hand-written instruction to its faithfulness table.
    """

    def __init__(self, model: Any, tokenizer: Any, *, initial: torch.Tensor | None = None, k: int = 5,
                 template: Any = None, eval_rows: Sequence[Mapping[str, Any]] | None = None,
                 instruction_template: Any = None) -> None:
        if (template is None) != (not eval_rows):
            raise ConfigError("testing the prompt causally needs both template= (the one it was trained with) and "
                              "eval_rows= (validation rows with labels); pass both, or neither for neighbours only")
        self.model, self.tokenizer = model, tokenizer
        self.initial = initial if initial is not None else _snapshot_or_none(model)
        self.template, self.eval_rows, self.instruction_template = template, list(eval_rows or []), instruction_template
        self.faithfulness: Faithfulness | None = None  # after test_causally() on a soft prompt
        self.ablation: list[dict[str, Any]] = []  # after test_causally(): ablate_tokens' or ablate_layers' rows
        self.rows: list[dict[str, Any]] = []  # what the table shows
        self._keep_note = False  # an out-of-range note survives the redraw it causes
        self.message = MessageBox()
        self.token = w.Dropdown(options=[("all", ALL)], value=ALL, description="Virtual token")
        self.k = CheckedIntSlider(value=min(max(k, 1), MAX_K), min=1, max=MAX_K, description="k",
                                  continuous_update=False, on_out_of_range=self._out_of_range)
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.causal_button = w.Button(description="Test causally", icon="flask", disabled=template is None,
                                      tooltip="score the nearest-token text and ablate each virtual token (or layer)")
        self.table = w.HTML()
        self.figure = go.FigureWidget()
        self.causal = w.VBox([])  # filled by test_causally()
        self.widget = w.VBox([w.HBox([self.token, self.k, self.refresh_button, self.causal_button]), self.message.html,
                              self.table, self.figure, self.causal])
        self.token.observe(self._show, names="value")
        self.k.observe(self._show, names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.causal_button.on_click(lambda _: self.test_causally())
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

    def test_causally(self, replacements: Sequence[str] | None = None) -> None:
        """Check the neighbours by intervention on ``eval_rows`` and show the result below the map.

        A soft prompt: its nearest-token text (cosine and dot) and the hand-written instruction
        (when ``instruction_template`` was given) scored against the prompt, with paired 95 %
        intervals, then each virtual token replaced by ``replacements`` (default "mean" and
        "zero"). A prefix: each layer's prefix replaced (default "zero"), answer loss per layer.
        Problems show inline, as everywhere in the view.
        """
        if self.template is None:
            raise ConfigError("this NeighbourExplorer has no template and rows to test on; build it with "
                              "template=... and eval_rows=... (validation rows with labels)")
        self.causal_button.disabled = True
        try:
            if prompt_spec(self.model).prompt_in_cache:
                self.faithfulness = None
                self.ablation = ablate_layers(self.model, self.tokenizer, self.template, self.eval_rows,
                                              replacements=replacements or ("zero",))
                figure, table = layer_ablation_figure(self.ablation), ""
            else:
                self.faithfulness = faithfulness(self.model, self.tokenizer, self.template, self.eval_rows,
                                                 instruction_template=self.instruction_template)
                self.ablation = ablate_tokens(self.model, self.tokenizer, self.template, self.eval_rows,
                                              replacements=replacements or ("mean", "zero"), initial=self.initial)
                figure = ablation_figure(self.ablation)
                table = ("<b>Faithfulness: the soft prompt against its nearest-token text</b>"
                         + html_table(self.faithfulness.table()))
        except PbftError as exc:
            self.message.error(exc)
            return
        finally:
            self.causal_button.disabled = False
        self.causal.children = [w.HTML(table), go.FigureWidget(figure)]
        self.refresh_static()

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
