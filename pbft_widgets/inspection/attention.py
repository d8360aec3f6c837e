"""Attention of an input text to the learned prompt (virtual tokens or prefix keys), per layer and head."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTunerLayer

from ..errors import ConfigError
from .neighbours import shown, token_texts
from .prompts import inference, prompt_spec


@dataclass
class AttentionReport:
    """Attention of one input text to the learned prompt, per layer and head.

    ``attentions`` has shape [layers, heads, n_tokens, n_virtual + n_tokens]: rows are the input
    tokens as queries, columns the virtual tokens (or prefix positions) then the input tokens.
    ``share[l, h]`` is the mean over input queries of the attention mass on the virtual tokens;
    the input share is its complement. ``base_attentions`` ([layers, heads, n, n]) is the same
    text through the model without its adapter, when compared.

    A head with nearly all its attention on v0 has often just moved its "attention sink" (the
    first position many heads park attention on) onto the prompt; check the base model's
    attention to its own first token before reading meaning into it.
    """

    text: str
    kind: str
    tokens: list[str]
    n_virtual: int
    attentions: torch.Tensor
    share: torch.Tensor
    base_attentions: torch.Tensor | None = None

    @property
    def input_share(self) -> torch.Tensor:
        """Share of attention on the input tokens, per layer and head (1 - share)."""
        return 1.0 - self.share

    @property
    def query_labels(self) -> list[str]:
        """Input tokens as '<position> <text>': unique, so repeated words stay apart on a plot axis."""
        return [f"{i} {shown(t)}" for i, t in enumerate(self.tokens)]

    @property
    def key_labels(self) -> list[str]:
        """Virtual tokens (or prefix positions) v0..vN, then the input tokens."""
        return [f"v{i}" for i in range(self.n_virtual)] + self.query_labels

    @property
    def shift(self) -> torch.Tensor | None:
        """How much the prompt re-routes attention among the input tokens, per layer and head.

        Total-variation distance (0 = same pattern, 1 = disjoint) between the base model's attention
        row and the tuned model's attention to the input tokens (renormalised), averaged over queries.
        """
        if self.base_attentions is None:
            return None
        tuned = self.attentions[..., self.n_virtual:]
        tuned = tuned / tuned.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        return 0.5 * (tuned - self.base_attentions).abs().sum(dim=-1).mean(dim=-1)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per layer and head: prompt_share, input_share and (when compared) shift."""
        shift = self.shift
        return [{"layer": layer, "head": head, "prompt_share": float(self.share[layer, head]),
                 "input_share": float(self.input_share[layer, head]),
                 **({"shift": float(shift[layer, head])} if shift is not None else {})}
                for layer in range(self.share.shape[0]) for head in range(self.share.shape[1])]


@contextmanager
def _eager_attention(model) -> Iterator[None]:
    """Eager attention for the duration (only it returns attention weights), then the original."""
    base = model.get_base_model()
    original = base.config._attn_implementation
    if original != "eager":
        base.set_attn_implementation("eager")
    try:
        yield
    finally:
        if original != "eager":
            base.set_attn_implementation(original)


@contextmanager
def _base_only(model) -> Iterator[torch.nn.Module]:
    """The transformers model under the adapter, with any LoRA layers in it (the hybrid's) switched off.

    For prompt learning PEFT's disable_adapter() only routes forward() to this same model, and it
    fails on models without generate() (sequence classifiers); calling the base model is the same
    computation without that failure.
    """
    base = model.get_base_model()
    layers = [m for m in base.modules() if isinstance(m, BaseTunerLayer) and not m.disable_adapters]
    # enable_adapters(True) marks adapter weights trainable; put back what each weight was instead
    grads = {p: p.requires_grad for layer in layers for p in layer.parameters()}
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield base
    finally:
        for layer in layers:
            layer.enable_adapters(True)
        for param, requires_grad in grads.items():
            param.requires_grad_(requires_grad)


def _attention_stack(model, inputs: dict[str, torch.Tensor], n_tokens: int) -> torch.Tensor:
    """One forward; attention of the input-token queries, stacked to [layers, heads, n, keys]."""
    attentions = model(**inputs, output_attentions=True, return_dict=True).attentions
    if not attentions or any(a is None for a in attentions):
        raise ConfigError(f"the model returned no attention weights (attention implementation "
                          f"{model.config._attn_implementation!r}); load it with attn_implementation='eager', "
                          "e.g. load_model(..., attn_implementation='eager')")
    return torch.stack([a[0, :, -n_tokens:, :].float().cpu() for a in attentions])


def _forward_inputs(model, encoding) -> dict[str, torch.Tensor]:
    """input_ids + attention_mask, and logits for the last position only where the model allows it.

    Attention needs no logits; skipping the vocabulary projection for all but one position saves
    a tenth of a small model's forward pass.
    """
    device = next(model.parameters()).device
    inputs = {"input_ids": encoding["input_ids"].to(device), "attention_mask": encoding["attention_mask"].to(device)}
    if "logits_to_keep" in inspect.signature(model.get_base_model().forward).parameters:
        inputs["logits_to_keep"] = 1
    return inputs


def prompt_attention(model, tokenizer, text: str, *, compare_base: bool = True) -> AttentionReport:
    """Share of attention the input tokens pay to the learned prompt, for every layer and head.

    Works for prompt tuning, P-tuning and the hybrid (virtual tokens are sequence positions) and
    prefix tuning (prefix keys in every layer). One forward pass with the adapter, plus one without
    it when ``compare_base``; the model's attention implementation and train/eval mode are restored.
    """
    kind = prompt_spec(model).name
    if not text:
        raise ConfigError("text is empty; pass the input whose attention to the prompt you want to see")
    encoding = tokenizer(text, return_tensors="pt")
    ids = encoding["input_ids"][0].tolist()
    n_virtual = model.peft_config[model.active_adapter].num_virtual_tokens
    inputs = _forward_inputs(model, encoding)
    with _eager_attention(model), inference(model):
        attentions = _attention_stack(model, inputs, len(ids))
        base = None
        if compare_base:
            with _base_only(model) as base_model:
                base = _attention_stack(base_model, inputs, len(ids))
    expected = n_virtual + len(ids)
    if attentions.shape[-1] != expected:
        raise ConfigError(f"attention covers {attentions.shape[-1]} keys, expected {n_virtual} virtual + {len(ids)} "
                          f"input tokens; {type(model.get_base_model()).__name__} may handle the "
                          f"{kind} prompt differently, so this inspection does not apply to it")
    share = attentions[..., :n_virtual].sum(dim=-1).mean(dim=-1)
    return AttentionReport(text=text, kind=kind, tokens=token_texts(tokenizer, ids), n_virtual=n_virtual,
                           attentions=attentions, share=share, base_attentions=base)
