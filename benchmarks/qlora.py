"""Item 3: what 4-bit QLoRA saves over fp32 LoRA in memory added on top of the bare runtime.

Each variant runs in a fresh process: RSS after every import is the runtime floor; the peak RSS
after loading and after training, minus that floor, is what the model and its training add.
"""

from __future__ import annotations

import tempfile
from typing import Any

from .harness import current_rss, peak_rss
from .workloads import clause_rows, clause_template, lm_name


def measure(params: dict[str, Any]) -> dict[str, Any]:
    import bitsandbytes  # noqa: F401  (imported before the floor is read, like every library below)
    import datasets  # noqa: F401
    import torch
    import trl  # noqa: F401

    from pbft_widgets.methods import apply_method
    from pbft_widgets.models import load_model
    from pbft_widgets.training import train

    method = params["method"]
    torch.manual_seed(0)
    train_rows = clause_rows("train", params["train_per_type"], source=params.get("clauses"))
    template = clause_template()
    floor = current_rss()
    lm = load_model(lm_name(params), device="cpu", quantization="4bit" if method == "qlora" else None)
    load_peak, after_load = peak_rss(), current_rss()
    setup = apply_method(lm.model, method, tokenizer=lm.tokenizer, template=template)
    with tempfile.TemporaryDirectory(prefix="pbft-bench-qlora-") as out:
        result = train(setup, train_rows, tokenizer=lm.tokenizer, template=template, output_dir=out,
                       max_steps=params["steps"], batch_size=params["batch_size"], smoke=False,
                       save_every=params["steps"], save_final_adapter=False)
    total_peak = peak_rss()
    return {"method": method, "floor_rss_bytes": floor, "load_added_bytes": max(0, load_peak - floor),
            "resident_after_load_bytes": after_load - floor,
            "train_added_bytes": max(0, total_peak - after_load), "total_added_bytes": max(0, total_peak - floor),
            "footprint_bytes": lm.info.footprint_bytes, "final_loss": result.final_loss,
            "load_peak_is_process_peak": load_peak >= total_peak}
