"""Training: TRL SFTTrainer for generation, transformers Trainer for token/sequence classification.

`train()` wires in the defaults that make parameter-efficient runs work (learning rates per method,
no gradient checkpointing for prefix tuning, completion-only loss, fp32 on CPU), streams progress to
any listener (the dashboard is one), stops cleanly on request, and never leaves a checkpoint that
could be mistaken for a complete one.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, set_seed

from . import checkpoints
from .adapters import save_adapter
from .errors import ConfigError, DataError
from .events import Listener, StreamCallback, TrainEvent, TrainingControl
from .four_bit import trainable_4bit
from .methods import PeftSetup, TrainingRecord
from .model_facts import architecture, keeps_rows_apart, token_limit
from .packed_attention import rows_apart
from .progress import TrainingBar
from .registry import MethodSpec, spec_of

SMOKE_ENV = "PBFT_SMOKE"
_SMOKE_LIMITS = {"max_steps": 4, "train_rows": 32, "eval_rows": 8}


def smoke_mode(smoke: bool | None = None) -> bool:
    """Smoke mode shrinks steps and data so notebooks and CI finish in seconds; env PBFT_SMOKE=1."""
    return os.environ.get(SMOKE_ENV) == "1" if smoke is None else smoke


@dataclass
class TrainResult:
    """What a run left: the trained model, every event, where the adapter and last checkpoint are."""

    model: Any
    history: list[TrainEvent]
    output_dir: Path
    adapter_path: Path | None
    last_checkpoint: Path | None
    stopped_by_user: bool
    final_loss: float | None
    world_size: int = 1  # processes that trained together (DDP through accelerate/torchrun)

    def losses(self) -> list[tuple[int, float]]:
        """(step, training loss) for every logged step."""
        return [(e.step, e.loss) for e in self.history if e.kind == "log" and e.loss is not None]


def train(
    setup: PeftSetup,
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
    completion_logits_only: bool = True,
    progress: bool | None = None,
) -> TrainResult:
    """Train the trainable part of `setup` on `train_rows`, with the defaults that make PBFT work.

    Generative tasks run TRL's SFTTrainer with completion-only loss (the prompt is given, not
    learned); classification runs the transformers Trainer. The method's learning rate, padding and
    checkpointing defaults are applied, progress goes to `listeners`, `control.stop()` ends the run
    at the current step, and every checkpoint is sealed so a killed run resumes exactly.

    Args:
        setup (`PeftSetup`):
            From `apply_method` (or `load_adapter(..., is_trainable=True)`).
        train_rows (sequence of mappings):
            Generation: rows the template renders. Token classification: `{"tokens": [...], "tags": [...]}`.
            Sequence classification: `{"text": ..., "label": ...}`.
        tokenizer:
            The model's tokenizer.
        template (`PromptTemplate`, *optional*):
            Required for generative tasks: turns rows into prompt/completion pairs.
        eval_rows (sequence of mappings, *optional*):
            Evaluated every `eval_every` steps (eval loss, plus the task metric for classification).
        output_dir (`str` or `os.PathLike`, defaults to `"outputs/run"`):
            Claimed for this run (method and base are recorded); refused if it holds something else.
        max_steps (`int`, defaults to 200):
            Optimizer steps. Smoke mode (`smoke=True` or `PBFT_SMOKE=1`) caps them at a few, and the rows too.
        batch_size (`int`, defaults to 8):
            Rows per step (per process under DDP).
        learning_rate (`float`, *optional*):
            Default: the method's (`setup.training_defaults["learning_rate"]`).
        prompt_learning_rate (`float`, *optional*):
            The soft prompt's rate for `prompt+lora` (default 3e-2; `learning_rate` is LoRA's).
        eval_every, save_every (`int`, *optional*):
            Default: a quarter of `max_steps`; checkpoints follow evaluations.
        early_stopping_patience (`int`, *optional*):
            Stop after this many evaluations without improvement of `metric_name`.
        metric_fn (callable, *optional*):
            `metric_fn(model) -> {"name": value}`, a task metric at each evaluation (e.g. chrF on a dev subset).
        metric_name (`str`, *optional*):
            What early stopping and best-checkpoint selection watch (default: the task metric, else eval loss).
        greater_is_better (`bool`, defaults to `True`):
            Direction of `metric_name` (the eval loss is always lower-is-better).
        listeners (iterable of callables):
            Each receives every `TrainEvent` (log, eval, checkpoint, end); the dashboard is one.
        control (`TrainingControl`, *optional*):
            `control.stop()` from another thread ends the run after the current step, checkpoint saved.
        seed (`int`, defaults to 0):
            Seeds data order and any random initialisation done during training.
        smoke (`bool`, *optional*):
            Default: `PBFT_SMOKE=1` in the environment.
        resume (`bool`, defaults to `False`):
            Continue from the last complete checkpoint in `output_dir`.
        overwrite (`bool`, defaults to `False`):
            Discard what `output_dir` holds (only a run of this package) and start over.
        max_length (`int`, *optional*):
            Tokens per row (default: the template's, within the model's context minus virtual tokens).
        save_final_adapter (`bool`, defaults to `True`):
            Save the trained adapter to `output_dir/adapter`.
        trainer_overrides (mapping, *optional*):
            Extra `TrainingArguments`/`SFTConfig` fields, applied last.
        completion_logits_only (`bool`, defaults to `True`):
            Generative tasks: run the output layer and the loss at completion positions only (the same
            loss, without a vocabulary-wide softmax at every prompt position). `False` leaves the loss to
            TRL, which scores every position on CPUs.
        progress (`bool`, *optional*):
            A bar over the steps with the latest loss and an ETA (a widget in Jupyter, text elsewhere).
            Default: shown, except under `CI`, with `PBFT_PROGRESS=0`, or when a listener shows progress
            itself (the dashboard).

    Returns:
        `TrainResult`: `.model` (in eval mode), `.history` (every event), `.losses()`, `.final_loss`, `.adapter_path`,
        `.last_checkpoint`, `.stopped_by_user`, `.world_size`. The run's settings, template and rows are
        also kept on `setup.trained`, so `save_adapter(setup, ...)` writes them on the model card.

    Example:

    ```py
    >>> from pbft_widgets import PromptTemplate, Verbalizer, apply_method, load_model, train
    >>> lm = load_model()
    >>> template = PromptTemplate(input_template="Review: {text}", output_indicator="Sentiment:", style="cloze",
    ...                           verbalizer=Verbalizer({"pos": "positive", "neg": "negative"}))
    >>> rows = [{"text": "a wonderful, moving film", "label": "pos"}, {"text": "dull and far too long", "label": "neg"}]
    >>> setup = apply_method(lm.model, "lora", tokenizer=lm.tokenizer)
    >>> result = train(setup, rows * 4, tokenizer=lm.tokenizer, template=template, output_dir="runs/reviews",
    ...                max_steps=2, batch_size=4)
    >>> [step for step, loss in result.losses()]
    [1, 2]
    >>> result.adapter_path.name
    'adapter'

    ```
    """
    smoke = smoke_mode(smoke)
    model, task, spec, defaults = _unpack_setup(setup)
    train_rows = list(train_rows)
    eval_rows = list(eval_rows) if eval_rows is not None else None
    if smoke:
        max_steps = min(max_steps, _SMOKE_LIMITS["max_steps"])
        train_rows = train_rows[: _SMOKE_LIMITS["train_rows"]]
        eval_rows = eval_rows[: _SMOKE_LIMITS["eval_rows"]] if eval_rows else eval_rows
    _check_sizes(train_rows, eval_rows, batch_size, max_steps)
    out = Path(output_dir)
    if _is_main_process():  # under accelerate/torchrun every rank runs this; one claims the directory
        checkpoints.claim_output_dir(out, {"method": spec.name, "task": task, "base": architecture(model)},
                                     resume=resume, overwrite=overwrite)
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
    # checkpoint whose marker lists files that are gone; ours renames it away first (StreamCallback).
    keep_checkpoints, args["save_total_limit"] = args.get("save_total_limit"), None
    if not spec.allows_gradient_checkpointing and (args.get("activation_checkpointing")
                                                   or args.get("gradient_checkpointing")):
        raise ConfigError(f"{spec.name} cannot train with gradient checkpointing (peft #869); drop "
                          "gradient_checkpointing/activation_checkpointing from trainer_overrides")

    optimizer = _two_rate_optimizer(model, spec, learning_rate, prompt_learning_rate, defaults)
    checkpoint = checkpoints.latest_complete_checkpoint(out, verify=True) if resume else None
    if resume and _is_main_process():
        checkpoints.remove_incomplete_checkpoints(out)
    control = control or TrainingControl()
    stream = StreamCallback(list(listeners), control, metric_fn, model, resume_from=checkpoint,
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
                               optimizer, padding_free=trains_padding_free(setup),
                               completion_logits_only=completion_logits_only)
    else:
        trainer = _classification_trainer(model, tokenizer, task, train_rows, eval_rows, args, callbacks,
                                          max_length, optimizer)
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # events go to listeners; no raw dicts printed per step
    shows_progress = any(getattr(getattr(listener, "__self__", listener), "shows_progress", False)
                         for listener in stream.listeners)
    steps_bar = TrainingBar(max_steps, progress=False if progress is None and shows_progress else progress)
    stream.listeners.append(steps_bar)
    try:
        # padding-free batches attend row by row; 4-bit layers keep the layout their backward pass needs
        with rows_apart(model), trainable_4bit(model):
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    finally:
        steps_bar.close()
    # The Trainer leaves the model in training mode: dropout on and, where QLoRA turned gradient
    # checkpointing on, generate() without its KV cache (Gemma-3 then wrote "a a a a ..."). What
    # follows a run (evaluation, generation, saving) expects eval mode; another train() switches back.
    model.eval()

    adapter_path = None
    final_loss = next((e.loss for e in reversed(stream.history) if e.loss is not None), None)
    settings = {"max_steps": max_steps, "steps_done": trainer.state.global_step, "batch_size": batch_size,
                "learning_rate": learning_rate, "seed": seed, "final_training_loss": final_loss}
    setup.trained = TrainingRecord(settings=settings, template=template, tokenizer=tokenizer,
                                   rows=train_rows)  # for model cards
    if save_final_adapter and trainer.is_world_process_zero():
        adapter_path = save_adapter(setup, out / "adapter", overwrite=True, tokenizer=tokenizer)
    stream.emit(TrainEvent("end", trainer.state.global_step, max_steps, loss=final_loss,
                           elapsed_seconds=stream.elapsed()))
    return TrainResult(model=trainer.model, history=stream.history, output_dir=out, adapter_path=adapter_path,
                       last_checkpoint=checkpoints.latest_complete_checkpoint(out),
                       stopped_by_user=control.stop_requested, final_loss=final_loss,
                       world_size=trainer.accelerator.num_processes)


def trains_padding_free(setup: PeftSetup) -> bool:
    """Whether ``train()`` batches this setup's rows as one unpadded sequence per batch.

    Only for methods that add no positions of their own (padding was a quarter of the tokens of a
    batch on the clause benchmark) and models whose attention keeps packed rows apart; soft prompts
    and prefixes are prepended per row, so those methods keep padded batches.
    """
    return spec_of(setup.method).trains_padding_free and keeps_rows_apart(setup.model)


def _two_rate_optimizer(model: Any, spec: MethodSpec, lora_lr: float, prompt_lr: float | None,
                        defaults: Mapping[str, Any]) -> torch.optim.Optimizer | None:
    """A prompt with a LoRA part needs two learning rates: ~3e-2 for the prompt, ~5e-4 for LoRA."""
    if not spec.combines_prompt_and_lora:
        if prompt_lr is not None:
            raise ConfigError("prompt_learning_rate applies to the prompt+lora hybrid only; use learning_rate.")
        return None
    from .hybrid import param_groups

    groups = param_groups(model, prompt_lr=prompt_lr or defaults.get("prompt_learning_rate", 3e-2),
                          lora_lr=lora_lr, weight_decay=defaults.get("weight_decay", 0.0))
    return torch.optim.AdamW(groups)


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _unpack_setup(setup: Any) -> tuple[Any, str, MethodSpec, dict[str, Any]]:
    if isinstance(setup, PeftSetup):
        return setup.model, setup.task, spec_of(setup.method), dict(setup.training_defaults or {})
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


def _sft_trainer(model, tokenizer, template, train_rows, eval_rows, args, callbacks, max_length, optimizer,
                 padding_free=False, completion_logits_only=True):
    import datasets
    from trl import SFTConfig, SFTTrainer

    if template is None:
        raise ConfigError("generative training needs template=PromptTemplate(...) to turn rows into "
                          "prompt/completion pairs.")
    limit = token_limit(model, tokenizer, max_length or template.max_length)
    if limit is not None and limit != template.max_length:
        template = template.with_changes(max_length=limit)  # the template cuts inputs, and says how much
    train_ds = template.to_dataset(train_rows, tokenizer)
    eval_ds = template.to_dataset(eval_rows, tokenizer) if eval_rows else None
    config = SFTConfig(**{
        **dict(
            completion_only_loss=True,  # score the answer only; the prompt is given, not learned
            # padding-free rows are not cut by TRL (it refuses max_length there): the template already cut them
            max_length=None if padding_free else limit,
            packing=False,  # virtual tokens are prepended per sequence: packing would share one prompt
            padding_free=padding_free,
            dataset_num_proc=None,
        ),
        **args,  # trainer_overrides may turn a default off (e.g. padding_free=False)
    })
    trainer_class = completion_logits_trainer() if completion_logits_only else SFTTrainer
    bars_were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # TRL maps the data in several passes; bars would flood notebooks
    try:
        return trainer_class(model=model, args=config, train_dataset=train_ds, eval_dataset=eval_ds,
                             processing_class=tokenizer, callbacks=callbacks, optimizers=(optimizer, None))
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()


@functools.cache
def completion_logits_trainer() -> type:
    """TRL's SFTTrainer with the loss of `completion_loss` (output layer at completion positions only).

    Anything this loss does not cover (a custom `compute_loss_func`, label smoothing, another
    `loss_type`, MoE auxiliary losses, requests for the full outputs) goes to TRL's own path.
    """
    from trl import SFTTrainer

    from .completion_loss import completion_only_loss

    class CompletionLogitsSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            plain_nll = (self.compute_loss_func is None and self.label_smoother is None
                         and self.args.loss_type == "nll" and not self.aux_loss_enabled)
            if return_outputs or not plain_nll:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            batch = {k: v for k, v in inputs.items() if k != "labels"}
            output_layer = self.accelerator.unwrap_model(model).get_output_embeddings()
            result = completion_only_loss(model, output_layer, batch, inputs["labels"], num_items_in_batch)
            self._log_scored(inputs, result)
            loss = result.loss
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # as TRL: DDP averages the gradients
            return loss

        def _log_scored(self, inputs, result) -> None:
            """The metrics TRL logs beside its loss: entropy, token accuracy, tokens trained on."""
            mode = "train" if self.model.training else "eval"
            device = result.loss.device
            counts = torch.tensor([[result.scored_tokens, result.correct_tokens, result.entropy_sum]], device=device)
            scored, correct, entropy = self.accelerator.gather_for_metrics(counts).sum(0).tolist()
            self._metrics[mode]["entropy"].append(entropy / scored if scored else 0.0)
            self._metrics[mode]["mean_token_accuracy"].append(correct / scored if scored else 0.0)
            if mode == "train":
                mask = inputs.get("attention_mask")
                tokens = mask.sum() if mask is not None else torch.tensor(inputs["position_ids"].size(1))
                self._total_train_tokens += int(self.accelerator.gather_for_metrics(tokens.to(device)).sum())
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]

    return CompletionLogitsSFTTrainer


def _classification_trainer(model, tokenizer, task, train_rows, eval_rows, args, callbacks, max_length,
                            optimizer):
    from transformers import (DataCollatorForTokenClassification, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    from .data.classification import encode_sequence_rows, encode_token_rows, metrics_for

    label2id = {str(k): int(v) for k, v in model.config.label2id.items()}
    max_length = token_limit(model, tokenizer, max_length or 512)  # within the tokenizer's and model's limits
    encode = encode_token_rows if task == "token-classification" else encode_sequence_rows
    train_ds = encode(train_rows, tokenizer, label2id, max_length=max_length, split="train")
    eval_ds = encode(eval_rows, tokenizer, label2id, max_length=max_length, split="eval") if eval_rows else None
    collator = (DataCollatorForTokenClassification(tokenizer) if task == "token-classification"
                else DataCollatorWithPadding(tokenizer))
    return Trainer(model=model, args=TrainingArguments(**args, include_num_input_tokens_seen="non_padding"),
                   train_dataset=train_ds, eval_dataset=eval_ds, data_collator=collator,
                   compute_metrics=metrics_for(task, model.config.id2label), callbacks=callbacks,
                   optimizers=(optimizer, None))
