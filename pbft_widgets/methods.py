"""Method name -> ready PEFT model, with defaults that train, and a report of what the method costs.

One entry point, :func:`apply_method`, so a notebook can switch between prompt tuning, prefix tuning,
P-tuning, LoRA, QLoRA and the prompt+LoRA hybrid by changing one string. Each method carries the
training defaults that make it work (a soft prompt needs a learning rate ~100x that of LoRA) and
refuses, with the fix in the message, the combinations PEFT is known to break on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from peft import (LoraConfig, PeftModel, PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig,
                  PromptTuningInit, TaskType, get_peft_model, get_peft_model_state_dict,
                  prepare_model_for_kbit_training)
from peft.tuners.tuners_utils import BaseTunerLayer

from . import hybrid
from .errors import ConfigError

METHODS = ("prompt-tuning", "prefix-tuning", "p-tuning", "lora", "qlora", "prompt+lora")
PROMPT_LEARNING = ("prompt-tuning", "prefix-tuning", "p-tuning")
TASK_TYPES = {
    "causal-lm": TaskType.CAUSAL_LM,
    "token-classification": TaskType.TOKEN_CLS,
    "sequence-classification": TaskType.SEQ_CLS,
}
PROMPT_INITS = ("random", "text", "sample-vocab", "label-words")
P_TUNING_ENCODERS = ("mlp", "lstm")
MAX_VIRTUAL_TOKENS = 512
ADAMW_STATE_BYTES = 8  # two fp32 moments per trainable parameter

_PROMPT_OPTIONS = {"num_virtual_tokens": 20, "init": "random", "init_text": None}
_LORA_OPTIONS = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": None}
OPTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "prompt-tuning": {**_PROMPT_OPTIONS, "gradient_checkpointing": False},
    # init None: "activations" for causal LMs without projection, else "random" (see _init_prefix)
    "prefix-tuning": {"num_virtual_tokens": 20, "prefix_projection": False, "encoder_hidden_size": None,
                      "init": None, "init_text": None, "gradient_checkpointing": False},
    "p-tuning": {"num_virtual_tokens": 20, "encoder": "mlp", "encoder_hidden_size": None,
                 "encoder_num_layers": 2, "encoder_dropout": 0.0, "gradient_checkpointing": False},
    "lora": {**_LORA_OPTIONS, "gradient_checkpointing": False},
    # None: on for CUDA (memory is what QLoRA saves), off on CPU (see _apply_lora).
    "qlora": {**_LORA_OPTIONS, "gradient_checkpointing": None},
    "prompt+lora": {**_PROMPT_OPTIONS, **_LORA_OPTIONS, "gradient_checkpointing": False},
}

# Training batches are right-padded for every method. It matters most for soft prompts: PEFT puts the
# virtual tokens before position 0 and ignores position_ids for prompt/P-tuning, so with left padding
# the pads sit between prompt and text and the text's positions move with the amount of padding
# (peft #1093: left padding degrades prompt tuning for causal LMs). For batched *generation* the
# same reason forbids padding for those methods: AdapterBank batches prompts of equal token length.
# LoRA and prefix tuning generate correctly from left-padded batches (positions follow the attention
# mask; PEFT shifts them by the prefix length for prefix tuning).
_EMBEDDING_PROMPT = {"padding_side": "right", "generation_padding_side": "left",
                     "generation_batching": "equal-length", "weight_decay": 0.0}
_PADDED = {"padding_side": "right", "generation_padding_side": "left", "generation_batching": "padded"}
TRAINING_DEFAULTS: dict[str, dict[str, Any]] = {
    "prompt-tuning": {"learning_rate": 3e-2, "learning_rate_range": (3e-2, 1e-1), **_EMBEDDING_PROMPT,
                      "gradient_checkpointing": False},
    # Prefix tuning writes the prefix into the KV cache; PEFT raises under gradient checkpointing
    # (peft #869) and TRL turns checkpointing on by default, so the default is pinned to False.
    "prefix-tuning": {"learning_rate": 1e-2, "learning_rate_range": (5e-3, 3e-2), **_PADDED,
                      "weight_decay": 0.0, "gradient_checkpointing": False},
    # Measured on SmolLM2-135M: at 1e-2 the MLP encoder's first Adam step throws the loss from 7.2
    # to 13.6; 3e-4 descends steadily (12 steps: 6.3 -> 3.8).
    "p-tuning": {"learning_rate": 3e-4, "learning_rate_range": (1e-4, 1e-3), **_EMBEDDING_PROMPT,
                 "gradient_checkpointing": False},
    "lora": {"learning_rate": 5e-4, "learning_rate_range": (2e-4, 1e-3), **_PADDED, "weight_decay": 0.0,
             "gradient_checkpointing": False},
    "qlora": {"learning_rate": 5e-4, "learning_rate_range": (2e-4, 1e-3), **_PADDED, "weight_decay": 0.0,
              "gradient_checkpointing": False},
    # One optimizer, two learning rates: use hybrid.param_groups(model, prompt_lr=..., lora_lr=...).
    "prompt+lora": {"learning_rate": 5e-4, "learning_rate_range": (2e-4, 1e-3), "prompt_learning_rate": 3e-2,
                    **_EMBEDDING_PROMPT, "gradient_checkpointing": False},
}

SUMMARIES = {
    "prompt-tuning": "learned virtual-token embeddings before the input; the model is frozen",
    "prefix-tuning": "learned key/value prefixes in every attention layer (P-tuning v2 on encoders)",
    "p-tuning": "virtual tokens produced by a small MLP/LSTM encoder",
    "lora": "low-rank updates to attention projections; mergeable into the weights",
    "qlora": "LoRA on a 4-bit quantised model: the least memory for the most capacity",
    "prompt+lora": "a soft prompt and LoRA trained jointly, saved as one adapter",
}


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


def method_defaults(method: str) -> dict[str, Any]:
    """The options apply_method accepts (with defaults) and the training defaults of ``method``."""
    _check_method(method)
    return {"options": dict(OPTION_DEFAULTS[method]), "training_defaults": dict(TRAINING_DEFAULTS[method])}


def describe_methods() -> list[dict[str, Any]]:
    """One row per method, for tables and method pickers."""
    return [{"method": m, "summary": SUMMARIES[m], "tasks": list(_tasks_of(m)),
             "works_on_4bit": m in ("prompt-tuning", "p-tuning", "qlora"), **method_defaults(m)}
            for m in METHODS]


def apply_method(model, method: str, *, tokenizer=None, task: str = "causal-lm", template=None,
                 **options) -> PeftSetup:
    """Wrap ``model`` with ``method`` (see METHODS) and return it with defaults and a report.

    ``options`` override OPTION_DEFAULTS[method]; ``tokenizer`` is needed for text/label-word
    prompt initialisation and gets the method's padding side; ``template`` supplies the init text
    (its instruction) or label words (its verbalizer).
    """
    _check_method(method)
    _check_task(model, task, method)
    opts = _merge_options(method, options)
    notes: list[str] = []
    training = dict(TRAINING_DEFAULTS[method])
    if method in PROMPT_LEARNING or method == "prompt+lora":
        _check_virtual_tokens(model, opts["num_virtual_tokens"])
    _ensure_fp32_on_cpu(model, notes)
    quant = quantization_of(model)
    if method == "prompt-tuning":
        peft_model = _apply_prompt_tuning(model, task, opts, tokenizer, template, notes)
    elif method == "prefix-tuning":
        peft_model = _apply_prefix_tuning(model, task, opts, quant, tokenizer, template, notes)
    elif method == "p-tuning":
        peft_model = _apply_p_tuning(model, task, opts, notes)
    elif method == "prompt+lora":
        peft_model = _apply_hybrid(model, task, opts, quant, tokenizer, template, notes)
    else:
        peft_model = _apply_lora(model, method, task, opts, quant, notes)
    training["gradient_checkpointing"] = bool(opts["gradient_checkpointing"])
    if task != "causal-lm":
        notes.append("classification head is trained with the adapter (saved in modules_to_save)")
    if tokenizer is not None:
        tokenizer.padding_side = training["padding_side"]
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
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
    parts = hybrid.part_sizes(peft_model) if hybrid.is_prompt_lora(peft_model) else {}
    return MethodReport(
        method=method, trainable_params=trainable, total_params=total,
        percent_trainable=100.0 * trainable / max(total, 1),
        adapter_bytes=sum(_tensor_bytes(t) for t in adapter_tensors(peft_model).values()),
        # weights (frozen + trainable) + one gradient per trainable weight + AdamW's two moments
        expected_memory_bytes=weight_bytes + trainable_bytes + ADAMW_STATE_BYTES * trainable,
        notes=list(notes or []), parts=parts)


def adapter_tensors(peft_model) -> dict[str, torch.Tensor]:
    """Every tensor save_adapter writes, keyed by 'file:key' (sizes the report's adapter_bytes)."""
    if hybrid.is_prompt_lora(peft_model):
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
    encoder = peft_model.prompt_encoder[peft_model.active_adapter]
    return {k: v.detach().contiguous() for k, v in encoder.state_dict().items()}


def quantization_of(model) -> str | None:
    """'4bit', '8bit', 'other' (a non-bitsandbytes method) or None, for plain and PEFT-wrapped models."""
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    if getattr(base, "is_loaded_in_4bit", False):
        return "4bit"
    if getattr(base, "is_loaded_in_8bit", False):
        return "8bit"
    qconfig = getattr(getattr(base, "config", None), "quantization_config", None)
    if qconfig is not None:
        get = qconfig.get if isinstance(qconfig, dict) else lambda k, d=None: getattr(qconfig, k, d)
        return "4bit" if get("load_in_4bit", False) else "8bit" if get("load_in_8bit", False) else "other"
    return None


def infer_task(model) -> str | None:
    """The task a transformers model's head implies, or None for an unfamiliar class."""
    from transformers.models.auto import modeling_auto as auto

    base = model.get_base_model() if isinstance(model, PeftModel) else model
    name = type(base).__name__
    for task, mapping in (("causal-lm", auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES),
                          ("token-classification", auto.MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES),
                          ("sequence-classification", auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES)):
        for value in mapping.values():
            if name in ((value,) if isinstance(value, str) else value):
                return task
    return None


def linear_module_names(model) -> list[str]:
    """Names LoRA can target (leaf names of linear layers), for error messages and pickers."""
    from transformers.pytorch_utils import Conv1D

    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if name and isinstance(module, (torch.nn.Linear, Conv1D))})


