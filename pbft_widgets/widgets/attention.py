"""AttentionExplorer: how much a text's tokens attend to the learned prompt, per layer and head.

The forward passes and figures are :mod:`pbft_widgets.inspection`'s. The view holds one report per
text (with or without the base model for comparison) and redraws the token map for the chosen
layer and head without running the model again.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import plotly.graph_objects as go

from ..errors import PbftError
from ..inspection import AttentionReport, attention_share_figure, prompt_attention, token_attention_figure
from ._common import CheckedIntSlider, MessageBox, View, replace_figure

MODES = ("tuned", "tuned vs base")


class AttentionExplorer(View):
    """Share-of-attention heatmap (layers x heads) and a token map for the layer/head on the sliders.

    The mode toggle adds the base model (adapter off): the share map gains a "change vs base" panel
    and the token map shows both models side by side. Edit the text and press Run to re-analyse.
    """

    def __init__(self, model: Any, tokenizer: Any, text: str, *, mode: str = "tuned vs base") -> None:
        self.model, self.tokenizer = model, tokenizer
        self.report: AttentionReport | None = None
        self.message = MessageBox()
        self._keep_note = False  # an out-of-range note survives the redraw it causes
        self.text = w.Textarea(text, description="Text", layout=w.Layout(width="100%"), rows=2)
        self.mode = w.ToggleButtons(options=MODES, value=mode)
        self.run_button = w.Button(description="Run", icon="play", button_style="primary")
        slider = dict(min=0, max=0, continuous_update=False, on_out_of_range=self._out_of_range)
        self.layer = CheckedIntSlider(description="layer", **slider)
        self.head = CheckedIntSlider(description="head", **slider)
        self.share_figure = go.FigureWidget()
        self.token_figure = go.FigureWidget()
        self.widget = w.VBox([self.text, w.HBox([self.run_button, self.mode]), self.message.html,
                              self.share_figure, w.HBox([self.layer, self.head]), self.token_figure])
        self.run_button.on_click(lambda _: self.run())
        self.mode.observe(lambda _: self.run(), names="value")
        self.layer.observe(self._show_tokens, names="value")
        self.head.observe(self._show_tokens, names="value")
        self.run()

    def run(self) -> None:
        """Analyse the current text (one forward pass, two with the base model) and redraw both maps."""
        try:
            report = prompt_attention(self.model, self.tokenizer, self.text.value,
                                      compare_base=self.mode.value == "tuned vs base")
        except PbftError as exc:
            self.report = None
            self.message.error(exc)
            self.layer.disabled = self.head.disabled = True
            replace_figure(self.share_figure, go.Figure())
            replace_figure(self.token_figure, go.Figure())
            return
        self.report = report
        layers, heads = report.share.shape
        self.layer.disabled = self.head.disabled = False
        self.layer.max, self.head.max = layers - 1, heads - 1  # a smaller model clamps the old values
        replace_figure(self.share_figure, attention_share_figure(report))
        self._show_tokens()

    def _show_tokens(self, change: Any = None) -> None:
        if self.report is None:
            return
        if not self._keep_note:
            self.message.clear()
        self._keep_note = False
        replace_figure(self.token_figure, token_attention_figure(self.report, self.layer.value, self.head.value))

    def _out_of_range(self, slider: w.IntSlider, asked: int, shown: int) -> None:
        self.message.note(f"{slider.description} {asked} is outside {slider.min}..{slider.max}; "
                          f"showing {slider.description} {shown}")
        self._keep_note = slider.value != shown  # a redraw follows only if the value changes
