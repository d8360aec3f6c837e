"""Sweeps: a grid of train-and-evaluate cells over seeds, kept in an Optuna study.

The PBFT literature's claims are about knobs (prompt length, learning rate, initialisation, LoRA
rank), and one run per setting says nothing: a 20-step run on 240 rows moves by several points with
the seed. A sweep runs every *cell* (one setting and one seed) once and keeps its scores in an
Optuna study, so

* a killed sweep resumes: finished cells are read back, never re-run, and a cell whose worker died
  (same machine, process gone; or older than ``stale_after`` seconds) is run again;
* several workers share one sweep: point them at the same database (SQLite on one machine, any
  SQLAlchemy URL such as PostgreSQL across machines). Each cell is enqueued and popped through
  Optuna's own atomic hand-out of waiting trials; should two workers still start the same cell, the
  lower trial number keeps it and the other yields;
* the study is a normal Optuna study: ``study.trials_dataframe()`` or ``optuna-dashboard`` read it
  (each cell's parameters, seed and scores are user attributes; the value is the objective).

The grid is explicit (:func:`grid`), not sampled: a study of knobs wants every cell, each over the
same seeds. Results come back as one tidy row per cell and seed (:class:`SweepResult`), with mean and
standard deviation per setting; :func:`pbft_widgets.sweep_figures.sweep_figure` draws them.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from .atomic import process_alive
from .errors import ConfigError

Scalar = str | int | float | bool | None
CellRun = Callable[[dict[str, Any], int], Mapping[str, Any]]
_SCALARS = (str, int, float, bool, type(None))


def grid(**axes: Any) -> list[dict[str, Scalar]]:
    """Every combination of the axes' values (a value that is not a list or tuple is fixed).

    Args:
        **axes: parameter name -> a list/tuple of values, or one value. Values are str, int, float,
            bool or None (what an Optuna study stores as a parameter).

    Returns:
        One dict per combination, in the order of the axes (the last varies fastest).

    Example:
        >>> from pbft_widgets.sweeps import grid
        >>> grid(method="lora", r=[2, 8])
        [{'method': 'lora', 'r': 2}, {'method': 'lora', 'r': 8}]
    """
    if not axes:
        raise ConfigError("grid() needs at least one axis, e.g. grid(num_virtual_tokens=[1, 5, 20])")
    values = {}
    for name, axis in axes.items():
        axis = list(axis) if isinstance(axis, (list, tuple)) else [axis]
        if not axis:
            raise ConfigError(f"axis {name!r} has no values; give at least one, e.g. {name}=[...]")
        for value in axis:
            _check_scalar(name, value)
        values[name] = axis
    return [dict(zip(values, combination)) for combination in itertools.product(*values.values())]


@dataclass(frozen=True)
class Cell:
    """One setting and one seed: the unit a sweep runs, stores and never runs twice."""

    params: dict[str, Scalar]
    seed: int

    @property
    def key(self) -> str:
        """The cell's identity in the store: its parameters and seed as canonical JSON."""
        return json.dumps({"params": self.params, "seed": self.seed}, sort_keys=True)


@dataclass
class SweepResult:
    """Finished cells: one row per cell and seed with its parameters, scores and seconds."""

    rows: list[dict[str, Any]]
    params: tuple[str, ...]

    def summary(self, metric: str) -> list[dict[str, Any]]:
        """Per setting (seeds pooled): mean, sample SD, min, max and the number of seeds of `metric`.

        Args:
            metric: a score every cell's run returned.

        Returns:
            One dict per setting, in the order the settings were first run: the parameters, then
            ``mean``, ``sd``, ``low``/``high`` (the 95 % t-interval of the mean over seeds: with three
            seeds it is wide, and honestly so), ``min``, ``max``, ``seeds``. SD and interval are NaN
            for one seed.
        """
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in self.rows:
            if metric not in row:
                raise ConfigError(f"no score {metric!r} in the sweep's rows; the run returned "
                                  f"{sorted(k for k in row if k not in self.params and k != 'seed')}")
            setting = {name: row.get(name) for name in self.params}
            groups.setdefault(json.dumps(setting, sort_keys=True), []).append(row)
        table = []
        for members in groups.values():
            values = np.array([float(row[metric]) for row in members])
            mean, sd = float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else math.nan
            half = float(stats.t.ppf(0.975, len(values) - 1)) * sd / math.sqrt(len(values)) if len(values) > 1 else math.nan
            table.append({**{name: members[0].get(name) for name in self.params}, "mean": mean, "sd": sd,
                          "low": mean - half, "high": mean + half, "min": float(values.min()),
                          "max": float(values.max()), "seeds": len(values)})
        return table

    def best(self, metric: str, *, greater_is_better: bool = True) -> dict[str, Scalar]:
        """The parameters of the setting with the best mean `metric` (choose on validation scores)."""
        table = self.summary(metric)
        chosen = (max if greater_is_better else min)(table, key=lambda row: row["mean"])
        return {name: chosen[name] for name in self.params}

    def where(self, **params: Scalar) -> SweepResult:
        """The rows whose parameters equal `params` (e.g. one method's cells)."""
        rows = [row for row in self.rows if all(row.get(k) == v for k, v in params.items())]
        return SweepResult(rows, self.params)


