"""Sweeps: grid expansion, tidy results, resuming after a kill, workers sharing one study, and seeds
that really change a training run (and the same seed that repeats it)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pbft_widgets.sweep_figures import sweep_figure
from pbft_widgets.sweeps import Sweep, SweepResult, grid

REPO = Path(__file__).resolve().parents[1]


def test_grid_is_the_product_of_the_axes_in_order():
    assert grid(method="lora", r=[2, 8], lr=(1e-3, 3e-3)) == [
        {"method": "lora", "r": 2, "lr": 1e-3}, {"method": "lora", "r": 2, "lr": 3e-3},
        {"method": "lora", "r": 8, "lr": 1e-3}, {"method": "lora", "r": 8, "lr": 3e-3}]
    assert grid(init=["text", None]) == [{"init": "text"}, {"init": None}]


def test_rows_summary_best_and_where(tmp_path):
    sweep = Sweep("s", lambda p, seed: {"acc": p["x"] / 10 + seed / 100, "tag": f"x{p['x']}"},
                  storage=tmp_path / "s.db", objective="acc", progress=False)
    result = sweep.run(grid(x=[1, 3, 2]), seeds=(0, 1, 2))
    assert [(r["x"], r["seed"]) for r in result.rows] == [(x, s) for x in (1, 3, 2) for s in (0, 1, 2)]
    assert all(r["tag"] == f"x{r['x']}" and r["seconds"] >= 0 for r in result.rows)
    summary = {row["x"]: row for row in result.summary("acc")}
    assert summary[3]["mean"] == pytest.approx(0.31) and summary[3]["sd"] == pytest.approx(0.01)
    assert summary[3]["low"] < 0.31 < summary[3]["high"] and summary[3]["seeds"] == 3
    assert summary[3]["high"] - 0.31 == pytest.approx(4.3027 * 0.01 / math.sqrt(3), rel=1e-3)  # t(0.975, 2)
    assert result.best("acc") == {"x": 3} and result.best("acc", greater_is_better=False) == {"x": 1}
    assert [r["seed"] for r in result.where(x=2).rows] == [0, 1, 2]
    one_seed = sweep.run(grid(x=[1]), seeds=(0,)).summary("acc")[0]
    assert math.isnan(one_seed["sd"]) and one_seed["mean"] == pytest.approx(0.1)


def test_finished_cells_are_read_back_not_run_again(tmp_path):
    calls = []

    def run(params, seed):
        calls.append((params["x"], seed))
        return {"acc": float(params["x"])}

    first = Sweep("s", run, storage=tmp_path / "s.db", objective="acc", progress=False).run(grid(x=[1, 2]), seeds=(0, 1))
    again = Sweep("s", run, storage=tmp_path / "s.db", objective="acc", progress=False).run(grid(x=[1, 2, 3]), seeds=(0, 1))
    assert calls == [(1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1)]
    assert again.rows[:4] == first.rows and len(again.rows) == 6


def test_a_failing_cell_is_recorded_as_failed_and_runs_again_next_time(tmp_path):
    def broken(params, seed):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        Sweep("s", broken, storage=tmp_path / "s.db", objective="acc", progress=False).run([{"x": 1}], seeds=(0,))
    sweep = Sweep("s", lambda p, s: {"acc": 1.0}, storage=tmp_path / "s.db", objective="acc", progress=False)
    assert [t.state.name for t in sweep.study.trials] == ["FAIL"]
    assert sweep.run([{"x": 1}], seeds=(0,)).rows[0]["acc"] == 1.0


def _worker_script(store: Path, log: Path, hang_on: int | None, cells: str = "[1, 2, 3]") -> str:
    return textwrap.dedent(f"""
        import json, os, time
        from pbft_widgets.sweeps import Sweep, grid

        def run(params, seed):
            with open({str(log)!r}, "a") as f:
                f.write(json.dumps([params["x"], seed, os.getpid()]) + "\\n")
            if params["x"] == {hang_on!r}:
                time.sleep(600)  # killed here
            time.sleep(0.2)
            return {{"acc": params["x"] + seed / 10}}

        Sweep("shared", run, storage={str(store)!r}, objective="acc", progress=False).run(grid(x={cells}), seeds=(0, 1))
    """)


def _log(path: Path) -> list[list[int]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_rerunning_finished_cells(tmp_path):
    store, log = tmp_path / "s.db", tmp_path / "calls.jsonl"
    worker = subprocess.Popen([sys.executable, "-c", _worker_script(store, log, hang_on=2)], cwd=REPO,
                              env={**os.environ, "CI": "true"})
    deadline = time.time() + 120
    while not any(x == 2 for x, _, _ in _log(log)):  # cells (1, 0), (1, 1) finished; (2, 0) is running
        assert worker.poll() is None and time.time() < deadline, "the worker died before reaching cell x=2"
        time.sleep(0.2)
    worker.send_signal(signal.SIGKILL)
    worker.wait()

    calls = []
    sweep = Sweep("shared", lambda p, s: calls.append((p["x"], s)) or {"acc": p["x"] + s / 10},
                  storage=store, objective="acc", progress=False)
    result = sweep.run(grid(x=[1, 2, 3]), seeds=(0, 1))
    assert calls == [(2, 0), (2, 1), (3, 0), (3, 1)]  # the killed cell again, then the rest; x=1 read back
    assert [(r["x"], r["seed"], r["acc"]) for r in result.rows] == [
        (x, s, x + s / 10) for x in (1, 2, 3) for s in (0, 1)]
    states = sorted(t.state.name for t in sweep.study.trials)
    assert states == ["COMPLETE"] * 6 + ["FAIL"]  # the killed worker's trial, marked failed on resume


@pytest.mark.slow
def test_two_workers_share_one_sweep_and_run_every_cell_once(tmp_path):
    store, log = tmp_path / "s.db", tmp_path / "calls.jsonl"
    Sweep("shared", lambda p, s: {"acc": 0.0}, storage=store, objective="acc", progress=False)  # create the study
    script = _worker_script(store, log, hang_on=None, cells="[1, 2, 3, 4, 5, 6]")
    workers = [subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env={**os.environ, "CI": "true"})
               for _ in range(2)]
    assert [w.wait(timeout=300) for w in workers] == [0, 0]
    calls = _log(log)
    cells = sorted((x, seed) for x, seed, _ in calls)
    assert cells == [(x, s) for x in range(1, 7) for s in (0, 1)]  # each cell ran exactly once
    assert len({pid for _, _, pid in calls}) == 2  # and both workers took a share
    result = Sweep("shared", lambda p, s: {"acc": -1.0}, storage=store, objective="acc", progress=False).result(
        grid(x=list(range(1, 7))), seeds=(0, 1))
    assert len(result.rows) == 12 and all(r["acc"] >= 1 for r in result.rows)


@pytest.mark.slow
def test_seeds_change_a_training_run_and_the_same_seed_repeats_it(tmp_path, smol_tokenizer):
    from conftest import tiny_llama

    from pbft_widgets import apply_method, train
    from pbft_widgets.inspection import soft_prompt

    rows = [{"text": f"clause number {i}", "label": "pos" if i % 2 else "neg"} for i in range(16)]
    from pbft_widgets import PromptTemplate, Verbalizer

    template = PromptTemplate(input_template="Review: {text}", output_indicator="Sentiment:", style="cloze",
                              verbalizer=Verbalizer({"pos": "positive", "neg": "negative"}))

    def run(params, seed):
        setup = apply_method(tiny_llama(smol_tokenizer), "prompt-tuning", tokenizer=smol_tokenizer,
                             num_virtual_tokens=params["tokens"], init="random")
        trained = train(setup, rows, tokenizer=smol_tokenizer, template=template, max_steps=3, batch_size=4,
                        output_dir=tmp_path / f"run-{seed}", overwrite=True, seed=seed, save_final_adapter=False)
        return {"loss": trained.final_loss, "prompt": soft_prompt(setup.model).flatten()[:8].tolist()}

    first = Sweep("a", run, storage=tmp_path / "a.db", objective="loss", progress=False).run([{"tokens": 4}], seeds=(0, 1))
    repeat = Sweep("b", run, storage=tmp_path / "b.db", objective="loss", progress=False).run([{"tokens": 4}], seeds=(0,))
    seed0, seed1 = first.rows
    assert seed0["prompt"] != seed1["prompt"] and seed0["loss"] != seed1["loss"]  # another seed, another run
    assert repeat.rows[0]["prompt"] == seed0["prompt"] and repeat.rows[0]["loss"] == seed0["loss"]  # same seed, same run


def test_progress_is_off_in_ci_and_on_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert Sweep("s", lambda p, s: {"a": 1.0}, storage=tmp_path / "s.db", objective="a").progress is False
    monkeypatch.delenv("CI")
    assert Sweep("s", lambda p, s: {"a": 1.0}, storage=tmp_path / "s.db", objective="a").progress is True


def test_sweep_figure_draws_mean_and_sd_per_line_and_every_seed():
    rows = [{"method": m, "r": r, "seed": s, "acc": r / 10 + s / 100 + (m == "qlora") / 5}
            for m in ("lora", "qlora") for r in (2, 8, 32) for s in (0, 1, 2)]
    fig = sweep_figure(SweepResult(rows, ("method", "r")), "acc", "r", color="method", log_x=True)
    means = [trace for trace in fig.data if trace.mode == "lines+markers"]
    dots = [trace for trace in fig.data if trace.mode == "markers"]
    assert [t.name for t in means] == ["method=lora", "method=qlora"] and [len(t.x) for t in dots] == [9, 9]
    assert list(means[0].y) == pytest.approx([0.21, 0.81, 3.21]) and list(means[0].error_y.array) == pytest.approx([0.01] * 3)
    assert fig.layout.xaxis.type == "log"
