"""Put evaluation results side by side: one row per model, deltas against the first (the baseline),
each with a paired bootstrap confidence interval (:mod:`pbft_widgets.uncertainty`).

Rows are plain dicts, so they print as a notebook table, go into pandas, or become GitHub Markdown
with :func:`to_markdown`, which shows each interval next to its value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import DataError
from .metrics import METRICS_BY_TASK
from .uncertainty import CONFIDENCE, N_RESAMPLES, paired_bootstrap

if TYPE_CHECKING:
    from .evaluation import EvalResult

# Scores on a 0-100 scale (sacrebleu's) read best with one decimal, like seconds; 0-1 scores get three.
# Matched case-insensitively and without "++", so columns renamed for display ("chrF++", "BLEU") count.
_ONE_DECIMAL_COLUMNS = ("bleu", "chrf", "seconds")


def compare(
    results: Mapping[str, EvalResult],
    *,
    intervals: bool = True,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per result (in the given order) with its headline metrics and deltas vs the first row.

    The first row is the baseline (e.g. zero-shot); its deltas are None. All results must be of one
    task kind and the same number of examples, else the deltas would compare different things.

    Args:
        results: name -> `EvalResult`, the baseline first.
        intervals: add a paired bootstrap interval to every metric and delta (``<column>_low`` and
            ``<column>_high``); a delta whose interval excludes 0 is a difference these rows support.
        n_resamples, confidence, seed: the bootstrap's resamples, level and seed.

    Returns:
        A list of dicts: name, each metric, ``delta_<metric>``, their intervals, n, seconds.

    Example:
        >>> from pbft_widgets import compare
        >>> from pbft_widgets.evaluation import EvalResult
        >>> refs = ["a", "b"] * 10
        >>> base = EvalResult("zero-shot", "classification", {"macro_f1": 0.33, "accuracy": 0.5}, ["a"] * 20, refs, refs, 1.0)
        >>> tuned = EvalResult("tuned", "classification", {"macro_f1": 0.8, "accuracy": 0.8}, refs[:16] + ["a"] * 4, refs, refs, 1.0)
        >>> table = compare({"zero-shot": base, "tuned": tuned})
        >>> table[1]["delta_accuracy_low"] > 0
        True
    """
    if not results:
        raise DataError("compare got no results; pass e.g. {'zero-shot': r0, 'tuned': r1}")
    items = list(results.items())
    kinds = {result.task_kind for _, result in items}
    if len(kinds) > 1:
        raise DataError(f"results mix task kinds {sorted(kinds)}; compare results of one task kind")
    sizes = {name: result.n for name, result in items}
    if len(set(sizes.values())) > 1:
        raise DataError(
            f"results cover different numbers of examples {sizes}; evaluate every model on the same rows"
        )
    metrics = METRICS_BY_TASK[kinds.pop()]
    baseline = items[0][1].scores
    bounds = (paired_bootstrap([r for _, r in items], metrics, n_resamples=n_resamples, confidence=confidence,
                               seed=seed) if intervals else [{} for _ in items])
    table = []
    for index, (name, result) in enumerate(items):
        row: dict[str, Any] = {"name": name}
        for metric in metrics:
            row[metric] = result.scores.get(metric)
            _add_interval(row, metric, bounds[index])
        for metric in metrics:
            value, base = result.scores.get(metric), baseline.get(metric)
            row[f"delta_{metric}"] = None if index == 0 or value is None or base is None else value - base
            _add_interval(row, f"delta_{metric}", bounds[index])
        row.update(n=result.n, seconds=result.seconds)
        table.append(row)
    return table


def columns(row: Mapping[str, Any], *names: str, **renamed: str) -> dict[str, Any]:
    """Columns of a `compare` row with their interval companions, for a table of your own choosing.

    Args:
        row: one row of :func:`compare`'s output.
        *names: columns to keep as they are named (e.g. ``"accuracy"``, ``"delta_accuracy"``).
        **renamed: column=display name (e.g. ``chrf="chrF++"``; a delta keeps its prefix:
            ``delta_chrf="delta_chrF++"``).

    Returns:
        A dict holding each column and, where the row has them, its ``_low`` / ``_high`` bounds,
        under the display name, so :func:`to_markdown` shows the interval beside the value.

    Example:
        >>> from pbft_widgets.comparison import columns
        >>> columns({"accuracy": 0.5, "accuracy_low": 0.4, "accuracy_high": 0.6, "n": 60}, "accuracy")
        {'accuracy': 0.5, 'accuracy_low': 0.4, 'accuracy_high': 0.6}
    """
    picked: dict[str, Any] = {}
    for column, name in [*((n, n) for n in names), *renamed.items()]:
        if column not in row:
            present = sorted(c for c in row if not c.endswith(("_low", "_high")))
            raise DataError(f"the row has no column {column!r}; choose among {present}")
        picked[name] = row[column]
        for side in ("low", "high"):
            if f"{column}_{side}" in row:
                picked[f"{name}_{side}"] = row[f"{column}_{side}"]
    return picked


def _add_interval(row: dict[str, Any], column: str, bounds: Mapping[str, tuple[float, float]]) -> None:
    if column in bounds:
        row[f"{column}_low"], row[f"{column}_high"] = bounds[column]


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        digits = 1 if column.removeprefix("delta_").lower().rstrip("+") in _ONE_DECIMAL_COLUMNS else 3
        return f"{value:+.{digits}f}" if column.startswith("delta_") else f"{value:.{digits}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _with_interval(column: str, row: Mapping[str, Any]) -> str:
    cell = _cell(column, row.get(column))
    low, high = row.get(f"{column}_low"), row.get(f"{column}_high")
    if low is None or high is None or row.get(column) is None:
        return cell
    return f"{cell} [{_cell(column, low)}, {_cell(column, high)}]"


def to_markdown(table: Sequence[Mapping[str, Any]]) -> str:
    """A GitHub-flavoured markdown table (numbers right-aligned; deltas signed, shown as 'Δ metric').

    A column with ``<column>_low`` / ``<column>_high`` companions (as `compare` writes them) shows
    its interval in brackets after the value, e.g. ``0.278 [0.181, 0.389]``.
    """
    if not table:
        raise DataError("to_markdown got an empty table; pass compare(...) output or a list of dicts")
    keys = list(dict.fromkeys(key for row in table for key in row))
    bounds = {f"{c}_{side}" for c in keys for side in ("low", "high") if f"{c}_low" in keys and f"{c}_high" in keys}
    columns = [c for c in keys if c not in bounds]
    numeric = {c for c in columns if all(isinstance(r.get(c), (int, float, type(None))) for r in table)}
    header = [c.replace("delta_", "Δ ", 1) if c.startswith("delta_") else c for c in columns]
    header = [f"{h} [CI]" if f"{c}_low" in bounds else h for c, h in zip(columns, header)]
    rule = ["---:" if c in numeric else "---" for c in columns]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(_with_interval(c, row) for c in columns) + " |" for row in table]
    return "\n".join(lines) + "\n"
