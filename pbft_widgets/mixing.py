"""Mixed-task batches: rows for different adapters of one base model in one forward pass.

PEFT routes the rows of one batch to different LoRA adapters (``adapter_names``), but a
prompt-learning PeftModel inserts one prompt for the whole batch (peft #759). A soft prompt does not
depend on the input, though: it is a fixed block of embeddings placed before the text. So a mixed
batch is built by hand: every row becomes ``[its task's virtual tokens] + [its text's embeddings]``
(none for the bare base model), passed as ``inputs_embeds`` with a mask that hides the padding, while
LoRA rows are routed by name through PEFT. The prompt+LoRA hybrid is both: its prompt goes in front
of its row, its LoRA weights are routed to that row.

Label-word scoring runs those rows right-padded in one pass (:meth:`MixedRows.inputs`). Generation
first runs the prompts in small length-sorted groups, so little compute goes to padding, lays their
keys and values side by side, and lets ``generate()`` decode all rows together from that cache
(:meth:`MixedRows.prefilled`). Positions follow each row's own tokens (the attention mask's running
count), so a row sees exactly the positions it has when served alone: virtual tokens at 0..n-1, its
text from n. Outputs equal serving each task alone up to float rounding in the batched matrix
products.

Prefix tuning cannot mix: its prompt is a key/value prefix inside every layer, and one batch holds
one cache. Banks refuse it in a mixed batch with what to do instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .model_facts import text_config

BASE_ROUTE = "__base__"  # PEFT's name for "no LoRA adapter" in adapter_names
PREFILL_ROWS = 4  # rows per prefill pass in mixed generation (sorted by length, so each pass pads little)


@dataclass(frozen=True)
class MixedRows:
    """What each row of a mixed batch runs with.

    Attributes:
        prompts: per row, the soft prompt placed before its text, shape (virtual tokens, hidden), or
            None (LoRA tasks and the base model).
        adapters: per row, the LoRA adapter PEFT routes it to (``BASE_ROUTE`` for none); None when the
            model carries no LoRA adapter at all.
    """

    prompts: list[torch.Tensor | None]
    adapters: list[str] | None = None

    def virtual(self, row: int) -> int:
        """How many virtual tokens row ``row`` gets in front of its text."""
        prompt = self.prompts[row]
        return 0 if prompt is None else prompt.shape[0]

    def route(self, rows: Sequence[int]) -> dict[str, list[str]]:
        """The forward/generate keyword that routes ``rows`` to their LoRA adapters (empty without LoRA)."""
        return {} if self.adapters is None else {"adapter_names": [self.adapters[i] for i in rows]}

    def inputs(self, model, encoded: Sequence[Sequence[int]], rows: Sequence[int], *,
               padding_side: str) -> dict[str, torch.Tensor]:
        """``inputs_embeds`` and ``attention_mask`` for ``rows`` (whose token ids are ``encoded``).

        Each row is its soft prompt then its text's embeddings; shorter rows are padded on
        ``padding_side`` with zero vectors the mask hides.
        """
        embedding = model.get_input_embeddings()
        embeds, mask = _padded([self._embedded(embedding, ids, i) for ids, i in zip(encoded, rows)], padding_side)
        return {"inputs_embeds": embeds, "attention_mask": mask}

    def prefilled(self, model, encoded: Sequence[Sequence[int]], rows: Sequence[int], *,
                  pad_id: int) -> dict[str, Any]:
        """``generate()`` inputs for ``rows`` with everything but each row's last token already in a KV cache.

        One padded pass over rows of very different lengths (a 20-token soft prompt on some, none on
        others) spends much of its compute on padding. Instead the rows are sorted by length and
        run ``PREFILL_ROWS`` at a time, each pass padded only to its own longest row; their keys and
        values are then laid side by side, left-padded to the batch's width, and ``generate()``
        continues from that cache with each row's last token (positions follow the attention mask,
        so every row keeps the positions it has alone). A sliding-window layer (Gemma-3) caches only
        its last window of keys; they go at the right end, the only part such a layer reads.
        """
        from transformers import DynamicCache

        embedding = model.get_input_embeddings()
        heads = [self._embedded(embedding, ids, i)[:-1] for ids, i in zip(encoded, rows)]
        width = max(head.shape[0] for head in heads)
        device = embedding.weight.device
        mask = torch.zeros(len(rows), width, dtype=torch.long, device=device)
        layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        order = sorted(range(len(rows)), key=lambda k: -heads[k].shape[0])
        for start in range(0, len(order) if width else 0, PREFILL_ROWS):
            group = order[start:start + PREFILL_ROWS]
            embeds, group_mask = _padded([heads[k] for k in group], "left")
            if group_mask.shape[1] == 0:
                continue  # rows of one token: nothing before it to cache
            positions = (group_mask.cumsum(-1) - 1).clamp(min=0)
            cache = model(inputs_embeds=embeds, attention_mask=group_mask, position_ids=positions, use_cache=True,
                          logits_to_keep=1, **self.route([rows[k] for k in group])).past_key_values
            right = slice(width - group_mask.shape[1], width)
            if not layers:
                layers = [(layer.keys.new_zeros(len(rows), *layer.keys.shape[1:2], width, layer.keys.shape[-1]),
                           layer.values.new_zeros(len(rows), *layer.values.shape[1:2], width,
                                                  layer.values.shape[-1])) for layer in cache.layers]
            for (keys, values), layer in zip(layers, cache.layers):
                kept = slice(width - layer.keys.shape[-2], width)  # a sliding-window layer keeps only its window
                keys[group, :, kept] = layer.keys
                values[group, :, kept] = layer.values
            mask[group, right] = group_mask
        ids = torch.full((len(rows), width + 1), pad_id, dtype=torch.long, device=device)
        ids[:, -1] = torch.tensor([row_ids[-1] for row_ids in encoded], device=device)
        mask = torch.cat([mask, torch.ones(len(rows), 1, dtype=mask.dtype, device=device)], 1)
        inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, **self.route(rows)}
        if layers:
            inputs["past_key_values"] = DynamicCache(ddp_cache_data=layers, config=text_config(model))
        return inputs

    def _embedded(self, embedding, ids: Sequence[int], row: int) -> torch.Tensor:
        """Row ``row``'s soft prompt (if any) then its text's embeddings: (tokens, hidden)."""
        weight = embedding.weight
        text = embedding(torch.tensor(ids, device=weight.device))
        prompt = self.prompts[row]
        return text if prompt is None else torch.cat([prompt.to(device=weight.device, dtype=text.dtype), text])


def _padded(pieces: list[torch.Tensor], side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (tokens, hidden) pieces into (rows, width, hidden) with zero padding on ``side``, and the mask."""
    width = max(piece.shape[0] for piece in pieces)
    first = pieces[0]
    embeds = first.new_zeros(len(pieces), width, first.shape[1])
    mask = torch.zeros(len(pieces), width, dtype=torch.long, device=first.device)
    for k, piece in enumerate(pieces):
        span = slice(width - piece.shape[0], width) if side == "left" else slice(0, piece.shape[0])
        embeds[k, span] = piece
        mask[k, span] = 1
    return embeds, mask


def soft_prompt(prompt_model) -> torch.Tensor:
    """The virtual-token embeddings a prompt-learning PeftModel puts before every input: (tokens, hidden).

    Prompt tuning stores them; P-tuning computes them with its encoder from fixed token ids, so
    either way they do not depend on the input and one computation serves every request.
    """
    with torch.no_grad():
        return prompt_model.get_prompt(batch_size=1)[0].detach()
