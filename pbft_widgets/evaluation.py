"""Evaluate a model on rows and put baselines and tuned models side by side.

Two ways to predict, chosen by the model: causal LMs generate (greedy, batched, left-padded) and the
text is read back as a label, tags or an answer; token/sequence classification heads predict with
an argmax over logits (NER aligned back to words by the first sub-token). Either way the scores come
from :mod:`pbft_widgets.metrics`, so a zero-shot prompt and a tuned adapter are measured alike.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from pbft_widgets.errors import ConfigError, DataError
from pbft_widgets.metrics import METRICS_BY_TASK, compute_metrics, normalize_text

TASK_KINDS = tuple(METRICS_BY_TASK)
DEFAULT_MAX_NEW_TOKENS = {"classification": 16, "ner": 128, "generation": 128, "translation": 128}
# Columns each task kind reads when no template names them (the data loaders' row shapes).
_DEFAULT_FIELDS = {"ner": ("tokens", "tags"), "classification": ("text", "label")}

# PEFT methods that put their prompt into the key/value cache rather than the input sequence.
_CACHE_PROMPT_TYPES = ("PREFIX_TUNING", "CARTRIDGE")

Parse = Callable[[str, Mapping[str, Any]], Any]


@dataclass
class EvalResult:
    """Scores plus every prediction, so a number can always be traced back to examples."""

    name: str
    task_kind: str
    scores: dict[str, Any]
    predictions: list[Any]
    references: list[Any]
    inputs: list[Any]
    seconds: float
    generations: list[str] | None = None  # raw generated text when predictions were read from it

    @property
    def n(self) -> int:
        return len(self.predictions)

    def table(self) -> list[dict[str, Any]]:
        """One tidy dict per example: input, reference, prediction, correct (+ generated text)."""
        rows = []
        examples = zip(self.inputs, self.references, self.predictions)
        for i, (source, reference, prediction) in enumerate(examples):
            row = {
                "input": source,
                "reference": reference,
                "prediction": prediction,
                "correct": _is_correct(self.task_kind, prediction, reference),
            }
            if self.generations is not None and self.task_kind in ("classification", "ner"):
                row["generated"] = self.generations[i]
            rows.append(row)
        return rows

    def summary(self) -> dict[str, Any]:
        """One row for a comparison table: name, scalar scores (headline first), n, seconds."""
        scalars = {
            key: value
            for key, value in self.scores.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        }
        return {"name": self.name, **scalars, "n": self.n, "seconds": self.seconds}


def _is_correct(task_kind: str, prediction: Any, reference: Any) -> bool:
    if task_kind == "ner":
        return list(prediction) == list(reference)
    if task_kind == "classification":
        return prediction == reference
    return normalize_text(prediction) == normalize_text(reference)


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------


def _device(model: Any) -> torch.device:
    device = getattr(model, "device", None)
    return device if isinstance(device, torch.device) else next(model.parameters()).device


def _inserts_virtual_tokens(model: Any) -> bool:
    """True for prompt tuning / P-tuning PeftModels (and wrappers we cannot inspect).

    Those prepend virtual-token embeddings in front of the padded input, and PEFT ignores position
    ids for them, so left padding leaves a gap of pad positions between the soft prompt and the
    text (peft #1093): logits shift by ~1e-3 on a tiny model, enough to flip greedy choices.
    Prefix tuning works on the key/value cache instead and pads like a plain model.
    """
    from transformers import PreTrainedModel

    config = getattr(model, "active_peft_config", None)
    if config is not None:
        return bool(config.is_prompt_learning) and config.peft_type not in _CACHE_PROMPT_TYPES
    return not isinstance(model, PreTrainedModel)


def context_limit(model: Any) -> int | None:
    """Positions left for real tokens: the model's max_position_embeddings minus any virtual tokens."""
    config = getattr(model, "config", None)
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int):
        return None
    peft_config = getattr(model, "active_peft_config", None)
    if peft_config is not None and peft_config.is_prompt_learning and peft_config.peft_type not in _CACHE_PROMPT_TYPES:
        positions -= peft_config.num_virtual_tokens
    return positions


