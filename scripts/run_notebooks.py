"""Execute cookbook notebooks in full, in place, the way their committed outputs are made.

Each notebook runs in its own kernel from ``cookbook/`` (its relative output folders land there), with
no smoke flag, and is written back only when every cell ran. The widgets' live state is not stored:
a chart-heavy view holds megabytes of it, which no reader without a kernel can use, while every view's
output already carries a PNG of its charts. The wall time of each run is printed (the notebooks
quote it). Then run ``python scripts/notebook_tables.py`` to copy the results tables into README.md.

    python scripts/run_notebooks.py 02_legal_clauses 03_code_docstrings
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

COOKBOOK = Path(__file__).resolve().parent.parent / "cookbook"
CELL_TIMEOUT = 3600  # seconds; the longest cells (sweeps, generation) take minutes on two cores


def run(name: str) -> float:
    """Run ``cookbook/NAME.ipynb`` top to bottom and save it; returns the wall time in seconds."""
    path = COOKBOOK / f"{name.removesuffix('.ipynb')}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3", store_widget_state=False,
                   resources={"metadata": {"path": str(COOKBOOK)}}).execute()
    seconds = time.perf_counter() - start
    notebook.metadata.pop("widgets", None)
    partial = path.with_suffix(".ipynb.partial")
    nbformat.write(notebook, partial)
    partial.replace(path)  # never a half-written notebook
    return seconds


def main(names: list[str]) -> int:
    if not names:
        print(__doc__)
        return 2
    os.environ.pop("PBFT_SMOKE", None)  # committed outputs come from full runs
    os.environ["PBFT_PROGRESS"] = "0"  # live bars are for readers running it; stored they are clutter
    for name in names:
        seconds = run(name)
        print(f"{name}: {seconds / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
