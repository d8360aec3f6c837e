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


def _without_tokenizer(method: str, **options):
    def run(bench: Bench):
        from pbft_widgets import apply_method

        return apply_method(bench.lm(), method, **options)
    return run


def _on_quantized(method: str, bits: str = "4bit"):
    def run(bench: Bench):
        from pbft_widgets import apply_method, load_model

        return apply_method(load_model(bench.model_folder, quantization=bits).model, method)
    return run


def _twice(bench: Bench):
    from pbft_widgets import apply_method

    return apply_method(apply_method(bench.lm(), "lora").model, "lora")


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
    Case("lora-some-targets-missing", "method", "LoRA target_modules of which one is missing (['query', 'q_proj'])",
         E.ConfigError, "its linear layers are", _apply("lora", target_modules=["query", "q_proj"]),
         says=("['query'] are not in the model", "k_proj, lm_head, o_proj, q_proj, up_proj, v_proj")),
    Case("prefix-gradient-checkpointing", "method", "prefix tuning with gradient_checkpointing=True",
         E.ConfigError, "pass gradient_checkpointing=False",
         _apply("prefix-tuning", gradient_checkpointing=True), says=("peft #869",)),
    Case("prefix-checkpointing-in-trainer", "method",
         "prefix tuning with trainer_overrides={'gradient_checkpointing': True}",
         E.ConfigError, "drop gradient_checkpointing/activation_checkpointing from trainer_overrides",
         lambda bench: train_tiny(bench, ROWS, method="prefix-tuning", output_dir="run-prefix-gc",
                              trainer_overrides={"gradient_checkpointing": True})),
    Case("prefix-on-4bit", "method", "prefix tuning on a 4-bit model (peft #2035)",
         E.ConfigError, "use prompt-tuning, lora, or qlora on a quantized model", _prefix_on_4bit,
         says=("peft #2035",)),
    Case("lora-on-4bit", "method", "method='lora' on a 4-bit model",
         E.ConfigError, "method='qlora'", _on_quantized("lora")),
    Case("hybrid-on-4bit", "method", "the prompt+lora hybrid on a 4-bit model",
         E.ConfigError, "load it without quantization, or use qlora", _on_quantized("prompt+lora"),
         says=("full-precision",)),
    Case("qlora-on-8bit", "method", "method='qlora' on an 8-bit model",
         E.ConfigError, "quantization='4bit'", _on_quantized("qlora", "8bit"), says=("8-bit",)),
    Case("qlora-on-full-precision", "method", "method='qlora' on a full-precision model",
         E.ConfigError, "load_model(..., quantization='4bit')", _apply("qlora")),
    Case("prefix-virtual-tokens-negative", "method", "prefix tuning with num_virtual_tokens=-3",
         E.ConfigError, "use a positive integer", _apply("prefix-tuning", num_virtual_tokens=-3)),
    Case("init-text-without-text", "method", "prompt tuning with init='text' and no init_text",
         E.ConfigError, "pass init_text=", _apply("prompt-tuning", init="text")),
    Case("init-label-words-without-verbalizer", "method", "init='label-words' without a verbalizer",
         E.ConfigError, "verbalizer=Verbalizer", _apply("prompt-tuning", init="label-words")),
    Case("prompt-init-unknown", "method", "prompt tuning with init='zeros'",
         E.ConfigError, "'random', 'text', 'sample-vocab' or 'label-words'", _apply("prompt-tuning", init="zeros")),
    Case("p-tuning-encoder-unknown", "method", "P-tuning with encoder='gru'",
         E.ConfigError, "'mlp' or 'lstm'", _apply("p-tuning", encoder="gru")),
    Case("prefix-init-unknown", "method", "prefix tuning with init='text'",
         E.ConfigError, "'activations' or 'random'", _apply("prefix-tuning", init="text")),
    Case("prefix-activations-with-projection", "method", "prefix init='activations' with prefix_projection=True",
         E.ConfigError, "use init='random'", _apply("prefix-tuning", init="activations", prefix_projection=True)),
    Case("prefix-init-text-without-tokenizer", "method", "prefix tuning from init_text without a tokenizer",
         E.ConfigError, "needs the tokenizer", _without_tokenizer("prefix-tuning", init_text="Classify")),
    Case("prompt-init-text-without-tokenizer", "method", "prompt tuning from init_text without a tokenizer",
         E.ConfigError, "needs the tokenizer", _without_tokenizer("prompt-tuning", init="text", init_text="Classify")),
    Case("lora-unknown-option", "method", "LoRA with rank=8 (the option is r)",
         E.ConfigError, "it accepts", _apply("lora", rank=8), says=("option(s) rank", "lora_alpha, lora_dropout, r")),
    Case("causal-lm-as-token-classifier", "method", "a causal LM wrapped with task='token-classification'",
         E.ConfigError, "pass task='causal-lm'", _apply("lora", task="token-classification")),
    Case("method-applied-twice", "method", "apply_method on a model that already has an adapter",
         E.ConfigError, "pass a freshly loaded base model", _twice, says=("already carries a PEFT adapter",)),
    Case("unknown-method", "method", "method='fine-tuning'",
         E.ConfigError, "use one of prompt-tuning", _apply("fine-tuning")),
    Case("prompt-tuning-for-ner", "method", "prompt tuning on a token-classification model",
         E.ConfigError, "use prefix-tuning or lora",
         _apply("prompt-tuning", model="bert", task="token-classification")),
]
