"""The baseline: LoRA fine-tuning written the way the PEFT and TRL docs show it, with their defaults.

Only what a CPU run needs is set (``use_cpu``; TRL's default mixed precision fails there) plus the
budget shared with our path (steps, batch size, seed). Everything else is the libraries' default:
gradient checkpointing on, learning rate 2e-5, completion-only loss for prompt/completion data,
no packing, padding to the longest sequence of each batch. ``bf16=False`` turns off the one default
that costs most on a CPU without native bf16 (a second baseline, to show how much of the gap it is).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def main(model_path: str, pairs: Sequence[Mapping[str, str]], output_dir: str, *, max_steps: int,
         batch_size: int, use_cpu: bool, seed: int = 0, bf16: bool | None = None):
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    model = AutoModelForCausalLM.from_pretrained(model_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    dataset = Dataset.from_list([dict(p) for p in pairs])
    peft_config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, task_type="CAUSAL_LM")
    args = SFTConfig(output_dir=output_dir, max_steps=max_steps, per_device_train_batch_size=batch_size,
                     use_cpu=use_cpu, report_to="none", seed=seed, **({} if bf16 is None else {"bf16": bf16}))
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config)
    trainer.train()
    return trainer
