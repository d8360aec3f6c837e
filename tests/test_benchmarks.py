"""Smoke of the benchmark entry point: tiny random models, two steps, results in a temp folder.

The full benchmark runs are made by hand (benchmarks/README.md); this keeps the entry point runnable.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.__main__ import DEFAULT_OUT, main


def _snapshot(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*")} if folder.is_dir() else {}


def test_smoke_run_writes_json_and_markdown_outside_the_committed_results(tmp_path):
    committed = _snapshot(DEFAULT_OUT)
    assert main(["run", "--smoke", "--suite", "matrix,inspection,scoring,ablation,serving",
                 "--methods", "lora", "--out", str(tmp_path)]) == 0

    matrix = json.loads((tmp_path / "matrix-cpu.json").read_text())
    assert matrix["smoke"] is True and matrix["command"].startswith("python -m benchmarks run --smoke")
    (case,) = matrix["cases"]
    assert case["method"] == "lora" and case["steps"] == 2 and case["trainable_params"] > 0
    assert case["adapter_bytes"] > 0 and case["tokens_per_second"] > 0 and case["peak_memory_bytes"] > 0
    inspection = json.loads((tmp_path / "inspection-cpu.json").read_text())
    assert inspection["summary"]["neighbours_ratio"] > 0 and inspection["summary"]["attention_ratio"] > 0
    scoring = json.loads((tmp_path / "scoring-cpu.json").read_text())
    for prompt in ("zero-shot", "few-shot"):
        case = scoring["cases"][0]["prompts"][prompt]
        assert case["label_words_outside_labels"] == 0 and case["speedup"] > 0
        assert case["label_words_seconds"]["n"] == case["generate_seconds"]["n"] == 1
    ablation = json.loads((tmp_path / "ablation-cpu.json").read_text())
    assert set(ablation["cases"][0]["ablation_seconds"]) == {"mean", "initial", "zero"}
    assert ablation["summary"]["slowest_seconds"] > 0
    serving = json.loads((tmp_path / "serving-cpu.json").read_text())
    for case in serving["cases"]:  # mixed batches answer exactly what switching per request answers
        assert case["equal_to_switching"]["mixed"] == case["requests"] == case["paths"]["mixed"]["requests"]
        assert case["paths"]["mixed"]["requests_per_second"] > 0
    assert [case["tasks"] for case in serving["cases"]] == [1, 4] and "merged" in serving["cases"][1]["paths"]
    markdown = (tmp_path / "RESULTS.md").read_text()
    assert "| zero |" in markdown and "| 4 | mixed-task batches" in markdown
    assert "| few-shot | 4" in markdown
    assert "| lora |" in markdown and "SMOKE RUN" in markdown and "Regenerate: `python -m benchmarks run" in markdown
    assert _snapshot(DEFAULT_OUT) == committed  # a smoke run never touches benchmarks/results


def test_ner_suite_asks_for_its_data_folder():
    with pytest.raises(SystemExit, match="--ncbi-dir"):
        main(["run", "--suite", "ner"])


def test_cpu_baseline_smoke_runs_ours_each_lever_off_and_the_plain_script_with_and_without_bf16(tmp_path):
    assert main(["run", "--smoke", "--suite", "baseline", "--out", str(tmp_path)]) == 0

    baseline = json.loads((tmp_path / "baseline-cpu.json").read_text())
    cases = {case["path"]: case for case in baseline["cases"]}
    assert {path: case["precision"] for path, case in cases.items()} == {
        "ours": "fp32", "ours-full-logits": "fp32", "ours-padded": "fp32", "ours-checkpointing": "fp32",
        "plain": "bf16", "plain-bf16-off": "fp32"}
    levers = {path: (case["completion_logits_only"], case["padding_free"], case["gradient_checkpointing"])
              for path, case in cases.items()}
    assert levers == {"ours": (True, True, False), "ours-full-logits": (False, True, False),
                      "ours-padded": (True, False, False), "ours-checkpointing": (True, True, True),
                      "plain": (False, False, True), "plain-bf16-off": (False, False, True)}
    summary = baseline["summary"]
    assert summary["target_against"] == "plain-bf16-off" and summary["target_tokens_per_second_ratio"] == 2.0
    assert set(summary["levers"]) == {"ours-full-logits", "ours-padded", "ours-checkpointing"}
    assert summary["plain_bf16_off"]["tokens_per_second_ratio"] > 0
    results = (tmp_path / "RESULTS.md").read_text()
    assert "| plain peft + TRL, `bf16=False` |" in results and "What each lever buys" in results


def test_report_without_results_says_where_to_get_them(tmp_path):
    with pytest.raises(SystemExit, match="no results in"):
        main(["report", "--out", str(tmp_path / "empty")])
