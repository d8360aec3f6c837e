"""Method name -> ready PEFT model, with defaults that train, and a report of what the method costs.

One entry point, :func:`apply_method`, so a notebook can switch between prompt tuning, prefix tuning,
P-tuning, LoRA, QLoRA and the prompt+LoRA hybrid by changing one string. What each method supports,
its options and its training defaults come from :mod:`pbft_widgets.registry`; this module builds
the PEFT model and refuses, with the fix in the message, the combinations PEFT is known to break on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from peft import (LoraConfig, PeftModel, PeftType, PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig,
                  PromptTuningInit, get_peft_model, get_peft_model_state_dict, prepare_model_for_kbit_training)

from . import hybrid
from .errors import ConfigError
from .model_facts import (carries_adapter, checkpointing_on, ensure_pad_token, infer_task, method_of,
                          quantization_of, text_config)
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
        return asdict(self)

    def __str__(self) -> str:
        return (f"{self.method}: {self.trainable_params:,} trainable of {self.total_params:,} "
                f"({self.percent_trainable:.3f}%), adapter {self.adapter_bytes / 1024:.1f} KiB, "
                f"~{self.expected_memory_bytes / 2**20:.0f} MiB to train (without activations)")


@dataclass
class PeftSetup:
    """A model ready to train or serve, with the method's defaults and what it costs."""

    model: Any
    method: str
    task: str
    report: MethodReport
    training_defaults: dict[str, Any]
    options: dict[str, Any]


def describe_methods() -> list[dict[str, Any]]:
    """One row per method (summary, tasks, 4-bit support, option and training defaults), for tables and pickers."""
    return [spec.describe() for spec in SPECS.values()]


def apply_method(model, method: str, *, tokenizer=None, task: str = "causal-lm", template=None,
                 **options) -> PeftSetup:
    """Wrap ``model`` with ``method`` (see METHODS) and return it with defaults and a report.

    ``options`` override OPTION_DEFAULTS[method]; ``tokenizer`` is needed for text/label-word
    prompt initialisation and gets the method's padding side; ``template`` supplies the init text
    (its instruction) or label words (its verbalizer).
    """
    spec = spec_of(method)
    _check_task(model, task, spec)
    opts = _merge_options(spec, options)
    notes: list[str] = []
    training = spec.training_defaults()
    if spec.learns_prompt:
        _check_virtual_tokens(model, opts["num_virtual_tokens"])
    _ensure_fp32_on_cpu(model, notes)
    build = _Build(spec=spec, task=task, opts=opts, tokenizer=tokenizer, template=template,
                   quant=_check_quantization(model, spec), notes=notes)
    _check_checkpointing(model, spec, opts, notes)
    peft_model = _builder(spec)(model, build)
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


def linear_module_names(model) -> list[str]:
    """Names LoRA can target (leaf names of linear layers), for error messages and pickers."""
    from transformers.pytorch_utils import Conv1D

    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if name and isinstance(module, (torch.nn.Linear, Conv1D))})


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
    max_positions = getattr(text_config(model), "max_position_embeddings", None) or 2 * MAX_VIRTUAL_TOKENS
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


@dataclass
class _Build:
    """What every builder needs besides the model."""

    spec: MethodSpec
    task: str
    opts: dict[str, Any]
    tokenizer: Any
    template: Any
    quant: str | None
    notes: list[str]


# ----------------------------------------------------------------------------- builders
def _apply_prompt_tuning(model, build: _Build):
    config = _prompt_tuning_config(build.task, build.opts)
    init_ids = _init_token_ids(build.opts, build.tokenizer, build.template, build.notes)
    peft_model = get_peft_model(model, config)
    _init_prompt(peft_model, init_ids)
    return peft_model


def _prompt_tuning_config(task, opts) -> PromptTuningConfig:
    # text/label-word inits copy vocabulary embeddings after construction (see _init_prompt)
    peft_init = PromptTuningInit.SAMPLE_VOCAB if opts["init"] == "sample-vocab" else PromptTuningInit.RANDOM
    return PromptTuningConfig(task_type=TASK_TYPES[task], num_virtual_tokens=opts["num_virtual_tokens"],
                              prompt_tuning_init=peft_init)


