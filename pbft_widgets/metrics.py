"""Task metrics as thin wrappers over the reference implementations.

Entity F1 comes from seqeval, BLEU and chrF++ from sacrebleu, accuracy/F1 from scikit-learn
(a dependency of seqeval), so numbers match what papers and leaderboards report. Each metric
keeps the scale of its reference implementation: BLEU and chrF++ on 0-100, everything else
on 0-1. Inputs are checked up front so a mis-shaped evaluation fails with a message that says
how to fix it instead of a score that is silently wrong.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from pbft_widgets.errors import ConfigError, DataError

# Task kind -> metric names computed by `compute_metrics`; the first is the headline metric.
METRICS_BY_TASK: Mapping[str, tuple[str, ...]] = {
    "classification": ("macro_f1", "accuracy"),
    "ner": ("f1", "precision", "recall"),
    "generation": ("rouge_l", "bleu", "chrf", "exact_match"),
    "translation": ("chrf", "bleu", "exact_match"),
}

_SCHEMES: Mapping[str, str] = {"IOB2": "BIO", "IOBES": "BIOES", "BILOU": "BILOU"}


def _check_pair(hyps: Sequence[Any], refs: Sequence[Any], what: str) -> None:
    """Refuse empty or unequal inputs: zip() would silently drop the tail."""
    if len(hyps) == 0:
        raise DataError(f"{what}: no examples to score; pass at least one prediction/reference pair")
    if len(hyps) != len(refs):
        raise DataError(
            f"{what}: {len(hyps)} predictions but {len(refs)} references; "
            "pass exactly one prediction per reference, in the same order"
        )


def _check_texts(texts: Sequence[Any], name: str, what: str) -> None:
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataError(
                f"{what}: {name}[{i}] is {type(text).__name__}, not str; "
                "convert it to text (use '' for an empty generation)"
            )


# ---------------------------------------------------------------------------------------------
# Sequence labelling (NER)
# ---------------------------------------------------------------------------------------------


def _seqeval_scheme(scheme: str):
    from seqeval import scheme as seqeval_scheme

    if scheme not in _SCHEMES:
        raise ConfigError(f"unknown tagging scheme {scheme!r}; use one of {sorted(_SCHEMES)}")
    return getattr(seqeval_scheme, scheme)


def _check_tag(tag: Any, where: str, scheme: str) -> None:
    prefixes = _SCHEMES[scheme]
    if not isinstance(tag, str):
        raise DataError(
            f"{where} = {tag!r} is not a string tag; map label ids to tag names first "
            "(e.g. with the model's config.id2label)"
        )
    if tag == "O":
        return
    prefix, dash, entity_type = tag.partition("-")
    if not dash or not entity_type:
        raise DataError(
            f"{where} = {tag!r} has no '<prefix>-<type>' form; {scheme} tags are 'O' or "
            f"{'/'.join(p + '-<type>' for p in prefixes if p != 'O')}, e.g. 'B-{tag.strip('-') or 'Disease'}'"
        )
    if prefix not in prefixes or prefix == "O":
        raise DataError(
            f"{where} = {tag!r} has unknown prefix {prefix!r}; {scheme} allows "
            f"{', '.join(p for p in prefixes if p != 'O')} (and plain 'O'); pass the matching scheme= "
            "or convert the tags"
        )


def _check_sequences(tags: Sequence[Sequence[Any]], name: str, scheme: str) -> None:
    for i, sentence in enumerate(tags):
        if isinstance(sentence, str) or not isinstance(sentence, Sequence):
            raise DataError(
                f"{name}[{i}] is {type(sentence).__name__}; pass one list of tags per sentence "
                "(a list of lists)"
            )
        for j, tag in enumerate(sentence):
            _check_tag(tag, f"{name}[{i}][{j}]", scheme)


def _check_strict(tags: Sequence[Sequence[str]], name: str, scheme: str) -> None:
    """Every non-O tag must belong to an entity seqeval's strict mode can extract."""
    from seqeval.scheme import Tokens

    token_class = _seqeval_scheme(scheme)
    for i, sentence in enumerate(tags):
        covered: set[int] = set()
        for entity in Tokens(list(sentence), token_class).entities:
            covered.update(range(entity.start, entity.end))
        for j, tag in enumerate(sentence):
            if tag != "O" and j not in covered:
                previous = repr(sentence[j - 1]) if j else "the sentence start"
                if scheme == "IOB2":
                    fix = "convert to IOB2 with pbft_widgets.metrics.to_iob2(tags)"
                else:
                    fix = f"make the tags valid {scheme}"
                raise DataError(
                    f"{name}[{i}][{j}]: {tag!r} follows {previous}, which is not valid {scheme}; "
                    f"{fix} or pass strict=False (conlleval rules)"
                )


