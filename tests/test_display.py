"""show_figure: the interactive figure plus, where a browser can render it, a static PNG for GitHub."""

from __future__ import annotations

import os

import plotly.graph_objects as go
import pytest

from pbft_widgets import display


@pytest.fixture
def shown(monkeypatch):
    """The MIME bundles show_figure hands to Jupyter."""
    import IPython.display

    bundles = []
    monkeypatch.setattr(IPython.display, "display", lambda bundle, raw=False: bundles.append(bundle))
    return bundles


def test_without_a_browser_the_figure_is_shown_interactive_only(shown, monkeypatch):
    monkeypatch.setattr(display, "can_render_png", lambda: False)
    display.show_figure(go.Figure(go.Scatter(x=[0, 1], y=[0, 1])))
    (bundle,) = shown
    assert set(bundle) == {"application/vnd.plotly.v1+json"}


def test_with_a_browser_a_png_of_the_same_figure_comes_along(shown):
    if not display.can_render_png():
        if os.environ.get("CI") == "true":  # make installs chromium and kaleido is a dependency
            pytest.fail("kaleido could not render a PNG with the system chromium")
        pytest.skip("no Chrome/Chromium for kaleido on this machine")
    display.show_figure(go.Figure(go.Scatter(x=[0, 1], y=[0, 1])))
    (bundle,) = shown
    assert bundle["application/vnd.plotly.v1+json"]["data"][0]["x"] == [0, 1]
    import base64

    assert base64.b64decode(bundle["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