# ----------------------------------------------------------------------------- validation
def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")


def _tasks_of(method: str) -> tuple[str, ...]:
    if method == "prompt+lora":
        return ("causal-lm",)
    if method in ("prompt-tuning", "p-tuning"):
        return ("causal-lm", "sequence-classification")
    return tuple(TASK_TYPES)


def _check_task(model, task: str, method: str) -> None:
    if task not in TASK_TYPES:
        raise ConfigError(f"unknown task {task!r}; use one of {', '.join(TASK_TYPES)}")
    if isinstance(model, PeftModel) or any(isinstance(m, BaseTunerLayer) for m in model.modules()):
        raise ConfigError("the model already carries a PEFT adapter; pass a freshly loaded base model "
                          "(load_model(...)) or peft_model.unload() to apply another method")
    actual = infer_task(model)
    if actual is not None and actual != task:
        raise ConfigError(f"task={task!r} but the model is a {type(model).__name__} ({actual}); pass "
                          f"task={actual!r} or load the model with load_model(..., task={task!r})")
    if task not in _tasks_of(method):
        better = "prefix-tuning (P-tuning v2) or lora" if task == "token-classification" else "lora"
        why = (" (its virtual tokens would get token labels of their own, misaligning every label)"
               if task == "token-classification" else "")
        raise ConfigError(f"{method} does not support task {task!r}{why}; use {better}")


