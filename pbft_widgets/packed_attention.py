"""Attention row by row inside a padding-free batch, so packing saves the padding and nothing is spent.

A padding-free batch is one sequence holding every row. SDPA then attends over the whole packed
length under a block-diagonal mask: on the clause benchmark (8 rows of ~56 tokens) that is 452²
scores where the rows need 8 × 56², and attention was a fifth of a LoRA step on CPU. Flash-attention
kernels take the row boundaries (`cu_seq_lens`) instead; CPUs have no such kernel, so here each row
runs through SDPA on its own with the causal flag — the same scores, the same result.

`rows_apart(model)` switches a model to this attention while training; outside a padding-free batch
(no `cu_seq_lens_q` in the call: generation, evaluation of padded batches) it is plain SDPA.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

NAME = "pbft_rows_sdpa"


def _sdpa():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward


def rows_sdpa_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """SDPA per packed row when the batch carries row boundaries (`cu_seq_lens_q`), else plain SDPA.

    Query, key and value are `(1, heads, packed length, head dim)`; the result is
    `(1, packed length, heads, head dim)`, as SDPA's.
    """
    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        return _sdpa()(module, query, key, value, attention_mask, **kwargs)
    kwargs = {k: v for k, v in kwargs.items() if k not in ("is_causal", "cu_seq_lens_q", "cu_seq_lens_k")}
    starts_ends = bounds.tolist()
    outputs = [_sdpa()(module, query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], None, is_causal=True,
                       **kwargs)[0] for a, b in zip(starts_ends, starts_ends[1:]) if b > a]
    return torch.cat(outputs, dim=1), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, rows_sdpa_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)  # padded batches keep SDPA's masks


def can_run_rows_apart(model: Any) -> bool:
    """CPU models on SDPA whose every layer attends causally over the whole row (no sliding window).

    On a GPU one masked kernel over the packed length may well beat a launch per row and layer; that
    was not measured, so GPUs keep SDPA's block mask (or a flash-attention kernel, which takes rows).
    """
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    if next(model.parameters()).device.type != "cpu":
        return False
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return getattr(text, "sliding_window", None) is None and getattr(text, "attn_logit_softcapping", None) is None


@contextmanager
def rows_apart(model: Any) -> Iterator[bool]:
    """Within the block, `model` (a transformers model, or a peft model around one) attends row by row
    in padding-free batches. Yields whether it applies; other models are left as they are."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not can_run_rows_apart(base):
        yield False
        return
    _register()
    configs = [m.config for m in base.modules() if getattr(getattr(m, "config", None), "_attn_implementation",
                                                            None) == "sdpa"]
    for config in configs:
        config._attn_implementation = NAME
    try:
        yield True
    finally:
        for config in configs:
            config._attn_implementation = "sdpa"
