"""Spanish -> Nahuatl / Otomí sentence pairs from the `elotl` corpora (MPL-2.0).

`axolotl.csv` (Spanish-Nahuatl) and `tsunkua.csv` (Spanish-Otomí) have no header row; their
columns are: Spanish, target, dialect (variant name), source document, then corpus-specific ids.
The rows are shuffled (a document's sentences are not adjacent), and most dialects come from one
or two documents, which shapes the split choices below.

Clean-up: Unicode NFC, whitespace collapsed, folio markers such as "|| 31r" (from the Diario)
removed; pairs dropped when a side is empty, longer than `max_chars`, or identical to the other
side (untranslated); exact duplicate pairs (case-insensitive) kept once. An empty dialect becomes
"unspecified".

Splits (`group_by`):
  * "document" (default): every source document goes whole to one split, so no document leaks
    between training and test. Documents are dealt per dialect (their majority dialect) to the
    split furthest below its target size. A dialect found in one document only lands in a single
    split; `dialect_mix()` reports what each split holds.
  * "pair": pairs are dealt per dialect, so every dialect appears in every split in proportion;
    pairs sharing a Spanish sentence stay together, so no Spanish sentence is in two splits. Documents
    (topics, names, style) are shared across splits, which makes test scores optimistic: use it to
    compare dialects, not to claim generalisation to new texts.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import re
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path
from typing import Literal

from ..errors import DataError, DependencyError
from ._io import read_text
from .splits import assign_balanced, check_ratios, normalise_split

CORPORA = {"axolotl": "Spanish-Nahuatl", "tsunkua": "Spanish-Otomí"}
_FOLIO = re.compile(r"\s*\|\|\s*\d*[rv]?\s*")


def corpus_path(corpus: str) -> Path:
    """Path of an elotl corpus CSV ('axolotl' or 'tsunkua')."""
    if corpus not in CORPORA:
        raise DataError(f"unknown corpus {corpus!r}; use one of {sorted(CORPORA)}")
    spec = importlib.util.find_spec("elotl")
    if spec is None or not spec.submodule_search_locations:
        raise DependencyError("elotl is not installed; run `pip install elotl` (Python >= 3.11)")
    return Path(list(spec.submodule_search_locations)[0]) / "corpora" / f"{corpus}.csv"


def normalise_text(text: str) -> str:
    """NFC, byte-order marks and folio markers removed, whitespace collapsed to single spaces, stripped.

    Some corpus lines carry a stray U+FEFF; str.split() keeps it, so it would reach the model as text.
    """
    text = unicodedata.normalize("NFC", text).replace("\ufeff", "")
    return " ".join(_FOLIO.sub(" ", text).split())


def read_pairs(path: str | os.PathLike[str], *, max_chars: int = 400) -> list[dict[str, str]]:
    """Clean, deduplicated rows {es, target, dialect, source} from an elotl-style CSV file."""
    rows, seen = [], set()
    for number, record in enumerate(csv.reader(io.StringIO(read_text(path, what="corpus file"))), start=1):
        if len(record) < 4:
            raise DataError(
                f"{path}, line {number}: expected at least 4 columns (spanish, target, dialect, source), "
                f"got {len(record)}; check the delimiter is a comma and quotes are balanced"
            )
        es, target = normalise_text(record[0]), normalise_text(record[1])
        if not es or not target or es == target or max(len(es), len(target)) > max_chars:
            continue
        key = (es.lower(), target.lower())
        if key in seen:
            continue
        seen.add(key)
        dialect, source = normalise_text(record[2]), normalise_text(record[3])
        rows.append({"es": es, "target": target, "dialect": dialect or "unspecified", "source": source or "unknown"})
    if not rows:
        raise DataError(f"{path} gave no usable pairs; check it is a CSV of (spanish, target, dialect, source) rows")
    return rows


def load_translation_pairs(
    corpus: Literal["axolotl", "tsunkua"] = "axolotl",
    split: str | None = "train",
    *,
    dialects: list[str] | None = None,
    group_by: Literal["document", "pair"] = "document",
    max_chars: int = 400,
    ratios: dict[str, float] | None = None,
    seed: int = 0,
    path: str | os.PathLike[str] | None = None,
) -> list[dict[str, str]]:
    """Rows {es, target, dialect, source} of one split (None: all) of an elotl corpus.

    `dialects` keeps only those dialect names (see `dialect_mix(load_translation_pairs(corpus, None))`).
    """
    if group_by not in ("document", "pair"):
        raise DataError(f"group_by={group_by!r}; use 'document' (no document in two splits) or 'pair'")
    fractions = check_ratios(ratios)
    wanted = normalise_split(split) if split is not None else None
    rows = read_pairs(path if path is not None else corpus_path(corpus), max_chars=max_chars)
    if dialects is not None:
        known = sorted({row["dialect"] for row in rows})
        unknown = sorted(set(dialects) - set(known))
        if unknown:
            raise DataError(f"dialects {unknown} are not in {corpus}; choose from {known}")
        rows = [row for row in rows if row["dialect"] in set(dialects)]
    group_of = [row["source"] if group_by == "document" else row["es"].lower() for row in rows]
    per_group: dict[str, Counter] = defaultdict(Counter)
    for group, row in zip(group_of, rows):
        per_group[group][row["dialect"]] += 1
    sizes = {group: sum(counts.values()) for group, counts in per_group.items()}
    strata = {group: counts.most_common(1)[0][0] for group, counts in per_group.items()}
    assignment = assign_balanced(sizes, fractions, seed=seed, strata=strata)
    split_of = [assignment[group] for group in group_of]
    if wanted is not None:
        rows = [row for row, name in zip(rows, split_of) if name == wanted]
    if not rows:
        raise DataError(
            f"split {split!r} of {corpus} is empty with group_by={group_by!r} and dialects={dialects}; "
            "a dialect from a single document sits in one split only: use group_by='pair' or other ratios"
        )
    return rows


def dialect_mix(rows: list[dict[str, str]]) -> dict[str, int]:
    """Pairs per dialect, most frequent first (report it for every split)."""
    return dict(Counter(row["dialect"] for row in rows).most_common())