def to_iob2(tags: Sequence[str]) -> list[str]:
    """Rewrite IOB1-style tags (an entity may start with I-) as IOB2, where every entity starts with B-.

    CoNLL-2003's original files and many older corpora use IOB1; strict entity scoring needs IOB2.
    """
    converted: list[str] = []
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            converted.append("B-" + tag[2:])
        else:
            converted.append(tag)
        previous = tag
    return converted


def entity_scores(
    true_tags: Sequence[Sequence[str]],
    pred_tags: Sequence[Sequence[str]],
    *,
    scheme: str = "IOB2",
    strict: bool = True,
) -> dict[str, Any]:
    """Entity-level precision/recall/F1 (micro over entities) and per-type scores, via seqeval.

    strict=True uses seqeval's strict mode for `scheme`: an entity counts only if its type and
    exact span match. Reference tags must then be valid for the scheme; predicted tags may be
    invalid (an I- after O is simply no entity, which costs recall, as it should). strict=False
    uses conlleval's lenient rules, where an I- after O starts an entity.
    """
    what = "entity_scores"
    _check_pair(pred_tags, true_tags, what)
    _seqeval_scheme(scheme)
    _check_sequences(true_tags, "true_tags", scheme)
    _check_sequences(pred_tags, "pred_tags", scheme)
    for i, (true, pred) in enumerate(zip(true_tags, pred_tags)):
        if len(true) != len(pred):
            raise DataError(
                f"sentence {i}: {len(true)} true tags but {len(pred)} predicted; predict exactly one "
                "tag per word (align sub-word predictions back to words, e.g. first sub-token)"
            )
    true_lists = [list(sentence) for sentence in true_tags]
    pred_lists = [list(sentence) for sentence in pred_tags]
    if strict:
        _check_strict(true_lists, "true_tags", scheme)

    from seqeval.metrics import classification_report

    options: dict[str, Any] = {"output_dict": True, "zero_division": 0}
    if strict:
        options.update(mode="strict", scheme=_seqeval_scheme(scheme))
    has_entities = any(tag != "O" for sentence in true_lists + pred_lists for tag in sentence)
    report = classification_report(true_lists, pred_lists, **options) if has_entities else {}
    per_type = {
        name: {
            "precision": float(row["precision"]),
            "recall": float(row["recall"]),
            "f1": float(row["f1-score"]),
            "support": int(row["support"]),
        }
        for name, row in report.items()
        if not name.endswith(" avg")
    }
    overall = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0})
    return {
        "precision": float(overall["precision"]),
        "recall": float(overall["recall"]),
        "f1": float(overall["f1-score"]),
        "support": int(overall["support"]),
        "per_type": per_type,
    }


# ---------------------------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------------------------


def _label_index(true: Sequence[Hashable], pred: Sequence[Hashable | None], labels) -> list:
    if labels is None:
        seen = dict.fromkeys(list(true) + [p for p in pred if p is not None])
        try:
            return sorted(seen)
        except TypeError:  # mixed label types: keep first-seen order
            return list(seen)
    labels = list(labels)
    if not labels:
        raise DataError("labels is empty; pass the label set, or labels=None to infer it")
    missing = [t for t in dict.fromkeys(true) if t not in set(labels)]
    if missing:
        raise DataError(
            f"reference label(s) {missing[:5]} are not in labels={labels}; add them to labels "
            "or pass labels=None to infer the label set"
        )
    return labels


def _encode(true, pred, labels) -> tuple[list[int], list[int]]:
    """Labels -> indices; None or out-of-set predictions -> an extra index that is always wrong."""
    index = {label: i for i, label in enumerate(labels)}
    other = len(labels)
    return [index[t] for t in true], [index.get(p, other) if p is not None else other for p in pred]