class Sweep:
    """A named sweep whose cells live in an Optuna study (see the module docstring).

    Args:
        name: the study's name; one name per cell function (cells are identified by their parameters).
        run: ``run(params, seed) -> {"score": value, ...}`` trains and evaluates one cell. Values are
            JSON-serialisable (numbers, strings); `objective` among them.
        storage: a file path (an SQLite database there, created with its folder) or an SQLAlchemy URL
            (``"sqlite:////abs/path.db"``, ``"postgresql://..."``) that several machines share.
        objective: the score Optuna records as the trial's value (dashboards sort by it).
        direction: ``"maximize"`` or ``"minimize"`` for `objective`.
        stale_after: seconds after which a running cell of another machine counts as dead and is run
            again (default: never; a dead worker on this machine is always detected).
        progress: a progress bar over the cells (tqdm: a widget in Jupyter, text in a terminal);
            default on, off when the ``CI`` environment variable is set.

    Example:
        >>> from pbft_widgets.sweeps import Sweep, grid
        >>> sweep = Sweep("demo", lambda params, seed: {"score": params["x"] + seed}, storage="sweeps.db",
        ...               objective="score", progress=False)
        >>> result = sweep.run(grid(x=[1, 2]), seeds=[0, 1])
        >>> [(row["x"], row["seed"], row["score"]) for row in result.rows]
        [(1, 0, 1), (1, 1, 2), (2, 0, 2), (2, 1, 3)]
        >>> result.summary("score")[1]["mean"]
        2.5
    """

    def __init__(self, name: str, run: CellRun, *, storage: str | os.PathLike, objective: str,
                 direction: str = "maximize", stale_after: float | None = None, progress: bool | None = None):
        if not callable(run):
            raise ConfigError(f"run must be a function run(params, seed) -> scores, not {type(run).__name__}")
        if direction not in ("maximize", "minimize"):
            raise ConfigError(f"direction={direction!r}; use 'maximize' or 'minimize'")
        self.name, self.fn, self.objective, self.stale_after = name, run, objective, stale_after
        self.progress = (not os.environ.get("CI")) if progress is None else progress
        self.url = _storage_url(storage)
        optuna = _optuna()
        with _quiet(optuna):
            engine = {"connect_args": {"timeout": 120}} if self.url.startswith("sqlite") else {}
            self.study = optuna.create_study(study_name=name, direction=direction, load_if_exists=True,
                                             storage=optuna.storages.RDBStorage(self.url, engine_kwargs=engine))

    def run(self, cells: Sequence[Mapping[str, Scalar]], seeds: Sequence[int] = (0, 1, 2)) -> SweepResult:
        """Run every cell not finished yet (for each seed); return all of them, finished before or now.

        Args:
            cells: settings, e.g. from :func:`grid`.
            seeds: the seeds each setting runs with; distinct integers.

        Returns:
            `SweepResult` of these cells only, one row per cell and seed (a cell another worker is
            still running is missing; ``result()`` reads it later).
        """
        todo = self._cells(cells, seeds)
        with _quiet(_optuna()), _bar(len(todo), self.name, self.progress) as bar:
            for cell in todo:
                while (state := self._state(cell)) in ("open", "waiting"):
                    self._run_next(cell, enqueue=state == "open")
                bar.update(1)
        return self._result(todo)

    def result(self, cells: Sequence[Mapping[str, Scalar]], seeds: Sequence[int] = (0, 1, 2)) -> SweepResult:
        """The finished ones among these cells, without running anything (e.g. while workers run)."""
        return self._result(self._cells(cells, seeds))

    def _cells(self, cells: Sequence[Mapping[str, Scalar]], seeds: Sequence[int]) -> list[Cell]:
        seeds = list(seeds)
        if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(s, int) and not isinstance(s, bool)
                                                               for s in seeds):
            raise ConfigError(f"seeds={seeds!r}; give distinct integers, e.g. seeds=(0, 1, 2)")
        if not cells:
            raise ConfigError("no cells to run; build them with grid(...)")
        todo = []
        for params in cells:
            for name, value in params.items():
                _check_scalar(name, value)
            if "seed" in params:
                raise ConfigError("'seed' is the sweep's own axis; pass seeds=[...] instead of a 'seed' parameter")
            todo += [Cell(dict(params), seed) for seed in seeds]
        return todo

    def _trials(self) -> list[Any]:
        return [t for t in self.study.get_trials(deepcopy=False) if "cell" in t.user_attrs]

    def _state(self, cell: Cell) -> str:
        """'done' (finished), 'taken' (a live worker runs it), 'waiting' (enqueued, not started) or
        'open' (nobody has it: enqueue and run it here)."""
        from optuna.trial import TrialState

        states = set()
        for trial in self._trials():
            if trial.user_attrs["cell"] != cell.key:
                continue
            if trial.state == TrialState.RUNNING and self._dead(trial):
                try:
                    self.study.tell(trial.number, state=TrialState.FAIL)
                except _optuna().exceptions.UpdateFinishedTrialError:
                    return self._state(cell)  # it finished, and its worker exited, since we read it: read again
                continue
            states.add(trial.state)
        if TrialState.COMPLETE in states:
            return "done"
        if TrialState.RUNNING in states:
            return "taken"
        return "waiting" if TrialState.WAITING in states else "open"

    def _dead(self, trial: Any) -> bool:
        worker = trial.user_attrs.get("worker")
        if worker and worker["host"] == socket.gethostname():
            return worker["pid"] != os.getpid() and not process_alive(worker["pid"])
        started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
        return self.stale_after is not None and time.time() - started > self.stale_after

    def _run_next(self, cell: Cell, *, enqueue: bool) -> None:
        """Enqueue `cell` (unless it waits already), pop the next waiting trial (Optuna's atomic
        hand-out; it may be another cell of this sweep, which is then run here) and run that one."""
        from optuna.trial import TrialState

        if enqueue:
            # parameters travel as user attributes: Optuna fixes one distribution per parameter name
            # for a whole study, and a grid's values are not a distribution
            self.study.enqueue_trial({}, user_attrs={"cell": cell.key, "params": cell.params, "seed": cell.seed})
        trial = self.study.ask()
        if "cell" not in trial.user_attrs:
            # Another worker popped the waiting cell first, so Optuna made an empty trial: close it
            # (marked, so a reader of the study knows it held nothing) and let the caller look again.
            trial.set_user_attr("empty", "no waiting cell was left to hand out")
            self.study.tell(trial, state=TrialState.FAIL)
            return
        key, params, seed = trial.user_attrs["cell"], trial.user_attrs["params"], trial.user_attrs["seed"]
        if self._taken_by_lower(trial, key):
            self.study.tell(trial, state=TrialState.FAIL)  # a duplicate of a cell another worker holds
            return
        trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid()})
        started = time.perf_counter()
        try:
            scores = dict(self.fn(dict(params), seed))
        except BaseException:
            self.study.tell(trial, state=TrialState.FAIL)
            raise
        value = scores.get(self.objective)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            self.study.tell(trial, state=TrialState.FAIL)
            raise ConfigError(f"the cell run returned {self.objective}={value!r}; it must return a finite number "
                              f"under the objective's name (it returned {sorted(scores)})")
        try:
            trial.set_user_attr("scores", scores)
        except TypeError:
            self.study.tell(trial, state=TrialState.FAIL)
            raise ConfigError("the cell run's scores must be JSON-serialisable (numbers, strings, lists); "
                              f"got {{{', '.join(f'{k}: {type(v).__name__}' for k, v in scores.items())}}}") from None
        trial.set_user_attr("seconds", time.perf_counter() - started)
        self.study.tell(trial, float(value))

    def _taken_by_lower(self, trial: Any, key: str) -> bool:
        from optuna.trial import TrialState

        for other in self._trials():
            if other.number == trial.number or other.user_attrs["cell"] != key:
                continue
            if other.state == TrialState.COMPLETE:
                return True
            if other.state == TrialState.RUNNING and other.number < trial.number and not self._dead(other):
                return True
        return False

    def _result(self, cells: list[Cell]) -> SweepResult:
        from optuna.trial import TrialState

        finished: dict[str, Any] = {}
        for trial in sorted(self._trials(), key=lambda t: t.number):
            if trial.state == TrialState.COMPLETE:
                finished.setdefault(trial.user_attrs["cell"], trial)
        rows = []
        for cell in cells:
            trial = finished.get(cell.key)
            if trial is not None:
                rows.append({**cell.params, "seed": cell.seed, **trial.user_attrs["scores"],
                             "seconds": trial.user_attrs["seconds"], "trial": trial.number})
        names = tuple(dict.fromkeys(name for cell in cells for name in cell.params))
        return SweepResult(rows, names)


def _check_scalar(name: str, value: Any) -> None:
    if not isinstance(value, _SCALARS):
        raise ConfigError(f"{name}={value!r}: a sweep parameter is a str, int, float, bool or None (what the "
                          "study stores); name the object instead, e.g. a key of a dict the cell function reads")


def _storage_url(storage: str | os.PathLike) -> str:
    text = os.fspath(storage)
    if "://" in text:
        return text
    path = Path(text).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _optuna() -> Any:
    import optuna  # imported on first use: it takes a second, and most of the package never needs it

    return optuna


@contextmanager
def _quiet(optuna: Any) -> Iterator[None]:
    """Optuna logs every trial at INFO; the progress bar says the same once."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


@contextmanager
def _bar(total: int, name: str, enabled: bool) -> Iterator[Any]:
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=f"sweep {name}", unit="cell", disable=not enabled)
    try:
        yield bar
    finally:
        bar.close()
