"""Bad calls to the inspection helpers and their checkpoints."""

from __future__ import annotations

from pbft_widgets import errors as E

from .bench import Bench, Case, small_options, template

TEXT = "The patient reported severe headaches after the second dose."


def _setup(bench: Bench, method: str, **options):
    """``method`` on a fresh tiny LM (small options unless ``options`` are given)."""
    from pbft_widgets import apply_method

    return apply_method(bench.lm(), method, tokenizer=bench.tokenizer, **(options or small_options(method)))


def _peft(bench: Bench, method: str):
    return _setup(bench, method).model


def _call(method: str | None, helper: str, *args_of, **options):
    """inspection.<helper>(model, *args) on a fresh tiny model with ``method`` (None: the plain base)."""
    def run(bench: Bench):
        from pbft_widgets import inspection

        model = bench.lm() if method is None else _peft(bench, method)
        args = [arg(bench) if callable(arg) else arg for arg in args_of]
        return getattr(inspection, helper)(model, *args, **options)
    return run


def _tokenizer(bench: Bench):
    return bench.tokenizer


def _drift_of_other_lengths(bench: Bench):
    from pbft_widgets import inspection

    model = _peft(bench, "prompt-tuning")
    before = inspection.snapshot_prompt(model)
    return inspection.drift(before[:2], inspection.soft_prompt(model), model=model, tokenizer=bench.tokenizer)


def _head_out_of_range(bench: Bench):
    from pbft_widgets import inspection

    report = inspection.prompt_attention(_peft(bench, "prompt-tuning"), bench.tokenizer, TEXT)
    return inspection.token_attention_figure(report, 0, report.share.shape[1])


def _checkpoints(prepare):
    """neighbours_at_checkpoints on a prompt-tuned model, with the folders ``prepare`` makes."""
    def run(bench: Bench):
        from pbft_widgets import inspection

        return inspection.neighbours_at_checkpoints(_peft(bench, "prompt-tuning"), bench.tokenizer, prepare(bench))
    return run


def _folder(bench: Bench, name: str):
    path = bench.path(name)
    path.mkdir(exist_ok=True)
    return path


def _cut_short_checkpoint(bench: Bench):
    folder = _folder(bench, "cut-short") / "checkpoint-2"
    folder.mkdir(exist_ok=True)
    (folder / "adapter_config.json").write_text('{"peft_type": "PROMPT_TUNING"}')
    (folder / "adapter_model.safetensors").write_bytes(b"cut short")  # an interrupted copy
    return [folder]


def _two_runs(bench: Bench):
    from pbft_widgets import save_adapter

    def run_of(n: int):
        path = bench.path(f"run-{n}")
        if not path.exists():
            save_adapter(_setup(bench, "prompt-tuning", num_virtual_tokens=n), path)
        return path
    return [run_of(2), run_of(3)]


def _prefix_checkpoints(bench: Bench):
    from pbft_widgets import inspection, save_adapter

    setup = _setup(bench, "prefix-tuning", num_virtual_tokens=3)
    run = _folder(bench, "prefix-run")
    save_adapter(setup, run / "checkpoint-1")
    return inspection.neighbours_at_checkpoints(setup.model, bench.tokenizer, run)


def _replaced_with(shape):
    def run(bench: Bench):
        import torch

        from pbft_widgets import inspection

        with inspection.replaced_prompt(_peft(bench, "prompt-tuning"), torch.zeros(*shape)):
            pass
    return run


def _ablate(method: str = "prompt-tuning", **options):
    def run(bench: Bench):
        from pbft_widgets import inspection

        rows = [{"text": "a wonderful film", "label": "pos"}, {"text": "dull", "label": "neg"}]
        return inspection.ablate_tokens(_peft(bench, method), bench.tokenizer, template(), rows, **options)
    return run


def _ablate_layers(method: str = "prefix-tuning", rows=({"text": "a wonderful film", "label": "pos"},), **options):
    def run(bench: Bench):
        from pbft_widgets import inspection

        return inspection.ablate_layers(_peft(bench, method), bench.tokenizer, template(), list(rows), **options)
    return run


