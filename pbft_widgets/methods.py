"""Method name -> ready PEFT model, with defaults that train, and a report of what the method costs.

One entry point, :func:`apply_method`, so a notebook can switch between prompt tuning, prefix tuning,
P-tuning, LoRA, QLoRA and the prompt+LoRA hybrid by changing one string. What each method supports,
its options and its training defaults come from :mod:`pbft_widgets.registry`; this module builds
the PEFT model and refuses, with the fix in the message, the combinations PEFT is known to break on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from peft import (PeftModel, get_peft_model_state_dict)

from . import hybrid
from .errors import ConfigError
from .builders import Build, builder_for
from .model_facts import (carries_adapter, checkpointing_on, context_limit, ensure_pad_token, infer_task, method_of,
                          quantization_of)
from .registry import SPECS, TASK_TYPES, MethodSpec, methods_for_task, spec_of

MAX_VIRTUAL_TOKENS = 512
ADAMW_STATE_BYTES = 8  # two fp32 moments per trainable parameter


@dataclass
class MethodReport:
    """What a method costs: parameters, adapter size, rough training memory, pitfalls handled."""

    method: str
    trainable_params: int
    total_params: int
    percent_trainable: float
    adapter_bytes: int
    expected_memory_bytes: int
    notes: list[str] = field(default_factory=list)
    parts: dict[str, int] = field(default_factory=dict)  # trainable params per part (hybrid)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain values (for JSON and adapter manifests)."""
        return asdict(self)

    def __str__(self) -> str:
        return (f"{self.method}: {self.trainable_params:,} trainable of {self.total_params:,} "
                f"({self.percent_trainable:.3f}%), adapter {self.adapter_bytes / 1024:.1f} KiB, "
                f"~{self.expected_memory_bytes / 2**20:.0f} MiB to train (without activations)")


@dataclass
class TrainingRecord:
    """What the last ``train()`` of a setup ran with, so its saved adapter's model card can say so."""

    settings: dict[str, Any]  # steps asked and done, batch size, learning rate, seed, final loss
    template: Any
    tokenizer: Any  # renders the template's example (a chat template needs it)
    rows: list[Any]  # the training rows (a reference, not a copy)


@dataclass
class PeftSetup:
    """A model ready to train or serve, with the method's defaults and what it costs."""

    model: Any
    method: str
    task: str
    report: MethodReport
    training_defaults: dict[str, Any]
    options: dict[str, Any]
    trained: TrainingRecord | None = None  # set by train()


def describe_methods() -> list[dict[str, Any]]:
    """One row per method (summary, tasks, 4-bit support, option and training defaults), for tables and pickers."""
    return [spec.describe() for spec in SPECS.values()]


