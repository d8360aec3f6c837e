"""The one generation and prediction engine: `evaluate()`, `AdapterBank`, the widgets and the
benchmarks all predict through it, so a served adapter answers exactly what it was scored on.

Causal LMs generate greedily in batches planned longest first and left-padded; a model that inserts
virtual tokens (prompt tuning, P-tuning, the prompt+LoRA hybrid) only shares a batch between prompts
of equal length, because PEFT ignores position ids for them and padding would move the text's
positions (peft #1093). Generation stops at the tokenizer's eos and any the model's generation
config adds. Token-classification heads predict with an argmax, read at each word's first sub-token
(the alignment training used). Label scores (label words of a causal LM, or a sequence head's
labels) live in :mod:`pbft_widgets.scoring`, which shares this module's batch plan.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .data.classification import first_subtokens
from .errors import ConfigError, DataError
from .mixing import MixedRows
from .model_facts import context_limit, device_of, id2label, inserts_virtual_tokens, method_of, token_limit
from .progress import advance

_HEAD_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_FALLBACK_HEAD_LIMIT = 512


def plan_batches(lengths: Sequence[int], batch_size: int, *, equal_length: bool) -> list[list[int]]:
    """Indices per batch, longest first (memory errors surface on the first batch, not the last).

    Sorting by length keeps padding small; ``equal_length=True`` puts only same-length inputs in a
    batch, so no padding exists at all.

    Example:
        >>> plan_batches([3, 5, 3, 4], 2, equal_length=True)
        [[1], [3], [0, 2]]
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}; use 1 or more")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    groups: list[list[int]] = []
    for i in order:
        if groups and (not equal_length or lengths[groups[-1][-1]] == lengths[i]):
            groups[-1].append(i)
        else:
            groups.append([i])
    return [group[s : s + batch_size] for group in groups for s in range(0, len(group), batch_size)]


def stop_ids(model: Any, tokenizer: Any) -> list[int]:
    """Token ids that end an answer: the tokenizer's eos plus any the model's generation config adds."""
    ids: list[int] = []
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    configured = configured if isinstance(configured, list) else [configured]
    for candidate in [tokenizer.eos_token_id, *configured]:
        if candidate is not None and candidate not in ids:
            ids.append(int(candidate))
    if not ids:
        raise ConfigError("the tokenizer has no eos token, so generation cannot stop; set tokenizer.eos_token "
                          "(e.g. to the model's end-of-turn token)")
    return ids


def warn_cut(cut: Sequence[int], total: int, limit: int, where: str, fix: str) -> None:
    """One warning saying how many tokens were cut from how many inputs, and what to do about it."""
    cut = [n for n in cut if n > 0]
    if cut:
        warnings.warn(f"{sum(cut)} tokens were cut from {len(cut)} of {total} {where} to fit {limit} tokens "
                      f"(the model's positions); {fix}", UserWarning, stacklevel=4)


