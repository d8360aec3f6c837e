"""Bad adapter folders, saves and AdapterBank requests."""

from __future__ import annotations

import json
import shutil

from pbft_widgets import errors as E

from .bench import Bench, Case


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


CASES: list[Case] = [
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
]
