"""Verbalizer: label values <-> label words, the cloze side of a prompt template.

The first word of each label is the one a model is trained to produce; the others are synonyms
accepted when generated text is read back as a label.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import DataError, TemplateError


def is_missing(value: Any) -> bool:
    """None or NaN (an empty spreadsheet cell): a label or answer that is not there."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


class Verbalizer:
    """Maps label values to label words, and generated text back to labels.

    The first word of a label is the one trained on; the others are synonyms accepted when mapping
    generated text back. Label values are compared as strings so int and str labels both work.
    """

    def __init__(
        self, label_words: Mapping[Any, str | Sequence[str]], *, allow_multi_token: bool = False
    ) -> None:
        if not label_words:
            raise TemplateError("Verbalizer needs label words; pass e.g. {'pos': 'great', 'neg': 'bad'}")
        self._words: dict[str, list[str]] = {}
        for label, words in label_words.items():
            words = [words] if isinstance(words, str) else list(words)
            if not words:
                raise TemplateError(f"label {label!r} has no label words; give it at least one, e.g. {{{label!r}: 'word'}}")
            if any(not isinstance(w, str) or not w.strip() for w in words):
                raise TemplateError(f"label {label!r} has an empty label word; give it a non-empty word")
            self._words[str(label)] = [w.strip() for w in words]
        seen: dict[str, str] = {}
        for label, words in self._words.items():
            for word in words:
                other = seen.setdefault(_normalise(word), label)
                if other != label:
                    raise TemplateError(
                        f"label word {word!r} is used by labels {other!r} and {label!r}; "
                        "give each label its own word"
                    )
        self.allow_multi_token = allow_multi_token
        self.labels: list[str] = list(self._words)

    def word(self, label: Any) -> str:
        """The canonical (first) word for ``label``; DataError names the known labels otherwise."""
        if is_missing(label):
            raise DataError("label is None/NaN; drop the row or fill in its label")
        try:
            return self._words[str(label)][0]
        except KeyError:
            raise DataError(
                f"label {label!r} is not in the verbalizer; known labels: {', '.join(self.labels)}. "
                "Add it to the Verbalizer or fix the row's label"
            ) from None

    def words(self, label: Any) -> list[str]:
        """All words of ``label``: the trained one first, then its synonyms."""
        self.word(label)  # names the known labels when ``label`` is not one
        return list(self._words[str(label)])

    def validate(self, tokenizer: Any, *, leading_space: bool = True) -> None:
        """Check each trained (first) word is one token in the form the model sees after the indicator.

        One-token words let a classifier read the answer from a single next-token distribution;
        multi-token words are only accepted when ``allow_multi_token=True``. Synonyms are only used
        to read generated text back, so they may be any length.
        """
        if self.allow_multi_token:
            return
        for label, words in self._words.items():
            form = f" {words[0]}" if leading_space else words[0]
            ids = tokenizer(form, add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                raise TemplateError(
                    f"label word {form!r} (label {label!r}) is {len(ids)} tokens "
                    f"{tokenizer.convert_ids_to_tokens(ids)}; pass allow_multi_token=True to the "
                    "Verbalizer or choose a single-token word"
                )

    def label_for_text(self, generated: str) -> str | None:
        """The label whose word occurs first in ``generated`` (case/space-insensitive), else None."""
        text = _normalise(generated)
        best: tuple[int, int, str] | None = None
        for label, words in self._words.items():
            for word in words:
                match = re.search(rf"(?<!\w){re.escape(_normalise(word))}(?!\w)", text)
                if match:
                    key = (match.start(), -len(match.group()), label)
                    best = key if best is None or key < best else best
        return None if best is None else best[2]

    def to_dict(self) -> dict:
        """Label words and settings as plain values (templates save these to JSON/YAML)."""
        words = {label: list(words) for label, words in self._words.items()}
        return {"label_words": words, "allow_multi_token": self.allow_multi_token}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Verbalizer) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Verbalizer({self._words!r}, allow_multi_token={self.allow_multi_token})"
