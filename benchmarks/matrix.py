"""Item 1 (and 6 on CUDA): each PBFT method on SmolLM2 and the clause task, trained a fixed budget.

Per method: trainable parameters, adapter size on disk, step time, tokens/s, peak memory (CPU: the
child's peak RSS; CUDA: torch.cuda.max_memory_allocated) and accuracy on held-out clauses.
"""

from __future__ import annotations

import tempfile
from typing import Any

from .harness import StepClock, cuda_peak, dir_bytes, peak_rss
from .workloads import clause_rows, clause_template, lm_name

METHOD_OPTIONS: dict[str, dict[str, Any]] = {
    "prompt-tuning": {"num_virtual_tokens": 20, "init": "text"},
    "prefix-tuning": {"num_virtual_tokens": 20},
    "p-tuning": {"num_virtual_tokens": 20},
    "lora": {},
    "qlora": {},
    "prompt+lora": {"num_virtual_tokens": 20, "init": "text"},
}


def measure(params: dict[str, Any]) -> dict[str, Any]:
    import torch

    from pbft_widgets.evaluation import evaluate
    from pbft_widgets.methods import apply_method
    from pbft_widgets.models import load_model
    from pbft_widgets.training import train, trains_padding_free

    clock_cls = StepClock.install()
    method, device = params["method"], params["device"]
    torch.manual_seed(0)
    train_rows = clause_rows("train", params["train_per_type"], source=params.get("clauses"))
    test_rows = clause_rows("test", params["test_per_type"], source=params.get("clauses"))
    template = clause_template()
    lm = load_model(lm_name(params), device=device, quantization="4bit" if method == "qlora" else None)
    setup = apply_method(lm.model, method, tokenizer=lm.tokenizer, template=template, **METHOD_OPTIONS[method])
    padding_free = trains_padding_free(setup)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory(prefix="pbft-bench-matrix-") as out:
        result = train(setup, train_rows, tokenizer=lm.tokenizer, template=template, output_dir=out,
                       max_steps=params["steps"], batch_size=params["batch_size"], smoke=False,
                       save_every=params["steps"])
        adapter = dir_bytes(result.adapter_path)
        adapter_weights = sum(f.stat().st_size for f in result.adapter_path.rglob("*.safetensors"))
    timing = StepClock.summary(clock_cls.instances[-1])
    train_peak = cuda_peak(device) if device == "cuda" else peak_rss()
    scores = evaluate(setup.model, lm.tokenizer, test_rows, template=template, task_kind="classification",
                      scoring="generate", batch_size=16).scores
    return {"method": method, "device": device, "trainable_params": setup.report.trainable_params,
            "total_params": setup.report.total_params, "percent_trainable": setup.report.percent_trainable,
            "adapter_bytes": adapter, "adapter_weight_bytes": adapter_weights, **timing,
            "peak_memory_bytes": train_peak,
            "peak_memory_kind": "cuda max_memory_allocated" if device == "cuda" else "process peak RSS",
            "final_loss": result.final_loss, "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"],
            "test_rows": len(test_rows), "train_rows": len(train_rows), "dtype": lm.info.dtype,
            "learning_rate": setup.training_defaults["learning_rate"], "padding_free": padding_free,
            "notes": setup.report.notes}
