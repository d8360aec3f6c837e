"""Checks a notebook makes on its own results, so that a smoke run proves something and not only runs.

A notebook cell that prints a score passes whatever the score is, and a troubleshooting cell written
as ``try: ... except PbftError: print(...)`` passes just as well when the error it demonstrates is
no longer raised. These helpers turn both into assertions that fail the cell (and CI) with a
message saying what went wrong, while printing exactly what a reader should see.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .errors import PbftError


@contextmanager
def expect_error(*error_types: type[PbftError]) -> Iterator[None]:
    """Run a block that must raise one of ``error_types``, and print the error the way a user sees it.

    Why: a troubleshooting cell documents an error and its fix; if a change stops the error from being
    raised (or raises another one), the cell must fail rather than silently print nothing.

    Args:
        error_types: the `PbftError` subclasses the block is expected to raise (default: any).

    Returns:
        A context manager; it prints ``"<ErrorName>: <message>"`` and swallows the expected error.
        Any other exception propagates; no exception at all raises `AssertionError`.

    Example:
        >>> from pbft_widgets import TemplateError, Verbalizer
        >>> from pbft_widgets.notebook_checks import expect_error
        >>> with expect_error(TemplateError):
        ...     Verbalizer({"a": ["yes"], "b": ["yes"]})
        TemplateError: label word 'yes' is used by labels 'a' and 'b'; give each label its own word
    """
    expected = error_types or (PbftError,)
    try:
        yield
    except expected as error:
        print(f"{type(error).__name__}: {error}")
    else:
        names = " or ".join(kind.__name__ for kind in expected)
        raise AssertionError(f"expected {names}, but the block raised nothing")


def check_losses(losses: Sequence[tuple[int, float]], name: str = "run") -> None:
    """Assert that a run logged finite training losses and ended below where it started.

    Why: a run whose loss is NaN, or never fell, still produces an adapter and a score; a notebook
    should stop there instead of comparing a broken run with the others.

    Args:
        losses: ``(step, loss)`` pairs in step order, as `TrainResult.losses()` returns them.
        name: what to call the run in the failure message.

    Returns:
        None; raises `AssertionError` naming the run and its losses otherwise.

    Example:
        >>> from pbft_widgets.notebook_checks import check_losses
        >>> check_losses([(1, 2.5), (2, 1.9), (3, 1.2)], "prompt tuning")
    """
    if not losses:
        raise AssertionError(f"{name}: no training loss was logged")
    values = [loss for _, loss in losses]
    if not all(math.isfinite(value) for value in values):
        raise AssertionError(f"{name}: a training loss is not finite: {values}")
    if values[-1] >= values[0]:
        raise AssertionError(f"{name}: the training loss did not fall ({values[0]:.3f} at step {losses[0][0]} "
                             f"-> {values[-1]:.3f} at step {losses[-1][0]})")


def check_predictions(predictions: Sequence[Any], allowed: Collection[Any], name: str = "result") -> None:
    """Assert that every prediction is one of ``allowed`` (a label set, or the tags of a tagging scheme).

    Args:
        predictions: class labels, or per-row tag lists (each tag is checked).
        allowed: the labels or tags a valid prediction may use.
        name: what to call the result in the failure message.

    Returns:
        None; raises `AssertionError` listing the first values outside ``allowed``.

    Example:
        >>> from pbft_widgets.notebook_checks import check_predictions
        >>> check_predictions(["grant", "warranty"], {"grant", "warranty", "termination"})
        >>> check_predictions([["O", "B-DRUG"], ["O"]], {"O", "B-DRUG", "I-DRUG"})
    """
    values = [tag for row in predictions for tag in row] if predictions and isinstance(predictions[0], list) \
        else list(predictions)
    outside = sorted({str(value) for value in values if value not in allowed})
    if outside:
        raise AssertionError(f"{name}: predictions outside the allowed set: {outside[:5]}")