def _warn_cut(cut: Sequence[int], total: int, limit: int, where: str, fix: str) -> None:
    cut = [n for n in cut if n > 0]
    if cut:
        warnings.warn(f"{sum(cut)} tokens were cut from {len(cut)} of {total} {where} to fit {limit} tokens "
                      f"(the model's positions); {fix}", UserWarning, stacklevel=4)


def _head_limit(model: Any, tokenizer: Any) -> int:
    """Truncation length for a classification head: the tokenizer's limit, never past the model's."""
    limits = [n for n in (tokenizer.model_max_length, context_limit(model)) if isinstance(n, int) and n > 0]
    return min(limits) if limits else 512


def _plan_batches(lengths: Sequence[int], batch_size: int, *, equal_length: bool) -> list[list[int]]:
    """Indices per batch, longest first (memory errors surface on the first batch, not the last).

    Sorting by length keeps padding small; equal_length=True puts only same-length inputs in a
    batch, so no padding exists at all.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    groups: list[list[int]] = []
    for i in order:
        if groups and (not equal_length or lengths[groups[-1][-1]] == lengths[i]):
            groups[-1].append(i)
        else:
            groups.append([i])
    return [group[s : s + batch_size] for group in groups for s in range(0, len(group), batch_size)]


def _stop_ids(model: Any, tokenizer: Any) -> list[int]:
    """Token ids that end an answer: the tokenizer's eos plus any the model's generation config adds."""
    ids: list[int] = []
    config = getattr(model, "generation_config", None)
    configured = getattr(config, "eos_token_id", None)
    configured = configured if isinstance(configured, list) else [configured]
    for candidate in [tokenizer.eos_token_id, *configured]:
        if candidate is not None and candidate not in ids:
            ids.append(int(candidate))
    if not ids:
        raise ConfigError(
            "the tokenizer has no eos token, so generation cannot stop; set tokenizer.eos_token "
            "(e.g. to the model's end-of-turn token)"
        )
    return ids


def generate_texts(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    batch_size: int = 8,
    max_new_tokens: int = 64,
    add_special_tokens: bool = True,
    generation_kwargs: Mapping[str, Any] | None = None,
) -> list[str]:
    """Greedy continuations of `prompts` (new text only, cut at the first stop token, stripped).

    Batches are left-padded so every row's answer starts at the same column; for models that
    insert virtual tokens (prompt tuning, P-tuning) only equal-length prompts share a batch, so a
    batched run returns exactly what one-at-a-time generation returns.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}; use 1 or more")
    encoded = [tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"] for p in prompts]
    for i, ids in enumerate(encoded):
        if not ids:
            raise DataError(f"prompt {i} is empty after tokenisation; give every row some input text")
    if tokenizer.pad_token_id is None:
        raise ConfigError(
            "the tokenizer has no pad token, so prompts cannot be batched; set "
            "tokenizer.pad_token = tokenizer.eos_token (load_tokenizer/load_model do this)"
        )
    stop = _stop_ids(model, tokenizer)
    limit = context_limit(model)
    if limit is not None:  # keep the end of an over-long prompt: it holds the question and answer cue
        room = limit - max_new_tokens
        if room < 1:
            raise ConfigError(f"max_new_tokens={max_new_tokens} leaves no room for the prompt in the model's "
                              f"{limit} positions; lower max_new_tokens")
        _warn_cut([len(ids) - room for ids in encoded], len(encoded), room, "prompts (from the start)",
                  "shorten the inputs, lower max_new_tokens, or set the template's max_length")
        encoded = [ids[-room:] for ids in encoded]
    options = {
        "max_new_tokens": max_new_tokens,
        "do_sample": False,
        "num_beams": 1,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": stop,
        **(generation_kwargs or {}),
    }
    device = _device(model)
    texts: list[str] = [""] * len(prompts)
    lengths = [len(ids) for ids in encoded]
    for batch in _plan_batches(lengths, batch_size, equal_length=_inserts_virtual_tokens(model)):
        padded = tokenizer.pad(
            {"input_ids": [encoded[i] for i in batch]}, padding_side="left", return_tensors="pt"
        ).to(device)
        with torch.inference_mode():
            output = model.generate(
                input_ids=padded["input_ids"], attention_mask=padded["attention_mask"], **options
            )
        sequences = getattr(output, "sequences", output)
        for i, new_ids in zip(batch, sequences[:, padded["input_ids"].shape[1] :].tolist()):
            end = next((k for k, token in enumerate(new_ids) if token in stop), len(new_ids))
            texts[i] = tokenizer.decode(new_ids[:end], skip_special_tokens=True).strip()
    return texts


def _label_word_budget(template: Any, tokenizer: Any) -> int:
    """Enough new tokens for the longest label word plus slack; chat models get a sentence's worth,
    since they tend to restate the question ("The sentiment of this review is ...") first."""
    words = [template.verbalizer.word(label) for label in template.verbalizer.labels]
    longest = max(len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]) for w in words)
    return longest + (16 if template.style == "chat" else 4)


