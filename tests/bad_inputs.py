"""The catalogue of bad inputs: what a user did, the error it raises, and the fix the message names.

One data-driven list serves two readers: tests/test_bad_inputs.py asserts each case raises its
exception class with a message containing ``fix``, and tests/make_error_catalogue.py turns the
same cases into docs/error-catalogue.md. Each case runs against tiny models built here (seconds
for the whole list) inside one temporary folder.
"""

from __future__ import annotations

import atexit
import copy
import functools
import importlib.util
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

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
        from transformers import BertForSequenceClassification, BertForTokenClassification

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
            save_adapter(apply_method(self.lm(), method, **_small(method)), path)
        return path

    def fresh_copy(self, source: Path, name: str) -> Path:
        target = self.path(name)
        shutil.copytree(source, target)
        return target


def _small(method: str) -> dict:
    """Options that keep an adapter tiny (LoRA's defaults already are)."""
    return {} if method in ("lora", "qlora") else {"num_virtual_tokens": 4}


def _template(**changes):
    from pbft_widgets import PromptTemplate, Verbalizer

    base = PromptTemplate(instruction="Is the review positive or negative?", input_template="Review: {text}",
                          output_indicator="Sentiment:", style="cloze",
                          verbalizer=Verbalizer({"pos": "positive", "neg": "negative"}))
    return base.with_changes(**changes)


ROWS = [{"text": "a wonderful, moving film", "label": "pos"}, {"text": "dull and far too long", "label": "neg"}] * 4


def _train(bench: Bench, rows, *, method="prompt-tuning", output_dir="run", **kwargs):
    from pbft_widgets import apply_method, train

    setup = apply_method(bench.lm(), method, tokenizer=bench.tokenizer, **_small(method))
    options = {"tokenizer": bench.tokenizer, "template": _template(), "output_dir": bench.path(output_dir),
               "max_steps": 1, "batch_size": 4, "smoke": False, **kwargs}
    return train(setup, rows, **options)


# ----------------------------------------------------------------------------- templates
def _template_file_with_unknown_setting(bench: Bench):
    from pbft_widgets import PromptTemplate

    path = bench.path("template-unknown.json")
    path.write_text(json.dumps({**_template().to_dict(), "colour": "blue"}))
    return PromptTemplate.load(path)


def _demonstrations_too_long(bench: Bench):
    demos = [{"text": "an endless, rambling, beautiful film " * 12, "label": "pos"}] * 3
    return _template(demonstrations=demos, max_length=60).validate(bench.tokenizer)


def _multi_token_label(bench: Bench):
    from pbft_widgets import Verbalizer

    template = _template(verbalizer=Verbalizer({"pos": "wonderfulness", "neg": "negative"}))
    return template.render(ROWS[0], bench.tokenizer)


# ----------------------------------------------------------------------------- data
def _conll(bench: Bench, name: str, text: str, encoding: str = "utf-8"):
    from pbft_widgets.data.conll import read_conll

    path = bench.path(name)
    path.write_bytes(text.encode(encoding))
    return read_conll(path)


def _jsonl(bench: Bench, name: str, data: bytes):
    from pbft_widgets.data.jsonl import read_jsonl

    path = bench.path(name)
    path.write_bytes(data)
    return read_jsonl(path)


def _eval_label_unseen(bench: Bench):
    """The model's label set comes from the training rows; an eval row has another label."""
    from pbft_widgets import apply_method, train

    train_rows = [{"text": "the licence may be revoked", "label": "termination"},
                  {"text": "provided as is", "label": "warranty"}] * 2
    eval_rows = [{"text": "governed by the laws of Ohio", "label": "governing-law"}]
    model = bench.bert("sequence-classification", ["termination", "warranty"])
    setup = apply_method(model, "lora", task="sequence-classification")
    return train(setup, train_rows, eval_rows=eval_rows, tokenizer=bench.bert_tokenizer,
                 output_dir=bench.path("run-eval-labels"), max_steps=1, batch_size=2, smoke=False)


def _token_rows_bad_bio(bench: Bench):
    """Token-classification training rows whose entity starts with I- (no B-)."""
    from pbft_widgets import apply_method, train

    labels = ["O", "B-DISEASE", "I-DISEASE"]
    rows = [{"tokens": ["severe", "chest", "pain"], "tags": ["O", "I-DISEASE", "I-DISEASE"]}] * 2
    setup = apply_method(bench.bert("token-classification", labels), "lora", task="token-classification")
    return train(setup, rows, tokenizer=bench.bert_tokenizer, output_dir=bench.path("run-bio"), max_steps=1,
                 batch_size=2, smoke=False)


