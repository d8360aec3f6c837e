"""export_recipe(): a readable script that reproduces the run, including as two real DDP processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pbft_widgets import OutputExistsError
from pbft_widgets.export import RECIPE_MARKER, SCRIPT_NAME, export_recipe
from pbft_widgets.templates import PromptTemplate

ROWS = [{"question": f"What is {a} plus {b}?", "answer": str(a + b)} for a in range(4) for b in range(4)]


def _template() -> PromptTemplate:
    return PromptTemplate(instruction="Answer with a number.", input_template="Q: {question}",
                          output_indicator="A:", target_field="answer")


@pytest.fixture
def tiny_model_dir(tmp_path, tiny_causal_lm, smol_tokenizer) -> Path:
    folder = tmp_path / "tiny-llama"
    tiny_causal_lm.save_pretrained(folder)
    smol_tokenizer.save_pretrained(folder)
    return folder


def _export(target: Path, model_dir: Path, **kwargs) -> Path:
    return export_recipe(target, model=str(model_dir), method="lora", train_rows=ROWS, template=_template(),
                         method_options={"r": 4}, training={"max_steps": 3, "batch_size": 2, "seed": 3},
                         **kwargs)


def test_recipe_folder_is_complete_and_readable(tmp_path, tiny_model_dir):
    recipe = _export(tmp_path / "recipe", tiny_model_dir, eval_rows=ROWS[:4])
    assert sorted(p.name for p in recipe.iterdir()) == sorted(
        ["accelerate_config.yaml", "data", RECIPE_MARKER, SCRIPT_NAME, "template.json"])
    script = (recipe / SCRIPT_NAME).read_text()
    assert "METHOD = 'lora'" in script and "'max_steps': 3" in script
    assert "--multi_gpu --num_processes 2" in script  # the command that really starts two CPU processes
    assert "distributed_type: MULTI_GPU" in (recipe / "accelerate_config.yaml").read_text()
    assert PromptTemplate.load(recipe / "template.json") == _template()
    assert len((recipe / "data" / "train.jsonl").read_text().splitlines()) == len(ROWS)


def test_existing_targets_are_protected(tmp_path, tiny_model_dir):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("do not touch")
    with pytest.raises(OutputExistsError):
        _export(foreign, tiny_model_dir)
    assert (foreign / "thesis.tex").read_text() == "do not touch"

    recipe = _export(tmp_path / "recipe", tiny_model_dir)
    with pytest.raises(OutputExistsError):
        _export(recipe, tiny_model_dir)
    _export(recipe, tiny_model_dir, overwrite=True)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name], "no staging folders left behind"


def _run_recipe(recipe: Path, launcher: list[str]) -> list[dict]:
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launcher, str(recipe / SCRIPT_NAME)], cwd=recipe, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"rank"')]


@pytest.mark.slow
def test_recipe_trains_as_two_ddp_processes_with_identical_weights(tmp_path, tiny_model_dir):
    recipe = _export(tmp_path / "recipe", tiny_model_dir)
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    reports = _run_recipe(recipe, [accelerate, "launch", "--multi_gpu", "--num_processes", "2",
                                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"])
    assert sorted(r["rank"] for r in reports) == [0, 1]
    assert {r["world_size"] for r in reports} == {2}
    assert reports[0]["trainable_sha256"] == reports[1]["trainable_sha256"]
    assert (recipe / "outputs" / "adapter" / "pbft_adapter.json").is_file()


@pytest.mark.slow
def test_recipe_runs_as_a_plain_script(tmp_path, tiny_model_dir):
    recipe = _export(tmp_path / "recipe", tiny_model_dir)
    (report,) = _run_recipe(recipe, [sys.executable])
    assert report["world_size"] == 1 and report["final_loss"] > 0
