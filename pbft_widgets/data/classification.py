"""Rows -> tokenised datasets and Trainer metrics for token and sequence classification.

Words are labelled, sub-words are not: only the first sub-token of each word carries the word's tag
(the rest get -100), which is the convention seqeval-scored NER expects when predictions are mapped
back to words. :func:`first_subtokens` is that alignment, shared by encoding and prediction.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import DataError

IGNORE_INDEX = -100
_BIO_LABEL = re.compile(r"^(O|[BI]-\S+)$")


def first_subtokens(word_ids: Sequence[int | None]) -> dict[int, int]:
    """Word index -> position of its first sub-token, from a fast tokenizer's ``word_ids()``.

    Example:
        >>> first_subtokens([None, 0, 0, 1, None])
        {0: 1, 1: 3}
    """
    firsts: dict[int, int] = {}
    for position, word in enumerate(word_ids):
        if word is not None and word not in firsts:
            firsts[word] = position
    return firsts


def _check_labels(values: set[str], label2id: Mapping[str, int], split: str, what: str) -> None:
    unknown = sorted(values - set(label2id))
    if unknown:
        raise DataError(f"{split} rows use {what} {unknown[:8]} that the model's label set {sorted(label2id)} "
                        "lacks; load the model with id2label covering every label of train and eval data.")


def encode_token_rows(rows: Sequence[Mapping[str, Any]], tokenizer: Any, label2id: Mapping[str, int], *,
                      max_length: int | None = None, split: str = "train"):
    """{"tokens": [...], "tags": [...]} rows -> a Dataset of input_ids/attention_mask/labels."""
    from datasets import Dataset

    for i, row in enumerate(rows):
        if "tokens" not in row or "tags" not in row:
            raise DataError(f"{split} row {i} has columns {sorted(row)}; token classification needs "
                            "'tokens' and 'tags' (load CoNLL files with pbft_widgets.data.read_conll).")
        if len(row["tokens"]) != len(row["tags"]):
            raise DataError(f"{split} row {i}: {len(row['tokens'])} tokens but {len(row['tags'])} tags; "
                            "give exactly one tag per token.")
    _check_labels({str(t) for row in rows for t in row["tags"]}, label2id, split, "tags")
    if all(_BIO_LABEL.match(str(label)) for label in label2id):  # an IOB2 label set: entities must start with B-
        from .conll import validate_tags

        try:
            validate_tags(rows, source=f"{split} rows")
        except DataError as exc:
            raise DataError(f"{exc} (for rows in memory: rows = pbft_widgets.data.conll.validate_tags(rows, "
                            "repair=True))") from None
    words = [list(row["tokens"]) for row in rows]
    limit = max_length or min(tokenizer.model_max_length, 512)
    _warn_cut(tokenizer(words, is_split_into_words=True)["input_ids"], limit, split)
    encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=limit)
    labels = []
    for i, row in enumerate(rows):
        positions = {position: word for word, position in first_subtokens(encoded.word_ids(i)).items()}
        labels.append([label2id[str(row["tags"][positions[p]])] if p in positions else IGNORE_INDEX
                       for p in range(len(encoded["input_ids"][i]))])
    return Dataset.from_dict({**{k: list(v) for k, v in encoded.items()}, "labels": labels})
def encode_sequence_rows(rows: Sequence[Mapping[str, Any]], tokenizer: Any, label2id: Mapping[str, int], *,
                         max_length: int | None = None, split: str = "train"):
    """{"text": ..., "label": ...} rows -> a Dataset of input_ids/attention_mask/labels."""
    from datasets import Dataset

    for i, row in enumerate(rows):
        if "text" not in row or "label" not in row or row["label"] is None:
            raise DataError(f"{split} row {i} needs a 'text' and a non-empty 'label' (got {sorted(row)}).")
    _check_labels({str(row["label"]) for row in rows}, label2id, split, "labels")
    texts = [str(row["text"]) for row in rows]
    limit = max_length or min(tokenizer.model_max_length, 512)
    _warn_cut(tokenizer(texts)["input_ids"], limit, split)
    encoded = tokenizer(texts, truncation=True, max_length=limit)
    return Dataset.from_dict({**{k: list(v) for k, v in encoded.items()},
                              "labels": [label2id[str(row["label"])] for row in rows]})


def _warn_cut(input_ids: Sequence[Sequence[int]], limit: int, split: str) -> None:
    """Say how many tokens truncation drops, so a long-document dataset is not silently shortened."""
    cut = [len(ids) - limit for ids in input_ids if len(ids) > limit]
    if cut:
        warnings.warn(f"{sum(cut)} tokens were cut from {len(cut)} of {len(input_ids)} {split} rows to fit "
                      f"max_length={limit}; split long texts into shorter rows or raise max_length (at most "
                      "the model's max_position_embeddings)", UserWarning, stacklevel=3)


def metrics_for(task: str, id2label: Mapping[int, str]) -> Callable[[Any], dict[str, float]]:
    """A Trainer `compute_metrics`: entity F1 for token classification, accuracy/macro-F1 otherwise."""
    from ..metrics import accuracy_and_macro_f1, entity_scores

    names = {int(k): str(v) for k, v in id2label.items()}

    def token_metrics(prediction) -> dict[str, float]:
        predicted = np.argmax(prediction.predictions, axis=-1)
        true_tags, pred_tags = [], []
        for pred_row, label_row in zip(predicted, prediction.label_ids):
            keep = label_row != IGNORE_INDEX
            true_tags.append([names[int(x)] for x in label_row[keep]])
            pred_tags.append([names[int(x)] for x in pred_row[keep]])
        scores = entity_scores(true_tags, pred_tags, strict=False)
        return {k: scores[k] for k in ("precision", "recall", "f1")}

    def sequence_metrics(prediction) -> dict[str, float]:
        predicted = np.argmax(prediction.predictions, axis=-1)
        scores = accuracy_and_macro_f1([names[int(x)] for x in prediction.label_ids],
                                       [names[int(x)] for x in predicted], labels=list(names.values()))
        return {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"]}

    return token_metrics if task == "token-classification" else sequence_metrics
