"""Python standard library functions -> (source without its docstring, docstring) pairs.

The stdlib ships with every Python, is PSF-licensed and well documented, so it gives a real,
offline code-to-docstring task. Functions and methods (nested classes included, functions inside
functions not) are parsed with `ast`; the docstring statement is cut out of the source so the
model has to write it, and what is left must still parse.

Splits are by top-level PACKAGE (``tkinter`` with ``tkinter.ttk``, ``email`` with ``email.utils``), so
no package appears in two splits: modules of one package share helpers, naming and docstring style,
and a split by module would train on ``tkinter`` and test on ``tkinter.ttk``. Packages are dealt in
seeded-hash order to the split furthest below its share of functions: a pure hash bucket per package
would let a few big ones (asyncio, typing, argparse) skew the ratios far from the ones asked for.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import sysconfig
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import DataError
from .splits import check_ratios, normalise_split, rows_in_split

# Folder names whose files are tests, the IDLE app or a deprecated translator, not library API.
EXCLUDED_PARTS = frozenset(
    {"test", "tests", "idle_test", "idlelib", "lib2to3", "site-packages", "dist-packages", "turtledemo", "__pycache__"}
)


def stdlib_dir() -> Path:
    """Folder of this interpreter's pure-Python standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def _module_files(root: Path) -> list[tuple[str, Path]]:
    out = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if EXCLUDED_PARTS.intersection(parts) or any(not p.isidentifier() for p in parts):
            continue  # a part like "config-3.11-x86_64" is not an importable module
        if parts[-1].startswith("test_"):
            continue
        names = parts[:-1] if parts[-1] == "__init__" else parts
        if names:
            out.append((".".join(names), path))
    return out


def _strip_docstring(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    """The function's source (decorators included, dedented) without its docstring, or None."""
    doc = node.body[0]
    if len(node.body) == 1 or doc.lineno == node.lineno:
        return None  # a body that is only a docstring, or a one-line def, leaves no code to describe
    if lines[doc.end_lineno - 1][doc.end_col_offset :].strip() not in ("", ";"):
        return None  # code after the docstring on its last line would be cut with it
    first = min([d.lineno for d in node.decorator_list] + [node.lineno])
    kept = lines[first - 1 : doc.lineno - 1] + lines[doc.end_lineno : node.end_lineno]
    indent = " " * node.col_offset
    text = "".join(line[len(indent) :] if line.startswith(indent) else line for line in kept)
    try:
        ast.parse(text)
    except SyntaxError:
        return None
    return text.rstrip() + "\n"


def _functions(module: str, path: Path) -> list[dict[str, Any]]:
    source = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    lines = source.splitlines(keepends=True)
    out = []

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                docstring = ast.get_docstring(node, clean=True)
                if not docstring:
                    continue
                code = _strip_docstring(lines, node)
                if code is not None:
                    qualname = prefix + node.name
                    out.append({"module": module, "qualname": qualname, "source": code, "docstring": docstring})

    visit(tree.body, "")
    return out


@lru_cache(maxsize=4)
def _scan(root: str) -> tuple[dict[str, Any], ...]:
    """Every documented function under root, deduplicated by source text (first module wins)."""
    seen: set[str] = set()
    records = []
    for module, path in _module_files(Path(root)):
        for record in _functions(module, path):
            key = hashlib.sha256(record["source"].encode("utf-8")).hexdigest()
            if key not in seen:
                seen.add(key)
                records.append(record)
    return tuple(records)


def summary(docstring: str) -> str:
    """The first paragraph of a docstring on one line (what a one-line summary task asks for)."""
    return " ".join(docstring.strip().split("\n\n", 1)[0].split())


def first_sentence(text: str) -> str:
    """Text up to the first '.', '!' or '?' followed by a space or the end (all of it if none).

    A summary line's first sentence is the target of a one-line docstring task: short enough to
    generate quickly, and what a reader of the docstring sees first.
    """
    match = re.match(r"(.+?[.!?])(?=\s|$)", text.strip(), re.S)
    return " ".join((match.group(1) if match else text).split())


def load_stdlib_docstrings(
    split: str | None = "train",
    *,
    summary_only: bool = True,
    min_docstring_chars: int = 20,
    max_source_chars: int | None = 4000,
    ratios: dict[str, float] | None = None,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
) -> list[dict[str, Any]]:
    """Rows {module, package, qualname, source, docstring, n_lines} of one split (None: all rows).

    ``package`` is the module's top-level package, the unit the splits are made of.

    The first call parses the library (a few seconds); later calls reuse an in-memory cache.
    """
    folder = Path(root) if root is not None else stdlib_dir()
    if not folder.is_dir():
        raise DataError(
            f"standard library folder {folder} not found; pass root= the folder holding e.g. json/__init__.py"
        )
    fractions = check_ratios(ratios)
    wanted = normalise_split(split) if split is not None else None
    records = _scan(str(folder.resolve()))
    rows = []
    for record in records:
        docstring = summary(record["docstring"]) if summary_only else record["docstring"]
        if len(docstring) < min_docstring_chars:
            continue
        if max_source_chars is not None and len(record["source"]) > max_source_chars:
            continue
        rows.append({**record, "package": record["module"].split(".")[0], "docstring": docstring,
                     "n_lines": record["source"].count("\n")})
    return rows_in_split(
        rows, "package", fractions, wanted, seed=seed,
        if_empty=f"no functions left in split {split!r} under {folder}; lower min_docstring_chars "
        f"({min_docstring_chars}), raise max_source_chars ({max_source_chars}) or check ratios {fractions}")
