"""File plumbing shared by the loaders: strict UTF-8 reads, atomic writes, Dataset conversion.

Loaders read user files, so every failure here names the fix (wrong path, wrong encoding) instead
of surfacing a bare OSError or UnicodeDecodeError from deep inside a notebook cell.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError


def read_text(path: str | os.PathLike[str], *, what: str = "file") -> str:
    """Return the text of a UTF-8 file (a leading BOM is dropped), or raise DataError with the fix."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{what} {p} does not exist; check the path (relative paths start at {Path.cwd()})")
    if p.is_dir():
        raise DataError(f"{what} {p} is a directory; pass the path of a file inside it")
    data = p.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{what} {p} is not UTF-8 (byte {exc.start}, line {line}); re-save it as UTF-8, e.g. "
            f"`iconv -f latin1 -t utf-8 {p.name} > {p.stem}.utf8{p.suffix}` or in Python "
            f"`open(path, encoding='latin-1').read()` then write it with encoding='utf-8'"
        ) from None


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write text as UTF-8 through a temp file in the same folder, so readers never see half a file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex}.tmp")  # open() honours the umask, mkstemp would not
    try:
        with open(tmp, "x", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


def to_dataset(rows: Sequence[Mapping[str, Any]]):
    """Turn loader rows into a `datasets.Dataset` (the form Trainer/SFTTrainer expect)."""
    from datasets import Dataset

    if len(rows) == 0:
        raise DataError("cannot build a Dataset from 0 rows; check the split name and the loader's filters")
    return Dataset.from_list([dict(row) for row in rows])
