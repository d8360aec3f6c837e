"""What every catalogue case is made of: the Case record, and the Bench of tiny models it runs on.

The area modules beside this one (templates, data, methods, ...) hold the cases; the helpers here
are the ones several areas share.
"""

from __future__ import annotations

import atexit
import copy
import functools
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from conftest import tiny_bert, tiny_llama

from pbft_widgets import errors as E


@dataclass(frozen=True)
class Case:
    id: str
    area: str
    what: str  # what the user did, in their words
    error: type[E.PbftError]
    fix: str  # a phrase of the fix the message must contain
    run: Callable[[Bench], object]
    max_seconds: float | None = None
    says: tuple[str, ...] = ()  # further phrases the message must contain: where, which value, why


class Bench:
    """Tiny models, a tokenizer and a scratch folder, made once and shared by every case."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pbft-bad-inputs-"))
        atexit.register(shutil.rmtree, self.root, ignore_errors=True)

    def path(self, name: str) -> Path:
        return self.root / name

    @functools.cached_property
    def tokenizer(self):
        from pbft_widgets.models import load_tokenizer

        return load_tokenizer("smollm2-135m-instruct")

    @functools.cached_property
    def bert_tokenizer(self):
        from pbft_widgets.models import load_tokenizer

        return load_tokenizer("minilm-l6")

    @functools.cached_property
    def _lm(self):
        return tiny_llama(self.tokenizer)

    def lm(self):
        """A fresh copy of the tiny causal LM (methods wrap models in place)."""
        return copy.deepcopy(self._lm)

    def other_lm(self):
        """Same architecture, other weights: what a different base checkpoint looks like."""
        model = self.lm()
        torch.manual_seed(7)
        with torch.no_grad():
            model.get_input_embeddings().weight.normal_()
        return model

    def bert(self, task: str, labels: list[str]):
        from transformers import (
            BertForSequenceClassification,
            BertForTokenClassification,
        )

        torch.manual_seed(0)
        config = tiny_bert(self.bert_tokenizer, id2label=dict(enumerate(labels)),
                           label2id={l: i for i, l in enumerate(labels)})
        cls = BertForTokenClassification if task == "token-classification" else BertForSequenceClassification
        return cls(config).eval()

    @functools.cached_property
    def model_folder(self) -> Path:
        """The tiny LM saved like a Hub download, for load_model() paths (4-bit, missing files)."""
        folder = self.path("tiny-llama")
        self._lm.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        return folder

    def adapter(self, method: str = "lora", name: str | None = None) -> Path:
        """A saved adapter of ``method`` on the tiny LM (one per name)."""
        from pbft_widgets import apply_method, save_adapter

        path = self.path(name or f"adapter-{method}")
        if not path.exists():
            save_adapter(apply_method(self.lm(), method, **small_options(method)), path)
        return path

    def fresh_copy(self, source: Path, name: str) -> Path:
        target = self.path(name)
        shutil.copytree(source, target)
        return target


def small_options(method: str) -> dict:
    """Options that keep an adapter tiny (LoRA's defaults already are)."""
    return {} if method in ("lora", "qlora") else {"num_virtual_tokens": 4}


def template(**changes):
    from pbft_widgets import PromptTemplate, Verbalizer

    base = PromptTemplate(instruction="Is the review positive or negative?", input_template="Review: {text}",
                          output_indicator="Sentiment:", style="cloze",
                          verbalizer=Verbalizer({"pos": "positive", "neg": "negative"}))
    return base.with_changes(**changes)


ROWS = [{"text": "a wonderful, moving film", "label": "pos"}, {"text": "dull and far too long", "label": "neg"}] * 4


def train_tiny(bench: Bench, rows, *, method="prompt-tuning", output_dir="run", **kwargs):
    from pbft_widgets import apply_method, train

    setup = apply_method(bench.lm(), method, tokenizer=bench.tokenizer, **small_options(method))
    options = {"tokenizer": bench.tokenizer, "template": template(), "output_dir": bench.path(output_dir),
               "max_steps": 1, "batch_size": 4, "smoke": False, **kwargs}
    return train(setup, rows, **options)
