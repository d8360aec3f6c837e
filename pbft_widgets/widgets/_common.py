"""Pieces every widget shares: display delegation, inline messages, a range-checked slider.

Widgets report problems inline (a red box next to the controls) instead of raising, because a
traceback in the middle of a notebook hides the controls the user needs to fix the problem.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as w
import plotly.graph_objects as go
from traitlets import validate

from ..display import figures_png

ERROR_STYLE = ("border:1px solid #d32f2f;background:#fdecea;color:#b71c1c;padding:6px 8px;"
               "border-radius:4px;margin:4px 0;white-space:pre-wrap")
NOTE_STYLE = ("border:1px solid #f9a825;background:#fff8e1;color:#6d4c00;padding:6px 8px;"
              "border-radius:4px;margin:4px 0;white-space:pre-wrap")


class View:
    """Base of every widget: ``.widget`` is the root container and displaying the object shows it.

    The output also carries a PNG of the view's charts (when one can be rendered, see
    `pbft_widgets.display.figures_png`): Jupyter shows the live widget, while GitHub, nbviewer and
    any reader without a kernel see the image. Views whose charts fill in later (a training run)
    call `refresh_static` when they are done, which redraws the image in the same output.
    """

    widget: w.Widget
    _display_handle: Any = None

    def figures(self) -> list[go.FigureWidget]:
        """The charts currently inside the view, top to bottom."""
        found, stack = [], [self.widget]
        while stack:
            node = stack.pop(0)
            if isinstance(node, go.FigureWidget):
                found.append(node)
            stack[:0] = list(getattr(node, "children", ()))
        return found

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        bundle = dict(self.widget._repr_mimebundle_(**kwargs))
        if png := figures_png(self.figures()):
            bundle["image/png"] = base64.b64encode(png).decode("ascii")
        return bundle

    def _ipython_display_(self) -> None:
        from IPython.display import display

        self._display_handle = display(self._repr_mimebundle_(), raw=True, display_id=True)

    def refresh_static(self) -> None:
        """Redraw the image that travels with this view's output (no-op before the view is displayed)."""
        if self._display_handle is not None:
            self._display_handle.update(self._repr_mimebundle_(), raw=True)


class MessageBox:
    """An HTML area holding at most one message; ``text`` is the plain message (None when clear)."""

    def __init__(self) -> None:
        self.html = w.HTML()
        self.text: str | None = None

    def error(self, message: str | BaseException) -> None:
        """Show ``message`` as an error (red), replacing any message shown."""
        self._show(str(message), ERROR_STYLE)

    def note(self, message: str) -> None:
        """Show ``message`` as a note (amber), replacing any message shown."""
        self._show(message, NOTE_STYLE)

    def clear(self) -> None:
        """Remove the message."""
        self.text = None
        self.html.value = ""

    def _show(self, message: str, style: str) -> None:
        self.text = message
        self.html.value = f'<div style="{style}">{html.escape(message)}</div>'


class CheckedIntSlider(w.IntSlider):
    """An IntSlider that reports values outside [min, max] before clamping them.

    ipywidgets clamps silently, so ``slider.value = 99`` would quietly show the last layer; the
    ``on_out_of_range`` hook lets the owner explain what happened instead.
    """

    def __init__(self, *args: Any, on_out_of_range=None, **kwargs: Any) -> None:
        self.on_out_of_range = on_out_of_range
        super().__init__(*args, **kwargs)

    @validate("value")
    def _validate_value(self, proposal):
        value = proposal["value"]
        if not self.min <= value <= self.max:
            clamped = min(max(value, self.min), self.max)
            if self.on_out_of_range is not None:
                self.on_out_of_range(self, value, clamped)
            return clamped
        return value


def replace_figure(target: go.FigureWidget, figure: go.Figure) -> None:
    """Show ``figure`` (built by the core) in an existing FigureWidget, so the view updates in place."""
    target.data = []
    target.add_traces(figure.data)
    target.layout = figure.layout


def html_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A small escaped HTML table (pandas is not a dependency)."""
    if not rows:
        return "<p><i>no rows</i></p>"
    columns = list(columns or rows[0])
    head = "".join(f'<th style="text-align:left;padding:2px 8px">{html.escape(str(c))}</th>' for c in columns)
    body = "".join(
        "<tr>" + "".join(f'<td style="padding:2px 8px">{html.escape(_cell(row.get(c)))}</td>' for c in columns)
        + "</tr>" for row in rows)
    return f'<table style="border-collapse:collapse;font-size:90%"><tr>{head}</tr>{body}</table>'


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(_cell, value))
    return "" if value is None else str(value)


def format_bytes(n: int | None) -> str:
    """Bytes as a short human reading ('12.3 MiB'); '–' for unknown."""
    if n is None:
        return "–"
    value, units = float(n), ["B", "KiB", "MiB", "GiB", "TiB"]
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{value:.1f} {units[0]}"
