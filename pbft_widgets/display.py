"""Show a plotly figure so that every reader sees it: interactive in Jupyter, a PNG beside it for
GitHub and nbviewer, which run no JavaScript from a notebook's outputs.

The PNG is rendered by kaleido with a Chrome or Chromium it finds on the machine; where there is
none (a fresh Colab runtime, say) the figure is shown interactively only, with no error.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def can_render_png() -> bool:
    """True when kaleido can turn a figure into a PNG here (it needs a Chrome/Chromium binary)."""
    try:
        import plotly.graph_objects as go

        go.Figure().to_image(format="png", width=10, height=10)
    except Exception:  # kaleido missing, no browser, or a sandbox that forbids starting one
        return False
    return True


def show_figure(figure: Any) -> None:
    """Display ``figure`` (a plotly Figure) interactively, plus a static PNG when one can be rendered.

    Example:
        >>> import plotly.graph_objects as go
        >>> from pbft_widgets.display import show_figure
        >>> show_figure(go.Figure(go.Scatter(x=[0, 1], y=[0, 1])))  # doctest: +SKIP
    """
    figure.show(renderer="plotly_mimetype+png" if can_render_png() else "plotly_mimetype")
