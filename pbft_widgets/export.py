"""Export a run as a standalone recipe folder: a readable script, its data, template and accelerate config.

The script is what a user copies into a project or launches on many GPUs. It runs unchanged as
`python train_recipe.py` and under `accelerate launch` (DDP). One trap is designed out: on a CPU
machine `accelerate launch --cpu --num_processes 2` silently starts ONE process, so the README and
the script's docstring give the commands that really start two.
"""

from __future__ import annotations

import json
import os
import pprint
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import atomic
from .errors import ConfigError, OutputExistsError

RECIPE_MARKER = "pbft_recipe.json"
SCRIPT_NAME = "train_recipe.py"

_SCRIPT = '''"""{title}

Exported by pbft_widgets.export_recipe. Everything the run needs lies beside this file:
template.json (how rows become prompts), data/*.jsonl (the rows), accelerate_config.yaml.

One process:              python {script}
Several GPUs (DDP):       accelerate launch --config_file accelerate_config.yaml {script}
Two CPU processes (gloo): ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 {script}
  (`accelerate launch --cpu --num_processes 2` starts only ONE process: use the line above.)
"""

import hashlib
import json
from pathlib import Path

import torch
from transformers import set_seed

from pbft_widgets import PromptTemplate, apply_method, load_model, train
from pbft_widgets.data.jsonl import read_jsonl

HERE = Path(__file__).resolve().parent
MODEL = {model!r}
TASK = {task!r}
LOAD_OPTIONS = {load_options}
METHOD = {method!r}
METHOD_OPTIONS = {method_options}
TRAINING = {training}


def trainable_checksum(model) -> str:
    """Same on every rank after DDP training; a mismatch means the processes trained separately."""
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        if param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def main() -> None:
    set_seed(TRAINING.get("seed", 0))  # before the adapter is created: its initial weights are random
    loaded = load_model(MODEL, task=TASK, **LOAD_OPTIONS)
    template_file = HERE / "template.json"
    template = PromptTemplate.load(template_file) if template_file.exists() else None
    setup = apply_method(loaded.model, METHOD, tokenizer=loaded.tokenizer, task=TASK, template=template,
                         **METHOD_OPTIONS)
    eval_file = HERE / "data" / "eval.jsonl"
    result = train(
        setup,
        read_jsonl(HERE / "data" / "train.jsonl"),
        eval_rows=read_jsonl(eval_file) if eval_file.exists() else None,
        tokenizer=loaded.tokenizer,
        template=template,
        output_dir=HERE / "outputs",
        overwrite=True,
        smoke=False,
        **TRAINING,
    )
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    print(json.dumps({{"rank": rank, "world_size": result.world_size, "final_loss": result.final_loss,
                      "trainable_sha256": trainable_checksum(setup.model),
                      "adapter": str(result.adapter_path) if result.adapter_path else None}}), flush=True)


if __name__ == "__main__":
    main()
'''

_ACCELERATE = """# accelerate launch --config_file accelerate_config.yaml {script}
compute_environment: LOCAL_MACHINE
distributed_type: MULTI_GPU
num_machines: 1
num_processes: {num_processes}
machine_rank: 0
mixed_precision: '{mixed_precision}'
gpu_ids: all
main_training_function: main
"""


