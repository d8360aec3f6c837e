"""Bad training runs: output folders and resumes."""

from __future__ import annotations

import json

from pbft_widgets import errors as E

from .bench import ROWS, Bench, Case, train_tiny


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


CASES: list[Case] = [
    Case("checkpoint-dir-unrelated", "training", "output_dir holding files of something else",
         E.TrainingError, "choose a new output_dir", _foreign_output_dir),
    Case("checkpoint-dir-other-method", "training", "resume=True in a run directory of another method",
         E.TrainingError, "use another output_dir, or overwrite=True", _other_methods_run),
]
