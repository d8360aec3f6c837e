"""Child processes, clocks and memory readings shared by every suite.

A suite's ``measure(params)`` runs in ``python -m benchmarks.child``: one process per measurement,
so the peak RSS it reports belongs to that measurement alone.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from statistics import median
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "bitsandbytes", "pbft-widgets")


class BenchmarkError(RuntimeError):
    """A measurement failed; the message carries the child's stderr tail."""


def run_child(suite: str, params: Mapping[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
    """Run ``benchmarks.<suite>.measure(params)`` in a fresh interpreter and return its result."""
    with tempfile.TemporaryDirectory(prefix="pbft-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "benchmarks.child", suite, json.dumps(dict(params)), str(out)]
        env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
               "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": _pythonpath()}
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join(proc.stderr.strip().splitlines()[-40:])
            raise BenchmarkError(f"{suite} child failed (exit {proc.returncode}) for {dict(params)}:\n{tail}")
        return json.loads(out.read_text())


def _pythonpath() -> str:
    parts = [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(parts))


def current_rss() -> int:
    """Resident memory of this process now, in bytes."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def peak_rss() -> int:
    """The highest resident memory this process has had since it started, in bytes (Linux: KiB units)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def cuda_peak(device: str) -> int | None:
    import torch

    if device != "cuda":
        return None
    torch.cuda.synchronize()
    return int(torch.cuda.max_memory_allocated())


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median and range: what every table reports instead of a single run."""
    values = [float(v) for v in values]
    return {"median": median(values), "min": min(values), "max": max(values), "n": len(values)}


class StepClock:
    """A TrainerCallback (built lazily) that times every optimizer step and reads TRL's token count.

    It is registered through transformers' default callbacks, so our ``train()`` and a plain
    SFTTrainer script are timed by the same instrument without changing either.
    """

    @staticmethod
    def install() -> Any:
        from transformers import TrainerCallback, trainer

        class _Clock(TrainerCallback):
            instances: list = []

            def __init__(self) -> None:
                self.begin = None
                self.step_ends: list[float] = []
                self.tokens = None
                self.losses: list[tuple[int, float]] = []
                _Clock.instances.append(self)

            def on_train_begin(self, args, state, control, **kwargs):
                self.begin = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                self.step_ends.append(time.perf_counter())

            def on_log(self, args, state, control, logs=None, **kwargs):
                logs = logs or {}
                if "num_tokens" in logs:
                    self.tokens = float(logs["num_tokens"])
                if "loss" in logs:
                    self.losses.append((state.global_step, float(logs["loss"])))

        trainer.DEFAULT_CALLBACKS.append(_Clock)
        return _Clock

    @staticmethod
    def summary(clock: Any) -> dict[str, Any]:
        """Step time (median, steps 2..n), tokens/s over the whole loop, and the token count."""
        ends = clock.step_ends
        steps = [b - a for a, b in zip(ends, ends[1:])]
        loop = ends[-1] - clock.begin if ends else None
        return {"steps": len(ends), "step_seconds": spread(steps) if steps else None,
                "first_step_seconds": ends[0] - clock.begin if ends else None, "loop_seconds": loop,
                "tokens": clock.tokens,
                "tokens_per_second": clock.tokens / loop if clock.tokens and loop else None}


def dir_bytes(path: str | os.PathLike) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def machine(device: str) -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, memory, threads, GPU, library versions."""
    import psutil
    import torch

    cpu = platform.processor()
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1), "device": device,
            "versions": {name: _version(name) for name in PACKAGES}}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
    return info


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def stamp(command: str) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip() or None
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                  ":!benchmarks/results", ":!README.md", ":!benchmarks/README.md"],
                                 cwd=REPO, capture_output=True, text=True).stdout.strip()
        if commit and changed:  # measured code that no commit holds: say so
            commit += "+uncommitted changes"
    except OSError:  # no git (a copied tree): the date and versions still identify the run
        commit = None
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "command": command,
            "commit": commit}
