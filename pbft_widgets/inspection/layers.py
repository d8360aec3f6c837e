"""Which layers does a learned prefix work through? Replace one layer's prefix at a time and measure the loss.

Prefix tuning learns keys and values for every attention layer, so it has no tokens to read as
words and no input embeddings to ablate. Its causal question is per layer: take the learned prefix
of layer L away (zeros, or the mean of its positions) while every other layer keeps its own, and
see how much the answer's loss rises. Layers whose replacement costs nothing are ones the prefix
does not need; the figure next to ``prefix_summary``'s norms tells size from use.

The loss is the teacher-forced cross-entropy of the reference answer (the completion training
scores), so it works for generation tasks as well as classification, with no generation needed;
for a template with a verbalizer, label-word accuracy is measured too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..evaluation import evaluate
from ..model_facts import device_of
from ..progress import advance, bar
from ..uncertainty import accuracy_differences, mean_differences
from .prompts import inference, prompt_spec

LAYER_REPLACEMENTS = ("zero", "mean")


def _require_prefix(model, what: str) -> None:
    if not prompt_spec(model).prompt_in_cache:
        raise ConfigError(f"{what} needs a prefix-tuning adapter (a key/value prefix in every layer); for a soft "
                          "prompt in the input use ablate_tokens(model, tokenizer, template, rows)")


def _require_replacement(kind: str) -> None:
    if kind not in LAYER_REPLACEMENTS:
        raise ConfigError(f"layer replacement {kind!r}; use one of {', '.join(map(repr, LAYER_REPLACEMENTS))}")


def _require_layers(model, layers: Sequence[int]) -> None:
    n_layers = len(model.get_prompt(batch_size=1).layers)
    if bad := [layer for layer in layers if not 0 <= layer < n_layers]:
        raise ConfigError(f"layers {bad} do not exist; the prefix has layers 0..{n_layers - 1}")


@contextmanager
def replaced_prefix_layer(model, layer: int, replacement: str) -> Iterator[None]:
    """Within the block, layer ``layer``'s learned prefix keys and values are replaced; the others stay learned.

    Args:
        model: a prefix-tuning PeftModel.
        layer: which attention layer (0-based).
        replacement: "zero" (keys and values all zero: the prefix positions draw attention but add
            nothing) or "mean" (every position holds the mean of the layer's positions: the layer's
            prefix keeps its size and loses what tells its positions apart).

    Returns:
        A context manager; the learned prefix is back after the block, also when it raises.

    Example:
        >>> from pbft_widgets import apply_method, load_model
        >>> from pbft_widgets.inspection import prefix_summary, replaced_prefix_layer
        >>> lm = load_model()
        >>> model = apply_method(lm.model, "prefix-tuning", num_virtual_tokens=4).model
        >>> with replaced_prefix_layer(model, 3, "zero"):
        ...     prefix_summary(model)[3]["key_norm"]
        0.0
    """
    _require_prefix(model, "replaced_prefix_layer")
    _require_replacement(replacement)
    _require_layers(model, [layer])
    learned = model.get_prompt  # PEFT's bound method, which builds the prefix cache per forward pass

    def replace(tensor: torch.Tensor) -> torch.Tensor:  # [batch, heads, positions, head_dim]
        if replacement == "zero":
            return torch.zeros_like(tensor)
        return tensor.mean(dim=2, keepdim=True).expand_as(tensor).contiguous()

    def get_prompt(batch_size: int, task_ids: Any = None, max_cache_len: Any = None) -> Any:
        cache = learned(batch_size, task_ids=task_ids, max_cache_len=max_cache_len)
        entry = cache.layers[layer]
        entry.keys, entry.values = replace(entry.keys), replace(entry.values)
        return cache

    model.get_prompt = get_prompt  # an instance attribute shadows PEFT's method for this model only
    try:
        yield
    finally:
        del model.get_prompt


def completion_losses(model, tokenizer, template, rows: Sequence[Mapping[str, Any]], *,
                      batch_size: int = 8) -> np.ndarray:
    """Per row, the mean cross-entropy (nats per token) of its reference completion given its prompt.

    The completion is what training scores (``template.render(row).completion``, end-of-text
    included), tokenised apart from the prompt as the trainer does. Works with or without a prompt
    or prefix in the model: only the logits of the row's own positions are read.

    Args:
        model: any causal LM, PEFT-wrapped or not.
        tokenizer: its tokenizer.
        template: the template the rows are rendered with.
        rows: rows with the template's fields and target.
        batch_size: rows per forward pass.

    Returns:
        An array with one loss per row, in row order.
    """
    special = template.style != "chat"  # chat prompts hold their special tokens as text
    pairs = []
    for row in rows:
        shown = template.render(row, tokenizer)
        pairs.append((tokenizer(shown.prompt, add_special_tokens=special)["input_ids"],
                      tokenizer(shown.completion, add_special_tokens=False)["input_ids"]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = device_of(model)
    losses = []
    with inference(model):
        for start in range(0, len(pairs), batch_size):
            batch = pairs[start:start + batch_size]
            length = max(len(p) + len(c) for p, c in batch)
            ids = torch.full((len(batch), length), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            scored = torch.zeros((len(batch), length), dtype=torch.bool)  # positions whose token is scored
            for i, (prompt, completion) in enumerate(batch):  # right padding: prompt tuning dislikes left (peft #1093)
                ids[i, :len(prompt) + len(completion)] = torch.tensor(prompt + completion)
                mask[i, :len(prompt) + len(completion)] = 1
                scored[i, len(prompt):len(prompt) + len(completion)] = True
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, -length:]
            targets = ids[:, 1:].to(logits.device)
            where = scored[:, 1:].to(logits.device)
            picked = logits[:, :-1][where].float().log_softmax(-1).gather(-1, targets[where][:, None])[:, 0]
            per_row = torch.zeros(len(batch), device=logits.device).index_add_(
                0, where.nonzero()[:, 0], -picked) / where.sum(1)
            losses.extend(per_row.tolist())
            advance(len(batch))
    return np.array(losses)


def ablate_layers(model, tokenizer, template, rows: Sequence[Mapping[str, Any]], *,
                  replacements: Sequence[str] = ("zero",), layers: Sequence[int] | None = None,
                  batch_size: int = 8, seed: int = 0, progress: bool | None = None) -> list[dict[str, Any]]:
    """Replace one layer's learned prefix at a time and measure what the answers' loss (and accuracy) lose.

    Args:
        model: a trained prefix-tuning model.
        tokenizer: its tokenizer.
        template: the template it was trained with; with a verbalizer, label-word accuracy is measured too.
        rows: the evaluation rows (with their reference answers).
        replacements: any of "zero" and "mean" (see `replaced_prefix_layer`).
        layers: which layers to ablate (default: all).
        batch_size: rows per forward pass.
        seed: seeds the paired bootstrap of the differences.
        progress: a bar over the measurements (default: shown unless ``CI`` or ``PBFT_PROGRESS=0``).

    Returns:
        One dict per (layer, replacement), in ``layers`` order: ``layer``, ``replacement``, ``loss``
        and ``delta_loss`` (mean completion cross-entropy and its change, with 95 % paired-bootstrap
        bounds over the rows, ``delta_loss_low``/``_high``); with a verbalizer also ``accuracy``,
        ``delta_accuracy`` and its bounds.

    Example:
        >>> from pbft_widgets import PromptTemplate, apply_method, load_model
        >>> from pbft_widgets.inspection import ablate_layers, layer_ablation_figure
        >>> lm = load_model()
        >>> template = PromptTemplate(input_template="Function: {text}", output_indicator="Summary:")
        >>> model = apply_method(lm.model, "prefix-tuning", num_virtual_tokens=4).model
        >>> rows = [{"text": "def add(a, b): return a + b", "label": "Add two numbers."}] * 3
        >>> table = ablate_layers(model, lm.tokenizer, template, rows, layers=[0, 29])
        >>> [(row["layer"], row["replacement"]) for row in table]
        [(0, 'zero'), (29, 'zero')]
        >>> fig = layer_ablation_figure(table)
    """
    _require_prefix(model, "ablate_layers")
    for kind in replacements:
        _require_replacement(kind)
    indices = (list(range(len(model.get_prompt(batch_size=1).layers))) if layers is None
               else [int(i) for i in layers])
    _require_layers(model, indices)
    rows = list(rows)
    if not rows:
        raise ConfigError("ablate_layers got no rows; pass the evaluation rows with their answers")
    classify = template.verbalizer is not None

    def measure() -> tuple[np.ndarray, Any]:
        losses = completion_losses(model, tokenizer, template, rows, batch_size=batch_size)
        scored = evaluate(model, tokenizer, rows, template=template, task_kind="classification",
                          batch_size=batch_size) if classify else None
        return losses, scored

    with bar(1 + len(replacements) * len(indices), "ablating layers", "measurement", progress) as counter:
        reference_losses, reference = measure()
        counter.update(1)
        by_kind = {}
        for kind in replacements:
            by_kind[kind] = []
            for layer in indices:
                with replaced_prefix_layer(model, layer, kind):
                    by_kind[kind].append(measure())
                counter.update(1)
    table = []
    for kind in replacements:
        measured = by_kind[kind]
        loss_bounds = mean_differences(reference_losses, [losses for losses, _ in measured], seed=seed)
        accuracy_bounds = (accuracy_differences(reference, [scored for _, scored in measured], seed=seed)
                           if classify else [None] * len(indices))
        for layer, (losses, scored), (low, high), accuracy in zip(indices, measured, loss_bounds, accuracy_bounds):
            row = {"layer": layer, "replacement": kind, "loss": float(losses.mean()),
                   "delta_loss": float(losses.mean() - reference_losses.mean()), "delta_loss_low": low,
                   "delta_loss_high": high}
            if scored is not None:
                row |= {"accuracy": scored.scores["accuracy"],
                        "delta_accuracy": scored.scores["accuracy"] - reference.scores["accuracy"],
                        "delta_accuracy_low": accuracy[0], "delta_accuracy_high": accuracy[1]}
            table.append(row)
    return sorted(table, key=lambda row: (indices.index(row["layer"]), replacements.index(row["replacement"])))
