"""Bad data files and datasets."""

from __future__ import annotations

from pbft_widgets import errors as E

from .bench import ROWS, Bench, Case, train_tiny


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


def _folder(bench: Bench, name: str, files: dict[str, str]):
    """A scratch folder holding ``files`` (name -> text)."""
    folder = bench.path(name)
    folder.mkdir(exist_ok=True)
    for file, text in files.items():
        (folder / file).write_text(text, encoding="utf-8")
    return folder


def _read_jsonl_required(bench: Bench, name: str, text: str):
    from pbft_widgets.data.jsonl import read_jsonl

    return read_jsonl(_folder(bench, "jsonl-required", {name: text}) / name, required=["text"])


def _write_unserialisable(bench: Bench):
    from pbft_widgets.data.jsonl import write_jsonl

    target = bench.path("not-json.jsonl")
    try:
        return write_jsonl([{"x": object()}], target)
    finally:
        assert not target.exists(), "a half-written JSONL file was left behind"


def _ncbi_test_split(bench: Bench):
    from pbft_widgets.data import load_ncbi_disease

    return load_ncbi_disease("test", _folder(bench, "ncbi-like", {"train.conll": "Pt\tO\n", "devel.conll": "Pt\tO\n"}))


def _ncbi_offline(bench: Bench):
    from unittest import mock

    from pbft_widgets.data import load_ncbi_disease

    with mock.patch.dict("os.environ", {"HF_HUB_OFFLINE": "1"}):
        return load_ncbi_disease("train")


def _docstrings(bench: Bench, **options):
    from pbft_widgets.data import load_stdlib_docstrings

    root = _folder(bench, "mini-stdlib", {"pkg.py": 'def size(items):\n    """Number of items held in the box right now."""\n'
                                                       "    return len(items)\n"})
    return load_stdlib_docstrings(None, root=root, **options)


def _translation(bench: Bench, split: str = "train", csv: str | None = None, **options):
    from pbft_widgets.data import load_translation_pairs

    if csv is not None:
        options["path"] = _folder(bench, "pairs", {f"{split}.csv": csv}) / f"{split}.csv"
    return load_translation_pairs(options.pop("corpus", "axolotl"), split, **options)


def _call(name: str, *args, **kwargs):
    """A run that calls pbft_widgets.data.<name>(*args, **kwargs) (splits helpers included)."""
    def run(bench: Bench):
        from pbft_widgets import data
        from pbft_widgets.data import splits

        return getattr(data, name, None) or getattr(splits, name)
    return lambda bench: run(bench)(*args, **kwargs)