def _init_token_ids(opts, tokenizer, template, notes) -> list[int] | None:
    """Token ids whose embeddings start the soft prompt (text or label-word init), else None.

    Done here rather than with PEFT's TEXT init, which re-loads the tokenizer by name: that fails
    for in-memory or GGUF-converted tokenizers and records a path that may not exist at reload.
    The repetition rule is PEFT's: the token ids repeat until they fill the virtual tokens.
    """
    init = opts["init"]
    if init in ("random", "sample-vocab"):
        notes.append(f"soft prompt initialised {init}")
        return None
    text = _init_text(init, opts, template)
    if tokenizer is None:
        raise ConfigError(f"init={init!r} needs the tokenizer; pass tokenizer=... to apply_method")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ConfigError(f"init text {text!r} has no tokens; give a non-empty init_text")
    notes.append(f"soft prompt initialised from the embeddings of {text!r}")
    n = opts["num_virtual_tokens"]
    return (ids * math.ceil(n / len(ids)))[:n]


def _init_prompt(peft_model, ids: list[int] | None) -> None:
    if ids is None:
        return
    embedding = peft_model.prompt_encoder[peft_model.active_adapter].embedding
    with torch.no_grad():
        words = peft_model.word_embeddings(torch.tensor(ids, device=embedding.weight.device))
        embedding.weight.copy_(words.to(embedding.weight.dtype))


def _init_text(init: str, opts, template) -> str:
    if init == "text":
        text = opts["init_text"] or getattr(template, "instruction", "")
        if not text:
            raise ConfigError("init='text' needs text: pass init_text='Classify the sentiment ...' or a "
                              "template with an instruction")
        return text
    verbalizer = getattr(template, "verbalizer", None)
    if verbalizer is None:
        raise ConfigError("init='label-words' needs label words: pass template=PromptTemplate(..., "
                          "verbalizer=Verbalizer({...}))")
    # leading spaces: the form the words take after the output indicator
    return "".join(f" {verbalizer.word(label)}" for label in verbalizer.labels)


def _apply_prefix_tuning(model, build: _Build):
    task, opts, notes = build.task, build.opts, build.notes
    init = opts["init"] or ("activations" if task == "causal-lm" and not opts["prefix_projection"] else "random")
    if init == "activations" and (task != "causal-lm" or opts["prefix_projection"]):
        raise ConfigError("init='activations' needs a causal LM without prefix_projection; use init='random'")
    opts["init"] = init
    config = PrefixTuningConfig(task_type=TASK_TYPES[task], num_virtual_tokens=opts["num_virtual_tokens"],
                                prefix_projection=bool(opts["prefix_projection"]),
                                encoder_hidden_size=opts["encoder_hidden_size"])
    text = opts["init_text"] or getattr(build.template, "instruction", "")
    if init == "activations" and text and build.tokenizer is None:
        raise ConfigError("initialising the prefix from text needs the tokenizer; pass tokenizer=...")
    peft_model = get_peft_model(model, config)
    if init == "activations":
        _init_prefix(peft_model, build.tokenizer, text, notes)
    if task == "causal-lm":
        notes.append("generate() needs use_cache=True (the default): the prefix lives in the KV cache")
    else:
        notes.append("P-tuning v2: prefixes in every layer, classification head trainable")
    if opts["prefix_projection"]:
        notes.append("prefix projection encoder is saved too, so training resumes exactly after reload")
    return peft_model


def _init_prefix(peft_model, tokenizer, text: str, notes: list[str]) -> None:
    """Start the prefix at the keys/values the frozen model computes for real tokens.

    PEFT draws the prefix from N(0, 1), far from the scale of real keys and values. Measured on
    SmolLM2-135M (lr 1e-2): random init starts at loss 15.7 (base model: 6.3) and is at 8.4 after
    12 steps; initialised from activations it starts at 5.3 and reaches 0.7. The tokens are the
    init text (option or template instruction) or, without one, random vocabulary tokens.
    """
    config = peft_model.peft_config[peft_model.active_adapter]
    weight = peft_model.prompt_encoder[peft_model.active_adapter].embedding.weight
    n = config.num_virtual_tokens
    if text:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
        ids = torch.tensor((ids * math.ceil(n / len(ids)))[:n])
    else:
        ids = torch.randint(0, peft_model.word_embeddings.num_embeddings, (n,))
    with torch.no_grad():
        cache = peft_model.get_base_model()(input_ids=ids[None].to(weight.device), use_cache=True).past_key_values
    layers = getattr(cache, "layers", None) or []
    # PEFT reads row t of the prefix as [layer0 key, layer0 value, layer1 key, ...], each heads x head_dim
    rows = [state[0].transpose(0, 1).reshape(n, -1) for layer in layers for state in (layer.keys, layer.values)]
    if not rows or torch.cat(rows, dim=1).shape != weight.shape:
        notes.append("prefix initialised random (this architecture's cache does not match PEFT's prefix layout)")
        return
    with torch.no_grad():
        weight.copy_(torch.cat(rows, dim=1).to(weight.dtype))
    source = f"the activations of {text!r}" if text else "the activations of random vocabulary tokens"
    notes.append(f"prefix initialised from {source}")