def export_recipe(
    target_dir: str | os.PathLike,
    *,
    model: str,
    method: str,
    train_rows: Sequence[Mapping[str, Any]],
    task: str = "causal-lm",
    template: Any = None,
    eval_rows: Sequence[Mapping[str, Any]] | None = None,
    load_options: Mapping[str, Any] | None = None,
    method_options: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    num_processes: int = 2,
    mixed_precision: str = "no",
    overwrite: bool = False,
) -> Path:
    """Write a runnable recipe folder that reproduces a run outside Jupyter; returns its path.

    The folder holds `train_recipe.py` (a readable script), `template.json`, `data/*.jsonl` and an
    `accelerate_config.yaml`; the script runs as `python train_recipe.py` and under `accelerate
    launch` (DDP). It is built in a temporary sibling and renamed into place, so a crash never leaves
    half a recipe.

    Args:
        target_dir (`str` or `os.PathLike`):
            Where the recipe goes (a new folder, or an earlier recipe with `overwrite=True`).
        model (`str`):
            What `load_model` accepts: an embedded name, a local folder or a Hub id.
        method (`str`):
            The PBFT method, as for `apply_method`.
        train_rows (sequence of mappings):
            The training rows (written to `data/train.jsonl`).
        task (`str`, defaults to `"causal-lm"`):
            The model's task.
        template (`PromptTemplate`, *optional*):
            Required for causal LMs.
        eval_rows (sequence of mappings, *optional*):
            Written to `data/eval.jsonl` and evaluated during training.
        load_options, method_options, training (mappings of plain values, *optional*):
            Keyword arguments of `load_model`, `apply_method` and `train` (e.g. max_steps, batch_size,
            learning_rate, seed).
        num_processes (`int`, defaults to 2):
            Processes the accelerate config launches (one per GPU).
        mixed_precision (`str`, defaults to `"no"`):
            `"no"`, `"fp16"` or `"bf16"`, written into the accelerate config.
        overwrite (`bool`, defaults to `False`):
            Replace an earlier recipe at `target_dir`.

    Returns:
        `pathlib.Path`: the recipe folder.

    Example:

    ```py
    >>> from pbft_widgets import PromptTemplate, export_recipe
    >>> template = PromptTemplate(input_template="Review: {text}", output_indicator="Sentiment:")
    >>> rows = [{"text": "a wonderful, moving film", "label": "positive"}, {"text": "dull", "label": "negative"}]
    >>> folder = export_recipe("recipes/reviews", model="smollm2-135m-instruct", method="lora", train_rows=rows,
    ...                        template=template, training={"max_steps": 50, "batch_size": 2})
    >>> sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    ['accelerate_config.yaml', 'data/train.jsonl', 'pbft_recipe.json', 'template.json', 'train_recipe.py']

    ```
    """
    from .data.jsonl import write_jsonl

    target = Path(target_dir)
    atomic.recover_dir(target)
    _check_target(target, overwrite)
    if task == "causal-lm" and template is None:
        raise ConfigError("a causal-lm recipe needs template=PromptTemplate(...) to render its data.")
    if mixed_precision not in ("no", "fp16", "bf16"):
        raise ConfigError(f"mixed_precision must be 'no', 'fp16' or 'bf16', got {mixed_precision!r}.")
    settings = {
        "model": str(model), "task": task, "method": method,
        "load_options": dict(load_options or {}), "method_options": dict(method_options or {}),
        "training": dict(training or {}),
    }
    _check_literals(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = atomic.staging_dir(target)
    try:
        script = _SCRIPT.format(
            title=f"{method} on {model} ({task})", script=SCRIPT_NAME, model=str(model), task=task,
            method=method, load_options=_literal(settings["load_options"]),
            method_options=_literal(settings["method_options"]), training=_literal(settings["training"]))
        compile(script, SCRIPT_NAME, "exec")  # an export that does not parse must never be written
        (staging / SCRIPT_NAME).write_text(script)
        (staging / "accelerate_config.yaml").write_text(
            _ACCELERATE.format(script=SCRIPT_NAME, num_processes=num_processes, mixed_precision=mixed_precision))
        if template is not None:
            template.save(staging / "template.json")
        write_jsonl(train_rows, staging / "data" / "train.jsonl")
        if eval_rows:
            write_jsonl(eval_rows, staging / "data" / "eval.jsonl")
        (staging / RECIPE_MARKER).write_text(json.dumps(settings, indent=2))
        atomic.replace_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _check_target(target: Path, overwrite: bool) -> None:
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        return
    if not (target / RECIPE_MARKER).is_file():
        raise OutputExistsError(f"{target} exists and is not a recipe written by export_recipe; choose a new "
                        "target directory (nothing there is touched).")
    if not overwrite:
        raise OutputExistsError(f"{target} already holds an exported recipe; pass overwrite=True to replace it or "
                        "choose a new target directory.")


def _literal(value: Any) -> str:
    return pprint.pformat(value, sort_dicts=False, width=100)


def _check_literals(settings: Mapping[str, Any]) -> None:
    """Options are written as Python literals; refuse objects that would not survive the round trip."""
    for key in ("load_options", "method_options", "training"):
        try:
            json.dumps(settings[key])
        except TypeError as exc:
            raise ConfigError(f"{key} must hold plain values (numbers, strings, lists, dicts) to be written "
                              f"into the recipe script: {exc}") from None