def apply_method(model, method: str, *, tokenizer=None, task: str = "causal-lm", template=None,
                 **options) -> PeftSetup:
    """Wrap `model` with a PBFT method and return it with the method's training defaults and a cost report.

    One string switches between the six methods (`pbft_widgets.METHODS`); what each supports and its
    options come from `pbft_widgets.registry`. Combinations PEFT is known to break on are refused with
    the fix in the message (prefix tuning on a 4-bit base, prefix tuning with gradient checkpointing,
    prompt tuning for token classification, plain LoRA on a quantized base). The model is changed in
    place: apply one method per freshly loaded base model.

    Args:
        model (`transformers.PreTrainedModel`):
            A plain base model, e.g. `load_model(...).model` (not one that already carries an adapter).
        method (`str`):
            `"prompt-tuning"`, `"prefix-tuning"`, `"p-tuning"`, `"lora"`, `"qlora"` (on a 4-bit base) or
            `"prompt+lora"`.
        tokenizer (*optional*):
            Needed for text and label-word initialisation of a soft prompt; it also gets the method's
            padding side (right) and a pad token.
        task (`str`, defaults to `"causal-lm"`):
            Must match the model's head: `"causal-lm"`, `"token-classification"` or `"sequence-classification"`.
        template (`PromptTemplate`, *optional*):
            Supplies the init text (its instruction) or the label words (its verbalizer).
        **options:
            The method's options (`spec_of(method).options` lists them with types, defaults and help),
            e.g. `num_virtual_tokens=20, init="label-words"` for prompt tuning or `r=8` for LoRA.

    Returns:
        `PeftSetup`: `.model` (the PEFT model), `.method`, `.task`, `.options` (as applied),
        `.training_defaults` (learning rate, padding, checkpointing that make this method train) and
        `.report` (trainable parameters, adapter size, rough training memory, notes).

    Example:

    ```py
    >>> from pbft_widgets import PromptTemplate, Verbalizer, apply_method, load_model
    >>> lm = load_model()
    >>> template = PromptTemplate(input_template="Review: {text}", output_indicator="Sentiment:", style="cloze",
    ...                           verbalizer=Verbalizer({"pos": "positive", "neg": "negative"}))
    >>> setup = apply_method(lm.model, "prompt-tuning", tokenizer=lm.tokenizer, template=template,
    ...                      init="label-words", num_virtual_tokens=8)
    >>> setup.report.trainable_params  # 8 virtual tokens x 576 dimensions
    4608
    >>> setup.training_defaults["learning_rate"]  # a soft prompt needs ~60x LoRA's
    0.03

    ```
    """
    spec = spec_of(method)
    _check_task(model, task, spec)
    opts = _merge_options(spec, options)
    notes: list[str] = []
    training = spec.training_defaults()
    if spec.learns_prompt:
        _check_virtual_tokens(model, opts["num_virtual_tokens"])
    _ensure_fp32_on_cpu(model, notes)
    build = Build(spec=spec, task=task, opts=opts, tokenizer=tokenizer, template=template,
                   quant=_check_quantization(model, spec), notes=notes)
    _check_checkpointing(model, spec, opts, notes)
    peft_model = builder_for(spec)(model, build)
    training["gradient_checkpointing"] = bool(opts["gradient_checkpointing"])
    if task != "causal-lm":
        notes.append("classification head is trained with the adapter (saved in modules_to_save)")
    if tokenizer is not None:
        tokenizer.padding_side = training["padding_side"]
        if ensure_pad_token(tokenizer):
            notes.append("tokenizer had no pad token; using its eos token")
    return PeftSetup(model=peft_model, method=method, task=task,
                     report=method_report(peft_model, method, notes=notes),
                     training_defaults=training, options=opts)


def method_report(peft_model, method: str, *, notes: list[str] | None = None) -> MethodReport:
    """Parameter counts (4-bit aware, via PEFT), adapter size and a rough training-memory estimate."""
    trainable, total = peft_model.get_nb_trainable_parameters()
    params = dict(peft_model.named_parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in params.values())
    trainable_bytes = sum(p.numel() * p.element_size() for p in params.values() if p.requires_grad)
    parts = hybrid.part_sizes(peft_model) if spec_of(method).combines_prompt_and_lora else {}
    return MethodReport(
        method=method, trainable_params=trainable, total_params=total,
        percent_trainable=100.0 * trainable / max(total, 1),
        adapter_bytes=sum(_tensor_bytes(t) for t in adapter_tensors(peft_model).values()),
        # weights (frozen + trainable) + one gradient per trainable weight + AdamW's two moments
        expected_memory_bytes=weight_bytes + trainable_bytes + ADAMW_STATE_BYTES * trainable,
        notes=list(notes or []), parts=parts)


def adapter_tensors(peft_model) -> dict[str, torch.Tensor]:
    """Every tensor save_adapter writes, keyed by 'file:key' (sizes the report's adapter_bytes)."""
    spec = method_of(peft_model)
    if spec is not None and spec.combines_prompt_and_lora:
        prompt = get_peft_model_state_dict(peft_model)
        tensors = {f"prompt:{k}": v for k, v in prompt.items()}
        return tensors | {f"lora:{k}": v for k, v in hybrid.lora_state_dict(peft_model).items()}
    tensors = {f"adapter:{k}": v for k, v in get_peft_model_state_dict(peft_model).items()}
    if has_prompt_encoder_weights(peft_model):
        state = prompt_encoder_state(peft_model)
        tensors |= {f"encoder:{k}": v for k, v in state.items()}
    return tensors


def has_prompt_encoder_weights(peft_model) -> bool:
    """True when the prompt comes out of an encoder (P-tuning MLP/LSTM, prefix projection).

    PEFT saves only the encoder's *output*, which is enough for inference but not to resume
    training (peft #2043, #1607: loss jumps after reload), so save_adapter stores the encoder too.
    """
    if not isinstance(peft_model, PeftModel) or not peft_model.peft_config[peft_model.active_adapter] \
            .is_prompt_learning:
        return False
    encoder = peft_model.prompt_encoder[peft_model.active_adapter]
    return any(name != "embedding" for name, _ in encoder.named_children())


