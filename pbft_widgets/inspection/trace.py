"""Nearest vocabulary tokens of a soft prompt at each checkpoint of a run: how the prompt moved."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .. import hybrid
from ..checkpoints import checkpoints_by_step, step_of
from ..errors import AdapterError, ConfigError
from ..registry import SPECS
from .neighbours import _input_embedding, nearest_tokens

PROMPT_KEY = "prompt_embeddings"  # the tensor PEFT saves for every prompt-learning method
ADAPTER_FILE = "adapter_model.safetensors"
# PEFT types whose saved prompt is a table of input embeddings (not a key/value prefix)
_EMBEDDING_TYPES = tuple(dict.fromkeys(spec.peft_type.value for spec in SPECS.values() if spec.inserts_input_tokens))


@dataclass
class NeighbourTrace:
    """Nearest vocabulary tokens of every virtual token at each saved checkpoint."""

    labels: list[str]  # "step 40" for trainer checkpoints, else the directory name
    steps: list[int | None]
    paths: list[Path]
    neighbours: list[list[dict[str, Any]]]  # per checkpoint: nearest_tokens rows

    def rows(self) -> list[dict[str, Any]]:
        """Long format: one dict per checkpoint and virtual token with its top-1 neighbour."""
        return [{"checkpoint": label, "step": step, "index": row["index"], "token": row["neighbours"][0][0],
                 "cosine": row["neighbours"][0][1], "norm": row["norm"]}
                for label, step, rows in zip(self.labels, self.steps, self.neighbours) for row in rows]


def _checkpoint_dirs(checkpoint_dirs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """A list as given; one path: itself if it holds an adapter, else its checkpoint-N/ children."""
    if not isinstance(checkpoint_dirs, (str, os.PathLike)):
        return [Path(p) for p in checkpoint_dirs]
    root = Path(checkpoint_dirs)
    if any((folder / ADAPTER_FILE).is_file() for folder in (root, root / hybrid.PROMPT_DIR)):
        return [root]
    found = checkpoints_by_step(root)
    if not found:
        raise AdapterError(f"{root} holds no adapter and no checkpoint-* directories; pass the training output "
                           "directory, one checkpoint directory, or a list of them")
    return found


def _adapter_file(directory: Path) -> Path:
    """The prompt weights of a trainer checkpoint, a PEFT adapter, or a saved hybrid (its prompt/ part)."""
    for folder in (directory, directory / hybrid.PROMPT_DIR):
        if (folder / ADAPTER_FILE).is_file():
            return folder
    raise AdapterError(f"{directory} has no {ADAPTER_FILE}; pass checkpoint directories written by training "
                       "(checkpoint-N/) or adapters written by save_adapter/save_pretrained")


def read_prompt(directory: Path) -> torch.Tensor:
    """The soft prompt [n_virtual, dim] stored in a checkpoint or adapter folder, without loading a model."""
    folder = _adapter_file(directory)
    config_path = folder / "adapter_config.json"
    try:
        peft_type = json.loads(config_path.read_text(encoding="utf-8"))["peft_type"]
        tensors = load_file(str(folder / ADAPTER_FILE))
    except (OSError, KeyError, json.JSONDecodeError, SafetensorError) as exc:
        raise AdapterError(f"cannot read the adapter in {folder} ({exc}); the checkpoint may be incomplete, "
                           "pick a finished one") from None
    if peft_type not in _EMBEDDING_TYPES:
        raise ConfigError(f"{folder} holds a {peft_type} adapter, which has no soft prompt in the input embedding "
                          "space; reading a soft prompt needs PROMPT_TUNING, P_TUNING or the prompt+lora "
                          "hybrid (for PREFIX_TUNING load it and use prefix_summary)")
    if PROMPT_KEY not in tensors:
        raise AdapterError(f"{folder / ADAPTER_FILE} has no {PROMPT_KEY!r} tensor; it was not written by PEFT "
                           "prompt learning, pick a checkpoint of a prompt-tuning run")
    return tensors[PROMPT_KEY]


def neighbours_at_checkpoints(base_model, tokenizer, checkpoint_dirs, k: int = 3) -> NeighbourTrace:
    """Per checkpoint, the k nearest vocabulary tokens of each virtual token.

    ``checkpoint_dirs``: a list of checkpoint/adapter directories, or a training output directory
    (its checkpoint-N/ children). The prompt tensor is read straight from each adapter's
    safetensors file; no model is rebuilt. Trainer checkpoints come out sorted by step.
    """
    dirs = _checkpoint_dirs(checkpoint_dirs)
    if not dirs:
        raise AdapterError("no checkpoint directories given; pass a list of checkpoint-N/ directories")
    steps = [step_of(d) for d in dirs]
    if all(s is not None for s in steps):
        dirs, steps = [list(t) for t in zip(*sorted(zip(dirs, steps), key=lambda pair: pair[1]))]
    embedding_dim = _input_embedding(base_model).weight.shape[1]
    neighbours = []
    for directory in dirs:
        prompt = read_prompt(directory)
        if prompt.shape[1] != embedding_dim:
            raise AdapterError(f"{directory} holds a prompt of width {prompt.shape[1]} but the base model's embeddings "
                               f"have {embedding_dim}; pass the base model the adapter was trained on")
        neighbours.append(nearest_tokens(base_model, tokenizer, k=k, prompt=prompt))
    if len({len(rows) for rows in neighbours}) > 1:
        raise AdapterError(f"the checkpoints hold prompts of different lengths ({[len(r) for r in neighbours]} "
                           "virtual tokens); trace the checkpoints of one run at a time")
    labels = [f"step {s}" if s is not None else d.name for d, s in zip(dirs, steps)]
    return NeighbourTrace(labels=labels, steps=steps, paths=dirs, neighbours=neighbours)