def accuracy_and_macro_f1(
    true: Sequence[Hashable],
    pred: Sequence[Hashable | None],
    labels: Sequence[Hashable] | None = None,
) -> dict[str, Any]:
    """Accuracy, macro-F1 over `labels` (default: every label seen), per-label precision, recall, F1, support.

    A prediction of None (a generation that maps to no label) counts as wrong and is reported in
    `unparsed`; it never becomes a label of its own, so it cannot inflate macro-F1. F1 is
    2·TP / (2·TP + FP + FN) per label, 0 for a label never predicted nor present (scikit-learn's
    `zero_division=0`), computed from one count matrix so a bootstrap can call this thousands of times.
    """
    import numpy as np

    _check_pair(pred, true, "accuracy_and_macro_f1")
    for i, t in enumerate(true):
        if t is None:
            raise DataError(f"true[{i}] is None; every reference needs a label (drop unlabelled rows)")
    labels = _label_index(true, pred, labels)
    y_true, y_pred = (np.asarray(ids, dtype=int) for ids in _encode(true, pred, labels))
    k = len(labels)
    counts = np.bincount(y_true * (k + 1) + y_pred, minlength=k * (k + 1)).reshape(k, k + 1)
    hits = np.diag(counts[:, :k]).astype(float)
    support = counts.sum(axis=1)
    predicted = np.bincount(y_pred, minlength=k + 1)[:k]

    def ratio(numerator, denominator):
        return np.divide(numerator, denominator, out=np.zeros(k), where=denominator > 0)

    per_label = ratio(2 * hits, support + predicted)
    return {
        "accuracy": float(hits.sum() / len(y_true)) if len(y_true) else 0.0,
        "macro_f1": float(per_label.mean()),
        "per_label_f1": {label: float(f) for label, f in zip(labels, per_label)},
        "per_label_precision": {label: float(p) for label, p in zip(labels, ratio(hits, predicted))},
        "per_label_recall": {label: float(r) for label, r in zip(labels, ratio(hits, support))},
        "support": {label: int(n) for label, n in zip(labels, support)},
        "unparsed": sum(p is None for p in pred),
    }


def confusion_matrix(
    true: Sequence[Hashable], pred: Sequence[Hashable | None], labels: Sequence[Hashable]
) -> list[list[int]]:
    """Counts with rows = reference label, columns = predicted label, both in `labels` order.

    Unparsed (None) or out-of-set predictions fall in no column, so a row may sum to less than
    that label's support; `accuracy_and_macro_f1(...)["unparsed"]` reports how many.
    """
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    _check_pair(pred, true, "confusion_matrix")
    labels = _label_index(true, pred, labels)
    y_true, y_pred = _encode(true, pred, labels)
    ids = list(range(len(labels) + 1))
    matrix = sk_confusion_matrix(y_true, y_pred, labels=ids)
    return [[int(v) for v in row[: len(labels)]] for row in matrix[: len(labels)]]


# ---------------------------------------------------------------------------------------------
# Generation and translation
# ---------------------------------------------------------------------------------------------


def _reference_streams(refs: Sequence[str | Sequence[str]], what: str) -> list[list[str]]:
    """One reference per hypothesis, or several: sacrebleu wants one stream per reference slot."""
    if all(isinstance(r, str) for r in refs):
        return [list(refs)]
    counts = {len(r) for r in refs if not isinstance(r, str)}
    if any(isinstance(r, str) for r in refs) or len(counts) != 1 or 0 in counts:
        raise DataError(
            f"{what}: references mix strings and lists, or lists of different lengths; pass one "
            "string per hypothesis, or the same number of reference strings for every hypothesis"
        )
    streams = [list(stream) for stream in zip(*refs)]
    for stream in streams:
        _check_texts(stream, "refs", what)
    return streams


def bleu(hyps: Sequence[str], refs: Sequence[str | Sequence[str]]) -> float:
    """Corpus BLEU (sacrebleu defaults: 13a tokenisation, exponential smoothing), 0-100."""
    from sacrebleu.metrics import BLEU

    _check_pair(hyps, refs, "bleu")
    _check_texts(hyps, "hyps", "bleu")
    return float(BLEU().corpus_score(list(hyps), _reference_streams(refs, "bleu")).score)


