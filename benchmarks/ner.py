"""Item 4: full fine-tuning against deep prompts (prefix tuning, P-tuning v2) and LoRA on real NER.

MiniLM-L6 with a token-classification head, trained on NCBI-disease train and scored on devel
(entity F1, seqeval strict IOB2 through pbft_widgets.metrics). Every variant goes through the same
``train()``; full fine-tuning passes the plain model with the learning rate usual for it.
"""

from __future__ import annotations

import math
import tempfile
import time
from types import SimpleNamespace
from typing import Any

from .harness import cuda_peak, peak_rss
from .workloads import encoder_name, ner_rows

# Learning rates: full fine-tuning at BERT's usual 5e-5; the PBFT methods at their package defaults.
VARIANTS: dict[str, dict[str, Any]] = {
    "full fine-tuning": {"method": None, "learning_rate": 5e-5, "options": {}},
    "deep prompts (prefix tuning)": {"method": "prefix-tuning", "learning_rate": None,
                                     "options": {"num_virtual_tokens": 20}},
    "LoRA r=8": {"method": "lora", "learning_rate": None,
                 "options": {"r": 8, "lora_alpha": 16, "target_modules": ["query", "key", "value", "dense"]}},
    "LoRA r=16": {"method": "lora", "learning_rate": None,
                  "options": {"r": 16, "lora_alpha": 32, "target_modules": ["query", "key", "value", "dense"]}},
}


def measure(params: dict[str, Any]) -> dict[str, Any]:
    import torch

    from pbft_widgets.data import label_list
    from pbft_widgets.evaluation import evaluate
    from pbft_widgets.methods import apply_method
    from pbft_widgets.models import load_model
    from pbft_widgets.training import train

    variant = VARIANTS[params["variant"]]
    device = params["device"]
    torch.manual_seed(0)
    train_rows = ner_rows(params.get("ncbi_dir"), "train")
    eval_rows = ner_rows(params.get("ncbi_dir"), "validation")
    labels = label_list(train_rows + eval_rows)
    lm = load_model(encoder_name(params), task="token-classification", device=device, dtype="fp32",
                    id2label=dict(enumerate(labels)))
    if variant["method"] is None:
        model = lm.model
        setup = SimpleNamespace(model=model, task="token-classification", method="full-fine-tuning",
                                training_defaults={"learning_rate": variant["learning_rate"]})
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
    else:
        setup = apply_method(lm.model, variant["method"], tokenizer=lm.tokenizer, task="token-classification",
                             **variant["options"])
        trainable, total = setup.report.trainable_params, setup.report.total_params
    steps = params.get("steps") or math.ceil(len(train_rows) / params["batch_size"]) * params["epochs"]
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pbft-bench-ner-") as out:
        result = train(setup, train_rows, tokenizer=lm.tokenizer, output_dir=out, max_steps=steps,
                       batch_size=params["batch_size"], learning_rate=variant["learning_rate"], smoke=False,
                       save_every=steps, save_final_adapter=False)
    train_seconds = time.perf_counter() - started
    memory = cuda_peak(device) if device == "cuda" else peak_rss()
    scores = evaluate(result.model, lm.tokenizer, eval_rows, task_kind="ner", batch_size=64).scores
    lr = variant["learning_rate"] or setup.training_defaults["learning_rate"]
    return {"variant": params["variant"], "method": setup.method, "device": device, "f1": scores["f1"],
            "precision": scores["precision"], "recall": scores["recall"], "trainable_params": trainable,
            "total_params": total, "percent_trainable": 100.0 * trainable / total, "steps": steps,
            "epochs": params["epochs"], "batch_size": params["batch_size"], "learning_rate": lr,
            "train_seconds": train_seconds, "peak_memory_bytes": memory, "final_loss": result.final_loss,
            "train_rows": len(train_rows), "eval_rows": len(eval_rows)}
