"""One builder per PEFT type: turn a checked base model and options into the PEFT model.

Called by :func:`pbft_widgets.methods.apply_method` once it has validated the task, the options,
the quantization and checkpointing. Soft prompts are initialised here (from text, label words or
sampled vocabulary; a prefix from the activations of real tokens), because PEFT's own text init
re-loads the tokenizer by name, which fails for in-memory and converted tokenizers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from peft import (LoraConfig, PeftType, PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, PromptTuningInit,
                  get_peft_model, prepare_model_for_kbit_training)
from transformers import DynamicCache

from . import hybrid
from .errors import ConfigError
from .model_facts import device_of, linear_module_names
from .registry import TASK_TYPES, MethodSpec


@dataclass
class Build:
    """What every builder needs besides the model (apply_method has checked it all)."""

    spec: MethodSpec
    task: str
    opts: dict[str, Any]
    tokenizer: Any
    template: Any
    quant: str | None
    notes: list[str]


# ----------------------------------------------------------------------------- builders
def _apply_prompt_tuning(model, build: Build):
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


def _apply_prefix_tuning(model, build: Build):
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
    with torch.no_grad():  # a cache without the model's layer types: sliding-window layers keep every key too
        cache = peft_model.get_base_model()(input_ids=ids[None].to(weight.device), past_key_values=DynamicCache(),
                                            use_cache=True).past_key_values
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


def _apply_p_tuning(model, build: Build):
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


def prepare_4bit_base(model, *, gradient_checkpointing: bool = False):
    """Prepare a 4-bit base for its LoRA adapter (PEFT's prepare_model_for_kbit_training: norms in fp32,
    base frozen). apply_method and load_adapter both go through here, because the preparation changes
    how the 4-bit layers compute: a reloaded adapter must sit on a base prepared like its trained one."""
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)


def _apply_lora(model, build: Build):
    opts, notes = build.opts, build.notes
    config = _lora_config(model, build.task, opts)
    if build.spec.needs_4bit:
        checkpointing = opts["gradient_checkpointing"] is None or bool(opts["gradient_checkpointing"])
        # QLoRA is picked for memory, and activations are most of what its training adds: checkpointing
        # recomputes them instead (on the CPU baseline it cost LoRA 1.34x the time for 0.73x the peak).
        model = prepare_4bit_base(model, gradient_checkpointing=checkpointing)
        opts["gradient_checkpointing"] = checkpointing
        notes.append(f"prepare_model_for_kbit_training applied (norms in fp32, gradient checkpointing "
                     f"{'on: activations are recomputed, not kept' if checkpointing else 'off'})")
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


def _apply_hybrid(model, build: Build):
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


_BUILDERS: dict[PeftType, Callable[[Any, Build], Any]] = {
    PeftType.PROMPT_TUNING: _apply_prompt_tuning, PeftType.PREFIX_TUNING: _apply_prefix_tuning,
    PeftType.P_TUNING: _apply_p_tuning, PeftType.LORA: _apply_lora,
}


def builder_for(spec: MethodSpec) -> Callable[[Any, Build], Any]:
    """The function that wraps a model with ``spec``'s method."""
    return _apply_hybrid if spec.combines_prompt_and_lora else _BUILDERS[spec.peft_type]
