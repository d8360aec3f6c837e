"""Item 2: our ``train()`` against the plain peft+TRL script (plain_trl.py), same model, data, method, steps.

Runs alternate (ours, ours with one speed lever off, ..., plain) so drift in the machine's load hits
all alike. All paths are timed by the same callback; final quality is the completion-only loss on the
same held-out rows. On a CPU the plain script runs with ``bf16=False`` (the comparison the target is
set on) and, once, with TRL's defaults, whose bf16 mixed precision is far slower than fp32 on CPUs.
"""

from __future__ import annotations

import tempfile
from typing import Any

from .harness import StepClock, cuda_peak, peak_rss
from .workloads import clause_rows, clause_template, lm_name

# train() arguments that turn one speed lever off (the suite's LEVERS)
LEVER_OFF: dict[str, dict[str, Any]] = {
    "ours-full-logits": {"completion_logits_only": False},
    "ours-padded": {"trainer_overrides": {"padding_free": False}},
    "ours-checkpointing": {"trainer_overrides": {"activation_checkpointing": True}},
}


def heldout_loss(model, tokenizer, pairs) -> float:
    """Mean cross-entropy of the completion tokens given the prompt, over all held-out pairs."""
    import torch

    device = next(model.parameters()).device
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for pair in pairs:
            prompt = tokenizer(pair["prompt"])["input_ids"]
            completion = tokenizer(pair["completion"], add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt + completion], device=device)
            labels = torch.tensor([[-100] * len(prompt) + completion], device=device)
            loss = model(input_ids=ids, labels=labels).loss
            total += float(loss) * len(completion)
            count += len(completion)
    return total / count


def measure(params: dict[str, Any]) -> dict[str, Any]:
    import torch

    from pbft_widgets.models import embedded_model_path, load_model

    clock_cls = StepClock.install()
    device, path = params["device"], params["path"]
    torch.manual_seed(0)
    train_rows = clause_rows("train", params["train_per_type"], source=params.get("clauses"))
    template = clause_template()
    name = lm_name(params)
    with tempfile.TemporaryDirectory(prefix="pbft-bench-baseline-") as out:
        if path.startswith("ours"):
            from pbft_widgets.methods import apply_method
            from pbft_widgets.training import train, trains_padding_free

            lm = load_model(name, device=device)
            tokenizer = lm.tokenizer
            setup = apply_method(lm.model, "lora", tokenizer=tokenizer, template=template)
            lever_off = LEVER_OFF.get(path, {})
            result = train(setup, train_rows, tokenizer=tokenizer, template=template, output_dir=out,
                           max_steps=params["steps"], batch_size=params["batch_size"], smoke=False,
                           save_every=params["steps"], save_final_adapter=False, progress=False, **lever_off)
            model = result.model
            overrides = lever_off.get("trainer_overrides", {})
            checkpointing = overrides.get("activation_checkpointing",
                                          bool(setup.training_defaults["gradient_checkpointing"]))
            padding_free = overrides.get("padding_free", trains_padding_free(setup))
            completion_logits = lever_off.get("completion_logits_only", True)
            precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(lm.model.dtype, "fp32")
        else:
            from transformers import AutoTokenizer

            from .plain_trl import main as plain

            folder = str(embedded_model_path(name)) if name == "smollm2-135m-instruct" else name
            tokenizer = AutoTokenizer.from_pretrained(folder)
            pairs = template.to_pairs(train_rows, tokenizer)
            trainer = plain(folder, pairs, out, max_steps=params["steps"], batch_size=params["batch_size"],
                            use_cpu=device == "cpu", bf16=False if path == "plain-bf16-off" else None)
            model = trainer.model
            checkpointing = bool(getattr(trainer.args, "activation_checkpointing",
                                         getattr(trainer.args, "gradient_checkpointing", False)))
            padding_free = bool(trainer.args.padding_free)
            completion_logits = device == "cuda"  # TRL's fused head keeps scored positions only under Triton
            precision = "bf16" if trainer.args.bf16 else "fp16" if trainer.args.fp16 else "fp32"
        timing = StepClock.summary(clock_cls.instances[-1])
        memory = cuda_peak(device) if device == "cuda" else peak_rss()
        heldout_rows = clause_rows("validation", params["eval_per_type"], source=params.get("clauses"))
        heldout = template.to_pairs(heldout_rows, tokenizer)
        loss = heldout_loss(model, tokenizer, heldout)
    return {"path": path, "device": device, **timing, "peak_memory_bytes": memory, "heldout_loss": loss,
            "heldout_rows": len(heldout), "train_losses": clock_cls.instances[-1].losses,
            "gradient_checkpointing": checkpointing, "padding_free": padding_free,
            "completion_logits_only": completion_logits,
            "precision": precision}
