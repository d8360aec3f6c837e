"""Show a plotly figure so that every reader sees it: interactive in Jupyter, a PNG beside it for
GitHub and nbviewer, which run no JavaScript from a notebook's outputs.

The PNG is rendered by kaleido with a Chrome or Chromium it finds on the machine; where there is
none (a fresh Colab runtime, say) the figure is shown interactively only, with no error. Widgets
get the same treatment: `figures_png` draws a view's figures into one image that travels in the
widget's own output, so a saved notebook shows the charts even where widgets cannot run.
"""

from __future__ import annotations

import contextlib
import functools
import io
import warnings
from collections.abc import Iterator, Sequence
from typing import Any


@functools.cache
def can_render_png() -> bool:
    """True when kaleido can turn a figure into a PNG here (it needs a Chrome/Chromium binary).

    Keeps one browser running for the process (kaleido's sync server) where kaleido offers it:
    a figure then takes ~0.15 s instead of the ~2 s of starting a browser for each one.
    """
    try:
        import kaleido
        import plotly.graph_objects as go

        if hasattr(kaleido, "start_sync_server"):
            kaleido.start_sync_server(silence_warnings=True)
        with _quiet():
            go.Figure().to_image(format="png", width=10, height=10)
    except Exception:  # kaleido missing, no browser, or a sandbox that forbids starting one
        return False
    return True


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silences plotly's note that a running kaleido server ignores per-call browser options."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The kopts argument is ignored")
        yield


def show_figure(figure: Any) -> None:
    """Display ``figure`` (a plotly Figure) interactively, plus a static PNG when one can be rendered.

    Example:
        >>> import plotly.graph_objects as go
        >>> from pbft_widgets.display import show_figure
        >>> show_figure(go.Figure(go.Scatter(x=[0, 1], y=[0, 1])))  # doctest: +SKIP
    """
    with _quiet():
        figure.show(renderer="plotly_mimetype+png" if can_render_png() else "plotly_mimetype")


def figures_png(figures: Sequence[Any]) -> bytes | None:
    """One PNG of ``figures`` stacked top to bottom (figures without traces skipped); None when none can be drawn.

    Args:
        figures: plotly Figures or FigureWidgets, e.g. the charts inside a widget.

    Returns:
        The PNG's bytes, or None when no figure has data or no PNG can be rendered here.

    Example:
        >>> import plotly.graph_objects as go
        >>> from pbft_widgets.display import figures_png
        >>> figures_png([go.Figure()]) is None  # nothing drawn, nothing to show
        True
    """
    drawn = [figure for figure in figures if len(figure.data)]
    if not drawn or not can_render_png():
        return None
    from PIL import Image

    with _quiet():
        images = [Image.open(io.BytesIO(figure.to_image(format="png"))).convert("RGB") for figure in drawn]
    sheet = Image.new("RGB", (max(image.width for image in images), sum(image.height for image in images)), "white")
    top = 0
    for image in images:
        sheet.paste(image, (0, top))
        top += image.height
    out = io.BytesIO()
    sheet.save(out, format="PNG", optimize=True)
    return out.getvalue()