def prompt_encoder_state(peft_model) -> dict[str, torch.Tensor]:
    """The prompt encoder's own weights (the MLP/LSTM), which PEFT's adapter file leaves out."""
    encoder = peft_model.prompt_encoder[peft_model.active_adapter]
    return {k: v.detach().contiguous() for k, v in encoder.state_dict().items()}


# ----------------------------------------------------------------------------- validation
def _check_task(model, task: str, spec: MethodSpec) -> None:
    if task not in TASK_TYPES:
        raise ConfigError(f"unknown task {task!r}; use one of {', '.join(TASK_TYPES)}")
    if carries_adapter(model):
        raise ConfigError("the model already carries a PEFT adapter; pass a freshly loaded base model "
                          "(load_model(...)) or peft_model.unload() to apply another method")
    actual = infer_task(model)
    if actual is not None and actual != task:
        raise ConfigError(f"task={task!r} but the model is a {type(model).__name__} ({actual}); pass "
                          f"task={actual!r} or load the model with load_model(..., task={task!r})")
    if task not in spec.tasks:
        why = (" (its virtual tokens would get token labels of their own, misaligning every label)"
               if spec.inserts_input_tokens and task == "token-classification" else "")
        better = [name for name in methods_for_task(task) if not spec_of(name).needs_4bit]
        alternatives = " or ".join([", ".join(better[:-1]), better[-1]] if len(better) > 1 else better)
        raise ConfigError(f"{spec.name} does not support task {task!r}{why}; use {alternatives}")


def _merge_options(spec: MethodSpec, options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(spec.option_names))
    if unknown:
        raise ConfigError(f"{spec.name} does not take option(s) {', '.join(unknown)}; it accepts "
                          f"{', '.join(sorted(spec.option_names))}")
    merged = {**spec.option_defaults(), **options}
    for option in spec.options:
        value = merged[option.name]
        if option.choices and value is not None and value not in option.choices:
            quoted = [repr(choice) for choice in option.choices]
            raise ConfigError(f"{spec.name} {option.name}={value!r}; use {', '.join(quoted[:-1])} or {quoted[-1]}")
    return merged


def _check_quantization(model, spec: MethodSpec) -> str | None:
    """The model's quantization, once it is one the method trains on."""
    quant = quantization_of(model)
    if spec.needs_4bit and quant != "4bit":
        raise ConfigError(f"{spec.name} needs a 4-bit model; load it with load_model(..., quantization='4bit')"
                          + (" (this one is 8-bit)" if quant == "8bit" else ""))
    if quant is not None and not spec.works_on_quantized:
        raise ConfigError(f"{spec.name} does not train on a {quant} model; {spec.quantized_advice}")
    return quant


def _check_checkpointing(model, spec: MethodSpec, opts: dict[str, Any], notes: list[str]) -> None:
    if spec.allows_gradient_checkpointing:
        return
    if opts["gradient_checkpointing"]:
        raise ConfigError(f"{spec.name} cannot run with gradient checkpointing (peft #869); pass "
                          "gradient_checkpointing=False (and keep it off in the trainer)")
    if checkpointing_on(model):
        # transformers 5 renamed gradient_checkpointing_* to activation_checkpointing_*
        getattr(model, "activation_checkpointing_disable", model.gradient_checkpointing_disable)()
        notes.append(f"gradient checkpointing was on; turned off ({spec.name} cannot use it, peft #869)")
    notes.append("keep gradient_checkpointing=False in the trainer (TRL turns it on by default)")


def _check_virtual_tokens(model, n: Any) -> None:
    max_positions = context_limit(model) or 2 * MAX_VIRTUAL_TOKENS  # the bare model's: no adapter yet
    limit = min(MAX_VIRTUAL_TOKENS, max_positions // 2)
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise ConfigError(f"num_virtual_tokens={n!r}; use a positive integer, typically 8-100 (default 20)")
    if n > limit:
        raise ConfigError(f"num_virtual_tokens={n} is too many: virtual tokens take positions from the "
                          f"model's {max_positions}-token context; use at most {limit}, typically 8-100")


def _ensure_fp32_on_cpu(model, notes: list[str]) -> None:
    """Half precision on CPU is slow and some kernels lack fp16; train in fp32 there."""
    if quantization_of(model) is not None:
        return
    params = list(model.parameters())
    if params and params[0].device.type == "cpu" and any(p.dtype in (torch.float16, torch.bfloat16)
                                                         for p in params):
        model.float()
        notes.append("model was fp16/bf16 on CPU; cast to fp32 (half precision on CPU is slow or unsupported)")


def _tensor_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()
