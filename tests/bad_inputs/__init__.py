"""The catalogue of bad inputs: what a user did, the error it raises, and the fix the message names.

One data-driven list serves two readers: tests/test_bad_inputs.py asserts each case raises its
exception class with a message containing ``fix`` (and every phrase in ``says``), and
tests/make_error_catalogue.py turns the same cases into docs/error-catalogue.md. Message checks
live here only: other tests assert that a bad input raises its class and leaves nothing behind.
Each case runs against tiny models (seconds for the whole list) inside one temporary folder.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass

from . import (adapters, data, evaluation, inspection, methods, metrics, models, scoring, studies, templates, training,
               widgets)
from .bench import Bench, Case

CASES: list[Case] = [*templates.CASES, *data.CASES, *metrics.CASES, *methods.CASES, *models.CASES,
                     *adapters.CASES, *training.CASES, *evaluation.CASES, *scoring.CASES, *inspection.CASES, *widgets.CASES,
                     *studies.CASES]


@functools.cache
def bench() -> Bench:
    return Bench()


@dataclass(frozen=True)
class Outcome:
    error: BaseException | None
    seconds: float


@functools.cache
def outcome(case_id: str) -> Outcome:
    """Run a case once per process (the test and the docs generator share the result)."""
    import time
    import warnings

    case = next(c for c in CASES if c.id == case_id)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            case.run(bench())
    except Exception as exc:  # noqa: BLE001 - the test asserts the exact class
        return Outcome(exc, time.perf_counter() - start)
    return Outcome(None, time.perf_counter() - start)


def message(error: BaseException) -> str:
    """The message with machine-specific paths replaced, so the docs are the same everywhere."""
    text = str(error).replace(str(bench().root), "<tmp>").replace(os.getcwd(), "<cwd>")
    return re.sub(r"\s+", " ", text).strip()