def _apply_p_tuning(model, build: _Build):
    opts = build.opts
    config = PromptEncoderConfig(task_type=TASK_TYPES[build.task], num_virtual_tokens=opts["num_virtual_tokens"],
                                 encoder_reparameterization_type=opts["encoder"].upper(),
                                 encoder_hidden_size=opts["encoder_hidden_size"],
                                 encoder_num_layers=opts["encoder_num_layers"],
                                 encoder_dropout=opts["encoder_dropout"])
    build.notes.append(f"{opts['encoder'].upper()} prompt encoder is saved too, so training resumes exactly after reload")
    return get_peft_model(model, config)


def _lora_config(model, task, opts) -> LoraConfig:
    r = opts["r"]
    if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
        raise ConfigError(f"LoRA rank r={r!r}; use a positive integer such as 8 or 16")
    if not 0.0 <= float(opts["lora_dropout"]) < 1.0:
        raise ConfigError(f"lora_dropout={opts['lora_dropout']!r}; use a value in [0, 1), e.g. 0.05")
    targets = opts["target_modules"]
    if isinstance(targets, (list, tuple, set)):
        available = linear_module_names(model)
        names = [name for name, _ in model.named_modules()]
        missing = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in names)]
        if missing:
            raise ConfigError(f"target_modules {missing} are not in the model; its linear layers are "
                              f"{', '.join(available)}")
        targets = list(targets)
    return LoraConfig(task_type=TASK_TYPES[task], r=r, lora_alpha=opts["lora_alpha"],
                      lora_dropout=float(opts["lora_dropout"]), target_modules=targets)


def _apply_lora(model, build: _Build):
    opts, notes = build.opts, build.notes
    config = _lora_config(model, build.task, opts)
    if build.spec.needs_4bit:
        on_cuda = next(model.parameters()).device.type == "cuda"
        checkpointing = on_cuda if opts["gradient_checkpointing"] is None else bool(opts["gradient_checkpointing"])
        # Checkpointing trades ~30% more compute for activation memory. On CPU, RAM is rarely the limit
        # and compute always is, so it stays off there; on a GPU the memory is what QLoRA is for.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
        opts["gradient_checkpointing"] = checkpointing
        notes.append(f"prepare_model_for_kbit_training applied (norms in fp32, gradient checkpointing "
                     f"{'on' if checkpointing else 'off: on CPU compute, not memory, is the limit'})")
    peft_model = _wrap_lora(model, config)
    targets = sorted(peft_model.peft_config[peft_model.active_adapter].target_modules)
    opts["target_modules"] = targets
    notes.append(f"LoRA r={config.r}, alpha={config.lora_alpha} on {', '.join(targets)}")
    return peft_model


def _wrap_lora(model, config: LoraConfig):
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        if "target_modules" not in str(exc) and "Target modules" not in str(exc):
            raise
        raise ConfigError(f"cannot choose LoRA target modules for {type(model).__name__} ({exc}); pass "
                          f"target_modules=[...] from its linear layers: {', '.join(linear_module_names(model))}"
                          ) from None


def _apply_hybrid(model, build: _Build):
    opts = build.opts
    prompt_config = _prompt_tuning_config(build.task, opts)
    lora_config = _lora_config(model, build.task, opts)
    init_ids = _init_token_ids(opts, build.tokenizer, build.template, build.notes)
    peft_model = hybrid.build_prompt_lora(model, prompt_config, lora_config)
    _init_prompt(peft_model, init_ids)
    opts["target_modules"] = sorted(hybrid.lora_config_of(peft_model).target_modules)
    parts = hybrid.part_sizes(peft_model)
    build.notes.append(f"hybrid: soft prompt ({parts['prompt']:,} params) + LoRA ({parts['lora']:,} params) "
                       "trained jointly; use hybrid.param_groups() for their two learning rates")
    return peft_model


_BUILDERS: dict[PeftType, Callable[[Any, _Build], Any]] = {
    PeftType.PROMPT_TUNING: _apply_prompt_tuning, PeftType.PREFIX_TUNING: _apply_prefix_tuning,
    PeftType.P_TUNING: _apply_p_tuning, PeftType.LORA: _apply_lora,
}


def _builder(spec: MethodSpec) -> Callable[[Any, _Build], Any]:
    return _apply_hybrid if spec.combines_prompt_and_lora else _BUILDERS[spec.peft_type]


def _tensor_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()
