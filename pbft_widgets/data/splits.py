"""Deterministic, group-aware train/validation/test assignment.

Rows that share a group (a module, a licence document, a source text, a clinical note) always land
in the same split, so a model is never scored on text it saw a sibling of in training.
`assign_balanced` gives each group to the split furthest below its target row count, per stratum,
so every stratum (e.g. dialect) is spread close to the ratios. Groups too big for the smallest
target go first, largest first (they only fit while targets are still empty); the others follow in
an order fixed by a seeded hash of their name, so the seed varies the split and nothing else does.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping

from ..errors import DataError

SPLITS = ("train", "validation", "test")
DEFAULT_RATIOS: dict[str, float] = {"train": 0.8, "validation": 0.1, "test": 0.1}
_ALIASES = {"dev": "validation", "devel": "validation", "valid": "validation", "val": "validation"}


def normalise_split(split: str) -> str:
    """Map a split name (accepting dev/devel/valid/val for validation) to train/validation/test."""
    name = _ALIASES.get(str(split).strip().lower(), str(split).strip().lower())
    if name not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)} (or 'dev' for validation)")
    return name


def check_ratios(ratios: Mapping[str, float] | None) -> dict[str, float]:
    """Validate split fractions: known names, non-negative, summing to 1 (within 1e-6)."""
    if ratios is None:
        return dict(DEFAULT_RATIOS)
    out = {normalise_split(name): float(value) for name, value in ratios.items()}
    if any(value < 0 for value in out.values()) or abs(sum(out.values()) - 1.0) > 1e-6:
        raise DataError(f"split ratios {dict(ratios)} must be >= 0 and sum to 1, e.g. {DEFAULT_RATIOS}")
    return {name: out.get(name, 0.0) for name in SPLITS}


def hash_unit(key: object, seed: int = 0) -> float:
    """A number in [0, 1) fixed by (seed, key) across runs, machines and Python versions."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_balanced(
    sizes: Mapping[Hashable, int],
    ratios: Mapping[str, float] | None = None,
    *,
    seed: int = 0,
    strata: Mapping[Hashable, str] | None = None,
) -> dict:
    """Give groups (in seeded-hash order) to the split furthest below its row target, per stratum."""
    fractions = check_ratios(ratios)
    by_stratum: dict[str, list] = defaultdict(list)
    for group in sizes:
        by_stratum[strata[group] if strata else ""].append(group)
    candidates = [name for name in SPLITS if fractions[name] > 0]
    out = {}
    for members in by_stratum.values():
        total = sum(sizes[g] for g in members)
        smallest = min(fractions[name] for name in candidates) * total
        filled = dict.fromkeys(SPLITS, 0)
        order = sorted(members, key=lambda g: (-sizes[g] if sizes[g] > smallest else 0, hash_unit(g, seed)))
        for group in order:
            name = max(candidates, key=lambda s: (fractions[s] * total - filled[s], fractions[s]))
            out[group] = name
            filled[name] += sizes[group]
    return out


def rows_in_split(rows: list[dict], group_key: str, ratios: Mapping[str, float], wanted: str | None, *,
                  seed: int, if_empty: str) -> list[dict]:
    """The rows whose group (``row[group_key]``) lands in split ``wanted`` (all rows when None).

    Raises DataError(``if_empty``) when nothing is left, so each loader can name its own knobs.
    """
    assignment = assign_balanced(Counter(row[group_key] for row in rows), ratios, seed=seed)
    kept = rows if wanted is None else [row for row in rows if assignment[row[group_key]] == wanted]
    if not kept:
        raise DataError(if_empty)
    return kept