# ----------------------------------------------------------------------------- methods
def _four_bit(bench: Bench):
    from pbft_widgets import load_model

    return load_model(bench.model_folder, quantization="4bit").model


def _prefix_on_4bit(bench: Bench):
    from pbft_widgets import apply_method

    return apply_method(_four_bit(bench), "prefix-tuning")


# ----------------------------------------------------------------------------- models
def _no_bitsandbytes(bench: Bench):
    from pbft_widgets import load_model

    real = importlib.util.find_spec
    with mock.patch.object(importlib.util, "find_spec",
                           lambda name, *a: None if name == "bitsandbytes" else real(name, *a)):
        return load_model(bench.model_folder, quantization="4bit")


def _bf16_on_t4(bench: Bench):
    from pbft_widgets.models import resolve_compute

    with mock.patch.object(torch.cuda, "is_available", lambda: True), \
            mock.patch.object(torch.cuda, "is_bf16_supported", lambda *a, **k: False), \
            mock.patch.object(torch.cuda, "get_device_name", lambda *a, **k: "Tesla T4"):
        return resolve_compute("bf16", "cuda")


def _hub_id_offline(bench: Bench):
    from huggingface_hub import constants

    from pbft_widgets import load_model

    with mock.patch.object(constants, "HF_HUB_OFFLINE", True):
        return load_model("HuggingFaceTB/SmolLM2-360M-Instruct")


def _folder_not_a_model(bench: Bench):
    from pbft_widgets import load_model

    folder = bench.path("my-notes")
    folder.mkdir(exist_ok=True)
    (folder / "notes.txt").write_text("not a model")
    return load_model(folder)


# ----------------------------------------------------------------------------- adapters
def _load_model(*args, **kwargs):
    from pbft_widgets import load_model

    return load_model(*args, **kwargs)


def _load_adapter(*args, **kwargs):
    from pbft_widgets import load_adapter

    return load_adapter(*args, **kwargs)


def _truncated_adapter(bench: Bench):
    from pbft_widgets import load_adapter

    path = bench.fresh_copy(bench.adapter("lora"), "adapter-truncated")
    weights = path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    return load_adapter(bench.lm(), path)


def _bit_flipped_adapter(bench: Bench):
    from pbft_widgets import load_adapter

    path = bench.fresh_copy(bench.adapter("lora"), "adapter-flipped")
    weights = path / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    return load_adapter(bench.lm(), path)


def _corrupted_manifest(bench: Bench):
    from pbft_widgets import load_adapter

    path = bench.fresh_copy(bench.adapter("lora"), "adapter-bad-manifest")
    (path / "pbft_adapter.json").write_text('{"format": "pbft-adapter", "meth')
    return load_adapter(bench.lm(), path)


def _incomplete_checkpoint(bench: Bench):
    """A run killed while the Trainer wrote checkpoint-3: files, but no completion marker."""
    from pbft_widgets import load_adapter

    run = bench.path("killed-run")
    good, partial = run / "checkpoint-2", run / "checkpoint-3"
    shutil.copytree(bench.adapter("lora"), good)
    (good / "pbft_checkpoint_complete.json").write_text(json.dumps({"step": 2}))
    shutil.copytree(bench.adapter("lora"), partial)
    (run / "pbft_run.json").write_text(json.dumps({"method": "lora"}))
    return load_adapter(bench.lm(), partial)


def _save_over_adapter(bench: Bench):
    from pbft_widgets import apply_method, save_adapter

    return save_adapter(apply_method(bench.lm(), "lora"), bench.adapter("lora"))


def _save_into_foreign_folder(bench: Bench):
    from pbft_widgets import apply_method, save_adapter

    folder = bench.path("thesis")
    folder.mkdir(exist_ok=True)
    (folder / "chapter1.tex").write_text("...")
    return save_adapter(apply_method(bench.lm(), "lora"), folder, overwrite=True)


def _bank_unknown_task(bench: Bench):
    from pbft_widgets import AdapterBank

    bank = AdapterBank(bench.lm(), bench.tokenizer)
    bank.add("legal", bench.adapter("lora"))
    return bank.generate("medical", "Summarise: ...")


# ----------------------------------------------------------------------------- training
def _foreign_output_dir(bench: Bench):
    folder = bench.path("my-results")
    folder.mkdir(exist_ok=True)
    (folder / "results.csv").write_text("a,b\n")
    return _train(bench, ROWS, output_dir="my-results")


