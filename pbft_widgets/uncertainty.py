"""How sure is a score: paired bootstrap confidence intervals over test rows, and spread over seeds.

With 72 test clauses one clause is 1.4 points of accuracy, so "A beats B" needs an interval, not a
sentence. The bootstrap resamples the *rows* (sentences for corpus metrics, which are recomputed
from each resample, as a corpus BLEU must be) and uses the same resamples for every model, so the
interval of a difference is paired: it reflects how often the two models disagree on the same rows,
not the two scores' separate noise. Intervals are scipy's percentile bootstrap.

Seeds are the other source of noise: :func:`over_seeds` runs one recipe several times and reports
mean and standard deviation per metric.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DataError
from .metrics import compute_metrics

if TYPE_CHECKING:
    from .evaluation import EvalResult

N_RESAMPLES = 1000
CONFIDENCE = 0.95


def paired_bootstrap(
    results: Sequence[EvalResult],
    metrics: Sequence[str],
    *,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> list[dict[str, tuple[float, float]]]:
    """Confidence intervals of each metric of each result and of its difference to the first result.

    Every resample draws test rows with replacement, once for all results (paired), and recomputes
    each metric from the drawn rows with the options the result was scored with.

    Args:
        results: evaluations of the same rows; the first is the baseline of the differences.
        metrics: metric names of ``EvalResult.scores`` (e.g. ``"accuracy"``, ``"chrf"``).
        n_resamples: bootstrap resamples (at least 1,000 for a 95 % interval).
        confidence: the interval's level.
        seed: seeds the resampling, so a notebook's intervals are reproducible.

    Returns:
        One dict per result: ``{metric: (low, high), "delta_<metric>": (low, high)}`` (no deltas for
        the first).

    Example:
        >>> from pbft_widgets.evaluation import EvalResult
        >>> from pbft_widgets.uncertainty import paired_bootstrap
        >>> refs = ["a", "b"] * 10
        >>> a = EvalResult("zero-shot", "classification", {}, ["a"] * 20, refs, refs, 0.0)
        >>> b = EvalResult("tuned", "classification", {}, refs[:16] + ["a"] * 4, refs, refs, 0.0)
        >>> intervals = paired_bootstrap([a, b], ["accuracy"])
        >>> low, high = intervals[1]["delta_accuracy"]
        >>> low > 0
        True
    """
    from scipy.stats import bootstrap

    sizes = {len(result.predictions) for result in results}
    if len(sizes) != 1:
        raise DataError(f"results cover different numbers of rows {sorted(sizes)}; evaluate every model on the same rows")
    n = sizes.pop()
    if n < 2:
        raise DataError(f"a bootstrap resamples rows and needs at least 2, got {n}; evaluate more rows, or compare "
                        "without intervals (compare(..., intervals=False))")

    def values(rows: np.ndarray) -> np.ndarray:
        scores = [_scores_on(result, rows) for result in results]
        own = [scores[r][m] for r in range(len(results)) for m in metrics]
        deltas = [scores[r][m] - scores[0][m] for r in range(1, len(results)) for m in metrics]
        return np.array(own + deltas, dtype=float)

    found = bootstrap((np.arange(n),), values, vectorized=False, n_resamples=n_resamples,
                      confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    low, high = found.confidence_interval
    intervals: list[dict[str, tuple[float, float]]] = [{} for _ in results]
    k = 0
    for r in range(len(results)):
        for m in metrics:
            intervals[r][m] = (float(low[k]), float(high[k]))
            k += 1
    for r in range(1, len(results)):
        for m in metrics:
            intervals[r][f"delta_{m}"] = (float(low[k]), float(high[k]))
            k += 1
    return intervals


def score_intervals(result: EvalResult, *, n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE,
                    seed: int = 0) -> dict[str, tuple[float, float]]:
    """Bootstrap interval of each score of one evaluation that its predictions determine.

    Scores read from probabilities (ECE, Brier, NLL) are not resampled here; a single row cannot be
    resampled at all, so an evaluation of fewer than 2 rows gets no intervals.
    """
    if result.n < 2:
        return {}
    resampled = [name for name, value in _scores_on(result, np.arange(result.n)).items()
                 if isinstance(value, (int, float)) and not isinstance(value, bool)]
    return paired_bootstrap([result], resampled, n_resamples=n_resamples, confidence=confidence, seed=seed)[0]


def accuracy_differences(baseline: EvalResult, results: Sequence[EvalResult], *, n_resamples: int = N_RESAMPLES,
                         confidence: float = CONFIDENCE, seed: int = 0) -> list[tuple[float, float]]:
    """Paired-bootstrap intervals of each result's accuracy minus the baseline's, all at once.

    The same percentile bootstrap as :func:`paired_bootstrap` (one draw of rows shared by every
    result), computed on the rows' right/wrong marks as one array operation: what an ablation of
    dozens of variants needs, where recomputing every metric per resample would take minutes.

    Args:
        baseline: the evaluation every difference is taken against.
        results: evaluations of the same rows.
        n_resamples, confidence, seed: the bootstrap's resamples, level and seed.

    Returns:
        One ``(low, high)`` per result.

    Example:
        >>> from pbft_widgets.evaluation import EvalResult
        >>> from pbft_widgets.uncertainty import accuracy_differences
        >>> refs = ["a", "b"] * 10
        >>> base = EvalResult("learned", "classification", {}, refs, refs, refs, 0.0)
        >>> worse = EvalResult("ablated", "classification", {}, ["a"] * 20, refs, refs, 0.0)
        >>> low, high = accuracy_differences(base, [worse])[0]
        >>> high < 0
        True
    """
    def marks(result: EvalResult) -> np.ndarray:
        return np.array([p == r for p, r in zip(result.predictions, result.references)], dtype=float)

    if any(len(result.predictions) != len(baseline.predictions) for result in results):
        raise DataError("results cover different numbers of rows; evaluate every model on the same rows")
    return mean_differences(marks(baseline), [marks(result) for result in results], n_resamples=n_resamples,
                            confidence=confidence, seed=seed)


def mean_differences(baseline: Sequence[float], variants: Sequence[Sequence[float]], *, n_resamples: int = N_RESAMPLES,
                     confidence: float = CONFIDENCE, seed: int = 0) -> list[tuple[float, float]]:
    """Paired-bootstrap intervals of each variant's mean per-row value minus the baseline's, all at once.

    Args:
        baseline: one value per row (a right/wrong mark, a loss).
        variants: for each variant, one value per row, rows in the baseline's order.
        n_resamples, confidence, seed: the bootstrap's resamples, level and seed.

    Returns:
        One ``(low, high)`` per variant.

    Example:
        >>> from pbft_widgets.uncertainty import mean_differences
        >>> low, high = mean_differences([1.0, 1.2, 0.9, 1.1] * 5, [[1.5, 1.6, 1.4, 1.7] * 5])[0]
        >>> low > 0
        True
    """
    reference = np.asarray(baseline, dtype=float)
    values = np.asarray(variants, dtype=float).reshape(len(variants), -1)
    if values.shape[1] != len(reference):
        raise DataError("results cover different numbers of rows; evaluate every model on the same rows")
    draws = np.random.default_rng(seed).integers(0, len(reference), (n_resamples, len(reference)))
    differences = values - reference  # (variants, rows)
    means = differences[:, draws].mean(axis=2)  # (variants, resamples)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail], axis=1)
    return [(float(a), float(b)) for a, b in zip(low, high)]


def _scores_on(result: EvalResult, rows: np.ndarray) -> dict[str, Any]:
    references = [result.references[i] for i in rows]
    predictions = [result.predictions[i] for i in rows]
    return compute_metrics(result.task_kind, references, predictions, **(result.metric_options or {}))


@dataclass
class SeedRuns:
    """One recipe's evaluations over several seeds (``results[seed]``)."""

    results: dict[int, EvalResult]

    def summary(self) -> dict[str, tuple[float, float]]:
        """Per scalar metric: (mean, sample standard deviation) over the seeds."""
        first = next(iter(self.results.values()))
        names = [k for k, v in first.scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        summary = {}
        for name in names:
            values = np.array([result.scores[name] for result in self.results.values()], dtype=float)
            summary[name] = (float(values.mean()), float(values.std(ddof=1)))
        return summary

    def table(self) -> list[dict[str, Any]]:
        """One row per seed with its scalar scores, then a "mean ± SD" row (strings), ready for to_markdown."""
        summary = self.summary()
        rows: list[dict[str, Any]] = [{"seed": seed, **{m: r.scores[m] for m in summary}}
                                      for seed, r in self.results.items()]
        rows.append({"seed": "mean ± SD", **{m: f"{mean:.3f} ± {sd:.3f}" for m, (mean, sd) in summary.items()}})
        return rows


def over_seeds(run: Callable[[int], EvalResult], seeds: Sequence[int] = (0, 1, 2)) -> SeedRuns:
    """Run ``run(seed)`` (train and evaluate one recipe) for each seed; report the spread.

    Args:
        run: trains with the given seed and returns its `EvalResult`.
        seeds: at least two distinct seeds (a standard deviation needs two).

    Returns:
        `SeedRuns`: ``.results`` per seed, ``.summary()`` mean and SD per metric, ``.table()``.

    Example:
        >>> from pbft_widgets import over_seeds
        >>> from pbft_widgets.evaluation import EvalResult
        >>> def run(seed):
        ...     return EvalResult(f"seed {seed}", "classification", {"accuracy": 0.5 + seed / 10}, [], [], [], 0.0)
        >>> mean, sd = over_seeds(run, seeds=(0, 1, 2)).summary()["accuracy"]
        >>> round(mean, 3), round(sd, 3)
        (0.6, 0.1)
    """
    seeds = list(seeds)
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise DataError(f"over_seeds needs at least two distinct seeds for a standard deviation, got {seeds}; "
                        "pass e.g. seeds=(0, 1, 2)")
    return SeedRuns({seed: run(seed) for seed in seeds})
