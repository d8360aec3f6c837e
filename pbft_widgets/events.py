"""What a training run tells its listeners, how it is asked to stop, and the Trainer callback doing both.

`TrainEvent` is one progress report (log, eval, checkpoint, end); a listener is any callable taking
one, the dashboard among them. `StreamCallback` turns the Trainer's hooks into events, honours a
`TrainingControl` stop request with a final checkpoint, and seals each checkpoint the Trainer writes.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from . import checkpoints


@dataclass
class TrainEvent:
    """One progress report; listeners (dashboards, loggers) receive these as training runs."""

    kind: str  # "log", "eval", "checkpoint" or "end"
    step: int
    max_steps: int
    loss: float | None = None
    learning_rate: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    tokens_per_second: float | None = None
    memory_bytes: int | None = None
    elapsed_seconds: float = 0.0
    checkpoint: str | None = None
    grad_norm: float | None = None  # of the trainable parameters at this step, before clipping
    drift: float | None = None  # L2 distance of the trainable parameters from where this run started
    relative_drift: float | None = None  # drift / their norm at the start (None when that norm is 0)

    def to_dict(self) -> dict[str, Any]:
        """The event as plain values (for JSON logs)."""
        return asdict(self)


Listener = Callable[[TrainEvent], None]
# Drift needs a copy of the trainable weights at the start: cheap for PBFT (a prompt, LoRA
# matrices), a second model's worth of memory for full fine-tuning, which is left without it.
DRIFT_MAX_PARAMETERS = 20_000_000


class TrainingControl:
    """Ask a running `train()` to stop at the end of the current step (thread-safe, e.g. a button)."""

    def __init__(self) -> None:
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask the run to stop after the current step (it saves a complete checkpoint first)."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        """Whether stop() was called."""
        return self._stop.is_set()


class StreamCallback(TrainerCallback):
    """Turns trainer hooks into TrainEvents, honours stop requests, and seals finished checkpoints."""

    def __init__(self, listeners: list[Listener], control: TrainingControl, metric_fn: Any, model: Any,
                 resume_from: Path | None = None, keep_checkpoints: int | None = None) -> None:
        self.resume_from = resume_from
        self.keep_checkpoints = keep_checkpoints
        self.listeners = listeners
        self.control = control
        self.metric_fn = metric_fn
        self.model = model
        self.history: list[TrainEvent] = []
        self._start = time.perf_counter()
        self._last_tokens = (0, self._start)
        self._start_weights: list[torch.Tensor] | None = None
        self._start_norm = 0.0

    def elapsed(self) -> float:
        """Seconds since the callback was made (the run's start)."""
        return time.perf_counter() - self._start

    def emit(self, event: TrainEvent) -> None:
        """Record ``event`` and hand it to every listener."""
        self.history.append(event)
        for listener in self.listeners:
            listener(event)

    def on_train_begin(self, args, state, control, **kwargs):
        """On resume, restore every trainable tensor (the Trainer's own restore misses some)."""
        if self.resume_from is not None:  # after the Trainer's own restore, which misses some weights
            checkpoints.load_trainable_state(self.model, self.resume_from)
        trainable = _trainable(self.model)
        if sum(p.numel() for p in trainable) <= DRIFT_MAX_PARAMETERS:
            self._start_weights = [p.detach().clone() for p in trainable]
            self._start_norm = math.sqrt(sum(float(w.float().pow(2).sum()) for w in self._start_weights))

    def _honour_stop(self, control) -> None:
        if self.control.stop_requested and not control.should_training_stop:
            control.should_training_stop = True
            control.should_save = True  # keep the last good state as a complete checkpoint

    def on_step_end(self, args, state, control, **kwargs):
        """Stop after this step when asked to."""
        self._honour_stop(control)

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Turn a training log into a "log" event (loss, learning rate, tokens/s, memory)."""
        logs = logs or {}
        if "loss" in logs:
            drift, relative = self._drift()
            grad_norm = logs.get("grad_norm")
            self.emit(TrainEvent("log", state.global_step, state.max_steps, loss=float(logs["loss"]),
                                 learning_rate=logs.get("learning_rate"),
                                 tokens_per_second=self._tokens_per_second(logs, state),
                                 memory_bytes=_memory_bytes(), elapsed_seconds=self.elapsed(),
                                 grad_norm=None if grad_norm is None else float(grad_norm), drift=drift,
                                 relative_drift=relative))
        self._honour_stop(control)  # a listener may have asked to stop; save before the step ends

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        """Add metric_fn's scores (early stopping sees them) and emit an "eval" event."""
        if metrics is None:
            return
        if self.metric_fn is not None:
            was_training = self.model.training
            self.model.eval()
            with torch.no_grad():
                extra = self.metric_fn(self.model)
            self.model.train(was_training)
            metrics.update({f"eval_{k}": float(v) for k, v in extra.items()})  # seen by early stopping
        values = {k.removeprefix("eval_"): float(v) for k, v in metrics.items()
                  if isinstance(v, (int, float)) and not k.endswith(("runtime", "per_second", "_steps"))}
        self.emit(TrainEvent("eval", state.global_step, state.max_steps, loss=values.get("loss"),
                             metrics=values, elapsed_seconds=self.elapsed()))

    def on_save(self, args, state, control, **kwargs):
        """Seal the checkpoint just written, rotate old ones, emit a "checkpoint" event."""
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and path.is_dir():
            checkpoints.seal_checkpoint(path, self.model, state.global_step)
            checkpoints.rotate_checkpoints(path.parent, self.keep_checkpoints, state.best_model_checkpoint)
            self.emit(TrainEvent("checkpoint", state.global_step, state.max_steps, checkpoint=str(path),
                                 elapsed_seconds=self.elapsed()))

    def _drift(self) -> tuple[float | None, float | None]:
        """How far the trainable parameters moved since the run started: absolute and relative L2."""
        if not self._start_weights:  # too many to copy, or nothing trainable
            return None, None
        with torch.no_grad():  # one device sync per log, not one per tensor
            moved = float(torch.stack([(p.detach() - s).float().pow(2).sum()
                                       for p, s in zip(_trainable(self.model), self._start_weights)]).sum())
        return math.sqrt(moved), (math.sqrt(moved) / self._start_norm if self._start_norm > 0 else None)

    def _tokens_per_second(self, logs: Mapping[str, Any], state: Any) -> float | None:
        seen = logs.get("num_tokens", getattr(state, "num_input_tokens_seen", 0)) or 0
        now = time.perf_counter()
        tokens, then = self._last_tokens
        self._last_tokens = (seen, now)
        rate = (seen - tokens) / (now - then) if now > then and seen > tokens else None
        return rate if rate is None or math.isfinite(rate) else None


def _trainable(model: Any) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def _memory_bytes() -> int:
    """GPU memory in use on CUDA, else the process's resident memory."""
    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    import psutil

    return int(psutil.Process().memory_info().rss)