def _other_methods_run(bench: Bench):
    folder = bench.path("lora-run")
    folder.mkdir(exist_ok=True)
    (folder / "pbft_run.json").write_text(json.dumps({"method": "lora", "task": "causal-lm", "base": {}}))
    return _train(bench, ROWS, output_dir="lora-run", resume=True)


# ----------------------------------------------------------------------------- widgets, export
def _editor(bench: Bench, **values):
    from pbft_widgets.widgets import PromptEditor

    editor = PromptEditor(ROWS, bench.tokenizer, _template())
    for name, value in values.items():
        getattr(editor, name).value = value
    return editor.template


def _export_into_foreign_folder(bench: Bench):
    from pbft_widgets import export_recipe

    folder = bench.path("project")
    folder.mkdir(exist_ok=True)
    (folder / "main.py").write_text("print('mine')\n")
    return export_recipe(folder, model="smollm2-135m-instruct", method="lora", train_rows=ROWS,
                         template=_template())


def _apply(method: str, model: str = "lm", task: str = "causal-lm", **options):
    def run(bench: Bench):
        from pbft_widgets import apply_method

        base = bench.lm() if model == "lm" else bench.bert(task, ["O", "B-X", "I-X"])
        return apply_method(base, method, task=task, tokenizer=bench.tokenizer if model == "lm" else None,
                            **options)
    return run


def _tpl(**fields):
    def run(bench: Bench):
        from pbft_widgets import PromptTemplate

        return PromptTemplate(**fields)
    return run


def _render(template_changes: dict, row: dict, tokenizer: bool = True):
    def run(bench: Bench):
        return _template(**template_changes).render(row, bench.tokenizer if tokenizer else None)
    return run


def _chat_without_chat_template(bench: Bench):
    from pbft_widgets import PromptTemplate

    return PromptTemplate(style="chat").render({"text": "hi", "label": "x"}, bench.bert_tokenizer)


