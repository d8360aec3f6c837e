"""Facts about a loaded model, each derived in one place: which method it carries, its task, its
quantization, how many positions are left for text, its fingerprint, whether packed rows stay apart.

Every function accepts a plain transformers model or a PEFT-wrapped one, so the trainer, the
evaluator, the bank, the adapters and the inspections read the same answer.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from peft import PeftModel, PeftType
from peft.tuners.lora import LoraLayer
from peft.tuners.tuners_utils import BaseTunerLayer

from .errors import ConfigError
from .registry import MethodSpec, spec_for

_SENSIBLE_MODEL_MAX = 1_000_000  # transformers stores 1e30 when a tokenizer does not know its context size
_PROBE_ROWS = 8
_PROBE_DIMS = 8


def base_of(model: Any) -> Any:
    """The transformers model under a PEFT wrapper (the model itself when there is none)."""
    return model.get_base_model() if isinstance(model, PeftModel) else model


def text_config(model: Any) -> Any:
    """The config of the language part (multimodal configs nest it)."""
    config = base_of(model).config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def device_of(model: Any) -> torch.device:
    """The device the model's weights are on."""
    device = getattr(model, "device", None)
    return device if isinstance(device, torch.device) else next(model.parameters()).device


def carries_adapter(model: Any) -> bool:
    """True for a PeftModel or a model with adapter layers injected (e.g. a prompt+LoRA base)."""
    return isinstance(model, PeftModel) or any(isinstance(m, BaseTunerLayer) for m in model.modules())


_ADAPTER_PARTS = ("lora_", "prompt_encoder", "modules_to_save")


