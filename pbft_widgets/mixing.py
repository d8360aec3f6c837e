"""Mixed-task batches: rows for different adapters of one base model in one forward pass.

PEFT routes the rows of one batch to different LoRA adapters (``adapter_names``), but a
prompt-learning PeftModel inserts one prompt for the whole batch (peft #759). A soft prompt does not
depend on the input, though: it is a fixed block of embeddings placed before the text. So a mixed
batch is built by hand: every row becomes ``[its task's virtual tokens] + [its text's embeddings]``
(none for the bare base model), passed as ``inputs_embeds`` with a mask that hides the padding, while
LoRA rows are routed by name through PEFT. The prompt+LoRA hybrid is both: its prompt goes in front
of its row, its LoRA weights are routed to that row.

Positions follow each row's own tokens (the attention mask's running count), so a row sees exactly
the positions it has when served alone: virtual tokens at 0..n-1, its text from n. Outputs equal
serving each task alone up to float rounding in the batched matrix products.

Prefix tuning cannot mix: its prompt is a key/value prefix inside every layer, and one batch holds
one cache. Banks refuse it in a mixed batch with what to do instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

BASE_ROUTE = "__base__"  # PEFT's name for "no LoRA adapter" in adapter_names


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
        weight = embedding.weight
        pieces = []
        for i, ids in zip(rows, encoded):
            text = embedding(torch.tensor(ids, device=weight.device))
            prompt = self.prompts[i]
            pieces.append(text if prompt is None else torch.cat([prompt.to(device=weight.device, dtype=text.dtype),
                                                                  text]))
        width = max(piece.shape[0] for piece in pieces)
        embeds = torch.zeros(len(pieces), width, weight.shape[1], dtype=pieces[0].dtype, device=weight.device)
        mask = torch.zeros(len(pieces), width, dtype=torch.long, device=weight.device)
        for k, piece in enumerate(pieces):
            span = slice(width - piece.shape[0], width) if padding_side == "left" else slice(0, piece.shape[0])
            embeds[k, span] = piece
            mask[k, span] = 1
        return {"inputs_embeds": embeds, "attention_mask": mask}


def soft_prompt(prompt_model) -> torch.Tensor:
    """The virtual-token embeddings a prompt-learning PeftModel puts before every input: (tokens, hidden).

    Prompt tuning stores them; P-tuning computes them with its encoder from fixed token ids, so
    either way they do not depend on the input and one computation serves every request.
    """
    with torch.no_grad():
        return prompt_model.get_prompt(batch_size=1)[0].detach()