CASES: list[Case] = [
    # templates
    Case("template-no-placeholder", "template", "template without an input placeholder ('Review:')",
         E.TemplateError, "add one, e.g. 'Review: {text}'", _tpl(input_template="Review:")),
    Case("template-attribute-placeholder", "template", "placeholder with an attribute ('{text.lower}')",
         E.TemplateError, "use a named column", _tpl(input_template="Review: {text.lower}")),
    Case("template-bad-braces", "template", "unclosed brace in the input template ('Review: {text')",
         E.TemplateError, "close every '{' with '}'", _tpl(input_template="Review: {text")),
    Case("template-unknown-field", "template", "template placeholder the rows do not have ('{question}')",
         E.DataError, "Rename the column, or change the template's placeholder",
         _render({"input_template": "Q: {question}"}, {"text": "hi", "label": "pos"})),
    Case("template-unknown-setting", "template", "template file with an unknown setting ('colour')",
         E.TemplateError, "remove them (known settings:", _template_file_with_unknown_setting),
    Case("template-demos-too-long", "template", "demonstrations longer than the context (max_length=60)",
         E.TemplateError, "lower k_shot, shorten the instruction or demonstrations", _demonstrations_too_long),
    Case("template-k-shot-too-many", "template", "k_shot=5 with 1 demonstration",
         E.TemplateError, "add demonstrations or choose k_shot",
         lambda bench: _template(demonstrations=[{"text": "great", "label": "pos"}], k_shot=5)),
    Case("cloze-multi-token-label", "template", "cloze label word that is several tokens ('wonderfulness')",
         E.TemplateError, "pass allow_multi_token=True to the Verbalizer or choose a single-token word",
         _multi_token_label),
    Case("cloze-without-verbalizer", "template", "style='cloze' without label words",
         E.TemplateError, "pass verbalizer=Verbalizer", _tpl(style="cloze")),
    Case("chat-without-chat-template", "template", "style='chat' with a tokenizer that has no chat template",
         E.TemplateError, "use style='prefix'", _chat_without_chat_template),
    Case("completion-empty", "data", "row whose answer is whitespace (prefix style)",
         E.DataError, "drop the row or fill in the answer",
         _render({"style": "prefix", "verbalizer": None}, {"text": "hi", "label": "   "})),
    Case("label-none", "data", "row whose label is None",
         E.DataError, "drop the row or fill in its label", _render({}, {"text": "hi", "label": None})),
    Case("label-nan", "data", "row whose label is NaN (an empty spreadsheet cell)",
         E.DataError, "drop the row or fill in its label", _render({}, {"text": "hi", "label": float("nan")})),
    Case("label-not-in-verbalizer", "data", "row with a label the verbalizer does not know ('neutral')",
         E.DataError, "Add it to the Verbalizer or fix the row's label",
         _render({}, {"text": "hi", "label": "neutral"})),
    Case("row-missing-target", "data", "dataset row without the template's target field",
         E.DataError, "change the template's placeholder or target_field",
         lambda bench: _template().to_pairs([ROWS[0], {"text": "no label here"}])),
    # data
    Case("bio-i-without-b", "data", "CoNLL file with an I- tag that starts an entity",
         E.DataError, "start entities with B-DISEASE, or pass repair=True",
         lambda bench: _conll(bench, "bad-bio.conll", "chest\tI-DISEASE\npain\tI-DISEASE\n")),
    Case("bio-unknown-tag", "data", "CoNLL file with a tag that is not IOB2 ('DISEASE')",
         E.DataError, "use 'O', 'B-TYPE' or 'I-TYPE'",
         lambda bench: _conll(bench, "bad-tag.conll", "chest\tDISEASE\n")),
    Case("bio-in-training-rows", "data", "token-classification training rows with I- without B-",
         E.DataError, "or pass repair=True", _token_rows_bad_bio),
    Case("data-not-utf8", "data", "Latin-1 data file",
         E.DataError, "re-save it as UTF-8",
         lambda bench: _conll(bench, "latin1.conll", "fièvre\tB-SYMPTOM\n", "latin-1")),
    Case("data-empty-file", "data", "empty JSONL file",
         E.DataError, "write one JSON object per line", lambda bench: _jsonl(bench, "empty.jsonl", b"\n")),
    Case("data-bad-json-line", "data", "JSONL file with a broken line",
         E.DataError, "each line must hold one complete JSON object",
         lambda bench: _jsonl(bench, "broken.jsonl", b'{"text": "ok"}\n{"text": "cut\n')),
    Case("data-empty-dataset", "data", "train() on an empty dataset",
         E.DataError, "pass at least one row", lambda bench: _train(bench, [], output_dir="run-empty")),
    Case("data-smaller-than-batch", "data", "3 rows with batch_size=8",
         E.DataError, "lower batch_size to at most 3",
         lambda bench: _train(bench, ROWS[:3], batch_size=8, output_dir="run-small")),
    Case("labels-differ-train-eval", "data", "eval rows with a label the training label set lacks",
         E.DataError, "load the model with id2label covering every label of train and eval data",
         _eval_label_unseen),
    # methods
    Case("virtual-tokens-zero", "method", "num_virtual_tokens=0",
         E.ConfigError, "use a positive integer", _apply("prompt-tuning", num_virtual_tokens=0)),
    Case("virtual-tokens-huge", "method", "num_virtual_tokens=100000",
         E.ConfigError, "use at most 256", _apply("prompt-tuning", num_virtual_tokens=100_000)),
    Case("lora-rank-zero", "method", "LoRA r=0",
         E.ConfigError, "use a positive integer such as 8 or 16", _apply("lora", r=0)),
    Case("lora-missing-targets", "method", "LoRA target_modules that the model does not have ('query')",
         E.ConfigError, "its linear layers are", _apply("lora", target_modules=["query"])),
    Case("prefix-gradient-checkpointing", "method", "prefix tuning with gradient_checkpointing=True",
         E.ConfigError, "pass gradient_checkpointing=False",
         _apply("prefix-tuning", gradient_checkpointing=True)),
    Case("prefix-checkpointing-in-trainer", "method",
         "prefix tuning with trainer_overrides={'gradient_checkpointing': True}",
         E.ConfigError, "drop gradient_checkpointing/activation_checkpointing from trainer_overrides",
         lambda bench: _train(bench, ROWS, method="prefix-tuning", output_dir="run-prefix-gc",
                              trainer_overrides={"gradient_checkpointing": True})),
    Case("prefix-on-4bit", "method", "prefix tuning on a 4-bit model (peft #2035)",
         E.ConfigError, "use prompt-tuning, lora, or qlora on a quantized model", _prefix_on_4bit),
    Case("unknown-method", "method", "method='fine-tuning'",
         E.ConfigError, "use one of prompt-tuning", _apply("fine-tuning")),
    Case("prompt-tuning-for-ner", "method", "prompt tuning on a token-classification model",
         E.ConfigError, "use prefix-tuning or lora",
         _apply("prompt-tuning", model="bert", task="token-classification")),
    # models
    Case("4bit-without-bitsandbytes", "model", "quantization='4bit' where bitsandbytes is not installed",
         E.DependencyError, "pip install bitsandbytes", _no_bitsandbytes),
    Case("bf16-without-support", "model", "dtype='bf16' on a GPU without bf16 (a T4)",
         E.ConfigError, "use dtype='fp16'", _bf16_on_t4),
    Case("hub-id-offline", "model", "a Hub id while offline",
         E.ModelNotFoundError, "use an embedded model instead", _hub_id_offline, max_seconds=5.0),
    Case("model-path-missing", "model", "a local model path that does not exist",
         E.ModelNotFoundError, "check the path",
         lambda bench: _load_model(str(bench.path("no-such-model")))),
    Case("model-path-not-a-model", "model", "a folder that is not a model",
         E.ModelNotFoundError, "point to a folder written by save_pretrained()", _folder_not_a_model),
    # adapters
    Case("adapter-other-base", "adapter", "an adapter loaded onto another base model",
         E.AdapterError, "pass it to load_adapter",
         lambda bench: _load_adapter(bench.other_lm(), bench.adapter("lora"))),
    Case("adapter-other-method", "adapter", "a prompt-tuning adapter loaded with method='lora'",
         E.AdapterError, "point to a lora adapter",
         lambda bench: _load_adapter(bench.lm(), bench.adapter("prompt-tuning"), method="lora")),
    Case("adapter-truncated", "adapter", "an adapter file cut short by an interrupted copy",
         E.AdapterError, "re-save the adapter with save_adapter(..., overwrite=True)", _truncated_adapter),
    Case("adapter-corrupted", "adapter", "an adapter file with one flipped byte",
         E.AdapterError, "load the last good checkpoint", _bit_flipped_adapter),
    Case("adapter-manifest-corrupted", "adapter", "a half-written adapter manifest",
         E.AdapterError, "re-save the adapter", _corrupted_manifest),
    Case("adapter-missing", "adapter", "load_adapter on a path that does not exist",
         E.AdapterError, "save one there with save_adapter(setup, path)",
         lambda bench: _load_adapter(bench.lm(), bench.path("no-adapter"))),
    Case("adapter-incomplete-checkpoint", "adapter", "a checkpoint the run was killed while writing",
         E.AdapterError, "load the last complete one", _incomplete_checkpoint),
    Case("adapter-save-exists", "adapter", "save_adapter onto an existing adapter",
         E.AdapterError, "pass overwrite=True to replace it, or choose a new path", _save_over_adapter),
    Case("adapter-save-foreign-folder", "adapter", "save_adapter(..., overwrite=True) into a folder of other files",
         E.AdapterError, "choose a new path", _save_into_foreign_folder),
    Case("bank-unknown-task", "adapter", "AdapterBank asked for a task it does not hold",
         E.AdapterError, "known tasks: legal", _bank_unknown_task),
    # training
    Case("checkpoint-dir-unrelated", "training", "output_dir holding files of something else",
         E.TrainingError, "choose a new output_dir", _foreign_output_dir),
    Case("checkpoint-dir-other-method", "training", "resume=True in a run directory of another method",
         E.TrainingError, "use another output_dir, or overwrite=True", _other_methods_run),
    # widgets and export
    Case("widget-negative-virtual-tokens", "widget", "PromptEditor 'Virtual tok.' set to -4",
         E.TemplateError, "use 0 (none) or more", lambda bench: _editor(bench, num_virtual_tokens=-4)),
    Case("widget-k-shot-not-a-number", "widget", "PromptEditor 'k-shot' set to 'two'",
         E.TemplateError, "type e.g. 2", lambda bench: _editor(bench, k_shot="two")),
    Case("export-foreign-folder", "export", "export_recipe into an existing folder that is not a recipe",
         E.OutputExistsError, "choose a new target directory", _export_into_foreign_folder),
]


@functools.cache
def bench() -> Bench:
    return Bench()


@dataclass(frozen=True)
class Outcome:
    error: BaseException | None
    seconds: float


@functools.cache
def outcome(case_id: str) -> Outcome:
    """Run a case once per process (the test and the docs generator share the result)."""
    import time
    import warnings

    case = next(c for c in CASES if c.id == case_id)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            case.run(bench())
    except Exception as exc:  # noqa: BLE001 - the test asserts the exact class
        return Outcome(exc, time.perf_counter() - start)
    return Outcome(None, time.perf_counter() - start)


def message(error: BaseException) -> str:
    """The message with machine-specific paths replaced, so the docs are the same everywhere."""
    text = str(error).replace(str(bench().root), "<tmp>").replace(os.getcwd(), "<cwd>")
    return re.sub(r"\s+", " ", text).strip()
