"""Is it learning? Plain warnings from a run's events: flat loss or score, weights that do not move, a learning rate far from the method's range.

peft users ask this about soft prompts more than anything else: a prompt trained at a LoRA-sized
learning rate barely moves and the loss stays where it started, with no error anywhere. These
checks read only the events a run already emits (`TrainEvent`), so the dashboard can show them
live and a script can call them on ``TrainResult.history``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .events import TrainEvent
from .registry import MethodSpec

FLAT_EVALS = 3  # evaluations in a row without a change before the score counts as flat
FLAT_LOGS = 10  # training-loss logs per window compared
FAR = 3.0  # a learning rate more than this factor outside the method's range is "far" from it
STILL = 1e-3  # relative drift of the trainable weights below which they "have not moved"


def learning_rate_warning(spec: MethodSpec, learning_rate: float) -> str | None:
    """A warning when ``learning_rate`` is far outside the range that trains ``spec``'s method, else None."""
    low, high = spec.training.learning_rate_range
    usual = f"{spec.name} usually trains at {low:g} to {high:g} on the embedded models"
    if learning_rate < low / FAR:
        return (f"learning rate {learning_rate:g} is far below the usual range ({usual}); at this rate the "
                f"{'soft prompt' if spec.learns_prompt else 'adapter'} barely moves: try "
                f"{spec.training.learning_rate:g}")
    if learning_rate > high * FAR:
        return (f"learning rate {learning_rate:g} is far above the usual range ({usual}); the loss may jump "
                f"or diverge: try {spec.training.learning_rate:g}")
    return None


def learning_warnings(history: Sequence[TrainEvent], spec: MethodSpec | None = None, *,
                      learning_rate: float | None = None, flat_evals: int = FLAT_EVALS,
                      flat_logs: int = FLAT_LOGS, tolerance: float = 0.01) -> list[str]:
    """Plain-language warnings about a run so far (empty when nothing looks wrong).

    Args:
        history: the run's events in order (``TrainResult.history`` or a dashboard's ``.history``).
        spec: the method's registry entry, for the learning-rate check (``spec_of("lora")``).
        learning_rate: the run's peak learning rate, checked against ``spec``'s usual range.
        flat_evals: evaluations in a row whose loss and scores may not move before they count as flat.
        flat_logs: training-loss logs per window; the last window's mean is compared with the one before.
        tolerance: a change below this fraction (loss) or this amount (scores in [0, 1]) is no change.

    Returns:
        The warnings, each naming what to try.

    Example:
        >>> from pbft_widgets.events import TrainEvent
        >>> from pbft_widgets.learning_checks import learning_warnings
        >>> from pbft_widgets.registry import spec_of
        >>> flat = [TrainEvent("eval", step, 40, metrics={"accuracy": 0.25}) for step in (10, 20, 30)]
        >>> for warning in learning_warnings(flat, spec_of("prompt-tuning"), learning_rate=1e-4):
        ...     print(warning[:60])
        learning rate 0.0001 is far below the usual range (prompt-tu
        validation accuracy has not changed over the last 3 evaluat
    """
    warnings = []
    if spec is not None and learning_rate is not None and (lr := learning_rate_warning(spec, learning_rate)):
        warnings.append(lr)
    evals = [event for event in history if event.kind == "eval"][-flat_evals:]
    if len(evals) == flat_evals:
        shared = set.intersection(*(set(event.metrics) for event in evals))
        for name in [name for name in ("loss", "accuracy", "macro_f1") if name in shared]:
            values = [event.metrics[name] for event in evals]
            scale = max(abs(v) for v in values) if name == "loss" else 1.0  # loss: relative; scores: absolute
            if max(values) - min(values) <= tolerance * scale:
                what = "validation loss" if name == "loss" else f"validation {name.replace('_', '-')}"
                warnings.append(f"{what} has not changed over the last {flat_evals} evaluations (steps "
                                f"{evals[0].step}-{evals[-1].step}, {values[-1]:.3g}); if that is not already good, raise "
                                "the learning rate, train longer, or check that the completion is the answer")
    logs = [event for event in history if event.kind == "log" and event.loss is not None]
    if len(logs) >= 2 * flat_logs:
        before = sum(event.loss for event in logs[-2 * flat_logs:-flat_logs]) / flat_logs
        after = sum(event.loss for event in logs[-flat_logs:]) / flat_logs
        if abs(before - after) <= tolerance * abs(before):
            warnings.append(f"training loss is flat: {before:.3f} over steps {logs[-2 * flat_logs].step}-"
                            f"{logs[-flat_logs - 1].step}, {after:.3f} over the {flat_logs} steps since; if that is not "
                            "already low, raise the learning rate or check the data")
    moved = [event for event in logs if event.relative_drift is not None]
    if len(moved) >= flat_logs and moved[-1].relative_drift < STILL:
        warnings.append(f"after {moved[-1].step} steps the trainable weights moved {moved[-1].relative_drift:.1e} of "
                        "their size from the start: the learning rate is too low, or no gradient reaches them")
    if len(logs) >= 2 and all(event.grad_norm == 0 for event in logs[-2:]):
        warnings.append("the gradient is zero: the loss does not depend on the trainable weights (check that "
                        "the completion is not masked away and the adapter is active)")
    return warnings