def _read_generations(
    task_kind: str,
    texts: list[str],
    rows: list[Mapping],
    references: list[Any],
    template: Any,
    parse: Parse | None,
) -> tuple[list[Any], int]:
    """Generated text -> predictions of the task's type; returns them and how many failed to parse."""
    predictions: list[Any] = []
    unparsed = 0
    for i, (text, row, reference) in enumerate(zip(texts, rows, references)):
        if task_kind == "classification":
            prediction = parse(text, row) if parse else template.label_for_text(text)
            unparsed += prediction is None
        elif task_kind == "ner":
            prediction = parse(text, row)
            valid = isinstance(prediction, Sequence) and not isinstance(prediction, str)
            if valid and len(prediction) == len(reference):
                prediction = list(prediction)
            else:  # no usable tags: predict no entities, which costs recall like any miss
                prediction = ["O"] * len(reference)
                unparsed += 1
        else:
            prediction = parse(text, row) if parse else text
            if not isinstance(prediction, str):
                raise DataError(
                    f"parse returned {type(prediction).__name__} for row {i}; for {task_kind} it must "
                    "return the answer text (str)"
                )
        predictions.append(prediction)
    return predictions, unparsed


# ---------------------------------------------------------------------------------------------
# Classification heads
# ---------------------------------------------------------------------------------------------


def _id2label(model: Any) -> dict[int, str]:
    mapping = getattr(getattr(model, "config", None), "id2label", None)
    if not mapping:
        raise ConfigError(
            "the model's config has no id2label, so predicted ids cannot be named; load it with "
            "id2label={0: 'O', 1: 'B-Disease', ...} (load_model(..., id2label=...))"
        )
    return {int(k): v for k, v in mapping.items()}