CASES: list[Case] = [
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
         E.DataError, "pass at least one row", lambda bench: train_tiny(bench, [], output_dir="run-empty")),
    Case("data-smaller-than-batch", "data", "3 rows with batch_size=8",
         E.DataError, "lower batch_size to at most 3",
         lambda bench: train_tiny(bench, ROWS[:3], batch_size=8, output_dir="run-small")),
    Case("labels-differ-train-eval", "data", "eval rows with a label the training label set lacks",
         E.DataError, "load the model with id2label covering every label of train and eval data",
         _eval_label_unseen),
    # splits, JSONL, CoNLL, corpus loaders
    Case("split-unknown-name", "data", "split name 'holdout'",
         E.DataError, "use one of train, validation, test", _call("normalise_split", "holdout")),
    Case("split-ratios-not-one", "data", "split ratios 0.9 + 0.3",
         E.DataError, "sum to 1", _call("check_ratios", {"train": 0.9, "test": 0.3})),
    Case("jsonl-line-not-json", "data", "JSONL file whose second line is cut off",
         E.DataError, "line 2: not valid JSON", lambda bench: _read_jsonl_required(bench, "cut.jsonl", '{"text": "a"}\n{"text": \n')),
    Case("jsonl-line-a-list", "data", "JSONL line holding a list instead of an object",
         E.DataError, "line 2: holds a list", lambda bench: _read_jsonl_required(bench, "list.jsonl", '{"text": "a"}\n["a", "b"]\n')),
    Case("jsonl-missing-field", "data", "JSONL line without a required field ('text')",
         E.DataError, "line 2: missing field(s) ['text']",
         lambda bench: _read_jsonl_required(bench, "field.jsonl", '{"text": "a"}\n{"label": "b"}\n')),
    Case("jsonl-no-rows", "data", "JSONL file of blank lines, read with required fields",
         E.DataError, "holds no rows", lambda bench: _read_jsonl_required(bench, "blank.jsonl", "\n\n")),
    Case("jsonl-latin1", "data", "Latin-1 JSONL file",
         E.DataError, "re-save it as UTF-8", lambda bench: _jsonl(bench, "latin.jsonl", '{"text": "café"}\n'.encode("latin-1")),
         says=("not UTF-8 (byte 13, line 1)", "iconv")),
    Case("jsonl-missing-file", "data", "read_jsonl on a path that does not exist",
         E.DataError, "check the path", _call("read_jsonl", "no-such-file.jsonl"), says=("does not exist",)),
    Case("jsonl-not-serialisable", "data", "write_jsonl with a value JSON cannot hold (an object)",
         E.DataError, "not JSON-serialisable", _write_unserialisable),
    Case("dataset-no-rows", "data", "to_dataset([])", E.DataError, "0 rows", _call("to_dataset", [])),
    Case("conll-i-without-b-position", "data", "CoNLL file whose second sentence starts with I-SYMPTOM",
         E.DataError, "repair=True",
         lambda bench: _conll(bench, "i-start.conll", "no\tO\n\nchest\tI-SYMPTOM\npain\tI-SYMPTOM\n"),
         says=("sentence 1, token 0 ('chest', line 3)",)),
    Case("tags-i-of-other-type", "data", "tags B-DISEASE then I-DRUG",
         E.DataError, "does not continue a DRUG entity",
         _call("validate_tags", [{"tokens": ["a", "b"], "tags": ["B-DISEASE", "I-DRUG"]}])),
    Case("conll-line-without-tag", "data", "CoNLL line with a token and no tag",
         E.DataError, "line 2: expected 'token<TAB>tag'", lambda bench: _conll(bench, "no-tag.conll", "Pt\tO\nloneword\n")),
    Case("conll-no-sentences", "data", "CoNLL file with only a -DOCSTART- line",
         E.DataError, "holds no sentences", lambda bench: _conll(bench, "docstart.conll", "\n-DOCSTART-\tO\n\n")),
    Case("conll-write-tab-in-token", "data", "write_conll with a tab inside a token",
         E.DataError, "holds a tab/newline",
         lambda bench: _call("write_conll", [{"tokens": ["a\tb"], "tags": ["O"]}], bench.path("tab.conll"))(bench)),
    Case("ner-dataset-labels-missing-tag", "data", "to_ner_dataset(labels=...) missing a tag of the rows",
         E.DataError, "pass labels=label_list",
         _call("to_ner_dataset", [{"tokens": ["chest"], "tags": ["B-SYMPTOM"]}], labels=["O", "B-DRUG", "I-DRUG"])),
    Case("ncbi-offline", "data", "load_ncbi_disease() offline without data_dir",
         E.DataError, "pass data_dir=", _ncbi_offline, says=("offline",)),
    Case("ncbi-test-split", "data", "load_ncbi_disease('test') on a folder with train/devel files only",
         E.DataError, "report results on 'validation'", _ncbi_test_split, says=("no test split",)),
    Case("docstrings-source-too-long", "data", "load_stdlib_docstrings(max_source_chars=10)",
         E.DataError, "raise max_source_chars", lambda bench: _docstrings(bench, max_source_chars=10)),
    Case("docstrings-no-root", "data", "load_stdlib_docstrings(root=) a folder that does not exist",
         E.DataError, "pass root=", lambda bench: _call("load_stdlib_docstrings", None, root=bench.path("nowhere"))(bench)),
    Case("licences-no-files", "data", "load_licence_clauses(data_dir=) a folder without *.LICENSE files",
         E.DataError, "pass data_dir=",
         lambda bench: _call("load_licence_clauses", "train", data_dir=_folder(bench, "no-licences", {}))(bench),
         says=("no *.LICENSE files",)),
    Case("translation-unknown-dialect", "data", "load_translation_pairs(dialects=['Klingon'])",
         E.DataError, "choose from", lambda bench: _translation(bench, dialects=["Klingon"])),
    Case("translation-group-by-sentence", "data", "load_translation_pairs(group_by='sentence')",
         E.DataError, "use 'document'", lambda bench: _translation(bench, group_by="sentence")),
    Case("translation-unknown-corpus", "data", "load_translation_pairs('kolo', ...)",
         E.DataError, "unknown corpus", lambda bench: _translation(bench, corpus="kolo")),
    Case("translation-short-line", "data", "translation CSV with a line of 2 columns",
         E.DataError, "line 2: expected at least 4 columns",
         lambda bench: _translation(bench, csv='"Hola",Niltze,Central,Doc A\n"Adiós",Tlazohcamati\n')),
    Case("translation-one-document", "data", "a test split with one document (grouped by document)",
         E.DataError, "use group_by='pair'", lambda bench: _translation(bench, "test", csv='"Hola",Niltze,Central,Doc A\n')),
]
