"""A training run on disk: its manifest, its numbered checkpoints, and when a checkpoint is complete.

``train()`` claims an output directory with a run manifest (method, task, base architecture), so a
second run of another method or base is refused instead of mixed in. Each ``checkpoint-<step>``
the Trainer writes is *sealed* afterwards: every trainable tensor is saved beside it (PEFT's own
files miss the P-tuning encoder and the hybrid's LoRA part) and a completion marker lists the size
and SHA-256 of every file. A checkpoint without a matching marker was cut off and is never loaded
or resumed from; old checkpoints are renamed away before deletion, so a kill never leaves a marked
checkpoint with missing files.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from . import atomic
from .errors import AdapterError, TrainingError

RUN_MANIFEST = "pbft_run.json"
CHECKPOINT_MARKER = "pbft_checkpoint_complete.json"
# Every trainable tensor by name. PEFT's checkpoint holds only the prompt *output* for P-tuning and
# only the prompt for the prompt+LoRA hybrid, so resuming from it alone would silently drift.
TRAINABLE_STATE = "pbft_trainable.safetensors"
_PREFIX = "checkpoint-"


def step_of(path: str | os.PathLike) -> int | None:
    """The step of a ``checkpoint-<step>`` folder, None for any other name."""
    step = Path(path).name.removeprefix(_PREFIX)
    return int(step) if Path(path).name.startswith(_PREFIX) and step.isdigit() else None


def checkpoints_by_step(output_dir: str | os.PathLike) -> list[Path]:
    """The ``checkpoint-<step>`` folders in ``output_dir``, oldest step first (complete or not)."""
    numbered = [path for path in Path(output_dir).glob(f"{_PREFIX}*") if path.is_dir() and step_of(path) is not None]
    return sorted(numbered, key=step_of)


def checkpoint_is_complete(path: str | os.PathLike, *, verify: bool = True) -> bool:
    """True when ``path`` has its completion marker and every file it lists (sizes; hashes if ``verify``)."""
    path = Path(path)
    try:
        marker = json.loads((path / CHECKPOINT_MARKER).read_text())
    except (OSError, ValueError):
        return False
    files = marker.get("files", {}) if isinstance(marker, dict) else None  # no table: an older marker
    if not isinstance(files, dict):
        return False
    for name, expected in files.items():
        file = path / name
        if not file.is_file() or file.stat().st_size != expected["bytes"]:
            return False
        if verify and atomic.sha256_of(file) != expected["sha256"]:
            return False
    return True


def latest_complete_checkpoint(output_dir: str | os.PathLike, *, verify: bool = False) -> Path | None:
    """The newest checkpoint whose completion marker was written and whose files match it.

    Incomplete ones (a run killed while writing, or while deleting an old checkpoint) are ignored;
    ``verify=True`` also checks every file's SHA-256, as resuming does.
    """
    complete = [path for path in checkpoints_by_step(output_dir) if checkpoint_is_complete(path, verify=verify)]
    return complete[-1] if complete else None


def refuse_incomplete_checkpoint(directory: Path) -> None:
    """AdapterError for a ``train()`` checkpoint without its completion marker (cut off mid-write)."""
    if step_of(directory) is None or not (directory.parent / RUN_MANIFEST).is_file():
        return
    if checkpoint_is_complete(directory, verify=False):  # marker present, every listed file its size
        return
    good = latest_complete_checkpoint(directory.parent)
    raise AdapterError(f"{directory} is an incomplete checkpoint (the run stopped while writing it); load "
                       + (f"the last complete one, {good}" if good else "the run's adapter/ folder instead")
                       + " (pbft_widgets.checkpoints.latest_complete_checkpoint(output_dir) finds it)")


def claim_output_dir(out: Path, manifest: Mapping[str, Any], *, resume: bool, overwrite: bool) -> None:
    """Refuse to mix runs: an existing directory must be ours, for the same method and base model."""
    marker = out / RUN_MANIFEST
    # a run killed while claiming the directory may leave only the manifest's temp file: still ours
    if out.exists() and any(not p.name.startswith(f".{RUN_MANIFEST}.tmp-") for p in out.iterdir()):
        if not marker.is_file():
            raise TrainingError(f"{out} exists and was not written by pbft_widgets.train; choose a new "
                                "output_dir (nothing there is touched).")
        try:
            previous = json.loads(marker.read_text())
        except ValueError:
            previous = None  # a damaged manifest: treated as another run's
        if overwrite:
            atomic.remove_tree(out)
        elif previous != dict(manifest):
            raise TrainingError(f"{out} holds a run of a different method or base model ({previous}); "
                                "use another output_dir, or overwrite=True to discard it.")
        elif not resume and latest_complete_checkpoint(out) is not None:
            raise TrainingError(f"{out} already holds checkpoints of this run; pass resume=True to continue "
                                "from the last complete one, or overwrite=True to start over.")
    out.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(marker, manifest)


def seal_checkpoint(path: Path, model: Any, step: int) -> None:
    """Save every trainable tensor into the checkpoint, then the marker listing all its files."""
    _save_trainable_state(model, path / TRAINABLE_STATE)
    files = atomic.file_table(path, (file for file in sorted(path.rglob("*"))
                                     if file.is_file() and file.name != CHECKPOINT_MARKER))
    _write_json_atomic(path / CHECKPOINT_MARKER, {"step": step, "time": time.time(), "files": files})


def remove_incomplete_checkpoints(output_dir: Path) -> None:
    """Delete checkpoints a killed run left half-written, and old ones it was deleting when killed."""
    for path in checkpoints_by_step(output_dir):
        if not checkpoint_is_complete(path):
            atomic.remove_tree(path)
    atomic.remove_dead_trash(output_dir)


def rotate_checkpoints(output_dir: Path, keep: int | None, best: str | None) -> None:
    """Delete the oldest checkpoints until ``keep`` remain, sparing the newest and the best one.

    Called once the newest checkpoint is sealed; each deletion renames first, so a kill never
    leaves a marked checkpoint with missing files.
    """
    if not keep or keep <= 0:
        return
    checkpoints = checkpoints_by_step(output_dir)
    spared = {checkpoints[-1].resolve()} | ({Path(best).resolve()} if best else set())
    surplus = len(checkpoints) - max(keep, len(spared))
    for path in checkpoints:
        if surplus <= 0:
            break
        if path.resolve() not in spared:
            atomic.remove_tree(path)
            surplus -= 1


def load_trainable_state(model: Any, checkpoint: Path) -> None:
    """Copy a sealed checkpoint's trainable tensors into ``model`` (after the Trainer's own restore)."""
    from safetensors.torch import load_file

    path = checkpoint / TRAINABLE_STATE
    if not path.is_file():
        raise TrainingError(f"{checkpoint} has no {path.name}; it was not written by this version of "
                            "train(): resume from a newer checkpoint or start with overwrite=True.")
    state = load_file(str(path))
    params = dict(model.named_parameters())
    missing = sorted(set(state) - set(params))
    if missing:
        raise TrainingError(f"checkpoint {checkpoint} holds weights this model lacks ({missing[:3]}...); "
                            "it belongs to another method or model: use another output_dir.")
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))


def _save_trainable_state(model: Any, path: Path) -> None:
    from safetensors.torch import save_file

    state = {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(state, str(tmp))
    os.replace(tmp, path)


def _write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)