def _forward_logits(model: Any, encoding: Any) -> torch.Tensor:
    inputs = {k: v for k, v in encoding.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.inference_mode():
        return model(**inputs).logits


def _predict_tags(
    model: Any, tokenizer: Any, words: list[list[str]], batch_size: int
) -> tuple[list[list[str]], int]:
    """Word-level tags from a token-classification head: each word takes its first sub-token's label.

    Words cut off by truncation (or that tokenise to nothing) get 'O' and are counted, so a long
    sentence lowers recall visibly instead of crashing the evaluation.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            "aligning sub-tokens to words needs a fast tokenizer (word_ids); load it with "
            "AutoTokenizer.from_pretrained(..., use_fast=True)"
        )
    id2label = _id2label(model)
    device = _device(model)
    tags: list[list[str]] = [[] for _ in words]
    unaligned = 0
    limit = _head_limit(model, tokenizer)
    full = tokenizer(words, is_split_into_words=True)["input_ids"] if words else []
    _warn_cut([len(ids) - limit for ids in full], len(words), limit, "sentences",
              "their last words are tagged 'O' (counted in unaligned_words); split long sentences")
    for batch in _plan_batches([len(w) for w in words], batch_size, equal_length=False):
        encoding = tokenizer(
            [words[i] for i in batch],
            is_split_into_words=True,
            truncation=True,
            max_length=limit,
            padding=True,
            return_tensors="pt",
        )
        logits = _forward_logits(model, encoding.to(device))
        if logits.dim() != 3:
            raise ConfigError(
                "task_kind='ner' needs a token-classification model (one label per token); load it with "
                "task='token-classification'"
            )
        # Prompt-tuned heads prepend virtual tokens to the outputs; they carry no word.
        offset = logits.shape[1] - encoding["input_ids"].shape[1]
        predicted = logits[:, offset:].argmax(-1).tolist()
        for row, i in enumerate(batch):
            sentence = ["O"] * len(words[i])
            seen: set[int] = set()
            for position, word in enumerate(encoding.word_ids(row)):
                if word is not None and word not in seen:
                    seen.add(word)
                    sentence[word] = id2label[predicted[row][position]]
            unaligned += len(words[i]) - len(seen)
            tags[i] = sentence
    return tags, unaligned


def _predict_labels(model: Any, tokenizer: Any, texts: list[str], batch_size: int) -> list[str]:
    id2label = _id2label(model)
    device = _device(model)
    labels: list[str] = [""] * len(texts)
    limit = _head_limit(model, tokenizer)
    _warn_cut([len(ids) - limit for ids in tokenizer(texts)["input_ids"]], len(texts), limit, "texts",
              "only their beginning was classified; split long texts or summarise them first")
    for batch in _plan_batches([len(t) for t in texts], batch_size, equal_length=False):
        encoding = tokenizer(
            [texts[i] for i in batch],
            truncation=True,
            max_length=limit,
            padding=True,
            padding_side="right",
            return_tensors="pt",
        )
        logits = _forward_logits(model, encoding.to(device))
        if logits.dim() != 2:
            raise ConfigError(
                "task_kind='classification' needs a sequence-classification model (one label per text); "
                "load it with task='sequence-classification', or use task_kind='ner' for a token head"
            )
        for i, label_id in zip(batch, logits.argmax(-1).tolist()):
            labels[i] = id2label[label_id]
    return labels


# ---------------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------------


def _generates(model: Any) -> bool:
    can_generate = getattr(model, "can_generate", None)
    return callable(getattr(model, "generate", None)) and (can_generate is None or bool(can_generate()))


def _column(rows: list[Mapping], field: str, purpose: str) -> list[Any]:
    for i, row in enumerate(rows):
        if field not in row:
            option = "label_field" if purpose == "reference" else "input_field"
            raise DataError(
                f"row {i} has no {field!r} column for the {purpose}; available columns: "
                f"{', '.join(map(str, row)) or '(none)'}. Pass {option}= with the right column name"
            )
    return [row[field] for row in rows]


def _name_ids(values: list[Any], id2label: dict[int, str]) -> list[Any]:
    """Integer class ids (a ClassLabel column) -> label names, so they compare with predictions."""

    def name(value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            if value not in id2label:
                raise DataError(f"label id {value} is not in the model's id2label {id2label}; fix the row")
            return id2label[value]
        return value

    return [[name(v) for v in value] if isinstance(value, (list, tuple)) else name(value) for value in values]


@dataclass
class _Predictions:
    inputs: list[Any]
    references: list[Any]
    predictions: list[Any]
    extra: dict[str, int]
    generations: list[str] | None = None


def _by_generation(
    model: Any,
    tokenizer: Any,
    rows: list[Mapping],
    references: list[Any],
    *,
    template: Any,
    task_kind: str,
    batch_size: int,
    max_new_tokens: int | None,
    parse: Parse | None,
    generation_kwargs: Mapping[str, Any] | None,
) -> _Predictions:
    if template is None:
        raise ConfigError("generation needs a prompt template; pass template=PromptTemplate(...)")
    if task_kind == "ner" and parse is None:
        raise ConfigError(
            "NER by generation needs parse=callable(text, row) -> one tag per word in row; "
            "or evaluate a token-classification model instead"
        )
    reads_labels = task_kind == "classification" and parse is None
    if reads_labels and template.verbalizer is None:
        raise ConfigError(
            "classification by generation reads labels back through the template's verbalizer; "
            "pass template.with_changes(verbalizer=Verbalizer({...})) or parse=callable(text, row)"
        )
    if task_kind == "classification" and template.verbalizer is not None:
        references = [str(r) for r in references]  # the verbalizer names labels as strings
    if max_new_tokens is None:
        budget = _label_word_budget(template, tokenizer) if reads_labels else None
        max_new_tokens = budget or DEFAULT_MAX_NEW_TOKENS[task_kind]
    prompts = [template.render_prompt(row, tokenizer) for row in rows]
    generations = generate_texts(
        model,
        tokenizer,
        prompts,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        add_special_tokens=template.style != "chat",  # chat prompts carry their special tokens
        generation_kwargs=generation_kwargs,
    )
    predictions, unparsed = _read_generations(task_kind, generations, rows, references, template, parse)
    extra = {"unparsed": unparsed} if task_kind == "ner" else {}
    return _Predictions(prompts, references, predictions, extra, generations)


def _by_head(
    model: Any,
    tokenizer: Any,
    rows: list[Mapping],
    references: list[Any],
    *,
    template: Any,
    task_kind: str,
    batch_size: int,
    input_field: str | None,
) -> _Predictions:
    if task_kind not in _DEFAULT_FIELDS:
        raise ConfigError(
            f"task_kind={task_kind!r} needs a model that generates (a causal LM); this one has a "
            "classification head"
        )
    references = _name_ids(references, _id2label(model))
    field = input_field or _DEFAULT_FIELDS[task_kind][0]
    if task_kind == "ner":
        words = [list(w) for w in _column(rows, field, "input")]
        predictions, unaligned = _predict_tags(model, tokenizer, words, batch_size)
        inputs = [" ".join(w) for w in words]
        return _Predictions(inputs, references, predictions, {"unaligned_words": unaligned})
    if template is not None and input_field is None:
        texts = [template.render_prompt(row, tokenizer) for row in rows]
    else:
        texts = [str(v) for v in _column(rows, field, "input")]
    return _Predictions(texts, references, _predict_labels(model, tokenizer, texts, batch_size), {})


def evaluate(
    model: Any,
    tokenizer: Any,
    rows: Iterable[Mapping[str, Any]],
    *,
    template: Any = None,
    task_kind: str,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    label_field: str | None = None,
    parse: Parse | None = None,
    generation_kwargs: Mapping[str, Any] | None = None,
    input_field: str | None = None,
    metric_options: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> EvalResult:
    """Predict every row, score with METRICS_BY_TASK[task_kind], and keep the predictions.

    Causal LMs generate from ``template.render_prompt(row, tokenizer)``; the text becomes a label
    via ``template.label_for_text`` (classification), tags via ``parse(text, row)`` (ner, where
    parse is required) or stays the answer (generation/translation; parse may post-process it,
    e.g. keep the first line). ``parse`` may also replace the verbalizer for classification.
    Classification heads need no template: NER reads words from ``input_field`` (default
    'tokens'); sequence heads read the rendered prompt, or ``input_field`` (default 'text').
    References come from ``label_field`` (default: the template's target_field, else 'tags' for
    ner and 'label' for classification); integer ids are named through the model's id2label.
    ``metric_options`` go to the metric (ner: scheme, strict; classification: labels).
    """
    started = time.perf_counter()
    if task_kind not in TASK_KINDS:
        raise ConfigError(f"unknown task_kind {task_kind!r}; use one of {', '.join(TASK_KINDS)}")
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}; use 1 or more")
    rows = list(rows)
    if not rows:
        raise DataError("evaluate got no rows; pass at least one example")
    default_label = _DEFAULT_FIELDS[task_kind][1] if task_kind in _DEFAULT_FIELDS else None
    label_field = label_field or getattr(template, "target_field", None) or default_label
    if label_field is None:
        raise ConfigError(
            f"task_kind={task_kind!r} needs label_field= (the column with the reference answer)"
        )
    references = _column(rows, label_field, "reference")
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        if _generates(model):
            result = _by_generation(
                model, tokenizer, rows, references, template=template, task_kind=task_kind,
                batch_size=batch_size, max_new_tokens=max_new_tokens, parse=parse,
                generation_kwargs=generation_kwargs,
            )
        else:
            result = _by_head(
                model, tokenizer, rows, references, template=template, task_kind=task_kind,
                batch_size=batch_size, input_field=input_field,
            )
    finally:
        if was_training:
            model.train()
    metrics = compute_metrics(task_kind, result.references, result.predictions, **(metric_options or {}))
    return EvalResult(
        name=name or task_kind,
        task_kind=task_kind,
        scores={**metrics, **result.extra},
        predictions=result.predictions,
        references=result.references,
        inputs=result.inputs,
        seconds=time.perf_counter() - started,
        generations=result.generations,
    )


# ---------------------------------------------------------------------------------------------
# Side by side
# ---------------------------------------------------------------------------------------------


def compare(results: Mapping[str, EvalResult]) -> list[dict[str, Any]]:
    """One row per result (in the given order) with its headline metrics and deltas vs the first row.

    The first row is the baseline (e.g. zero-shot); its deltas are None. All results must be of one
    task kind and the same number of examples, else the deltas would compare different things.
    """
    if not results:
        raise DataError("compare got no results; pass e.g. {'zero-shot': r0, 'tuned': r1}")
    items = list(results.items())
    kinds = {result.task_kind for _, result in items}
    if len(kinds) > 1:
        raise DataError(f"results mix task kinds {sorted(kinds)}; compare results of one task kind")
    sizes = {name: result.n for name, result in items}
    if len(set(sizes.values())) > 1:
        raise DataError(
            f"results cover different numbers of examples {sizes}; evaluate every model on the same rows"
        )
    metrics = METRICS_BY_TASK[kinds.pop()]
    baseline = items[0][1].scores
    table = []
    for index, (name, result) in enumerate(items):
        row: dict[str, Any] = {"name": name}
        row.update({metric: result.scores.get(metric) for metric in metrics})
        for metric in metrics:
            value, base = result.scores.get(metric), baseline.get(metric)
            row[f"delta_{metric}"] = None if index == 0 or value is None or base is None else value - base
        row.update(n=result.n, seconds=result.seconds)
        table.append(row)
    return table


# Scores on a 0-100 scale (sacrebleu's) read best with one decimal, like seconds; 0-1 scores get three.
# Matched case-insensitively and without "++", so columns renamed for display ("chrF++", "BLEU") count.
_ONE_DECIMAL_COLUMNS = ("bleu", "chrf", "seconds")


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        digits = 1 if column.removeprefix("delta_").lower().rstrip("+") in _ONE_DECIMAL_COLUMNS else 3
        return f"{value:+.{digits}f}" if column.startswith("delta_") else f"{value:.{digits}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(table: Sequence[Mapping[str, Any]]) -> str:
    """A GitHub-flavoured markdown table (numbers right-aligned; deltas signed, shown as 'Δ metric')."""
    if not table:
        raise DataError("to_markdown got an empty table; pass compare(...) output or a list of dicts")
    columns = list(dict.fromkeys(key for row in table for key in row))
    numeric = {c for c in columns if all(isinstance(r.get(c), (int, float, type(None))) for r in table)}
    header = [c.replace("delta_", "Δ ", 1) if c.startswith("delta_") else c for c in columns]
    rule = ["---:" if c in numeric else "---" for c in columns]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(_cell(c, row.get(c)) for c in columns) + " |" for row in table]
    return "\n".join(lines) + "\n"
