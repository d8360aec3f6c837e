"""Issue target: at 16 tasks, mixed-task batches serve ≥ 3× the requests/s of switching the adapter per request.

One child per (task count, answer budget). The bank holds ``tasks`` adapters of SmolLM2-135M, the methods in turn
(prompt tuning, LoRA, P-tuning, prompt+LoRA), each made distinct by seeded noise on its freshly
initialised weights: serving cost depends on the shapes and on how long the answers are, not on
what the weights learned, and every path below must give the same answers, so the lengths match.
The request stream is seeded: ``requests`` licence clauses (the quickstart's, 24 words each), each
for a task drawn uniformly, answered greedily with up to ``max_new_tokens`` tokens. Paths, timed on
the same stream:

* ``mixed``: the stream in arrival order, ``batch_size`` requests per ``generate_many`` call (rows
  of different tasks in one batch);
* ``grouped``: the same windows, one adapter switch per task within each (``mixed=False``);
* ``switching``: one ``generate(task, prompt)`` per request (these three alternate window by
  window, so the machine's load falls on each alike);
* ``merged``, afterwards: the LoRA tasks' requests, one at a time, each on its own merged copy of the base (the
  only method here that merges); its row is compared with ``switching`` on those same requests.

A request's latency is the duration of the call that answered it (a window's, for batched paths);
requests/s is requests over the path's total time. The mixed path's ``prefill_seconds`` is the part
of it spent running the prompts (``MixedRows.prefilled``), the rest is decoding: batching
shares the decoding steps, while on a compute-bound CPU a prompt's pass costs about the same per
row batched or alone. Memory: resident set size before and after each ``bank.add`` (and each
merged copy), per method.
"""

from __future__ import annotations

import copy
import random
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

from .harness import current_rss
from .workloads import clause_rows, clause_template, lm_name

CYCLE = ("prompt-tuning", "lora", "p-tuning", "prompt+lora")
OPTIONS = {"prompt-tuning": {"num_virtual_tokens": 20}, "p-tuning": {"num_virtual_tokens": 20},
           "prompt+lora": {"num_virtual_tokens": 20}, "lora": {"r": 8}}
NOISE = 0.02  # enough to move every greedy answer of a real model, little enough to keep them text


def _distinct_adapter(lm: Any, method: str, path: Path, seed: int) -> None:
    import torch

    from pbft_widgets import apply_method, save_adapter

    setup = apply_method(copy.deepcopy(lm.model), method, tokenizer=lm.tokenizer, **OPTIONS[method])
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in setup.model.parameters():
            if param.requires_grad:
                param.add_(NOISE * torch.randn(param.shape, generator=generator).to(param.dtype))
    save_adapter(setup, path)


def _timed(call) -> tuple[Any, float]:
    start = time.perf_counter()
    value = call()
    return value, time.perf_counter() - start


def _path(latencies: list[float], total: float, requests: int) -> dict[str, Any]:
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"requests": requests, "seconds": total, "requests_per_second": requests / total,
            "p50_latency_s": median(ordered), "p95_latency_s": pct(0.95)}


