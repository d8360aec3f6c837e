"""Which child measurements each suite runs, in which order, and the figures drawn from them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from statistics import median
from typing import Any

from .harness import spread
from .workloads import CAUSAL_LM, MULTILINGUAL_LM

METHODS = ("prompt-tuning", "prefix-tuning", "p-tuning", "lora", "qlora", "prompt+lora")
NER_VARIANTS = ("full fine-tuning", "deep prompts (prefix tuning)", "LoRA r=8", "LoRA r=16")
# Budgets of a full run and of the CI smoke run (tiny random models, a couple of steps).
FULL = {"matrix": {"steps": 30, "batch_size": 8, "train_per_type": 60, "test_per_type": 15},
        # TRL's defaults on CPU emulate bf16 (~13 min a run at 10 steps on 2 cores): run once, after the rest
        "baseline": {"steps": 20, "batch_size": 8, "train_per_type": 60, "eval_per_type": 8, "repeats": 3,
                     "cpu_defaults_repeats": 1},
        "qlora": {"steps": 10, "batch_size": 8, "train_per_type": 60, "repeats": 3},
        "ner": {"epochs": 3, "batch_size": 16, "steps": None},
        "inspection": {"repeats": 20, "virtual": 100, "tokens": 256},
        "scoring": {"repeats": 3, "test_per_type": 3},
        "ablation": {"repeats": 3, "test_per_type": 3, "virtual": 20},
        # (tasks, answer budget in tokens, requests): short answers at 1/4/16 tasks, a sentence at 16
        "serving": {"cases": [[1, 8, 96], [4, 8, 96], [16, 8, 96], [16, 32, 48]], "batch_size": 16,
                    "clauses_per_type": 8, "seed": 0}}
SMOKE = {"matrix": {"steps": 2, "batch_size": 2, "train_per_type": 1, "test_per_type": 1},
         "baseline": {"steps": 2, "batch_size": 2, "train_per_type": 1, "eval_per_type": 1, "repeats": 1,
                      "cpu_defaults_repeats": 1},
         "qlora": {"steps": 2, "batch_size": 2, "train_per_type": 1, "repeats": 1},
         "ner": {"epochs": 1, "batch_size": 4, "steps": 2},
         "inspection": {"repeats": 1, "virtual": 100, "tokens": 32},
         "scoring": {"repeats": 1, "test_per_type": 1},
         "ablation": {"repeats": 1, "test_per_type": 1, "virtual": 4},
         "serving": {"cases": [[1, 4, 8], [4, 4, 8]], "batch_size": 4, "clauses_per_type": 1, "seed": 0}}
SUITES = tuple(FULL)
# Our train() with one speed lever turned off at a time, to say what each buys (baseline suite).
LEVERS = {"ours-full-logits": "completion-only logits", "ours-padded": "padding-free batches",
          "ours-checkpointing": "no gradient checkpointing"}
BASELINE_TARGET = 2.0  # tokens/s of ours over the plain script (bf16=False on CPU, TRL's defaults on GPU)


@dataclass(frozen=True)
class Plan:
    cases: list[dict[str, Any]]
    summarise: Callable[[list[dict[str, Any]]], dict[str, Any]]


def plan(suite: str, budget: dict[str, Any], common: dict[str, Any]) -> Plan:
    """The child parameter sets of ``suite`` (alternating where runs are compared) and its summary."""
    if suite == "matrix":
        methods = budget.pop("methods", None) or METHODS
        unknown = sorted(set(methods) - set(METHODS))
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; use {', '.join(METHODS)}")
        return Plan([{**common, **budget, "method": m} for m in methods], _matrix_summary)
    if suite == "baseline":
        cpu = common["device"] == "cpu"
        paths = ("ours", *LEVERS, "plain-bf16-off" if cpu else "plain")
        cases = [{**common, **budget, "path": path} for _ in range(budget["repeats"]) for path in paths]
        cases += [{**common, **budget, "path": "plain"}] * (budget["cpu_defaults_repeats"] if cpu else 0)
        return Plan(cases, _baseline_summary)
    if suite == "qlora":
        cases = [{**common, **budget, "method": m} for _ in range(budget["repeats"]) for m in ("lora", "qlora")]
        return Plan(cases, _qlora_summary)
    if suite == "ner":
        return Plan([{**common, **budget, "variant": v} for v in NER_VARIANTS], _ner_summary)
    if suite == "inspection":
        return Plan([{**common, **budget, "causal_lm": name} for name in inspection_models(common)],
                    _inspection_summary)
    if suite == "scoring":
        return Plan([{**common, **budget}], _scoring_summary)
    if suite == "ablation":
        return Plan([{**common, **budget}], _ablation_summary)
    if suite == "serving":
        each = {k: v for k, v in budget.items() if k != "cases"}
        return Plan([{**common, **each, "tasks": tasks, "max_new_tokens": tokens, "requests": requests}
                     for tasks, tokens, requests in budget["cases"]], _serving_summary)
    raise ValueError(f"unknown suite {suite!r}; use one of {', '.join(SUITES)}")


def _matrix_summary(cases: list[dict[str, Any]]) -> dict[str, Any]:
    return {"methods": [c["method"] for c in cases]}


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _median_of(cases: list[dict[str, Any]], key: str) -> float | None:
    values = [c[key] for c in cases if c.get(key) is not None]
    return median(values) if values else None


def _baseline_summary(cases: list[dict[str, Any]]) -> dict[str, Any]:
    by_path: dict[str, list[dict[str, Any]]] = {}
    for case in cases:
        by_path.setdefault(case["path"], []).append(case)
    ours = by_path["ours"]

    def against(other: list[dict[str, Any]]) -> dict[str, Any]:
        return {"tokens_per_second_ratio": _ratio(_median_of(ours, "tokens_per_second"),
                                                  _median_of(other, "tokens_per_second")),
                "peak_memory_ratio": _ratio(_median_of(ours, "peak_memory_bytes"),
                                            _median_of(other, "peak_memory_bytes")),
                "heldout_loss_difference": _median_of(ours, "heldout_loss") - _median_of(other, "heldout_loss")}

    out: dict[str, Any] = {key: {path: spread([c[key] for c in runs]) for path, runs in by_path.items()}
                           for key in ("tokens_per_second", "peak_memory_bytes", "heldout_loss", "loop_seconds")}
    out.update(against(by_path["plain"]))
    if "plain-bf16-off" in by_path:  # CPU: how much of the ratio TRL's bf16 default accounts for
        out["plain_bf16_off"] = against(by_path["plain-bf16-off"])
    # what each lever buys: ours over ours with that one lever off
    out["levers"] = {path: against(by_path[path]) for path in LEVERS if path in by_path}
    target = out.get("plain_bf16_off", out)  # CPU: against bf16=False, so emulated bf16 is not the win
    out["target_against"] = "plain-bf16-off" if "plain_bf16_off" in out else "plain"
    out["target_tokens_per_second_ratio"] = BASELINE_TARGET
    out["target_met"] = ((target["tokens_per_second_ratio"] or 0) >= BASELINE_TARGET
                         and target["heldout_loss_difference"] <= 0)
    return out


def _qlora_summary(cases: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    keys = ("load_added_bytes", "train_added_bytes", "total_added_bytes", "resident_after_load_bytes",
            "floor_rss_bytes")
    for method in ("lora", "qlora"):
        runs = [c for c in cases if c["method"] == method]
        out[method] = {key: spread([c[key] for c in runs]) for key in keys}
    for key in ("total_added_bytes", "load_added_bytes", "train_added_bytes", "resident_after_load_bytes"):
        out[f"{key}_ratio"] = _ratio(out["qlora"][key]["median"], out["lora"][key]["median"])
    out["target_ratio"] = 0.5
    out["target_met"] = (out["total_added_bytes_ratio"] or 1) <= 0.5
    return out


def _ner_summary(cases: list[dict[str, Any]]) -> dict[str, Any]:
    full = next(c for c in cases if c["method"] == "full-fine-tuning")
    pbft = [c for c in cases if c["method"] != "full-fine-tuning" and c["percent_trainable"] <= 2.0]
    best = max(pbft, key=lambda c: c["f1"]) if pbft else None
    gap = 100.0 * (full["f1"] - best["f1"]) if best else None
    return {"full_f1": full["f1"], "best_pbft": best["variant"] if best else None,
            "best_pbft_f1": best["f1"] if best else None, "gap_f1_points": gap,
            "best_pbft_percent_trainable": best["percent_trainable"] if best else None,
            "target_gap_points": 1.0, "target_percent_trainable": 2.0,
            "target_met": gap is not None and gap <= 1.0}


def inspection_models(common: dict[str, Any]) -> list[str]:
    """The causal LMs the inspection suite measures: the default one, and the multilingual one where
    installed, whose 262,144-token vocabulary (5.3x SmolLM2's) is the harder case for neighbour search."""
    if common.get("causal_lm"):  # smoke runs: the tiny model
        return [common["causal_lm"]]
    from pbft_widgets.models import is_installed

    return [CAUSAL_LM] + [MULTILINGUAL_LM] * is_installed(MULTILINGUAL_LM)


def _inspection_summary(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """The worst ratio over the models measured, so a target is met only when it is met on every vocabulary."""
    worst_neighbours = max(case["neighbours_ratio"] for case in cases)
    worst_attention = max(case["attention_ratio"] for case in cases)
    return {"neighbours_ratio": worst_neighbours, "attention_ratio": worst_attention,
            "per_model": {case["model"]: {"neighbours_ratio": case["neighbours_ratio"],
                                         "attention_ratio": case["attention_ratio"]} for case in cases},
            "target_neighbours_ratio": 1.2, "target_attention_ratio": 1.5,
            "neighbours_target_met": worst_neighbours <= 1.2, "attention_target_met": worst_attention <= 1.5}


def _scoring_summary(cases: list[dict[str, Any]]) -> dict[str, Any]:
    prompts = cases[0]["prompts"]
    out: dict[str, Any] = {"target_speedup": 5.0, "target_accuracy_ratio": 2.0}
    for prompt, c in prompts.items():
        out[prompt] = {"speedup": c["speedup"], "speedup_target_met": c["speedup"] >= 5.0,
                       "accuracy_ratio": _ratio(c["label_words_accuracy"], c["generate_accuracy"]),
                       "outside_labels": c["label_words_outside_labels"]}
    return out


def _ablation_summary(cases: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = cases[0]["ablation_seconds"]
    slowest = max(seconds, key=seconds.get)
    return {"slowest_replacement": slowest, "slowest_seconds": seconds[slowest], "target_seconds": 60.0,
            "target_met": seconds[slowest] <= 60.0}


def _serving_summary(cases: list[dict[str, Any]]) -> dict[str, Any]:
    most = max(c["tasks"] for c in cases)
    verdicts = []
    for case in (c for c in cases if c["tasks"] == most):
        equal = case["equal_to_switching"]["mixed"] == case["requests"]
        mixed = case["paths"]["mixed"]
        verdicts.append({"max_new_tokens": case["max_new_tokens"], "mixed_over_switching": case["mixed_over_switching"],
                         "equal_outputs": equal, "prefill_share": mixed["prefill_seconds"] / mixed["seconds"],
                         "target_met": most >= 16 and equal and case["mixed_over_switching"] >= 3.0})
    return {"tasks": most, "target_ratio": 3.0, "by_answer_budget": verdicts}