def adapter_fingerprint(model: Any) -> str | None:
    """SHA-256 of an adapter's own weights (LoRA, prompt encoder, head copies); None for a plain model.

    It ties an evaluation to the exact adapter state it scored, so a model card never reports
    the scores of another adapter, or of this one before it trained further.
    """
    if not carries_adapter(model):
        return None
    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        if any(part in name for part in _ADAPTER_PARTS):
            digest.update(name.encode("utf-8"))
            digest.update(param.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def method_of(model: Any) -> MethodSpec | None:
    """The method of a loaded PEFT model (None for a model without an adapter).

    The one place that recovers it: a prompt-tuning wrapper whose base carries LoRA layers is the
    prompt+LoRA hybrid, and LoRA on a 4-bit base is QLoRA. PEFT types this package does not build
    raise ConfigError.
    """
    if not isinstance(model, PeftModel):
        return None
    peft_type = model.peft_config[model.active_adapter].peft_type
    lora_inside = peft_type != PeftType.LORA and any(isinstance(m, LoraLayer) for m in model.get_base_model().modules())
    return spec_for(peft_type, lora_inside=lora_inside, four_bit=quantization_of(model) == "4bit")


def virtual_tokens(model: Any) -> int:
    """How many input positions the model's adapter prepends to every row (0 for prefixes and LoRA)."""
    spec = method_of(model)
    if spec is None or not spec.inserts_input_tokens:
        return 0
    return int(model.peft_config[model.active_adapter].num_virtual_tokens)


def inserts_virtual_tokens(model: Any) -> bool:
    """True when padding a batch would move the text's positions (peft #1093).

    Prompt tuning and P-tuning prepend virtual-token embeddings in front of the padded input and
    PEFT ignores position ids for them, so left padding leaves a gap of pad positions between the
    soft prompt and the text: logits shift by ~1e-3 on a tiny model, enough to flip greedy choices.
    A wrapper that is neither a transformers model nor a PeftModel cannot be inspected and is
    treated as one that inserts tokens (batching only equal-length rows is always correct).
    """
    from transformers import PreTrainedModel

    if not isinstance(model, (PeftModel, PreTrainedModel)):
        return True
    spec = method_of(model)
    return spec is not None and spec.inserts_input_tokens


def quantization_of(model: Any) -> str | None:
    """'4bit', '8bit', 'other' (a non-bitsandbytes method) or None, for plain and PEFT-wrapped models."""
    base = base_of(model)
    if getattr(base, "is_loaded_in_4bit", False):
        return "4bit"
    if getattr(base, "is_loaded_in_8bit", False):
        return "8bit"
    qconfig = getattr(getattr(base, "config", None), "quantization_config", None)
    if qconfig is not None:
        get = qconfig.get if isinstance(qconfig, dict) else lambda k, d=None: getattr(qconfig, k, d)
        return "4bit" if get("load_in_4bit", False) else "8bit" if get("load_in_8bit", False) else "other"
    return None


def infer_task(model: Any) -> str | None:
    """The task a transformers model's head implies, or None for an unfamiliar class."""
    from transformers.models.auto import modeling_auto as auto

    name = type(base_of(model)).__name__
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


def can_generate(model: Any) -> bool:
    """True for models with a working generate() (causal LMs, PEFT-wrapped or not)."""
    check = getattr(model, "can_generate", None)
    return callable(getattr(model, "generate", None)) and (check is None or bool(check()))


def id2label(model: Any) -> dict[int, str]:
    """The head's label names by id; ConfigError when the config has none."""
    mapping = getattr(getattr(model, "config", None), "id2label", None)
    if not mapping:
        raise ConfigError("the model's config has no id2label, so predicted ids cannot be named; load it with "
                          "id2label={0: 'O', 1: 'B-Disease', ...} (load_model(..., id2label=...))")
    return {int(k): v for k, v in mapping.items()}


def context_limit(model: Any) -> int | None:
    """Positions left for real tokens: the model's max_position_embeddings minus any virtual tokens."""
    positions = getattr(text_config(model), "max_position_embeddings", None)
    if not isinstance(positions, int):
        return None
    return positions - virtual_tokens(model)


def token_limit(model: Any, tokenizer: Any, asked: int | None = None) -> int | None:
    """Tokens one row may have: what was asked, within the tokenizer's and the model's limits.

    The model's limit is its context minus virtual tokens: longer rows would index past learned
    position embeddings (a crash) once a soft prompt is prepended.
    """
    tokenizer_max = getattr(tokenizer, "model_max_length", None)
    tokenizer_max = tokenizer_max if isinstance(tokenizer_max, int) and tokenizer_max <= _SENSIBLE_MODEL_MAX else None
    limits = [n for n in (asked, tokenizer_max, context_limit(model)) if isinstance(n, int) and n > 0]
    return min(limits) if limits else None


def architecture(model: Any) -> dict[str, Any]:
    """Model type and sizes: what a run directory records to refuse mixing two bases."""
    config = text_config(model)
    weight = base_of(model).get_input_embeddings().weight
    return {"model_type": getattr(config, "model_type", ""), "vocab_size": int(weight.shape[0]),
            "hidden_size": int(weight.shape[1]), "num_layers": int(getattr(config, "num_hidden_layers", 0) or 0)}


def base_fingerprint(model: Any) -> dict[str, Any]:
    """Enough of the base model to tell it from another: architecture sizes and a few embedding values.

    The embedding probe (8 rows spread over the vocabulary, 8 dims each) separates two checkpoints of
    the same architecture; it is compared with a tolerance so a bf16 load of the same base matches.
    """
    base = base_of(model)
    weight = base.get_input_embeddings().weight
    rows = torch.linspace(0, weight.shape[0] - 1, _PROBE_ROWS).long().to(weight.device)
    probe = weight.detach()[rows, :_PROBE_DIMS].float().cpu().flatten()
    return {"name_or_path": str(getattr(base.config, "_name_or_path", "") or ""), **architecture(model),
            "embedding_probe": [round(v, 6) for v in probe.tolist()]}


def ensure_pad_token(tokenizer: Any) -> bool:
    """Give a tokenizer without a pad token its eos token as pad (batching needs one); True if it did."""
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
        return True
    return False


def checkpointing_on(model: Any) -> bool:
    """Whether gradient (activation) checkpointing is switched on (transformers 5 renamed the flag)."""
    flag = getattr(model, "is_activation_checkpointing", None)
    return bool(getattr(model, "is_gradient_checkpointing", False) if flag is None else flag)


def keeps_rows_apart(model: Any) -> bool:
    """True when rows concatenated into one sequence stay apart (attention split by position_ids).

    transformers builds a block-diagonal mask from position_ids for most architectures; one that does
    not would let rows attend to each other, so it is checked on a tiny input rather than assumed.
    """
    device = device_of(model)
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
