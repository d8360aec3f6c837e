"""Copy each notebook's results table, as its committed full run printed it, into README.md.

The README shows one table per notebook between markers
``<!-- notebook-table:NAME:begin -->`` and ``<!-- notebook-table:NAME:end -->``; the table is the
markdown output of the notebook's cell tagged ``# README_TABLE``. Run after a notebook's full run:

    python scripts/notebook_tables.py          # rewrite the README blocks
    python scripts/notebook_tables.py --check  # exit 1 if a block differs from its notebook (CI)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TAG = "# README_TABLE"  # the first line of the cell whose table the README shows
BLOCK = re.compile(r"(<!-- notebook-table:(?P<name>[\w.-]+):begin -->\n)(?P<body>.*?)(<!-- notebook-table:(?P=name):end -->)",
                   re.S)


def notebook_table(name: str) -> str:
    """The markdown table the tagged cell of ``cookbook/NAME.ipynb`` displayed in its committed run."""
    notebook = json.loads((REPO / "cookbook" / f"{name}.ipynb").read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code" and "".join(cell["source"]).startswith(TAG):
            for output in cell.get("outputs", []):
                markdown = output.get("data", {}).get("text/markdown")
                if markdown:
                    return "".join(markdown).strip() + "\n"
            raise SystemExit(f"{name}: the {TAG} cell has no markdown output; run the notebook in full first")
    raise SystemExit(f"{name}: no code cell starts with {TAG}")


def updated(readme: str) -> str:
    """``readme`` with every notebook-table block replaced by its notebook's table."""
    return BLOCK.sub(lambda m: m.group(1) + notebook_table(m.group("name")) + m.group(4), readme)


def main(argv: list[str]) -> int:
    path = REPO / "README.md"
    current = path.read_text(encoding="utf-8")
    fresh = updated(current)
    if "--check" in argv:
        if fresh != current:
            print("README.md's notebook tables differ from the notebooks' outputs; run python scripts/notebook_tables.py")
            return 1
        return 0
    if fresh != current:
        tmp = path.with_name(".README.md.tmp")
        tmp.write_text(fresh, encoding="utf-8")
        tmp.replace(path)
        print("updated README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
