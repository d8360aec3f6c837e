"""The prompt+LoRA hybrid: a trainable soft prompt and LoRA adapters in one causal LM.

PEFT holds one kind of method per PeftModel, so a prompt-learning adapter cannot be stacked on a
LoRA PeftModel. Instead the LoRA layers are injected into the base model with PEFT's functional API
(``inject_adapter_in_model``) and that model is wrapped by a prompt-tuning ``PeftModelForCausalLM``:
its forward() and generate() insert the virtual tokens exactly as for plain prompt tuning, and the
LoRA layers run inside the base model. Wrapping freezes every base parameter, so the LoRA parameters
are made trainable again afterwards.

On disk the hybrid is one directory with two standard PEFT adapters: ``prompt/`` (prompt tuning)
and ``lora/`` (LoRA, keys in PeftModel format so ``PeftModel.load_adapter`` loads it, e.g. into an
AdapterBank next to other adapters). adapters.save_adapter writes both plus the manifest atomically.
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import (LoraConfig, PeftConfig, PeftModel, PeftModelForCausalLM, PromptTuningConfig,
                  get_peft_model_state_dict, inject_adapter_in_model, load_peft_weights,
                  set_peft_model_state_dict)
from peft.tuners.lora import LoraLayer

PROMPT_DIR = "prompt"
LORA_DIR = "lora"
LORA_ADAPTER = "default"
# PeftModel state-dict keys carry this prefix in front of the base model's module names.
PEFT_KEY_PREFIX = "base_model.model."


def build_prompt_lora(model, prompt_config: PromptTuningConfig, lora_config: LoraConfig) -> PeftModelForCausalLM:
    """Inject LoRA into ``model`` (in place), wrap it for prompt tuning, make both parts trainable."""
    inject_adapter_in_model(lora_config, model, adapter_name=LORA_ADAPTER)
    # The class directly, not get_peft_model: that warns about modifying a PEFT model twice.
    peft_model = PeftModelForCausalLM(model, prompt_config)
    _set_lora_trainable(peft_model, True)
    return peft_model


def lora_config_of(model) -> LoraConfig:
    """The LoRA config injected into the hybrid's base model."""
    return model.get_base_model().peft_config[LORA_ADAPTER]


def part_sizes(model) -> dict[str, int]:
    """Trainable parameters of the soft prompt and of the LoRA layers."""
    prompt = sum(p.numel() for p in model.prompt_encoder.parameters() if p.requires_grad)
    lora = sum(p.numel() for p in _lora_parameters(model) if p.requires_grad)
    return {"prompt": prompt, "lora": lora}


def param_groups(model, *, prompt_lr: float, lora_lr: float, weight_decay: float = 0.0) -> list[dict]:
    """Optimizer parameter groups: a soft prompt needs a ~100x higher learning rate than LoRA.

    Pass to any torch optimizer, e.g. ``torch.optim.AdamW(param_groups(model, prompt_lr=3e-2,
    lora_lr=5e-4))``; no weight decay on the prompt (it would pull the prompt towards zero).
    """
    prompt = [p for p in model.prompt_encoder.parameters() if p.requires_grad]
    lora = [p for p in _lora_parameters(model) if p.requires_grad]
    return [{"params": prompt, "lr": prompt_lr, "weight_decay": 0.0},
            {"params": lora, "lr": lora_lr, "weight_decay": weight_decay}]


def lora_state_dict(model) -> dict[str, torch.Tensor]:
    """The LoRA weights with the keys a LoRA PeftModel would save (so PEFT can load them)."""
    state = get_peft_model_state_dict(model.get_base_model(), adapter_name=LORA_ADAPTER)
    return {PEFT_KEY_PREFIX + k: v.detach().contiguous() for k, v in state.items()}


def save_parts(model, directory: Path) -> None:
    """Write ``prompt/`` and ``lora/`` into ``directory`` (the caller makes the write atomic)."""
    from safetensors.torch import save_file

    model.save_pretrained(str(directory / PROMPT_DIR))
    lora_dir = directory / LORA_DIR
    lora_dir.mkdir()
    config = lora_config_of(model)
    config.base_model_name_or_path = model.peft_config[model.active_adapter].base_model_name_or_path
    config.save_pretrained(str(lora_dir))
    save_file(lora_state_dict(model), str(lora_dir / "adapter_model.safetensors"), metadata={"format": "pt"})


def load_prompt_lora(base_model, directory: Path, *, is_trainable: bool = False) -> PeftModelForCausalLM:
    """Rebuild a saved hybrid on a fresh ``base_model`` (LoRA first, then the prompt around it)."""
    directory = Path(directory)
    lora_model = PeftModel.from_pretrained(base_model, str(directory / LORA_DIR), adapter_name=LORA_ADAPTER,
                                           is_trainable=is_trainable)
    with_lora = lora_model.get_base_model()
    if not is_trainable:
        return PeftModel.from_pretrained(with_lora, str(directory / PROMPT_DIR))
    # PEFT refuses is_trainable=True for prompt adapters; rebuild a trainable one and load the weights.
    config = PeftConfig.from_pretrained(str(directory / PROMPT_DIR))
    config.inference_mode = False
    peft_model = PeftModelForCausalLM(with_lora, config)
    set_peft_model_state_dict(peft_model, load_peft_weights(str(directory / PROMPT_DIR)))
    _set_lora_trainable(peft_model, True)
    return peft_model


def _lora_parameters(model) -> list[torch.nn.Parameter]:
    return [p for m in model.get_base_model().modules() if isinstance(m, LoraLayer)
            for name in m.adapter_layer_names for p in getattr(m, name).parameters()]


def _set_lora_trainable(model, trainable: bool) -> None:
    for module in model.get_base_model().modules():
        if isinstance(module, LoraLayer):
            module.set_adapter(LORA_ADAPTER, inference_mode=not trainable)
