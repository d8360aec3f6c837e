"""Put evaluation results side by side: one row per model, deltas against the first (the baseline).

Rows are plain dicts, so they print as a notebook table, go into pandas, or become GitHub Markdown
with :func:`to_markdown`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import DataError
from .metrics import METRICS_BY_TASK

if TYPE_CHECKING:
    from .evaluation import EvalResult

# Scores on a 0-100 scale (sacrebleu's) read best with one decimal, like seconds; 0-1 scores get three.
# Matched case-insensitively and without "++", so columns renamed for display ("chrF++", "BLEU") count.
_ONE_DECIMAL_COLUMNS = ("bleu", "chrf", "seconds")


def compare(results: Mapping[str, EvalResult]) -> list[dict[str, Any]]:
    """One row per result (in the given order) with its headline metrics and deltas vs the first row.

    The first row is the baseline (e.g. zero-shot); its deltas are None. All results must be of one
    task kind and the same number of examples, else the deltas would compare different things.
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
    table = []
    for index, (name, result) in enumerate(items):
        row: dict[str, Any] = {"name": name}
        row.update({metric: result.scores.get(metric) for metric in metrics})
        for metric in metrics:
            value, base = result.scores.get(metric), baseline.get(metric)
            row[f"delta_{metric}"] = None if index == 0 or value is None or base is None else value - base
        row.update(n=result.n, seconds=result.seconds)
        table.append(row)
    return table


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        digits = 1 if column.removeprefix("delta_").lower().rstrip("+") in _ONE_DECIMAL_COLUMNS else 3
        return f"{value:+.{digits}f}" if column.startswith("delta_") else f"{value:.{digits}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(table: Sequence[Mapping[str, Any]]) -> str:
    """A GitHub-flavoured markdown table (numbers right-aligned; deltas signed, shown as 'Δ metric')."""
    if not table:
        raise DataError("to_markdown got an empty table; pass compare(...) output or a list of dicts")
    columns = list(dict.fromkeys(key for row in table for key in row))
    numeric = {c for c in columns if all(isinstance(r.get(c), (int, float, type(None))) for r in table)}
    header = [c.replace("delta_", "Δ ", 1) if c.startswith("delta_") else c for c in columns]
    rule = ["---:" if c in numeric else "---" for c in columns]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(_cell(c, row.get(c)) for c in columns) + " |" for row in table]
    return "\n".join(lines) + "\n"
