"""Training: TRL SFTTrainer for generation, transformers Trainer for token/sequence classification.

`train()` wires in the defaults that make parameter-efficient runs work (learning rates per method,
no gradient checkpointing for prefix tuning, completion-only loss, fp32 on CPU), streams progress to
any listener (the dashboard is one), stops cleanly on request, and never leaves a checkpoint that
could be mistaken for a complete one.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, set_seed

from . import atomic
from .errors import ConfigError, DataError, TrainingError

RUN_MANIFEST = "pbft_run.json"
CHECKPOINT_MARKER = "pbft_checkpoint_complete.json"
# Every trainable tensor by name. PEFT's checkpoint holds only the prompt *output* for P-tuning and
# only the prompt for the prompt+LoRA hybrid, so resuming from it alone would silently drift.
TRAINABLE_STATE = "pbft_trainable.safetensors"
SMOKE_ENV = "PBFT_SMOKE"
# Methods that add no positions of their own, so a batch can be one unpadded sequence of its rows
# (padding was a quarter of the tokens of a batch on the clause benchmark). Soft prompts and prefixes
# are prepended per row, so those methods keep padded batches.
PADDING_FREE_METHODS = ("lora", "qlora")
_SMOKE_LIMITS = {"max_steps": 4, "train_rows": 32, "eval_rows": 8}


def smoke_mode(smoke: bool | None = None) -> bool:
    """Smoke mode shrinks steps and data so notebooks and CI finish in seconds; env PBFT_SMOKE=1."""
    return os.environ.get(SMOKE_ENV) == "1" if smoke is None else smoke


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Listener = Callable[[TrainEvent], None]


class TrainingControl:
    """Ask a running `train()` to stop at the end of the current step (thread-safe, e.g. a button)."""

    def __init__(self) -> None:
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()


@dataclass
class TrainResult:
    model: Any
    history: list[TrainEvent]
    output_dir: Path
    adapter_path: Path | None
    last_checkpoint: Path | None
    stopped_by_user: bool
    final_loss: float | None
    world_size: int = 1  # processes that trained together (DDP through accelerate/torchrun)

    def losses(self) -> list[tuple[int, float]]:
        return [(e.step, e.loss) for e in self.history if e.kind == "log" and e.loss is not None]


def train(
    setup: Any,
    train_rows: Sequence[Mapping[str, Any]],
    *,
    tokenizer: Any,
    template: Any = None,
    eval_rows: Sequence[Mapping[str, Any]] | None = None,
    output_dir: str | os.PathLike = "outputs/run",
    max_steps: int = 200,
    batch_size: int = 8,
    learning_rate: float | None = None,
    prompt_learning_rate: float | None = None,
    eval_every: int | None = None,
    save_every: int | None = None,
    early_stopping_patience: int | None = None,
    metric_fn: Callable[[Any], Mapping[str, float]] | None = None,
    metric_name: str | None = None,
    greater_is_better: bool = True,
    listeners: Iterable[Listener] = (),
    control: TrainingControl | None = None,
    seed: int = 0,
    smoke: bool | None = None,
    resume: bool = False,
    overwrite: bool = False,
    max_length: int | None = None,
    save_final_adapter: bool = True,
    trainer_overrides: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train the trainable part of `setup` (a PeftSetup from `apply_method`) on `train_rows`.

    Generative tasks (setup.task == "causal-lm") need a PromptTemplate: rows are rendered to
    prompt/completion pairs and only the completion is scored. Classification tasks take rows
    {"tokens": [...], "tags": [...]} (token classification) or {"text": ..., "label": ...}.
    `metric_fn(model) -> {"name": value}` adds a task metric at each evaluation (for generation,
    e.g. chrF on a dev subset); classification gets its metric automatically. Early stopping
    watches `metric_name` (default: the first task metric, else eval loss).
    """
    smoke = smoke_mode(smoke)
    model, task, method, defaults = _unpack_setup(setup)
    train_rows = list(train_rows)
    eval_rows = list(eval_rows) if eval_rows is not None else None
    if smoke:
        max_steps = min(max_steps, _SMOKE_LIMITS["max_steps"])
        train_rows = train_rows[: _SMOKE_LIMITS["train_rows"]]
        eval_rows = eval_rows[: _SMOKE_LIMITS["eval_rows"]] if eval_rows else eval_rows
    _check_sizes(train_rows, eval_rows, batch_size, max_steps)
    out = Path(output_dir)
    if _is_main_process():  # under accelerate/torchrun every rank runs this; one claims the directory
        _claim_output_dir(out, method=method, task=task, model=model, resume=resume, overwrite=overwrite)
    set_seed(seed)

    eval_every = eval_every or max(1, max_steps // 4)
    save_every = save_every or eval_every
    watch = _watched_metric(task, metric_fn, metric_name, eval_rows)
    learning_rate = learning_rate if learning_rate is not None else defaults.get("learning_rate", 1e-3)
    args = dict(
        output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        learning_rate=learning_rate, weight_decay=defaults.get("weight_decay", 0.0), lr_scheduler_type="linear", warmup_steps=max(0, min(10, max_steps // 10)),
        logging_steps=1, save_strategy="steps", save_steps=save_every, save_total_limit=2,
        eval_strategy="steps" if eval_rows else "no", eval_steps=eval_every if eval_rows else None,
        report_to="none", seed=seed, data_seed=seed, disable_tqdm=True,
        activation_checkpointing=bool(defaults.get("gradient_checkpointing", False)),
        dataloader_num_workers=0, **_precision_args(model),
    )
    if eval_rows and watch:
        args.update(metric_for_best_model=watch, greater_is_better=greater_is_better if watch != "eval_loss"
                    else False, load_best_model_at_end=early_stopping_patience is not None)
    args.update(trainer_overrides or {})
    # The Trainer's rotation deletes an old checkpoint file by file, so a kill in the middle left a
    # checkpoint whose marker lists files that are gone; ours renames it away first (_StreamCallback).
    keep_checkpoints, args["save_total_limit"] = args.get("save_total_limit"), None
    if method == "prefix-tuning" and (args.get("activation_checkpointing") or args.get("gradient_checkpointing")):
        raise ConfigError("prefix-tuning cannot train with gradient checkpointing (peft #869); drop "
                          "gradient_checkpointing/activation_checkpointing from trainer_overrides")

    optimizer = _hybrid_optimizer(model, method, learning_rate, prompt_learning_rate, defaults)
    checkpoint = latest_complete_checkpoint(out, verify=True) if resume else None
    if resume and _is_main_process():
        _remove_incomplete_checkpoints(out)
    control = control or TrainingControl()
    stream = _StreamCallback(list(listeners), control, metric_fn, model, resume_from=checkpoint,
                             keep_checkpoints=keep_checkpoints)
    callbacks: list[TrainerCallback] = [stream]
    if early_stopping_patience is not None:
        if metric_fn is not None and metric_name is None:
            raise ConfigError("early stopping on metric_fn's scores needs metric_name='<one of its keys>' "
                              "(or drop metric_fn to stop on the eval loss).")
        if not eval_rows:
            raise ConfigError("early_stopping_patience needs eval_rows to evaluate on; pass eval_rows=... "
                              "or drop early_stopping_patience.")
        from transformers import EarlyStoppingCallback

        callbacks.append(EarlyStoppingCallback(early_stopping_patience=early_stopping_patience))

    if task == "causal-lm":
        trainer = _sft_trainer(model, tokenizer, template, train_rows, eval_rows, args, callbacks, max_length,
                               optimizer, padding_free=method in PADDING_FREE_METHODS and _keeps_rows_apart(model))
    else:
        trainer = _classification_trainer(model, tokenizer, task, train_rows, eval_rows, args, callbacks,
                                          max_length, optimizer)
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # events go to listeners; no raw dicts printed per step
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    adapter_path = None
    if save_final_adapter and trainer.is_world_process_zero():
        from .adapters import save_adapter

        adapter_path = save_adapter(setup, out / "adapter", overwrite=True)
    final_loss = next((e.loss for e in reversed(stream.history) if e.loss is not None), None)
    stream.emit(TrainEvent("end", trainer.state.global_step, max_steps, loss=final_loss,
                           elapsed_seconds=stream.elapsed()))
    return TrainResult(model=trainer.model, history=stream.history, output_dir=out, adapter_path=adapter_path,
                       last_checkpoint=latest_complete_checkpoint(out),
                       stopped_by_user=control.stop_requested, final_loss=final_loss,
                       world_size=trainer.accelerator.num_processes)


def _hybrid_optimizer(model: Any, method: str, lora_lr: float, prompt_lr: float | None,
                      defaults: Mapping[str, Any]) -> torch.optim.Optimizer | None:
    """The prompt+LoRA hybrid needs two learning rates: ~3e-2 for the prompt, ~5e-4 for LoRA."""
    if method != "prompt+lora":
        if prompt_lr is not None:
            raise ConfigError("prompt_learning_rate applies to the prompt+lora hybrid only; use learning_rate.")
        return None
    from .hybrid import param_groups

    groups = param_groups(model, prompt_lr=prompt_lr or defaults.get("prompt_learning_rate", 3e-2),
                          lora_lr=lora_lr, weight_decay=defaults.get("weight_decay", 0.0))
    return torch.optim.AdamW(groups)


def latest_complete_checkpoint(output_dir: str | os.PathLike, *, verify: bool = False) -> Path | None:
    """The newest checkpoint whose completion marker was written and whose files match it.

    Incomplete ones (a run killed while writing, or while deleting an old checkpoint) are ignored;
    ``verify=True`` also checks every file's SHA-256, as resuming does.
    """
    complete = [path for path in _checkpoints_by_step(Path(output_dir)) if checkpoint_is_complete(path, verify=verify)]
    return complete[-1] if complete else None


def _checkpoints_by_step(out: Path) -> list[Path]:
    """The ``checkpoint-<step>`` folders in ``out``, oldest step first."""
    numbered = [path for path in out.glob("checkpoint-*")
                if path.is_dir() and path.name.removeprefix("checkpoint-").isdigit()]
    return sorted(numbered, key=lambda path: int(path.name.removeprefix("checkpoint-")))


def checkpoint_is_complete(path: str | os.PathLike, *, verify: bool = True) -> bool:
    """True when ``path`` has its completion marker and every file it lists (sizes; hashes if ``verify``)."""
    path = Path(path)
    try:
        marker = json.loads((path / CHECKPOINT_MARKER).read_text())
    except (OSError, ValueError):
        return False
    files = marker.get("files", {}) if isinstance(marker, dict) else None  # no table: an older marker
    if not isinstance(files, dict):
        return False
    for name, expected in files.items():
        file = path / name
        if not file.is_file() or file.stat().st_size != expected["bytes"]:
            return False
        if verify and atomic.sha256_of(file) != expected["sha256"]:
            return False
    return True


def _remove_incomplete_checkpoints(out: Path) -> None:
    """Delete checkpoints a killed run left half-written, and old ones it was deleting when killed."""
    for path in _checkpoints_by_step(out):
        if not checkpoint_is_complete(path):
            atomic.remove_tree(path)
    atomic.remove_dead_trash(out)


def _rotate_checkpoints(out: Path, keep: int | None, best: str | None) -> None:
    """Delete the oldest checkpoints until ``keep`` remain, sparing the newest and the best one.

    Called once the newest checkpoint is sealed; each deletion renames first, so a kill never
    leaves a marked checkpoint with missing files.
    """
    if not keep or keep <= 0:
        return
    checkpoints = _checkpoints_by_step(out)
    spared = {checkpoints[-1].resolve()} | ({Path(best).resolve()} if best else set())
    surplus = len(checkpoints) - max(keep, len(spared))
    for path in checkpoints:
        if surplus <= 0:
            break
        if path.resolve() not in spared:
            atomic.remove_tree(path)
            surplus -= 1


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _unpack_setup(setup: Any) -> tuple[Any, str, str, dict[str, Any]]:
    if hasattr(setup, "model") and hasattr(setup, "method"):
        return setup.model, setup.task, setup.method, dict(getattr(setup, "training_defaults", {}) or {})
    raise ConfigError("train() takes the PeftSetup returned by apply_method(model, method, ...); "
                      "wrap your model with apply_method first.")


def _check_sizes(train_rows: list, eval_rows: list | None, batch_size: int, max_steps: int) -> None:
    if not train_rows:
        raise DataError("the training set is empty; pass at least one row (check the loader's split name).")
    if eval_rows is not None and not eval_rows:
        raise DataError("eval_rows is empty; pass None to skip evaluation or give at least one row.")
    if batch_size < 1 or max_steps < 1:
        raise ConfigError(f"batch_size and max_steps must be >= 1 (got {batch_size}, {max_steps}).")
    if len(train_rows) < batch_size:
        raise DataError(f"the training set has {len(train_rows)} rows but batch_size={batch_size}; "
                        f"lower batch_size to at most {len(train_rows)} or add data.")


def _precision_args(model: Any) -> dict[str, Any]:
    """fp32 on CPU (mixed precision on CPU is slower and less stable); bf16/fp16 on CUDA as loaded."""
    param = next(model.parameters())
    if param.device.type != "cuda":
        return {"use_cpu": True, "bf16": False, "fp16": False}
    dtype = getattr(model, "dtype", param.dtype)
    return {"bf16": dtype == torch.bfloat16, "fp16": dtype == torch.float16}


def _watched_metric(task: str, metric_fn: Any, metric_name: str | None, eval_rows: Any) -> str | None:
    if not eval_rows:
        return None
    if metric_name:
        return metric_name if metric_name.startswith("eval_") else f"eval_{metric_name}"
    if task == "token-classification":
        return "eval_f1"
    if task == "sequence-classification":
        return "eval_macro_f1"
    return None if metric_fn else "eval_loss"


def _base_fingerprint(model: Any) -> dict[str, Any]:
    config = getattr(model, "config", None)
    return {"model_type": getattr(config, "model_type", None), "vocab_size": getattr(config, "vocab_size", None),
            "hidden_size": getattr(config, "hidden_size", None)}


def _claim_output_dir(out: Path, *, method: str, task: str, model: Any, resume: bool, overwrite: bool) -> None:
    """Refuse to mix runs: an existing directory must be ours, for the same method and base model."""
    manifest = {"method": method, "task": task, "base": _base_fingerprint(model)}
    marker = out / RUN_MANIFEST
    # a run killed while claiming the directory may leave only the manifest's temp file: still ours
    if out.exists() and any(not p.name.startswith(f".{RUN_MANIFEST}.tmp-") for p in out.iterdir()):
        if not marker.is_file():
            raise TrainingError(f"{out} exists and was not written by pbft_widgets.train; choose a new "
                                "output_dir (nothing there is touched).")
        try:
            previous = json.loads(marker.read_text())
        except ValueError:
            previous = None  # a damaged manifest: treated as another run's
        if overwrite:
            atomic.remove_tree(out)
        elif previous != manifest:
            raise TrainingError(f"{out} holds a run of a different method or base model ({previous}); "
                                "use another output_dir, or overwrite=True to discard it.")
        elif not resume and latest_complete_checkpoint(out) is not None:
            raise TrainingError(f"{out} already holds checkpoints of this run; pass resume=True to continue "
                                "from the last complete one, or overwrite=True to start over.")
    out.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(marker, manifest)


def _write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)


def _token_limit(model: Any, tokenizer: Any, asked: int | None) -> int | None:
    """Tokens a training row may have: what was asked, within the tokenizer's and the model's limits.

    The model's limit is its max_position_embeddings minus virtual tokens: longer rows would index
    past learned position embeddings (a crash) once a soft prompt is prepended.
    """
    from .evaluation import context_limit

    tokenizer_max = getattr(tokenizer, "model_max_length", None)
    tokenizer_max = tokenizer_max if isinstance(tokenizer_max, int) and tokenizer_max <= 1_000_000 else None
    limits = [n for n in (asked, tokenizer_max, context_limit(model)) if isinstance(n, int) and n > 0]
    return min(limits) if limits else None


def _keeps_rows_apart(model: Any) -> bool:
    """True when rows concatenated into one sequence stay apart (attention split by position_ids).

    transformers builds a block-diagonal mask from position_ids for most architectures; one that does
    not would let rows attend to each other, so it is checked on a tiny input rather than assumed.
    """
    device = next(model.parameters()).device
    ids = torch.tensor([[11, 12, 13, 14, 15, 16]], device=device)
    positions = torch.tensor([[0, 1, 2, 0, 1, 2]], device=device)
    was_training = model.training
    model.eval()  # LoRA dropout would make the two forwards differ
    try:
        with torch.no_grad():
            # no cache, as in training (TRL passes use_cache=False): a cache turns the position_ids split off
            packed = model(input_ids=ids, position_ids=positions, use_cache=False).logits[0, 3:].float()
            alone = model(input_ids=ids[:, 3:], position_ids=positions[:, 3:], use_cache=False).logits[0].float()
    except (TypeError, ValueError, RuntimeError):  # a model that takes no position_ids: keep padding
        return False
    finally:
        model.train(was_training)
    return bool((packed - alone).abs().max() <= 1e-2 * alone.abs().max().clamp_min(1e-6))


def _sft_trainer(model, tokenizer, template, train_rows, eval_rows, args, callbacks, max_length, optimizer,
                 padding_free=False):
    import datasets
    from trl import SFTConfig, SFTTrainer

    if template is None:
        raise ConfigError("generative training needs template=PromptTemplate(...) to turn rows into "
                          "prompt/completion pairs.")
    limit = _token_limit(model, tokenizer, max_length or template.max_length)
    if limit is not None and limit != template.max_length:
        template = template.with_changes(max_length=limit)  # the template cuts inputs, and says how much
    train_ds = template.to_dataset(train_rows, tokenizer)
    eval_ds = template.to_dataset(eval_rows, tokenizer) if eval_rows else None
    config = SFTConfig(
        **args,
        completion_only_loss=True,  # score the answer only; the prompt is given, not learned
        # padding-free rows are not cut by TRL (it refuses max_length there): the template already cut them
        max_length=None if padding_free else limit,
        packing=False,  # virtual tokens are prepended per sequence: packing would share one prompt
        padding_free=padding_free,
        dataset_num_proc=None,
    )
    bars_were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # TRL maps the data in several passes; bars would flood notebooks
    try:
        return SFTTrainer(model=model, args=config, train_dataset=train_ds, eval_dataset=eval_ds,
                          processing_class=tokenizer, callbacks=callbacks, optimizers=(optimizer, None))
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()


def _classification_trainer(model, tokenizer, task, train_rows, eval_rows, args, callbacks, max_length,
                            optimizer):
    from transformers import (DataCollatorForTokenClassification, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    from .classification_data import encode_sequence_rows, encode_token_rows, metrics_for

    label2id = {str(k): int(v) for k, v in model.config.label2id.items()}
    max_length = _token_limit(model, tokenizer, max_length or min(tokenizer.model_max_length, 512))
    encode = encode_token_rows if task == "token-classification" else encode_sequence_rows
    train_ds = encode(train_rows, tokenizer, label2id, max_length=max_length, split="train")
    eval_ds = encode(eval_rows, tokenizer, label2id, max_length=max_length, split="eval") if eval_rows else None
    collator = (DataCollatorForTokenClassification(tokenizer) if task == "token-classification"
                else DataCollatorWithPadding(tokenizer))
    return Trainer(model=model, args=TrainingArguments(**args, include_num_input_tokens_seen="non_padding"),
                   train_dataset=train_ds, eval_dataset=eval_ds, data_collator=collator,
                   compute_metrics=metrics_for(task, model.config.id2label), callbacks=callbacks,
                   optimizers=(optimizer, None))


class _StreamCallback(TrainerCallback):
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

    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def emit(self, event: TrainEvent) -> None:
        self.history.append(event)
        for listener in self.listeners:
            listener(event)

    def on_train_begin(self, args, state, control, **kwargs):
        if self.resume_from is not None:  # after the Trainer's own restore, which misses some weights
            _load_trainable_state(self.model, self.resume_from / TRAINABLE_STATE)

    def _honour_stop(self, control) -> None:
        if self.control.stop_requested and not control.should_training_stop:
            control.should_training_stop = True
            control.should_save = True  # keep the last good state as a complete checkpoint

    def on_step_end(self, args, state, control, **kwargs):
        self._honour_stop(control)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            self.emit(TrainEvent("log", state.global_step, state.max_steps, loss=float(logs["loss"]),
                                 learning_rate=logs.get("learning_rate"),
                                 tokens_per_second=self._tokens_per_second(logs, state),
                                 memory_bytes=_memory_bytes(), elapsed_seconds=self.elapsed()))
        self._honour_stop(control)  # a listener may have asked to stop; save before the step ends

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
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
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and path.is_dir():
            _save_trainable_state(self.model, path / TRAINABLE_STATE)
            files = atomic.file_table(path, (file for file in sorted(path.rglob("*"))
                                             if file.is_file() and file.name != CHECKPOINT_MARKER))
            _write_json_atomic(path / CHECKPOINT_MARKER, {"step": state.global_step, "time": time.time(),
                                                          "files": files})
            _rotate_checkpoints(path.parent, self.keep_checkpoints, state.best_model_checkpoint)
            self.emit(TrainEvent("checkpoint", state.global_step, state.max_steps, checkpoint=str(path),
                                 elapsed_seconds=self.elapsed()))

    def _tokens_per_second(self, logs: Mapping[str, Any], state: Any) -> float | None:
        seen = logs.get("num_tokens", getattr(state, "num_input_tokens_seen", 0)) or 0
        now = time.perf_counter()
        tokens, then = self._last_tokens
        self._last_tokens = (seen, now)
        rate = (seen - tokens) / (now - then) if now > then and seen > tokens else None
        return rate if rate is None or math.isfinite(rate) else None


def _save_trainable_state(model: Any, path: Path) -> None:
    from safetensors.torch import save_file

    state = {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(state, str(tmp))
    os.replace(tmp, path)


def _load_trainable_state(model: Any, path: Path) -> None:
    from safetensors.torch import load_file

    if not path.is_file():
        raise TrainingError(f"{path.parent} has no {path.name}; it was not written by this version of "
                            "train(): resume from a newer checkpoint or start with overwrite=True.")
    state = load_file(str(path))
    params = dict(model.named_parameters())
    missing = sorted(set(state) - set(params))
    if missing:
        raise TrainingError(f"checkpoint {path.parent} holds weights this model lacks ({missing[:3]}...); "
                            "it belongs to another method or model: use another output_dir.")
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))


def _memory_bytes() -> int:
    """GPU memory in use on CUDA, else the process's resident memory."""
    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    import psutil

    return int(psutil.Process().memory_info().rss)