def _merge_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    allowed = OPTION_DEFAULTS[method]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"{method} does not take option(s) {', '.join(unknown)}; it accepts "
                          f"{', '.join(sorted(allowed))}")
    return {**allowed, **options}


def _check_virtual_tokens(model, n: Any) -> None:
    max_positions = getattr(_text_config(model), "max_position_embeddings", None) or 2 * MAX_VIRTUAL_TOKENS
    limit = min(MAX_VIRTUAL_TOKENS, max_positions // 2)
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise ConfigError(f"num_virtual_tokens={n!r}; use a positive integer, typically 8-100 (default 20)")
    if n > limit:
        raise ConfigError(f"num_virtual_tokens={n} is too many: virtual tokens take positions from the "
                          f"model's {max_positions}-token context; use at most {limit}, typically 8-100")


def _text_config(model):
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _ensure_fp32_on_cpu(model, notes: list[str]) -> None:
    """Half precision on CPU is slow and some kernels lack fp16; train in fp32 there."""
    if quantization_of(model) is not None:
        return
    params = list(model.parameters())
    if params and params[0].device.type == "cpu" and any(p.dtype in (torch.float16, torch.bfloat16)
                                                         for p in params):
        model.float()
        notes.append("model was fp16/bf16 on CPU; cast to fp32 (half precision on CPU is slow or unsupported)")


# ----------------------------------------------------------------------------- builders
def _apply_prompt_tuning(model, task, opts, tokenizer, template, notes):
    config = _prompt_tuning_config(task, opts)
    init_ids = _init_token_ids(opts, tokenizer, template, notes)
    peft_model = get_peft_model(model, config)
    _init_prompt(peft_model, init_ids)
    return peft_model


def _prompt_tuning_config(task, opts) -> PromptTuningConfig:
    init = opts["init"]
    if init not in PROMPT_INITS:
        raise ConfigError(f"init={init!r}; use one of {', '.join(PROMPT_INITS)}")
    # text/label-word inits copy vocabulary embeddings after construction (see _init_prompt)
    peft_init = PromptTuningInit.SAMPLE_VOCAB if init == "sample-vocab" else PromptTuningInit.RANDOM
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


def _apply_prefix_tuning(model, task, opts, quant, tokenizer, template, notes):
    init = opts["init"] or ("activations" if task == "causal-lm" and not opts["prefix_projection"] else "random")
    if init not in ("activations", "random"):
        raise ConfigError(f"prefix-tuning init={init!r}; use 'activations' or 'random'")
    if init == "activations" and (task != "causal-lm" or opts["prefix_projection"]):
        raise ConfigError("init='activations' needs a causal LM without prefix_projection; use init='random'")
    opts["init"] = init
    if quant is not None:
        raise ConfigError(f"prefix-tuning fails on {quant} models (peft #2035); use prompt-tuning, "
                          "lora, or qlora on a quantized model, or load it without quantization")
    if opts["gradient_checkpointing"]:
        raise ConfigError("prefix-tuning cannot run with gradient checkpointing (peft #869); pass "
                          "gradient_checkpointing=False (and keep it off in the trainer)")
    if _checkpointing_on(model):
        # transformers 5 renamed gradient_checkpointing_* to activation_checkpointing_*
        getattr(model, "activation_checkpointing_disable", model.gradient_checkpointing_disable)()
        notes.append("gradient checkpointing was on; turned off (prefix tuning cannot use it, peft #869)")
    notes.append("keep gradient_checkpointing=False in the trainer (TRL turns it on by default)")
    config = PrefixTuningConfig(task_type=TASK_TYPES[task], num_virtual_tokens=opts["num_virtual_tokens"],
                                prefix_projection=bool(opts["prefix_projection"]),
                                encoder_hidden_size=opts["encoder_hidden_size"])
    text = opts["init_text"] or getattr(template, "instruction", "")
    if init == "activations" and text and tokenizer is None:
        raise ConfigError("initialising the prefix from text needs the tokenizer; pass tokenizer=...")
    peft_model = get_peft_model(model, config)
    if init == "activations":
        _init_prefix(peft_model, tokenizer, text, notes)
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


def _apply_p_tuning(model, task, opts, notes):
    encoder = str(opts["encoder"]).lower()
    if encoder not in P_TUNING_ENCODERS:
        raise ConfigError(f"encoder={opts['encoder']!r}; use 'mlp' or 'lstm'")
    config = PromptEncoderConfig(task_type=TASK_TYPES[task], num_virtual_tokens=opts["num_virtual_tokens"],
                                 encoder_reparameterization_type=encoder.upper(),
                                 encoder_hidden_size=opts["encoder_hidden_size"],
                                 encoder_num_layers=opts["encoder_num_layers"],
                                 encoder_dropout=opts["encoder_dropout"])
    notes.append(f"{encoder.upper()} prompt encoder is saved too, so training resumes exactly after reload")
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


def _apply_lora(model, method, task, opts, quant, notes):
    if method == "lora" and quant is not None:
        raise ConfigError(f"the model is loaded in {quant}; use method='qlora' (load_model(..., "
                          "quantization='4bit')) or load it without quantization for 'lora'")
    config = _lora_config(model, task, opts)
    if method == "qlora":
        if quant != "4bit":
            raise ConfigError("qlora needs a 4-bit model; load it with load_model(..., quantization='4bit')"
                              + (" (this one is 8-bit)" if quant == "8bit" else ""))
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


def _apply_hybrid(model, task, opts, quant, tokenizer, template, notes):
    if quant is not None:
        raise ConfigError(f"prompt+lora needs a full-precision model (this one is {quant}); load it without "
                          "quantization, or use qlora")
    prompt_config = _prompt_tuning_config(task, opts)
    lora_config = _lora_config(model, task, opts)
    init_ids = _init_token_ids(opts, tokenizer, template, notes)
    peft_model = hybrid.build_prompt_lora(model, prompt_config, lora_config)
    _init_prompt(peft_model, init_ids)
    opts["target_modules"] = sorted(hybrid.lora_config_of(peft_model).target_modules)
    parts = hybrid.part_sizes(peft_model)
    notes.append(f"hybrid: soft prompt ({parts['prompt']:,} params) + LoRA ({parts['lora']:,} params) "
                 "trained jointly; use hybrid.param_groups() for their two learning rates")
    return peft_model


def _checkpointing_on(model) -> bool:
    flag = getattr(model, "is_activation_checkpointing", None)
    return bool(getattr(model, "is_gradient_checkpointing", False) if flag is None else flag)


def _tensor_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()
