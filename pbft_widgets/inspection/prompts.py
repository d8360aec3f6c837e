"""What a PEFT model holds as its learned prompt: the soft prompt itself, snapshots of it, prefix sizes.

Works on PEFT objects (prompt tuning, P-tuning, prefix tuning, and the prompt+LoRA hybrid, which
is a prompt-tuning PeftModel), so models built with plain ``peft`` work too.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from peft import PeftModel

from ..errors import ConfigError
from ..model_facts import method_of
from ..registry import MethodSpec


def prompt_spec(model) -> MethodSpec:
    """The method of a model that learned a prompt; ConfigError naming the inspection that applies otherwise."""
    if not isinstance(model, PeftModel):
        raise ConfigError(f"{type(model).__name__} carries no PEFT adapter, so there is no learned prompt to "
                          "inspect; wrap it with apply_method(model, 'prompt-tuning', ...) and train it, or load "
                          "a trained adapter with load_adapter(base_model, path)")
    spec = method_of(model)
    if not spec.learns_prompt:
        raise ConfigError(f"the active adapter is {spec.name}, which changes weights and adds no soft prompt or "
                          "prefix; these inspections need prompt-tuning, p-tuning, prompt+lora or prefix-tuning. "
                          "Judge a LoRA adapter against its base model with pbft_widgets.evaluate(...) and "
                          "pbft_widgets.compare(...)")
    return spec


def prompt_kind(model) -> str:
    """'prompt-tuning', 'p-tuning', 'prompt+lora' or 'prefix-tuning'; ConfigError for anything else.

    The error names the inspection that does apply, so a notebook cell fails with its fix.
    """
    return prompt_spec(model).name


def require_embedding_prompt(model, what: str) -> None:
    """ConfigError unless the model's prompt lives in the input embedding space."""
    if prompt_spec(model).prompt_in_cache:
        raise ConfigError(f"{what} needs a soft prompt in the input embedding space, but prefix tuning learns "
                          "keys and values inside every layer; use prefix_summary(model) for their sizes or "
                          "prompt_attention(model, tokenizer, text) for the attention they draw")


@contextmanager
def inference(model) -> Iterator[None]:
    """Eval mode (no dropout on the attention weights) and no autograd; each module's mode restored."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, training in modes.items():
            module.training = training


def soft_prompt(model) -> torch.Tensor:
    """The virtual-token embeddings the model puts in front of every input: [n_virtual, dim].

    Taken from ``get_prompt``, i.e. exactly what forward() inserts: the learned table for prompt
    tuning and the hybrid, the prompt encoder's output for P-tuning.
    """
    require_embedding_prompt(model, "soft_prompt")
    with inference(model.prompt_encoder):  # an LSTM prompt encoder drops out in train mode
        return model.get_prompt(batch_size=1)[0].detach()


_SNAPSHOTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def snapshot_prompt(model) -> torch.Tensor:
    """Copy the current soft prompt (call before training) and remember it for initial_prompt()."""
    snapshot = soft_prompt(model).clone()
    _SNAPSHOTS[model] = snapshot
    return snapshot


def initial_prompt(model) -> torch.Tensor:
    """The prompt recorded by the last snapshot_prompt(model) call."""
    if model not in _SNAPSHOTS:
        raise ConfigError("no snapshot of this model's prompt was taken; call snapshot_prompt(model) before "
                          "training to compare the learned prompt with where it started")
    return _SNAPSHOTS[model]


def prefix_summary(model) -> list[dict[str, Any]]:
    """Per layer: mean L2 norm of the learned prefix keys and values (heads concatenated, per virtual token).

    Read from ``get_prompt``, the key/value cache PEFT hands to every attention layer.
    """
    if not prompt_spec(model).prompt_in_cache:
        raise ConfigError("prefix_summary needs a prefix-tuning adapter; for soft prompts in the input use "
                          "nearest_tokens(model, tokenizer) and prompt_attention(model, tokenizer, text)")
    with torch.no_grad():
        cache = model.get_prompt(batch_size=1)
    rows = []
    for index, layer in enumerate(cache.layers):
        norms = [t[0].transpose(0, 1).flatten(1).float().norm(dim=1).mean().item() for t in (layer.keys, layer.values)]
        rows.append({"layer": index, "key_norm": norms[0], "value_norm": norms[1]})
    return rows
