"""Completion-only logits: the output layer runs at the positions the loss scores, and nowhere else.

With completion-only loss, a clause-label answer is 2-4 tokens after a prompt of ~50, yet the
usual path projects every position through the output layer (49,152 × 576 on SmolLM2, a fifth
of the model's multiply-adds) and takes a softmax over the whole vocabulary there: TRL's fused
head keeps only the scored positions where Triton runs, and scores all of them elsewhere (CPUs).
Here a pre-hook on the model's own output layer hands it only the hidden states of positions
whose next token is a completion token, so the model's forward (soft prompts, prefixes, LoRA,
logit scaling) is otherwise untouched and the loss is the same sum over the same tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

IGNORED = -100


@dataclass
class CompletionLoss:
    """The loss and what the trainer logs beside it, from the scored positions only."""

    loss: torch.Tensor
    scored_tokens: int
    correct_tokens: int
    entropy_sum: float


def next_token_targets(labels: torch.Tensor, positions: int) -> torch.Tensor:
    """The label each of `positions` hidden states predicts (`IGNORED` where nothing is scored).

    Soft prompts and P-tuning prepend their virtual tokens to the model's input, so the output
    layer sees `positions` ≥ the labels' length; the extra positions are at the front and scored by
    nothing. Position t predicts label t + 1, as the models' own loss shifts them.
    """
    extra = positions - labels.size(1)
    if extra < 0:
        raise ValueError(f"{labels.size(1)} labels for {positions} positions; labels must not outnumber them")
    full = F.pad(labels, (extra, 0), value=IGNORED)
    return F.pad(full[:, 1:], (0, 1), value=IGNORED)


@contextmanager
def scored_positions_only(output_layer: torch.nn.Module, labels: torch.Tensor):
    """While active, `output_layer` sees only the hidden states whose next token is scored.

    Yields a dict that receives `"targets"` (1-D, the scored labels in the order of the kept rows)
    once the forward has passed the layer.
    """
    seen: dict[str, torch.Tensor] = {}

    def keep_scored(module: torch.nn.Module, args: tuple) -> tuple:
        hidden = args[0]
        targets = next_token_targets(labels.to(hidden.device), hidden.size(1))
        keep = targets != IGNORED
        seen["targets"] = targets[keep]
        return (hidden[keep].unsqueeze(0), *args[1:])

    handle = output_layer.register_forward_pre_hook(keep_scored)
    try:
        yield seen
    finally:
        handle.remove()


def completion_only_loss(model: Any, output_layer: torch.nn.Module, inputs: Mapping[str, Any],
                         labels: torch.Tensor, num_items_in_batch: int | torch.Tensor | None = None
                         ) -> CompletionLoss:
    """Mean cross-entropy of the completion tokens, the output layer run at those positions only.

    Args:
        model: What the trainer calls (a `PeftModel`, possibly wrapped for distributed training).
        output_layer: The model's output embeddings (`get_output_embeddings()` of the unwrapped model).
        inputs: The batch without labels (`input_ids`, `attention_mask` or `position_ids`, ...).
        labels: `IGNORED` at prompt, padding and row-boundary positions, token ids at completion tokens.
        num_items_in_batch: Tokens scored across the accumulated batches, when the trainer counts them;
            the sum is divided by it (as the models' own loss does), else by this batch's count.

    Returns:
        `CompletionLoss` with the loss (a tensor with gradient) and the logged counts.
    """
    with scored_positions_only(output_layer, labels) as seen:
        logits = model(**inputs, use_cache=False).logits
    log_probs = F.log_softmax(logits.reshape(-1, logits.size(-1)).float(), dim=-1)
    targets = seen["targets"]
    total = F.nll_loss(log_probs, targets, reduction="sum")
    divisor = num_items_in_batch if num_items_in_batch is not None else targets.numel()
    loss = total / torch.as_tensor(divisor, device=total.device).clamp(min=1)
    with torch.no_grad():
        entropy = -(log_probs.exp() * log_probs).sum()
        correct = int((log_probs.argmax(-1) == targets).sum())
    return CompletionLoss(loss=loss, scored_tokens=int(targets.numel()), correct_tokens=correct,
                          entropy_sum=float(entropy))
