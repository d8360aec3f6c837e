"""Runs killed at random moments (SIGKILL: no cleanup code runs) never leave a broken artefact.

Children are forked from this process, which has already imported torch, transformers and TRL, so
a trial costs a fraction of a second of start-up. Kill times come from a seeded generator, so a
failure replays exactly. After every kill each artefact on disk must be complete (marker present,
every file's size and SHA-256 as recorded, weights load) or not be there at all, and
``train(..., resume=True)`` must continue from the last complete checkpoint.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import datasets  # noqa: F401  (imported before forking, so each child starts in a second, not three)
import pytest
import torch
import trl  # noqa: F401
from safetensors.torch import load_file

from pbft_widgets import load_adapter, save_adapter
from pbft_widgets.adapters import next_version, read_manifest, verify_files
from pbft_widgets.methods import apply_method
from pbft_widgets.templates import PromptTemplate, Verbalizer
from pbft_widgets.checkpoints import (CHECKPOINT_MARKER, TRAINABLE_STATE, checkpoint_is_complete,
                                      latest_complete_checkpoint)
from pbft_widgets.training import train

FORK = multiprocessing.get_context("fork")
TRAIN_TRIALS = 20
SAVE_TRIALS = 12
ROWS = [{"text": t, "label": l} for t, l in [("a wonderful, moving film", "pos"), ("dull and far too long", "neg"),
                                             ("I loved every minute", "pos"), ("a waste of an evening", "neg")]] * 2
TEMPLATE = PromptTemplate(input_template="Review: {text}", output_indicator="Sentiment:", style="cloze",
                          verbalizer=Verbalizer({"pos": "positive", "neg": "negative"}))


pytestmark = pytest.mark.usefixtures("one_thread")


def _setup(base, tokenizer):
    return apply_method(copy.deepcopy(base), "prompt-tuning", tokenizer=tokenizer, num_virtual_tokens=4)


def _train_forever(base, tokenizer, out: Path, step) -> None:
    """Child: resume the run in ``out``, checkpoint every step, publish each logged step, until killed."""
    torch.set_num_threads(1)  # a forked child must not reuse the parent's OpenMP pool

    def publish(event) -> None:
        if event.kind == "log":  # logged just before that step's checkpoint is written
            step.value = event.step

    train(_setup(base, tokenizer), ROWS, tokenizer=tokenizer, template=TEMPLATE, output_dir=out, max_steps=10_000,
          batch_size=4, save_every=1, resume=True, smoke=False, save_final_adapter=False, listeners=[publish])
    os._exit(0)


def _kill_after(target, args, delay: float) -> int:
    child = FORK.Process(target=target, args=args)
    child.start()
    time.sleep(delay)
    if child.is_alive():
        os.kill(child.pid, signal.SIGKILL)
    child.join()
    return child.exitcode


def _kill_near_step(base, tokenizer, out: Path, step: int, extra: float) -> int:
    """Start a training child; SIGKILL it ``extra`` seconds after it logged ``step`` (then saves it)."""
    logged = FORK.Value("i", 0)
    child = FORK.Process(target=_train_forever, args=(base, tokenizer, out, logged))
    child.start()
    deadline = time.monotonic() + 120
    while child.is_alive() and time.monotonic() < deadline and logged.value < step:
        time.sleep(0.002)
    time.sleep(extra)
    if child.is_alive():
        os.kill(child.pid, signal.SIGKILL)
    child.join()
    return child.exitcode


def _assert_checkpoints_sound(out: Path, base, tokenizer) -> int | None:
    """Each marked checkpoint is complete and loads; returns the latest complete step."""
    for path in out.glob("checkpoint-*"):
        if (path / CHECKPOINT_MARKER).is_file():
            assert checkpoint_is_complete(path, verify=True), f"{path} is marked complete but is not"
            state = load_file(str(path / TRAINABLE_STATE))
            assert state and all(torch.isfinite(t).all() for t in state.values())
            assert load_adapter(copy.deepcopy(base), path).method == "prompt-tuning"
    latest = latest_complete_checkpoint(out, verify=True)
    return None if latest is None else int(latest.name.removeprefix("checkpoint-"))


def test_training_killed_at_random_moments_resumes_from_the_last_complete_checkpoint(
        tiny_causal_lm, smol_tokenizer, tmp_path):
    out = tmp_path / "run"
    rng = random.Random(1234)
    steps: list[int | None] = []
    cut_writes = 0  # kills that landed while a checkpoint was being written
    started = time.perf_counter()
    for _ in range(TRAIN_TRIALS):
        # land anywhere from inside the next checkpoint's write to a step or two later
        previous = steps[-1] if steps and steps[-1] is not None else 0
        code = _kill_near_step(tiny_causal_lm, smol_tokenizer, out, previous + rng.randint(1, 2),
                               rng.uniform(0.0, 0.3))
        assert code == -signal.SIGKILL, f"the child ended by itself (exit code {code}) instead of being killed"
        cut_writes += any(not (p / CHECKPOINT_MARKER).is_file() for p in out.glob("checkpoint-*"))
        step = _assert_checkpoints_sound(out, tiny_causal_lm, smol_tokenizer)
        assert not steps or step is None or steps[-1] is None or step >= steps[-1], "a kill lost earlier progress"
        steps.append(step)
    assert len({s for s in steps if s is not None}) >= 10, f"kills did not land at varied steps: {steps}"
    print(f"{TRAIN_TRIALS} kills in {time.perf_counter() - started:.1f} s, {cut_writes} during a checkpoint write; "
          f"latest complete step after each: {steps}")

    last = latest_complete_checkpoint(out, verify=True)
    events = []
    final_step = int(last.name.removeprefix("checkpoint-")) + 2
    result = train(_setup(tiny_causal_lm, smol_tokenizer), ROWS, tokenizer=smol_tokenizer, template=TEMPLATE,
                   output_dir=out, max_steps=final_step, batch_size=4, save_every=1, resume=True, smoke=False,
                   listeners=[events.append])
    assert [e.step for e in events if e.kind == "log"] == [final_step - 1, final_step]
    assert result.last_checkpoint == out / f"checkpoint-{final_step}"
    assert all(checkpoint_is_complete(p) for p in out.glob("checkpoint-*")), "incomplete checkpoints were kept"
    verify_files(read_manifest(result.adapter_path), result.adapter_path)


def _save_alternately(setups, path: Path) -> None:
    """Child: overwrite the adapter at ``path`` with A, B, A, ... until killed."""
    torch.set_num_threads(1)
    for i in range(10_000):
        save_adapter(setups[i % 2], path, overwrite=True)
    os._exit(0)


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def test_adapter_overwrite_killed_at_random_moments_leaves_one_complete_version(tiny_causal_lm, tmp_path):
    setups = []
    for seed in (1, 2):
        setup = apply_method(copy.deepcopy(tiny_causal_lm), "lora", r=2)
        torch.manual_seed(seed)
        with torch.no_grad():
            for param in setup.model.parameters():
                if param.requires_grad:
                    param.normal_()
        setups.append(setup)
    expected = [_weights(s.model) for s in setups]
    path = tmp_path / "adapter"
    save_adapter(setups[0], path)
    rng = random.Random(99)
    for _ in range(SAVE_TRIALS):
        _kill_after(_save_alternately, (setups, path), rng.uniform(0.05, 0.6))
        loaded = load_adapter(copy.deepcopy(tiny_causal_lm), path, is_trainable=True)  # recovers a cut swap
        got = _weights(loaded.model)
        assert any(got.keys() == e.keys() and all(torch.equal(got[k], e[k]) for k in got) for e in expected)
    save_adapter(setups[1], path, overwrite=True)  # the next save clears what killed saves left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_a_replacement_cut_between_its_two_renames_keeps_the_old_adapter(tiny_causal_lm, tmp_path):
    """The state a kill leaves between 'old -> backup' and 'new -> target': the old adapter comes back."""
    from pbft_widgets import atomic

    path = save_adapter(apply_method(copy.deepcopy(tiny_causal_lm), "lora", r=2), tmp_path / "adapter")
    before = (path / "adapter_model.safetensors").read_bytes()
    atomic.staging_dir(path)  # the new adapter was still in its staging folder
    os.replace(path, path.with_name(f".{path.name}{atomic._BACKUP}999999-cut"))
    assert load_adapter(copy.deepcopy(tiny_causal_lm), path).method == "lora"
    assert (path / "adapter_model.safetensors").read_bytes() == before


def test_versions_keep_every_adapter(tiny_causal_lm, tmp_path):
    setup = apply_method(copy.deepcopy(tiny_causal_lm), "lora", r=2)
    paths = [save_adapter(setup, next_version(tmp_path / "legal")) for _ in range(3)]
    assert [p.name for p in paths] == ["legal", "legal-v2", "legal-v3"]
    assert all(load_adapter(copy.deepcopy(tiny_causal_lm), p).method == "lora" for p in paths)


CACHE_TRIALS = 8
SHARDS = 12


def _convert_slowly(gguf_path: Path, out_dir: Path) -> None:
    """Stands in for the ~30 s GGUF conversion: writes shards one by one, so a kill lands mid-write."""
    for i in range(SHARDS):
        (out_dir / f"shard-{i}.bin").write_bytes(os.urandom(4096))
        time.sleep(0.01)


def _convert_until_killed(spec, gguf: Path) -> None:
    """Child: convert, drop the cache, convert again, ... until killed."""
    from pbft_widgets import atomic, models

    models._convert_gguf = _convert_slowly  # in this forked child only
    for _ in range(10_000):
        target, _ = models._converted_folder(spec, gguf)
        atomic.remove_tree(target)
    os._exit(0)


def test_model_conversion_killed_at_random_moments_never_leaves_a_broken_cache(tmp_path, monkeypatch):
    from pbft_widgets import models

    monkeypatch.setenv("PBFT_CACHE_DIR", str(tmp_path / "cache"))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + bytes(100))
    spec = models.EMBEDDED["smollm2-135m-instruct"]
    target = tmp_path / "cache" / spec.name
    rng = random.Random(7)
    for _ in range(CACHE_TRIALS):
        _kill_after(_convert_until_killed, (spec, gguf), rng.uniform(0.05, 0.5))
        if target.exists():  # present means complete: marker and every shard
            assert (target / "pbft_converted.json").is_file()
            assert sorted(p.name for p in target.glob("shard-*")) == sorted(f"shard-{i}.bin" for i in range(SHARDS))
    monkeypatch.setattr(models, "_convert_gguf", _convert_slowly)
    folder, _ = models._converted_folder(spec, gguf)
    assert len(list(folder.glob("shard-*"))) == SHARDS
    assert [p.name for p in folder.parent.iterdir()] == [spec.name], "leftovers of killed conversions remain"


def test_a_run_killed_while_claiming_its_directory_can_start_again(tiny_causal_lm, smol_tokenizer, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".pbft_run.json.tmp-4242").write_text('{"meth')  # all a kill at that moment leaves
    result = train(_setup(tiny_causal_lm, smol_tokenizer), ROWS, tokenizer=smol_tokenizer, template=TEMPLATE,
                   output_dir=out, max_steps=1, batch_size=4, smoke=False, save_final_adapter=False)
    assert result.last_checkpoint == out / "checkpoint-1"
