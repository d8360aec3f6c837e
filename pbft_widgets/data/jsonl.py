"""JSON Lines rows: the plain interchange format for a user's own prompt/completion data."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import DataError
from ._io import atomic_write_text, read_text


def read_jsonl(path: str | os.PathLike[str], *, required: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Read one JSON object per line (blank lines skipped); `required` fields must be in every row."""
    needed = list(required)
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(read_text(path, what="JSONL file").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}, line {number}: not valid JSON ({exc.msg} at column {exc.colno}); "
                "each line must hold one complete JSON object, e.g. {\"text\": \"...\", \"label\": \"...\"}"
            ) from None
        if not isinstance(row, dict):
            raise DataError(
                f"{path}, line {number}: holds a {type(row).__name__}, not an object; "
                "wrap each record in braces, e.g. {\"text\": \"...\"}"
            )
        missing = [field for field in needed if field not in row]
        if missing:
            raise DataError(f"{path}, line {number}: missing field(s) {missing}; add them to every row")
        rows.append(row)
    if not rows:
        raise DataError(f"{path} holds no rows; write one JSON object per line")
    return rows


def write_jsonl(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write rows as UTF-8 JSON Lines (non-ASCII kept readable) atomically; returns the path."""
    lines = []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise DataError(f"row {index} is a {type(row).__name__}; pass mappings such as {{'text': ...}}")
        try:
            lines.append(json.dumps(dict(row), ensure_ascii=False))
        except TypeError as exc:
            raise DataError(
                f"row {index} is not JSON-serialisable ({exc}); convert values to str/int/float/list"
            ) from None
    return atomic_write_text(path, "".join(line + "\n" for line in lines))