def chrf(hyps: Sequence[str], refs: Sequence[str | Sequence[str]]) -> float:
    """Corpus chrF++ (character 6-grams plus word bigrams, sacrebleu CHRF(word_order=2)), 0-100.

    chrF++ is the usual choice for morphologically rich, low-resource languages, where BLEU's
    whole-word matches are too sparse to separate systems.
    """
    from sacrebleu.metrics import CHRF

    _check_pair(hyps, refs, "chrf")
    _check_texts(hyps, "hyps", "chrf")
    return float(CHRF(word_order=2).corpus_score(list(hyps), _reference_streams(refs, "chrf")).score)


_WORD = re.compile(r"[^\W_]+")


def rouge_tokens(text: str) -> list[str]:
    """Lowercased runs of letters/digits.

    For ASCII text this is exactly rouge_score's default tokeniser without stemming (lowercase,
    every non-[a-z0-9] character separates tokens). rouge_score drops non-ASCII letters
    entirely; here they stay inside their word, so 'canción' is one token rather than 'canci', 'n'.
    """
    return _WORD.findall(text.lower())


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Longest common subsequence length, O(len(a) * len(b)) time, O(len(b)) memory."""
    row = [0] * (len(b) + 1)
    for token in a:
        diagonal = 0
        for j, other in enumerate(b, start=1):
            above = row[j]
            row[j] = diagonal + 1 if token == other else max(above, row[j - 1])
            diagonal = above
    return row[-1]


def rouge_l_pair(hyp: str, ref: str) -> float:
    """ROUGE-L F-measure (beta = 1) of one hypothesis against one reference, 0-1."""
    hyp_tokens, ref_tokens = rouge_tokens(hyp), rouge_tokens(ref)
    if not hyp_tokens or not ref_tokens:
        return 0.0
    lcs = _lcs_length(hyp_tokens, ref_tokens)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(hyp_tokens), lcs / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def rouge_l(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Mean sentence-level ROUGE-L F-measure over pairs (as rouge_score users average it), 0-1."""
    _check_pair(hyps, refs, "rouge_l")
    _check_texts(hyps, "hyps", "rouge_l")
    _check_texts(refs, "refs", "rouge_l")
    return sum(rouge_l_pair(h, r) for h, r in zip(hyps, refs)) / len(hyps)


def normalise_answer(text: str) -> str:
    """Casefold, NFKC, drop punctuation, collapse whitespace: 'The end.' == 'the  end'."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    return " ".join(text.split())


def exact_match(hyps: Sequence[str], refs: Sequence[str], normalise: bool = True) -> float:
    """Share of hypotheses equal to their reference (after `normalise_answer` unless normalise=False)."""
    _check_pair(hyps, refs, "exact_match")
    _check_texts(hyps, "hyps", "exact_match")
    _check_texts(refs, "refs", "exact_match")
    prepare = normalise_answer if normalise else (lambda s: s)
    return sum(prepare(h) == prepare(r) for h, r in zip(hyps, refs)) / len(hyps)


# ---------------------------------------------------------------------------------------------
# One call per task kind
# ---------------------------------------------------------------------------------------------


def compute_metrics(
    task_kind: str, references: Sequence[Any], predictions: Sequence[Any], **options: Any
) -> dict[str, Any]:
    """All metrics of METRICS_BY_TASK[task_kind]; options go to the underlying metric.

    classification takes `labels`; ner takes `scheme` and `strict`. Scalar headline metrics come
    first in the returned dict; breakdowns (per label / per type) follow under their own keys.
    """
    if task_kind not in METRICS_BY_TASK:
        raise ConfigError(f"unknown task kind {task_kind!r}; use one of {sorted(METRICS_BY_TASK)}")
    allowed = {"classification": {"labels"}, "ner": {"scheme", "strict"}}.get(task_kind, set())
    unknown = set(options) - allowed
    if unknown:
        raise ConfigError(
            f"metric option(s) {sorted(unknown)} do not apply to {task_kind!r}; "
            f"allowed: {sorted(allowed) or 'none'}"
        )
    if task_kind == "classification":
        scores = accuracy_and_macro_f1(references, predictions, options.get("labels"))
    elif task_kind == "ner":
        scores = entity_scores(references, predictions, **options)
    else:
        functions = {"rouge_l": rouge_l, "bleu": bleu, "chrf": chrf, "exact_match": exact_match}
        scores = {name: functions[name](predictions, references) for name in METRICS_BY_TASK[task_kind]}
    headline = {name: scores[name] for name in METRICS_BY_TASK[task_kind]}
    return {**headline, **{k: v for k, v in scores.items() if k not in headline}}
