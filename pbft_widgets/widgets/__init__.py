"""Jupyter widgets: thin views over the plain-Python core (templates, methods, train, inspection, serve).

Each widget exposes ``.widget`` (its root ipywidgets container) and displays itself when it is the
last value of a cell or passed to ``display()``. Invalid input shows a message inline, never a
traceback.
"""

from .attention import AttentionExplorer
from .dashboard import TrainingDashboard
from .neighbours import NeighbourExplorer
from .prompt_editor import PromptEditor
from .switcher import AdapterSwitcher

__all__ = ["AdapterSwitcher", "AttentionExplorer", "NeighbourExplorer", "PromptEditor", "TrainingDashboard"]
