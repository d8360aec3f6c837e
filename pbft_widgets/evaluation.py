"""Evaluate a model on rows: predict through the engine, read predictions back, score them.

Three ways to predict. Classification with a causal LM and a template with a verbalizer scores the
label words at the output indicator (:mod:`pbft_widgets.scoring`): probabilities over the labels,
never an answer outside them. Otherwise causal LMs generate (:mod:`pbft_widgets.generation`) and the
text is read back as a label, tags or an answer (``scoring="generate"`` asks for this for
classification too); token/sequence classification heads predict with an argmax over logits (NER
aligned back to words by the first sub-token). Either way the scores come from
:mod:`pbft_widgets.metrics` (plus ECE, Brier and NLL when there are probabilities), so a zero-shot
prompt and a tuned adapter are measured alike. :mod:`pbft_widgets.comparison` puts the results side
by side with bootstrap confidence intervals.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .calibration import Calibration
from .errors import ConfigError, DataError
from .generation import generate_texts, predict_tags
from .metrics import METRICS_BY_TASK, compute_metrics, normalise_answer
from .model_facts import adapter_fingerprint, can_generate, id2label
from .probability_metrics import probability_scores
from .progress import bar
from .scoring import LabelScores, head_scores, label_word_ids, score_label_words

TASK_KINDS = tuple(METRICS_BY_TASK)
SCORINGS = ("label-words", "generate")
DEFAULT_MAX_NEW_TOKENS = {"classification": 16, "ner": 128, "generation": 128, "translation": 128}
# Columns each task kind reads when no template names them (the data loaders' row shapes).
_DEFAULT_FIELDS = {"ner": ("tokens", "tags"), "classification": ("text", "label")}

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
    probabilities: list[list[float]] | None = None  # per row, over `labels` (label-word scoring or a head)
    labels: list[str] | None = None  # the columns of `probabilities`
    scoring: str = "generate"  # "label-words", "generate" or "head"
    metric_options: dict[str, Any] | None = None  # what the scores were computed with (bootstrap reuses it)
    adapter_fingerprint: str | None = None  # the adapter state it scored (model_facts.adapter_fingerprint)

    @property
    def n(self) -> int:
        """How many examples were scored."""
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
            if self.probabilities is not None:
                row["confidence"] = max(self.probabilities[i])
            rows.append(row)
        return rows

    def subset(self, rows: Sequence[int]) -> EvalResult:
        """The same evaluation restricted to ``rows`` (indices), its scores recomputed on them alone.

        Why: a corpus score over a whole test set hides its groups (a language variety, a clause type);
        ``compare`` on subsets gives each group its own paired intervals without generating again.

        Args:
            rows: indices of the examples to keep, in the order wanted.

        Returns:
            An `EvalResult` of the same name over those examples (``seconds`` is the whole run's).

        Example:
            >>> from pbft_widgets.evaluation import EvalResult
            >>> result = EvalResult("tuned", "classification", {}, ["a", "b", "b"], ["a", "b", "a"], ["x", "y", "z"], 1.0)
            >>> result.subset([0, 1]).scores["accuracy"]
            1.0
        """
        index = list(rows)
        if not index or not all(0 <= i < self.n for i in index):
            raise DataError(f"subset needs indices between 0 and {self.n - 1}; got {index[:5]}...")

        def pick(values):
            return None if values is None else [values[i] for i in index]

        predictions, references = pick(self.predictions), pick(self.references)
        scores = compute_metrics(self.task_kind, references, predictions, **(self.metric_options or {}))
        if self.probabilities is not None:
            scores.update(probability_scores(np.array(pick(self.probabilities)), references, self.labels))
        return EvalResult(self.name, self.task_kind, scores, predictions, references, pick(self.inputs), self.seconds,
                          generations=pick(self.generations), probabilities=pick(self.probabilities),
                          labels=self.labels, scoring=self.scoring, metric_options=self.metric_options,
                          adapter_fingerprint=self.adapter_fingerprint)

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
    return normalise_answer(prediction) == normalise_answer(reference)


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
    scores: LabelScores | None = None


def _by_label_words(model: Any, tokenizer: Any, rows: list[Mapping], references: list[Any], *, template: Any,
                    batch_size: int) -> _Predictions:
    if template is None:
        raise ConfigError("label-word scoring needs a prompt template with a verbalizer; pass template=PromptTemplate("
                          "..., verbalizer=Verbalizer({...}))")
    word_ids = label_word_ids(template, tokenizer)
    prompts = [template.render_prompt(row, tokenizer) for row in rows]
    scores = score_label_words(model, tokenizer, prompts, word_ids, batch_size=batch_size,
                               add_special_tokens=template.style != "chat")
    return _Predictions(prompts, [str(r) for r in references], scores.predictions, {}, scores=scores)


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
    references = _name_ids(references, id2label(model))
    field = input_field or _DEFAULT_FIELDS[task_kind][0]
    if task_kind == "ner":
        words = [list(w) for w in _column(rows, field, "input")]
        predictions, unaligned = predict_tags(model, tokenizer, words, batch_size)
        inputs = [" ".join(w) for w in words]
        return _Predictions(inputs, references, predictions, {"unaligned_words": unaligned})
    if template is not None and input_field is None:
        texts = [template.render_prompt(row, tokenizer) for row in rows]
    else:
        texts = [str(v) for v in _column(rows, field, "input")]
    scores = head_scores(model, tokenizer, texts, batch_size)
    return _Predictions(texts, references, scores.predictions, {}, scores=scores)


def _scoring_for(scoring: str | None, model: Any, template: Any, task_kind: str, parse: Parse | None) -> str:
    """The scoring asked for, or the default: label words for classification with a verbalizer."""
    if scoring is not None and scoring not in SCORINGS:
        raise ConfigError(f"unknown scoring {scoring!r}; use one of {', '.join(SCORINGS)} (or None for the default)")
    if not can_generate(model):
        if scoring == "label-words":
            raise ConfigError("scoring='label-words' reads a language model's next-token distribution, and this "
                              "model has a classification head; drop scoring= (its head predicts the labels)")
        return "head"
    if scoring is None:
        with_words = getattr(template, "verbalizer", None) is not None and parse is None
        return "label-words" if task_kind == "classification" and with_words else "generate"
    if scoring == "label-words" and task_kind != "classification":
        raise ConfigError(f"scoring='label-words' classifies, and task_kind={task_kind!r} is not classification; "
                          "drop scoring= (it generates)")
    return scoring


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
    scoring: str | None = None,
    calibration: Calibration | None = None,
    progress: bool | None = None,
) -> EvalResult:
    """Predict every row, score it with the task's metrics, and keep every prediction.

    Classification with a causal LM and a verbalizer scores the label words after
    `template.render_prompt(row, tokenizer)` (`pbft_widgets.scoring`): label probabilities, the
    argmax label, and ECE/Brier/NLL besides accuracy and macro-F1. Otherwise causal LMs generate
    greedily through `pbft_widgets.generation` (the engine `AdapterBank` serves with); the text
    becomes a label through the verbalizer, tags through `parse` (ner) or stays the answer
    (generation, translation). Classification heads predict with an argmax over their probabilities
    (NER aligned to words by the first sub-token). Zero-shot prompts and tuned adapters are measured alike.

    Args:
        model:
            A causal LM or a classification model, plain or with any PBFT adapter.
        tokenizer:
            Its tokenizer.
        rows (iterable of mappings):
            The examples; references come from `label_field`.
        template (`PromptTemplate`, *optional*):
            Required for generation; optional for sequence heads (the rendered prompt is classified).
        task_kind (`str`):
            `"classification"`, `"ner"`, `"generation"` or `"translation"`: picks the metrics.
        batch_size (`int`, defaults to 8):
            Rows per forward pass (results do not depend on it).
        max_new_tokens (`int`, *optional*):
            Default: enough for the longest label word (classification), else 128.
        label_field (`str`, *optional*):
            Column of the reference (default: the template's target_field, else `tags` for ner and `label`).
        parse (callable, *optional*):
            `parse(text, row)`: generated text to a prediction (required for ner by generation).
        generation_kwargs (mapping, *optional*):
            Passed to `generate()` over the greedy defaults.
        input_field (`str`, *optional*):
            Column a classification head reads (default `tokens` for ner, `text` for classification).
        metric_options (mapping, *optional*):
            ner: `scheme`, `strict`; classification: `labels`.
        name (`str`, *optional*):
            The result's name in comparison tables.
        scoring (`str`, *optional*):
            `"label-words"` (the default for classification with a verbalizer and no `parse`) or
            `"generate"` (generate text and read it back, the default otherwise).
        calibration (`Calibration`, *optional*):
            Applied to the label probabilities before the argmax (`pbft_widgets.calibration`).
        progress (`bool`, *optional*):
            A bar over the rows (default: shown unless `CI` is set or `PBFT_PROGRESS=0`; inside a call
            that shows its own bar, such as `train()` or an ablation, never).

    Returns:
        `EvalResult`: `.scores` (headline metric first, plus counts such as unparsed answers, and
        `ece`, `brier`, `nll` when there are probabilities), `.predictions`, `.references`,
        `.inputs`, `.generations` (raw text), `.probabilities` over `.labels`, `.table()` per
        example, `.summary()` for `compare`.

    Example:

    ```py
    >>> from pbft_widgets import PromptTemplate, Verbalizer, evaluate, load_model
    >>> lm = load_model()
    >>> template = PromptTemplate(input_template="Review: {text}", output_indicator="Sentiment:", style="cloze",
    ...                           verbalizer=Verbalizer({"pos": "positive", "neg": "negative"}))
    >>> rows = [{"text": "a wonderful, moving film", "label": "pos"}, {"text": "dull and far too long", "label": "neg"}]
    >>> result = evaluate(lm.model, lm.tokenizer, rows, template=template, task_kind="classification")
    >>> result.n, list(result.scores)[:2], result.scoring
    (2, ['macro_f1', 'accuracy'], 'label-words')
    >>> result.table()[0]["reference"]
    'pos'

    ```
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
    scoring = _scoring_for(scoring, model, template, task_kind, parse)
    if scoring != "generate" and (max_new_tokens is not None or generation_kwargs):
        raise ConfigError(f"max_new_tokens and generation_kwargs apply to generation, and this evaluation scores by "
                          f"{scoring}; pass scoring='generate' to generate, or drop them")
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        with bar(len(rows), f"evaluating {name or task_kind}", "row", progress):
            if scoring == "label-words":
                result = _by_label_words(model, tokenizer, rows, references, template=template, batch_size=batch_size)
            elif scoring == "generate":
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
    probabilities = labels = None
    if result.scores is not None and task_kind == "classification":
        scores = calibration.apply(result.scores) if calibration is not None else result.scores
        result.predictions = scores.predictions
        probabilities, labels = scores.probabilities, scores.labels
    elif calibration is not None:
        raise ConfigError("calibration applies to label probabilities, and this evaluation has none; use it with "
                          "classification by label words or by a classification head")
    metrics = compute_metrics(task_kind, result.references, result.predictions, **(metric_options or {}))
    if probabilities is not None:
        metrics.update(probability_scores(probabilities, result.references, labels))
    return EvalResult(
        name=name or task_kind,
        task_kind=task_kind,
        scores={**metrics, **result.extra},
        predictions=result.predictions,
        references=result.references,
        inputs=result.inputs,
        seconds=time.perf_counter() - started,
        generations=result.generations,
        probabilities=None if probabilities is None else probabilities.tolist(),
        labels=labels,
        scoring=scoring,
        metric_options=dict(metric_options or {}),
        adapter_fingerprint=adapter_fingerprint(model),
    )


def label_word_metric(
    tokenizer: Any,
    template: Any,
    rows: Iterable[Mapping[str, Any]],
    *,
    batch_size: int = 8,
    metric_options: Mapping[str, Any] | None = None,
) -> Callable[[Any], dict[str, float]]:
    """A ``metric_fn`` for ``train()`` and `TrainingDashboard`: validation accuracy, macro-F1 and ECE by
    label-word scoring, cheap enough for every evaluation (one forward pass per batch of rows).

    Args:
        tokenizer: the model's tokenizer.
        template: the training template (with its verbalizer and output indicator).
        rows: validation rows with labels (never the test rows).
        batch_size: rows per forward pass.
        metric_options: e.g. ``{"labels": [...]}`` so macro-F1 counts every label.

    Returns:
        ``metric(model) -> {"accuracy", "macro_f1", "ece"}``.

    Example:
        >>> from pbft_widgets import PromptTemplate, Verbalizer, load_model
        >>> from pbft_widgets.evaluation import label_word_metric
        >>> lm = load_model()
        >>> template = PromptTemplate(input_template="Review: {text}", output_indicator="Sentiment:", style="cloze",
        ...                           verbalizer=Verbalizer({"pos": "positive", "neg": "negative"}))
        >>> metric = label_word_metric(lm.tokenizer, template, [{"text": "a fine film", "label": "pos"}])
        >>> sorted(metric(lm.model))
        ['accuracy', 'ece', 'macro_f1']
    """
    rows = list(rows)
    label_word_ids(template, tokenizer)  # a template that cannot be scored fails now, not at the first evaluation

    def metric(model: Any) -> dict[str, float]:
        result = evaluate(model, tokenizer, rows, template=template, task_kind="classification",
                          batch_size=batch_size, metric_options=metric_options, scoring="label-words")
        return {name: result.scores[name] for name in ("accuracy", "macro_f1", "ece")}

    return metric
