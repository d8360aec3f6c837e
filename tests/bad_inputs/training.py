"""Bad training runs: output folders and resumes."""

from __future__ import annotations

import json

from pbft_widgets import errors as E

from .bench import ROWS, Bench, Case, template, train_tiny


def _foreign_output_dir(bench: Bench):
    folder = bench.path("my-results")
    folder.mkdir(exist_ok=True)
    (folder / "results.csv").write_text("a,b\n")
    return train_tiny(bench, ROWS, output_dir="my-results")


def _other_methods_run(bench: Bench):
    folder = bench.path("lora-run")
    folder.mkdir(exist_ok=True)
    (folder / "pbft_run.json").write_text(json.dumps({"method": "lora", "task": "causal-lm", "base": {}}))
    return train_tiny(bench, ROWS, output_dir="lora-run", resume=True)


def _rerun_without_resume(bench: Bench):
    train_tiny(bench, ROWS, output_dir="finished-run")
    return train_tiny(bench, ROWS, output_dir="finished-run")


def _train_plain_model(bench: Bench):
    from pbft_widgets import train

    return train(bench.lm(), ROWS, tokenizer=bench.tokenizer, template=template(), output_dir=bench.path("plain"))


def _ner_tags_outside_the_labels(bench: Bench):
    from pbft_widgets import apply_method, train

    setup = apply_method(bench.bert("token-classification", ["O", "B-DISEASE", "I-DISEASE"]), "lora",
                         tokenizer=bench.bert_tokenizer, task="token-classification", r=4)
    rows = [{"tokens": ["fever"], "tags": ["B-SYMPTOM"]}] * 4
    return train(setup, rows, tokenizer=bench.bert_tokenizer, output_dir=bench.path("ner-bad-tags"), max_steps=1,
                 batch_size=4, smoke=False)


CASES: list[Case] = [
    Case("checkpoint-dir-unrelated", "training", "output_dir holding files of something else",
         E.TrainingError, "choose a new output_dir", _foreign_output_dir, says=("not written by pbft_widgets",)),
    Case("checkpoint-dir-other-method", "training", "resume=True in a run directory of another method",
         E.TrainingError, "use another output_dir, or overwrite=True", _other_methods_run,
         says=("different method or base model",)),
    Case("run-dir-of-a-finished-run", "training", "training again into the output_dir of an earlier run",
         E.TrainingError, "pass resume=True to continue from the last complete one, or overwrite=True",
         _rerun_without_resume, says=("already holds checkpoints",)),
    Case("training-set-empty", "training", "train() on no rows",
         E.DataError, "pass at least one row", lambda bench: train_tiny(bench, [], output_dir="empty-rows"),
         says=("training set is empty",)),
    Case("batch-larger-than-the-data", "training", "batch_size=8 for 3 training rows",
         E.DataError, "lower batch_size to at most 3",
         lambda bench: train_tiny(bench, ROWS[:3], output_dir="three-rows", batch_size=8),
         says=("3 rows but batch_size=8",)),
    Case("train-without-template", "training", "training a causal LM without a prompt template",
         E.ConfigError, "template=PromptTemplate", lambda bench: train_tiny(bench, ROWS, output_dir="no-template",
                                                                         template=None)),
    Case("train-a-plain-model", "training", "train() on a model without apply_method",
         E.ConfigError, "wrap your model with apply_method first", _train_plain_model),
    Case("ner-tags-outside-the-labels", "training", "NER rows with a tag the model's labels lack ('B-SYMPTOM')",
         E.DataError, "load the model with id2label covering every label", _ner_tags_outside_the_labels,
         says=("['B-SYMPTOM']",)),
    Case("prompt-learning-rate-without-hybrid", "training", "prompt_learning_rate for plain prompt tuning",
         E.ConfigError, "use learning_rate",
         lambda bench: train_tiny(bench, ROWS, output_dir="prompt-lr", prompt_learning_rate=1e-2),
         says=("prompt+lora hybrid only",)),
]
