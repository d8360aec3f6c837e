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
]