def _replaced_layer(layer: int, replacement: str):
    def run(bench: Bench):
        from pbft_widgets import inspection

        with inspection.replaced_prefix_layer(_peft(bench, "prefix-tuning"), layer, replacement):
            pass
    return run


def _faithfulness_of_a_prefix(bench: Bench):
    from pbft_widgets import inspection

    return inspection.faithfulness(_peft(bench, "prefix-tuning"), bench.tokenizer, template(),
                                   [{"text": "a wonderful film", "label": "pos"}])


CASES: list[Case] = [
    Case("initial-prompt-without-snapshot", "inspection", "initial_prompt() before snapshot_prompt()",
         E.ConfigError, "call snapshot_prompt(model) before training", _call("prompt-tuning", "initial_prompt")),
    Case("drift-of-different-prompts", "inspection", "drift() between prompts of 2 and 4 virtual tokens",
         E.ConfigError, "take both from the same model", _drift_of_other_lengths,
         says=("differ in shape",)),
    Case("attention-head-out-of-range", "inspection", "token_attention_figure() for a head the model lacks",
         E.ConfigError, "heads 0..3", _head_out_of_range, says=("head=4",)),
    Case("checkpoints-of-a-prefix", "inspection", "neighbours_at_checkpoints() on a prefix-tuning run",
         E.ConfigError, "use prefix_summary", _prefix_checkpoints,
         says=("holds a PREFIX_TUNING adapter",)),
    Case("checkpoints-folder-empty", "inspection", "a run folder with no checkpoint-<step> folders",
         E.AdapterError, "pass the training output directory", _checkpoints(lambda bench: _folder(bench, "empty-run")),
         says=("no checkpoint-*",)),
    Case("checkpoint-without-weights", "inspection", "a listed checkpoint folder without adapter weights",
         E.AdapterError, "pass checkpoint directories written by training",
         _checkpoints(lambda bench: [_folder(bench, "empty-run")]), says=("has no adapter_model.safetensors",)),
    Case("checkpoint-cut-short", "inspection", "a checkpoint whose weights file was cut short",
         E.AdapterError, "pick a finished one", _checkpoints(_cut_short_checkpoint),
         says=("may be incomplete",)),
    Case("checkpoints-of-two-runs", "inspection", "checkpoints of two runs with different prompt lengths",
         E.AdapterError, "trace the checkpoints of one run at a time", _checkpoints(_two_runs),
         says=("([2, 3] virtual tokens)",)),
    Case("soft-prompt-of-a-base-model", "inspection", "soft_prompt() on a model without a PEFT method",
         E.ConfigError, "wrap it with apply_method(model, 'prompt-tuning', ...)", _call(None, "soft_prompt"),
         says=("carries no PEFT adapter",)),
    Case("nearest-tokens-of-lora", "inspection", "nearest_tokens() on a LoRA model (no soft prompt)",
         E.ConfigError, "pbft_widgets.compare(...)", _call("lora", "nearest_tokens", _tokenizer)),
    Case("prompt-attention-of-lora", "inspection", "prompt_attention() on a LoRA model",
         E.ConfigError, "pbft_widgets.compare(...)", _call("lora", "prompt_attention", _tokenizer, TEXT)),
    Case("prefix-summary-of-lora", "inspection", "prefix_summary() on a LoRA model",
         E.ConfigError, "pbft_widgets.compare(...)", _call("lora", "prefix_summary")),
    Case("nearest-tokens-of-a-prefix", "inspection", "nearest_tokens() on a prefix-tuning model",
         E.ConfigError, "use prefix_summary(model)", _call("prefix-tuning", "nearest_tokens", _tokenizer)),
    Case("prefix-summary-of-a-prompt", "inspection", "prefix_summary() on a prompt-tuning model",
         E.ConfigError, "use nearest_tokens(model, tokenizer)", _call("prompt-tuning", "prefix_summary")),
    Case("discretise-unknown-similarity", "inspection", "discretise(similarity='euclidean')",
         E.ConfigError, "use one of 'cosine', 'dot'",
         _call("prompt-tuning", "discretise", _tokenizer, similarity="euclidean"), says=("similarity='euclidean'",)),
    Case("replaced-prompt-wrong-shape", "inspection", "replaced_prompt() with a prompt of another shape",
         E.ConfigError, "pass one vector per virtual token", _replaced_with((2, 8)), says=("(2, 8)",)),
    Case("ablation-unknown-replacement", "inspection", "ablate_tokens(replacements=['noise'])",
         E.ConfigError, "use one of 'mean', 'initial', 'zero'", _ablate(replacements=["noise"]),
         says=("ablation 'noise'",)),
    Case("ablation-token-out-of-range", "inspection", "ablate_tokens(tokens=[7]) on a 4-token prompt",
         E.ConfigError, "the prompt has virtual tokens 0..3", _ablate(tokens=[7]), says=("tokens [7]",)),
    Case("ablation-initial-without-snapshot", "inspection", "ablate_tokens(replacements=['initial']) with no start",
         E.ConfigError, "call snapshot_prompt(model) before training", _ablate(replacements=["initial"])),
    Case("ablation-of-lora", "inspection", "ablate_tokens() on a LoRA model (no virtual tokens)",
         E.ConfigError, "pbft_widgets.compare(...)", _ablate("lora")),
    Case("layer-ablation-of-a-prompt", "inspection", "ablate_layers() on a prompt-tuning model (no prefix)",
         E.ConfigError, "use ablate_tokens(model, tokenizer, template, rows)", _ablate_layers("prompt-tuning")),
    Case("layer-ablation-out-of-range", "inspection", "ablate_layers(layers=[5]) on a 2-layer model",
         E.ConfigError, "the prefix has layers 0..1", _ablate_layers(layers=[5]), says=("layers [5]",)),
    Case("layer-ablation-unknown-replacement", "inspection", "ablate_layers(replacements=['initial'])",
         E.ConfigError, "use one of 'zero', 'mean'", _ablate_layers(replacements=["initial"]),
         says=("layer replacement 'initial'",)),
    Case("layer-ablation-without-rows", "inspection", "ablate_layers() with an empty list of rows",
         E.ConfigError, "pass the evaluation rows with their answers", _ablate_layers(rows=())),
    Case("replaced-layer-out-of-range", "inspection", "replaced_prefix_layer(model, 2, 'zero') on a 2-layer model",
         E.ConfigError, "the prefix has layers 0..1", _replaced_layer(2, "zero"), says=("layers [2]",)),
    Case("layer-ablation-figure-empty", "inspection", "layer_ablation_figure([])", E.ConfigError,
         "pass the list ablate_layers(...) returned",
         lambda bench: __import__("pbft_widgets.inspection").inspection.layer_ablation_figure([])),
    Case("faithfulness-of-a-prefix", "inspection", "faithfulness() on a prefix-tuning model",
         E.ConfigError, "needs a soft prompt in the input embedding space", _faithfulness_of_a_prefix),
    Case("fluency-of-one-token", "inspection", "fluency() of a one-token text", E.ConfigError,
         "at least two tokens", _call("prompt-tuning", "fluency", _tokenizer, "Hi"), says=("got 1",)),
    Case("ablation-figure-empty", "inspection", "ablation_figure([])", E.ConfigError,
         "pass the list ablate_tokens(...) returned",
         lambda bench: __import__("pbft_widgets.inspection").inspection.ablation_figure([])),
    Case("nearest-tokens-k-zero", "inspection", "nearest_tokens(k=0)",
         E.ConfigError, "use an integer between 1 and the vocabulary size",
         _call("prompt-tuning", "nearest_tokens", _tokenizer, k=0), says=("k=0",)),
]
