"""Bad PEFT method choices and options."""

from __future__ import annotations

from pbft_widgets import errors as E

from .bench import ROWS, Bench, Case, train_tiny


def _apply(method: str, model: str = "lm", task: str = "causal-lm", **options):
    def run(bench: Bench):
        from pbft_widgets import apply_method

        base = bench.lm() if model == "lm" else bench.bert(task, ["O", "B-X", "I-X"])
        return apply_method(base, method, task=task, tokenizer=bench.tokenizer if model == "lm" else None,
                            **options)
    return run



def _four_bit(bench: Bench):
    from pbft_widgets import load_model

    return load_model(bench.model_folder, quantization="4bit").model


def _prefix_on_4bit(bench: Bench):
    from pbft_widgets import apply_method

    return apply_method(_four_bit(bench), "prefix-tuning")


CASES: list[Case] = [
    Case("virtual-tokens-zero", "method", "num_virtual_tokens=0",
         E.ConfigError, "use a positive integer", _apply("prompt-tuning", num_virtual_tokens=0)),
    Case("virtual-tokens-huge", "method", "num_virtual_tokens=100000",
         E.ConfigError, "use at most 256", _apply("prompt-tuning", num_virtual_tokens=100_000)),
    Case("lora-rank-zero", "method", "LoRA r=0",
         E.ConfigError, "use a positive integer such as 8 or 16", _apply("lora", r=0)),
    Case("lora-missing-targets", "method", "LoRA target_modules that the model does not have ('query')",
         E.ConfigError, "its linear layers are", _apply("lora", target_modules=["query"])),
    Case("prefix-gradient-checkpointing", "method", "prefix tuning with gradient_checkpointing=True",
         E.ConfigError, "pass gradient_checkpointing=False",
         _apply("prefix-tuning", gradient_checkpointing=True)),
    Case("prefix-checkpointing-in-trainer", "method",
         "prefix tuning with trainer_overrides={'gradient_checkpointing': True}",
         E.ConfigError, "drop gradient_checkpointing/activation_checkpointing from trainer_overrides",
         lambda bench: train_tiny(bench, ROWS, method="prefix-tuning", output_dir="run-prefix-gc",
                              trainer_overrides={"gradient_checkpointing": True})),
    Case("prefix-on-4bit", "method", "prefix tuning on a 4-bit model (peft #2035)",
         E.ConfigError, "use prompt-tuning, lora, or qlora on a quantized model", _prefix_on_4bit),
    Case("unknown-method", "method", "method='fine-tuning'",
         E.ConfigError, "use one of prompt-tuning", _apply("fine-tuning")),
    Case("prompt-tuning-for-ner", "method", "prompt tuning on a token-classification model",
         E.ConfigError, "use prefix-tuning or lora",
         _apply("prompt-tuning", model="bert", task="token-classification")),
]
