"""How much a score depends on wording: seeded input perturbations and the spread over variants.

A prompt that only works for one phrasing of the instruction, or for clean lower-case input, is a
prompt a user cannot trust on their own data. :func:`perturb` makes the input variants (casing,
whitespace, typos), each seeded so a comparison sees the same perturbed rows for every approach;
:func:`spread` reduces K evaluations (paraphrases or perturbations) to mean, SD and worst case.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError, DataError

if TYPE_CHECKING:
    from .evaluation import EvalResult

PERTURBATIONS = ("upper", "lower", "whitespace", "typos")


def perturb(rows: Sequence[Mapping[str, Any]], kind: str, *, field: str = "text", rate: float = 0.05,
            seed: int = 0) -> list[dict[str, Any]]:
    """Copies of `rows` with `field` perturbed; other fields (the label) untouched.

    Args:
        rows: the rows to perturb (not modified).
        kind: ``"upper"`` / ``"lower"`` (the whole text's casing), ``"whitespace"`` (each space, with
            probability `rate`, becomes a run of two to four spaces or a line break) or ``"typos"``
            (each word of four or more letters, with probability `rate`, gets two neighbouring inner
            letters swapped).
        field: the text column to perturb.
        rate: the per-space or per-word probability, in (0, 1].
        seed: seeds the random choices (one stream for all rows, so the same call gives the same rows).

    Returns:
        New row dicts.

    Example:
        >>> from pbft_widgets.robustness import perturb
        >>> perturb([{"text": "The licensor grants you a licence", "label": "grant"}], "typos", rate=1.0)[0]["text"]
        'The licesnor gratns you a licnece'
    """
    if kind not in PERTURBATIONS:
        raise ConfigError(f"unknown perturbation {kind!r}; use one of {', '.join(PERTURBATIONS)}")
    if not 0 < rate <= 1:
        raise ConfigError(f"rate={rate}; give a probability in (0, 1], e.g. rate=0.05")
    rng = random.Random(seed)
    changed = []
    for index, row in enumerate(rows):
        if field not in row or not isinstance(row[field], str):
            raise DataError(f"row {index} has no text column {field!r}; pass field='<the column holding the input>'")
        changed.append({**row, field: _PERTURB[kind](row[field], rate, rng)})
    return changed


def spread(results: Mapping[str, EvalResult | float], metric: str = "accuracy") -> dict[str, Any]:
    """Mean, sample SD, worst and best of `metric` over K evaluations (e.g. one per paraphrase).

    Args:
        results: name -> evaluation (or the score itself, e.g. from a sweep's rows), at least two.
        metric: the scalar score to read from each evaluation.

    Returns:
        ``{"mean", "sd", "worst", "worst_name", "best", "best_name", "n"}``.

    Example:
        >>> from pbft_widgets.evaluation import EvalResult
        >>> from pbft_widgets.robustness import spread
        >>> runs = {name: EvalResult(name, "classification", {"accuracy": acc}, [], [], [], 0.0)
        ...         for name, acc in (("plain", 0.5), ("terse", 0.3), ("polite", 0.4))}
        >>> {k: spread(runs)[k] for k in ("mean", "worst", "worst_name")}
        {'mean': 0.4, 'worst': 0.3, 'worst_name': 'terse'}
    """
    if len(results) < 2:
        raise ConfigError(f"a spread needs at least two evaluations; got {len(results)}")
    values = {}
    for name, result in results.items():
        if isinstance(result, (int, float)):
            values[name] = float(result)
            continue
        if metric not in result.scores:
            raise ConfigError(f"{name!r} has no score {metric!r}; it has {sorted(result.scores)}")
        values[name] = float(result.scores[metric])
    array = np.array(list(values.values()))
    worst, best = min(values, key=values.get), max(values, key=values.get)
    return {"mean": round(float(array.mean()), 12), "sd": float(array.std(ddof=1)), "worst": values[worst],
            "worst_name": worst, "best": values[best], "best_name": best, "n": len(values)}


def _casing(upper: bool):
    return lambda text, rate, rng: text.upper() if upper else text.lower()


def _whitespace(text: str, rate: float, rng: random.Random) -> str:
    return re.sub(" ", lambda m: (rng.choice(("  ", "   ", "    ", "\n")) if rng.random() < rate else " "), text)


def _typos(text: str, rate: float, rng: random.Random) -> str:
    def swap(match: re.Match) -> str:
        word = match.group(0)
        if rng.random() >= rate:
            return word
        i = rng.randrange(1, len(word) - 2)  # inner letters only: first and last stay, as in human typos
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]

    return re.sub(r"[A-Za-z]{4,}", swap, text)


_PERTURB = {"upper": _casing(True), "lower": _casing(False), "whitespace": _whitespace, "typos": _typos}