class _PrefillClock:
    """Adds up the time ``MixedRows.prefilled`` takes while installed (the mixed path's prompt passes)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> "_PrefillClock":
        from pbft_widgets.mixing import MixedRows

        self._original = original = MixedRows.prefilled

        def timed(rows, *args, **kwargs):
            start = time.perf_counter()
            try:
                return original(rows, *args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        MixedRows.prefilled = timed
        return self

    def __exit__(self, *exc) -> None:
        from pbft_widgets.mixing import MixedRows

        MixedRows.prefilled = self._original


def measure(params: dict[str, Any]) -> dict[str, Any]:
    import torch

    from pbft_widgets import AdapterBank, load_model

    torch.manual_seed(0)
    lm = load_model(lm_name(params), device=params["device"])
    template = clause_template()
    clauses = clause_rows("test", params["clauses_per_type"], source=params.get("clauses"))
    prompts = [template.render_prompt(row, lm.tokenizer) for row in clauses]
    names = [f"task-{k:02d}" for k in range(params["tasks"])]
    methods = {name: CYCLE[k % len(CYCLE)] for k, name in enumerate(names)}
    rng = random.Random(params["seed"])
    stream = [(rng.choice(names), rng.choice(prompts)) for _ in range(params["requests"])]

    folder = Path(tempfile.mkdtemp(prefix="pbft-serving-"))
    for k, name in enumerate(names):
        _distinct_adapter(lm, methods[name], folder / name, seed=k)
    bank = AdapterBank(load_model(lm_name(params), device=params["device"]).model, lm.tokenizer,
                       max_new_tokens=params["max_new_tokens"], batch_size=params["batch_size"])
    added: dict[str, list[float]] = {}
    for name in names:
        before = current_rss()
        bank.add(name, folder / name)
        added.setdefault(methods[name], []).append((current_rss() - before) / 2**20)

    window = params["batch_size"]
    windows = [stream[s:s + window] for s in range(0, len(stream), window)]
    bank.generate_many(windows[0])  # warm-up: first calls allocate
    # The paths alternate window by window (mixed, grouped, then the window's requests one by one),
    # so a change in the machine's load falls on all of them alike. Only the mixed path prefills
    # through MixedRows, so the clock counts its prompt passes alone.
    answers: dict[str, list[str]] = {"mixed": [], "grouped": [], "switching": []}
    latencies: dict[str, list[float]] = {label: [] for label in answers}
    totals = dict.fromkeys(answers, 0.0)
    with _PrefillClock() as prefill:
        for chunk in windows:
            for label, mixed in (("mixed", True), ("grouped", False)):
                served, seconds = _timed(lambda chunk=chunk, mixed=mixed: bank.generate_many(chunk, mixed=mixed))
                answers[label] += served
                latencies[label] += [seconds] * len(chunk)
                totals[label] += seconds
            for task, prompt in chunk:
                served, seconds = _timed(lambda task=task, prompt=prompt: bank.generate(task, prompt))
                answers["switching"].append(served)
                latencies["switching"].append(seconds)
                totals["switching"] += seconds
    paths = {label: _path(latencies[label], totals[label], len(stream)) for label in answers}
    paths["mixed"]["prefill_seconds"] = prefill.seconds
    switching = latencies["switching"]

    lora_requests = [i for i, (task, _) in enumerate(stream) if methods[task] == "lora"]
    merged_rss: list[float] = []
    if lora_requests:
        merged = {}
        for name in sorted({stream[i][0] for i in lora_requests}):
            before = current_rss()
            merged[name] = bank.merge(name)
            merged_rss.append((current_rss() - before) / 2**20)
        from pbft_widgets.generation import generate_texts

        outputs, latencies = [], []
        for i in lora_requests:
            task, prompt = stream[i]
            served, seconds = _timed(lambda task=task, prompt=prompt: generate_texts(
                merged[task], lm.tokenizer, [prompt], max_new_tokens=params["max_new_tokens"])[0])
            outputs.append(served)
            latencies.append(seconds)
        paths["merged"] = _path(latencies, sum(latencies), len(lora_requests))
        on_lora = [switching[i] for i in lora_requests]
        paths["switching, LoRA requests"] = _path(on_lora, sum(on_lora), len(lora_requests))
        answers["merged"] = outputs

    reference = answers["switching"]
    equal = {label: sum(a == b for a, b in zip(out, reference if label != "merged" else
                                                [reference[i] for i in lora_requests]))
             for label, out in answers.items()}
    return {"device": params["device"], "tasks": params["tasks"], "methods": dict(sorted(
                {m: sum(1 for v in methods.values() if v == m) for m in methods.values()}.items())),
            "requests": len(stream), "lora_requests": len(lora_requests), "batch_size": window,
            "max_new_tokens": params["max_new_tokens"], "torch_threads": torch.get_num_threads(),
            "paths": paths, "equal_to_switching": equal,
            "distinct_answers": len(set(reference)),
            "answer_tokens": sum(len(lm.tokenizer(a, add_special_tokens=False)["input_ids"]) for a in reference),
            "rss_added_mib_per_adapter": {m: median(v) for m, v in added.items()},
            "weights_mib_per_adapter": {methods[n]: sum(f.stat().st_size for f in (folder / n).rglob("*.safetensors"))
                                        / 2**20 for n in names},
            "rss_added_mib_per_merged_model": median(merged_rss) if merged_rss else None,
            "mixed_over_switching": paths["mixed"]["requests_per_second"] / paths["switching"]["requests_per_second"]}