def generate_texts(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    batch_size: int = 8,
    max_new_tokens: int = 64,
    add_special_tokens: bool = True,
    generation_kwargs: Mapping[str, Any] | None = None,
    mix: MixedRows | None = None,
) -> list[str]:
    """Greedy continuations of ``prompts``: new text only, cut at the first stop token, stripped.

    Batched runs return exactly what one-at-a-time generation returns (see the module docstring).
    An over-long prompt keeps its end, which holds the question and the answer cue.

    Args:
        model: a causal LM, plain or PEFT-wrapped (any method).
        tokenizer: its tokenizer; needs a pad token (``load_model`` sets one) and an eos token.
        prompts: rendered prompts, e.g. ``template.render_prompt(row, tokenizer)``.
        batch_size: prompts per forward pass.
        max_new_tokens: the answer's budget.
        add_special_tokens: False for chat-formatted prompts, which carry their special tokens.
        generation_kwargs: passed to ``generate()`` (e.g. ``do_sample=True``), over the greedy defaults.
        mix: per-row soft prompts and LoRA routes for a batch mixing tasks (see :mod:`pbft_widgets.mixing`);
            ``model`` is then the base model or the LoRA PeftModel holding every task's LoRA weights.

    Returns:
        One string per prompt, in order.

    Example:
        >>> from pbft_widgets import load_model
        >>> lm = load_model()
        >>> answers = generate_texts(lm.model, lm.tokenizer, ["The capital of France is"], max_new_tokens=3)
        >>> len(answers)
        1
    """
    encoded = [tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"] for p in prompts]
    for i, ids in enumerate(encoded):
        if not ids:
            raise DataError(f"prompt {i} is empty after tokenisation; give every row some input text")
    if tokenizer.pad_token_id is None:
        raise ConfigError("the tokenizer has no pad token, so prompts cannot be batched; set "
                          "tokenizer.pad_token = tokenizer.eos_token (load_tokenizer/load_model do this)")
    stop = stop_ids(model, tokenizer)
    virtual = [0] * len(encoded) if mix is None else [mix.virtual(i) for i in range(len(encoded))]
    limit = context_limit(model)
    if limit is not None:
        rooms = [limit - max_new_tokens - n for n in virtual]
        if min(rooms, default=1) < 1:
            raise ConfigError(f"max_new_tokens={max_new_tokens} leaves no room for the prompt in the model's "
                              f"{limit - max(virtual)} positions; lower max_new_tokens")
        warn_cut([len(ids) - room for ids, room in zip(encoded, rooms)], len(encoded), min(rooms, default=0),
                 "prompts (from the start)", "shorten the inputs, lower max_new_tokens, or set the template's "
                 "max_length")
        encoded = [ids[-room:] for ids, room in zip(encoded, rooms)]
    options = {"max_new_tokens": max_new_tokens, "do_sample": False, "num_beams": 1,
               "pad_token_id": tokenizer.pad_token_id, "eos_token_id": stop, **(generation_kwargs or {})}
    spec = method_of(model)
    if spec is not None and spec.prompt_in_cache:
        options["use_cache"] = True  # the prefix lives in the KV cache; PEFT fails without it
    device = device_of(model)
    texts: list[str] = [""] * len(prompts)
    batches = plan_batches([len(ids) + n for ids, n in zip(encoded, virtual)], batch_size,
                           equal_length=inserts_virtual_tokens(model))
    with torch.inference_mode(), warnings.catch_warnings():
        # generate() passes position_ids, which PEFT drops (with a warning per step) for prompt methods
        warnings.filterwarnings("ignore", message="Position ids are not supported")
        for batch in batches:
            if mix is None:
                inputs = dict(tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, padding_side="left",
                                            return_tensors="pt").to(device))
            else:  # each row's soft prompt and text are prefilled; generate() continues from their cache
                inputs = mix.prefilled(model, [encoded[i] for i in batch], batch, pad_id=tokenizer.pad_token_id)
            output = model.generate(**inputs, **options)
            sequences = getattr(output, "sequences", output)
            for i, new_ids in zip(batch, sequences[:, inputs["input_ids"].shape[1]:].tolist()):
                end = next((k for k, token in enumerate(new_ids) if token in stop), len(new_ids))
                texts[i] = tokenizer.decode(new_ids[:end], skip_special_tokens=True).strip()
            advance(len(batch))
    return texts


def head_limit(model: Any, tokenizer: Any) -> int:
    """Truncation length for a classification head: the tokenizer's limit, never past the model's."""
    return token_limit(model, tokenizer) or _FALLBACK_HEAD_LIMIT


def head_logits(model: Any, encoding: Any) -> torch.Tensor:
    """A classification head's logits for an encoded batch (only the inputs a head reads are passed)."""
    inputs = {k: v for k, v in encoding.items() if k in _HEAD_INPUTS}
    with torch.inference_mode():
        return model(**inputs).logits


def predict_tags(model: Any, tokenizer: Any, words: Sequence[Sequence[str]],
                 batch_size: int = 8) -> tuple[list[list[str]], int]:
    """Word-level tags from a token-classification head, and how many words had no token to read.

    Each word takes its first sub-token's label. Words cut off by truncation (or that tokenise to
    nothing) get 'O' and are counted, so a long sentence lowers recall visibly instead of crashing.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("aligning sub-tokens to words needs a fast tokenizer (word_ids); load it with "
                          "AutoTokenizer.from_pretrained(..., use_fast=True)")
    names = id2label(model)
    words = [list(sentence) for sentence in words]
    limit = head_limit(model, tokenizer)
    full = tokenizer(words, is_split_into_words=True)["input_ids"] if words else []
    warn_cut([len(ids) - limit for ids in full], len(words), limit, "sentences",
             "their last words are tagged 'O' (counted in unaligned_words); split long sentences")
    tags: list[list[str]] = [[] for _ in words]
    unaligned = 0
    for batch in plan_batches([len(w) for w in words], batch_size, equal_length=False):
        encoding = tokenizer([words[i] for i in batch], is_split_into_words=True, truncation=True,
                             max_length=limit, padding=True, padding_side="right", return_tensors="pt")
        logits = head_logits(model, encoding.to(device_of(model)))
        if logits.dim() != 3:
            raise ConfigError("task_kind='ner' needs a token-classification model (one label per token); load it "
                              "with task='token-classification'")
        offset = logits.shape[1] - encoding["input_ids"].shape[1]  # virtual tokens carry no word
        predicted = logits[:, offset:].argmax(-1).tolist()
        for row, i in enumerate(batch):
            firsts = first_subtokens(encoding.word_ids(row))
            tags[i] = [names[predicted[row][firsts[w]]] if w in firsts else "O" for w in range(len(words[i]))]
            unaligned += len(words[i]) - len(firsts)
        advance(len(batch))
    return tags, unaligned
