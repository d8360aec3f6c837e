"""README.md's notebook tables are the notebooks' own outputs (scripts/notebook_tables.py copies them)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("notebook_tables", REPO / "scripts" / "notebook_tables.py")
notebook_tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(notebook_tables)

NOTEBOOKS = sorted(path.stem for path in (REPO / "cookbook").glob("*.ipynb"))


def test_every_notebook_has_a_readme_block():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert sorted(m.group("name") for m in notebook_tables.BLOCK.finditer(readme)) == NOTEBOOKS


def test_readme_tables_equal_the_committed_notebook_outputs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert notebook_tables.updated(readme) == readme, "run python scripts/notebook_tables.py"
