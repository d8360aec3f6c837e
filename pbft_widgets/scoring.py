"""Label-word scoring: classify with a cloze template by the label words' probabilities at the answer.

The PBFT literature (PET, LM-BFF, OpenPrompt's verbalizers) reads a class from the language model's
distribution at the output indicator instead of generating text and parsing it: every label gets a
score, so no prediction can fall outside the label set, each row gets probabilities over the labels,
and one forward pass replaces a generation loop.

How a label is scored:

* a word's score is the **sum** of its tokens' log-probabilities (teacher forcing: token k is
  scored given the prompt and tokens 1..k-1). The sum is log P(word | prompt), so the scores of
  all words define one distribution; a mean would favour long words by an amount that depends on
  the tokenizer and would no longer be a probability. Short words' head start is a bias like any
  other, and contextual calibration (:mod:`pbft_widgets.calibration`) measures and removes it.
* a label with several words (synonyms) scores the **logsumexp** of its words: P(label) is the
  probability that the model says any of them.
* probabilities over the labels are the softmax of the label scores (the model's belief restricted
  to the label set).

The tokens every prompt starts with (the instruction, the demonstrations of a few-shot prompt) run
through the model once; their keys and values are shared by all rows, and each row's own tokens
follow in batched, right-padded forward passes with explicit positions (so padding never moves the
text, whatever the method: the virtual tokens of prompt tuning and P-tuning and the prefixes of
prefix tuning sit in that shared cache). Only the answer position's logits are computed. Words of
one token are read from that pass; the later tokens of longer words follow in one more pass over the
batch's cached keys and values, all words packed side by side behind a mask that keeps them apart.

Models with sliding-window layers (Gemma-3) would cache only the last window of keys in those layers,
and a right-padded row's last window may be padding, not its text. So the scoring passes keep every
key in every layer, and the packed pass gives the sliding layers a mask of their own that also hides
keys beyond the window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from peft import PeftModel
from transformers import DynamicCache

from .errors import ConfigError, TemplateError
from .generation import head_limit, head_logits, plan_batches, warn_cut
from .mixing import MixedRows
from .model_facts import can_generate, context_limit, device_of, id2label, method_of, text_config, virtual_tokens
from .progress import advance


@dataclass(frozen=True)
class LabelScores:
    """Per-row label scores: ``log_probs[i, j]`` is log P(label j's words | prompt i) (not normalised).

    Attributes:
        labels: the label names, in the verbalizer's order (the columns).
        log_probs: array of shape (rows, labels).
    """

    labels: list[str]
    log_probs: np.ndarray

    @property
    def probabilities(self) -> np.ndarray:
        """Softmax over the labels: each row sums to 1."""
        shifted = self.log_probs - self.log_probs.max(axis=1, keepdims=True)
        weights = np.exp(shifted)
        return weights / weights.sum(axis=1, keepdims=True)

    @property
    def predictions(self) -> list[str]:
        """The most probable label of each row (always one of ``labels``)."""
        return [self.labels[j] for j in self.log_probs.argmax(axis=1)]


def label_word_ids(template: Any, tokenizer: Any) -> dict[str, list[list[int]]]:
    """Token ids of every label word in the form the model sees right after the output indicator.

    The form is the completion convention training uses: a space after an indicator that does not
    end in whitespace, none after a chat template's assistant header.

    Raises:
        TemplateError: the template has no verbalizer or no output indicator, or two labels have
            words that tokenise identically (their scores could not be told apart).
    """
    verbalizer = getattr(template, "verbalizer", None)
    if verbalizer is None:
        raise TemplateError("label-word scoring needs a verbalizer; pass template.with_changes("
                            "verbalizer=Verbalizer({...})), or evaluate with scoring='generate' and parse=...")
    if not template.output_indicator.strip():
        raise TemplateError("label-word scoring reads the label words right after the output indicator, and this "
                            "template has none; set output_indicator (e.g. 'Answer:'), or use scoring='generate'")
    space = "" if template.style == "chat" or template.output_indicator[-1].isspace() else " "
    ids: dict[str, list[list[int]]] = {}
    owner: dict[tuple[int, ...], tuple[str, str]] = {}
    for label in verbalizer.labels:
        ids[label] = []
        for word in verbalizer.words(label):
            tokens = tokenizer(space + word, add_special_tokens=False)["input_ids"]
            if not tokens:
                raise TemplateError(f"label word {word!r} (label {label!r}) is no token at all for this tokenizer; "
                                    "choose a word the tokenizer can spell")
            other = owner.setdefault(tuple(tokens), (label, word))
            if other[0] != label:
                raise TemplateError(
                    f"label words {other[1]!r} (label {other[0]!r}) and {word!r} (label {label!r}) are the same "
                    f"tokens {tokenizer.convert_ids_to_tokens(tokens)} for this tokenizer, so their labels cannot "
                    "be told apart; give one of the labels another word")
            if tuple(tokens) not in map(tuple, ids[label]):
                ids[label].append(tokens)
    return ids


def score_rows(model: Any, tokenizer: Any, template: Any, rows: Sequence[Mapping[str, Any]], *,
               batch_size: int = 8) -> LabelScores:
    """Render ``rows`` with ``template`` and score its verbalizer's words (`score_label_words`)."""
    word_ids = label_word_ids(template, tokenizer)
    prompts = [template.render_prompt(row, tokenizer) for row in rows]
    return score_label_words(model, tokenizer, prompts, word_ids, batch_size=batch_size,
                             add_special_tokens=template.style != "chat")


def score_label_words(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    word_ids: Mapping[str, Sequence[Sequence[int]]],
    *,
    batch_size: int = 8,
    add_special_tokens: bool = True,
    mix: MixedRows | None = None,
) -> LabelScores:
    """Score every label's words after each prompt (see the module docstring for how).

    Args:
        model: a causal LM, plain or with any PBFT adapter (prompt tuning, P-tuning, prefix tuning,
            LoRA, QLoRA, the prompt+LoRA hybrid).
        tokenizer: its tokenizer (needs a pad token; ``load_model`` sets one).
        prompts: rendered prompts ending at the output indicator (``template.render_prompt``).
        word_ids: label -> token ids of each of its words, from :func:`label_word_ids`.
        batch_size: prompts per forward pass (scores do not depend on it beyond float rounding).
        add_special_tokens: False for chat-formatted prompts, which carry their special tokens.
        mix: per-row soft prompts and LoRA routes for a batch mixing tasks (see :mod:`pbft_widgets.mixing`);
            rows then share no cached start, since each may begin with another prompt.

    Returns:
        `LabelScores` with one row per prompt.

    Example:
        >>> from pbft_widgets import PromptTemplate, Verbalizer, load_model
        >>> from pbft_widgets.scoring import label_word_ids, score_label_words
        >>> lm = load_model()
        >>> template = PromptTemplate(input_template="Review: {text}", output_indicator="Sentiment:",
        ...                           style="cloze", verbalizer=Verbalizer({"pos": "positive", "neg": "negative"}))
        >>> prompts = [template.render_prompt({"text": "a wonderful film"}, lm.tokenizer)]
        >>> scores = score_label_words(lm.model, lm.tokenizer, prompts, label_word_ids(template, lm.tokenizer))
        >>> scores.labels, scores.probabilities.shape
        (['pos', 'neg'], (1, 2))
    """
    if not can_generate(model):
        raise ConfigError("label-word scoring reads a language model's next-token distribution, and this model has "
                          "a classification head; evaluate it without a verbalizer (its head predicts the labels)")
    if tokenizer.pad_token_id is None:
        raise ConfigError("the tokenizer has no pad token, so prompts cannot be batched; set "
                          "tokenizer.pad_token = tokenizer.eos_token (load_tokenizer/load_model do this)")
    labels = list(word_ids)
    words = [(j, list(tokens)) for j, label in enumerate(labels) for tokens in word_ids[label]]
    longest = max(len(tokens) for _, tokens in words)
    encoded = [tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"] for p in prompts]
    virtual = [0] * len(encoded) if mix is None else [mix.virtual(i) for i in range(len(encoded))]
    limit = context_limit(model)
    if limit is not None:
        rooms = [limit - longest - n for n in virtual]
        warn_cut([len(ids) - room for ids, room in zip(encoded, rooms)], len(encoded), min(rooms, default=0),
                 "prompts (from the start)", "shorten the inputs or set the template's max_length")
        encoded = [ids[-room:] for ids, room in zip(encoded, rooms)]
    shared = _shared_length(encoded) if mix is None else 0
    word_scores = np.zeros((len(prompts), len(words)))
    with torch.inference_mode():
        prefix = _prefix(model, encoded[0][:shared]) if shared or _copies_prompt_cache(model) else None
        suffixes = [ids[shared:] for ids in encoded]
        for batch in plan_batches([len(ids) + n for ids, n in zip(suffixes, virtual)], batch_size,
                                  equal_length=False):
            word_scores[batch] = _score_batch(model, tokenizer, [suffixes[i] for i in batch], words, prefix,
                                              mix=mix, rows=batch)
            advance(len(batch))
    log_probs = np.full((len(prompts), len(labels)), -np.inf)
    for column, (j, _) in enumerate(words):
        log_probs[:, j] = np.logaddexp(log_probs[:, j], word_scores[:, column])
    return LabelScores(labels, log_probs)


def head_scores(model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 8) -> LabelScores:
    """Label scores from a sequence-classification head: the log-softmax of its logits (long texts: their
    beginning). Its labels are the head's id2label names in id order."""
    names = id2label(model)
    texts = [str(text) for text in texts]
    limit = head_limit(model, tokenizer)
    warn_cut([len(ids) - limit for ids in tokenizer(texts)["input_ids"]] if texts else [], len(texts), limit,
             "texts", "only their beginning was classified; split long texts or summarise them first")
    log_probs = np.zeros((len(texts), len(names)))
    for batch in plan_batches([len(t) for t in texts], batch_size, equal_length=False):
        encoding = tokenizer([texts[i] for i in batch], truncation=True, max_length=limit, padding=True,
                             padding_side="right", return_tensors="pt")
        logits = head_logits(model, encoding.to(device_of(model)))
        if logits.dim() != 2:
            raise ConfigError("task_kind='classification' needs a sequence-classification model (one label per "
                              "text); load it with task='sequence-classification', or use task_kind='ner' for a "
                              "token head")
        log_probs[batch] = logits.float().log_softmax(-1).cpu().numpy()
        advance(len(batch))
    return LabelScores([names[i] for i in range(len(names))], log_probs)


def predict_labels(model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 8) -> list[str]:
    """One label per text from a sequence-classification head (the argmax of :func:`head_scores`)."""
    return head_scores(model, tokenizer, texts, batch_size).predictions


@dataclass(frozen=True)
class _Prefix:
    """The keys and values of the tokens every prompt starts with, computed once for all rows."""

    cache: Any
    length: int  # cached positions: virtual tokens or prefixes plus the shared text


def _shared_length(encoded: list[list[int]]) -> int:
    """Tokens all prompts share at their start (instructions, demonstrations), leaving each at least one."""
    shortest = min(len(ids) for ids in encoded)
    shared = 0
    while shared < shortest - 1 and all(ids[shared] == encoded[0][shared] for ids in encoded):
        shared += 1
    return shared


def _prefix(model: Any, ids: list[int]) -> _Prefix:
    """Run the shared tokens once through the model as it is (the adapter inserts its prompt here).

    On a sliding-window model the cache keeps every key (`_full_cache`). Prefix tuning would replace it
    by its own, which keeps only the window, so there its prefixes are copied into a full cache and the
    shared tokens (if any) follow them through the model under the adapter, as PEFT runs them.
    """
    cache = _full_cache(model)
    if _copies_prompt_cache(model):
        prompt = model.get_prompt(batch_size=1)
        # a sliding layer keeps only its last window - 1 prefixes: zeros fill the slots of the older ones,
        # which no window of a later position reaches
        length = max(layer.keys.shape[-2] for layer in prompt.layers)
        cache = DynamicCache(ddp_cache_data=[[torch.nn.functional.pad(state, (0, 0, length - state.shape[-2], 0))
                                              for state in (layer.keys, layer.values)] for layer in prompt.layers])
        model = _text_model(model)
    if ids:
        tokens = torch.tensor([ids], device=device_of(model))
        before = 0 if cache is None else cache.get_seq_length()
        attention = torch.ones(1, before + len(ids), dtype=torch.long, device=tokens.device)
        cache = model(input_ids=tokens, attention_mask=attention, past_key_values=cache, use_cache=True,
                      logits_to_keep=1).past_key_values
    return _Prefix(cache, cache.get_seq_length())


def _sliding_window(model: Any) -> int | None:
    """The window of the model's sliding-window layers (Gemma-3), None if every layer attends to all keys."""
    config = text_config(model)
    return config.sliding_window if "sliding_attention" in (getattr(config, "layer_types", None) or ()) else None


def _full_cache(model: Any) -> Any:
    """An empty cache whose layers all keep every key for a model with sliding-window layers (None for others,
    which then build their own). The model's own cache keeps only the last window in those layers: for a
    right-padded row that can be padding, and the words' pass needs the text's keys (it masks the window)."""
    return DynamicCache() if _sliding_window(model) is not None else None


def _copies_prompt_cache(model: Any) -> bool:
    """Prefix tuning on a sliding-window model: its prompt, a cache, is copied into a full one by `_prefix`
    (even when the prompts share no text)."""
    return _sliding_window(model) is not None and getattr(method_of(model), "prompt_in_cache", False)


def _expanded(cache: Any, copies: int) -> Any:
    """The one-sequence ``cache`` seen ``copies`` times (views: nothing is copied until it grows).

    Its layers keep every key, whatever the model's layer types (see `_full_cache`)."""
    layers = [(layer.keys.expand(copies, -1, -1, -1), layer.values.expand(copies, -1, -1, -1))
              for layer in cache.layers]
    return DynamicCache(ddp_cache_data=layers)


def _score_batch(model: Any, tokenizer: Any, encoded: list[list[int]], words: list[tuple[int, list[int]]],
                 prefix: _Prefix | None, *, mix: MixedRows | None = None, rows: Sequence[int] = ()) -> np.ndarray:
    """log P(word | prompt) for every prompt of one batch and every word: (prompts, words).

    ``encoded`` holds what follows the shared prefix. Only the last real position's logits are
    computed (a vocabulary-sized row per prompt, not per token). With ``mix``, ``rows`` are the
    batch's row numbers in it: each row starts with its own soft prompt and runs its own LoRA.
    """
    continue_words = any(len(tokens) > 1 for _, tokens in words)
    if mix is None:
        inputs = dict(tokenizer.pad({"input_ids": encoded}, padding_side="right", return_tensors="pt")
                      .to(device_of(model)))
        route: dict[str, Any] = {}
    else:  # each row's soft prompt is part of its (right-padded) input
        inputs, route = mix.inputs(model, encoded, rows, padding_side="right"), mix.route(rows)
    mask = inputs["attention_mask"]
    lengths = mask.sum(1)
    # a prompt-learning model inserts its virtual tokens in front of the text in this pass
    ends = (virtual_tokens(model) if prefix is None else 0) + lengths - 1
    keep = torch.unique(ends)
    if prefix is None:  # nothing shared: the adapter (or the mix) puts the prompt in this pass
        before = 0
        output = model(**inputs, past_key_values=_full_cache(model) if continue_words else None,
                       use_cache=continue_words, logits_to_keep=keep, **route)
    else:
        before = prefix.length
        attention = torch.cat([torch.ones(len(encoded), before, dtype=mask.dtype, device=mask.device), mask], 1)
        positions = (before + torch.arange(mask.shape[1], device=mask.device)).expand(len(encoded), -1)
        output = _text_model(model)(input_ids=inputs["input_ids"], attention_mask=attention, position_ids=positions,
                                    past_key_values=_expanded(prefix.cache, len(encoded)),
                                    use_cache=continue_words, logits_to_keep=keep)
    column = torch.searchsorted(keep, ends)
    last = output.logits[torch.arange(len(encoded)), column].float().log_softmax(-1)
    scores = last[:, [tokens[0] for _, tokens in words]].double()
    if continue_words:
        cache = output.past_key_values
        if prefix is None:
            before = cache.get_seq_length() - mask.shape[1]  # virtual tokens or prefixes before the text
        longer = [k for k, (_, tokens) in enumerate(words) if len(tokens) > 1]
        scores[:, longer] += _continuation(model, cache, mask, before, lengths, [words[k][1] for k in longer],
                                           route)
    return scores.cpu().numpy()


def _continuation(model: Any, cache: Any, mask: torch.Tensor, position_offset: int, lengths: torch.Tensor,
                  words: list[list[int]], route: Mapping[str, Any]) -> torch.Tensor:
    """Sum of log-probs of tokens 2.. of every word after every prompt of the batch: (prompts, words).

    All words continue in one pass over the batch's cache: their tokens are packed side by side after
    each prompt, each token attending to the prompt and to the earlier tokens of its own word only (a
    4-D mask), at the position it would have right after the prompt. The pass is as long as the
    words' tokens, instead of one sequence per (prompt, word) each holding a copy of the prompt's keys
    and values. ``route`` sends a mixed batch's rows to their LoRA adapters.

    A model with sliding-window layers would use that one mask in them too; they get their own (a dict
    by layer type), which also hides keys ``sliding_window`` or more positions back, as transformers'
    sliding-window masks do. Positions, not cache slots, measure the distance: a row's words sit after
    the batch's padding in the cache.
    """
    device = mask.device
    inputs, targets, word_of, step = [], [], [], []
    for k, tokens in enumerate(words):
        inputs += tokens[:-1]
        targets += tokens[1:]
        word_of += [k] * (len(tokens) - 1)
        step += range(len(tokens) - 1)
    rows, packed = mask.shape[0], len(inputs)
    word_of_t, step_t = torch.tensor(word_of, device=device), torch.tensor(step, device=device)
    own_word = (word_of_t[:, None] == word_of_t[None, :]) & (step_t[None, :] <= step_t[:, None])
    prompt = torch.cat([torch.ones(rows, position_offset, dtype=torch.bool, device=device), mask.bool()], 1)
    allowed = torch.cat([prompt[:, None, :].expand(-1, packed, -1), own_word.expand(rows, -1, -1)], 2)
    dtype = model.get_input_embeddings().weight.dtype

    def additive(visible: torch.Tensor) -> torch.Tensor:  # (rows, 1, queries, keys): 0 or the dtype's minimum
        bias = torch.zeros(visible.shape, dtype=dtype, device=device)
        return bias.masked_fill_(~visible, torch.finfo(dtype).min)[:, None]

    positions = position_offset + lengths[:, None] + step_t[None, :]
    attention: Any = additive(allowed)
    window = _sliding_window(model)
    if window is not None:
        # the prompt's keys are right-padded, so their slots are their positions; the words' are `positions`
        key_positions = torch.cat([torch.arange(prompt.shape[1], device=device).expand(rows, -1), positions], 1)
        near = positions[:, :, None] - key_positions[:, None, :] < window
        attention = {kind: additive(allowed & near) if kind == "sliding_attention" else attention
                     for kind in set(text_config(model).layer_types)}
    logits = _text_model(model)(input_ids=torch.tensor(inputs, device=device).expand(rows, -1),
                                attention_mask=attention, position_ids=positions, past_key_values=cache,
                                use_cache=False, **route).logits
    index = torch.tensor(targets, device=device).expand(rows, -1).unsqueeze(-1)
    token_scores = logits.float().log_softmax(-1).gather(-1, index).squeeze(-1).double()
    return torch.zeros(rows, len(words), dtype=torch.float64, device=device).index_add_(1, word_of_t, token_scores)


def _text_model(model: Any) -> Any:
    """The module that continues from a cache: prompt-learning wrappers would prepend their prompt again,
    so they are unwrapped (their prompt is already in the cache); LoRA layers stay active inside."""
    while isinstance(model, PeftModel) and model.active_peft_config.is_prompt_learning:
        model = model.base_model
    return model
