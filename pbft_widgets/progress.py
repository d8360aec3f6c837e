"""Progress bars for the calls that take minutes: training, evaluation, ablations.

A plain script running `train()` on 2,000 rows used to print nothing for half an hour. Every long
call now shows a tqdm bar (a widget bar in Jupyter, a text bar in a terminal or log) with its
steps, the latest loss and an ETA. Bars are off where nobody watches them live: when `CI` is set,
or `PBFT_PROGRESS=0`; `progress=True/False` on a call overrides both.

Calls nest (an ablation runs dozens of evaluations): only the outermost call shows a bar, and
the batch loops beneath it report to nothing, so one line moves instead of a flood.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

PROGRESS_ENV = "PBFT_PROGRESS"

_shown: ContextVar[Any | None] = ContextVar("pbft_progress_bar", default=None)  # what advance() moves
_inside: ContextVar[bool] = ContextVar("pbft_progress_inside", default=False)  # an outer bar is open


def bars_enabled(progress: bool | None = None) -> bool:
    """Whether a call shows its bar: `progress` when given, else not under CI nor `PBFT_PROGRESS=0`."""
    if progress is not None:
        return bool(progress)
    return os.environ.get(PROGRESS_ENV, "1") != "0" and os.environ.get("CI", "").lower() in ("", "0", "false")


class _Silent:
    """Stands in for a bar that is not shown (nested or disabled): every call does nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass


@contextmanager
def bar(total: int | None, description: str, unit: str, progress: bool | None = None) -> Iterator[Any]:
    """A bar over `total` `unit`s for the duration of the block, unless a caller already shows one.

    Yields the bar (`update(n)`, `set_postfix(...)`); `advance(n)` from code beneath moves it too.
    """
    if _inside.get() or not bars_enabled(progress):
        token = _shown.set(None)  # nested work reports nowhere; the outer bar counts it as a whole
        inside = _inside.set(True)
        try:
            yield _Silent()
        finally:
            _inside.reset(inside)
            _shown.reset(token)
        return
    from tqdm.auto import tqdm

    shown = tqdm(total=total, desc=description, unit=unit, dynamic_ncols=True, leave=True)
    token, inside = _shown.set(shown), _inside.set(True)
    try:
        yield shown
    finally:
        _inside.reset(inside)
        _shown.reset(token)
        shown.close()


def advance(n: int = 1) -> None:
    """Move the bar of the call this runs under (batch loops call it; a no-op without a bar)."""
    shown = _shown.get()
    if shown is not None:
        shown.update(n)


class TrainingBar:
    """A training listener: a bar over the run's steps with the latest loss (and eval loss) beside it."""

    def __init__(self, max_steps: int, progress: bool | None = None) -> None:
        self._context = bar(max_steps, "training", "step", progress)
        self._bar = self._context.__enter__()
        self._step = 0
        self._shown: dict[str, str] = {}
        self._closed = False

    def __call__(self, event: Any) -> None:
        if self._closed:
            return
        if event.kind in ("log", "eval") and event.loss is not None:
            self._shown["loss" if event.kind == "log" else "eval_loss"] = f"{event.loss:.4f}"
            self._bar.set_postfix(self._shown, refresh=False)
        if event.step > self._step:
            self._bar.update(event.step - self._step)
            self._step = event.step
        if event.kind == "end":
            self.close()

    def close(self) -> None:
        """End the bar (train() does so when the run ends or fails)."""
        if not self._closed:
            self._closed = True
            self._context.__exit__(None, None, None)
