"""Save and load adapters: one directory each, written atomically, that knows its base model.

The directory holds PEFT's own files (so PEFT and other tools can read it) plus ``pbft_adapter.json``:
method, task, a fingerprint of the base model, and the size and hash of every file. Loading checks
the fingerprint (an adapter on the wrong base model produces fluent nonsense, not an error) and the
hashes (a truncated file from an interrupted copy fails loudly, naming the file).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import peft
import torch
import transformers
from peft import PeftConfig, PeftModel, PeftType, PromptTuningInit, get_peft_model, load_peft_weights, \
    set_peft_model_state_dict

from . import atomic, hybrid
from .builders import prepare_4bit_base
from .checkpoints import refuse_incomplete_checkpoint
from .errors import AdapterError, ConfigError
from .methods import PeftSetup, has_prompt_encoder_weights, method_report, prompt_encoder_state
from .model_card import CARD, check_metrics_belong, render_card
from .model_facts import adapter_fingerprint, base_fingerprint, carries_adapter, infer_task, method_of, quantization_of
from .registry import TASK_TYPES, spec_for, spec_of

MANIFEST = "pbft_adapter.json"
FORMAT = "pbft-adapter"
FORMAT_VERSION = 1
ENCODER_FILE = "pbft_prompt_encoder.safetensors"


def save_adapter(setup_or_model, path: str | os.PathLike, *, overwrite: bool = False, template: Any = None,
                 tokenizer: Any = None, data: Sequence[Mapping[str, Any]] | None = None, metrics: Sequence[Any] = (),
                 license: str | None = None, datasets: Sequence[str] = (), intended_use: str | None = None,
                 limitations: str | None = None, training: Mapping[str, Any] | None = None) -> Path:
    """Write the adapter of a PeftSetup (or PeftModel) to `path`, with its model card; nothing half-written, ever.

    The directory holds PEFT's own files (plain `PeftModel.from_pretrained` loads it), a model card
    `README.md` in the Hub's format (`pbft_widgets.model_card`), and `pbft_adapter.json`: method,
    task, options, training defaults, a fingerprint of the base model, and the size and SHA-256 of
    every file. Everything is written into a temporary sibling that is renamed into place, so a
    crash leaves either the old adapter or the new one. The card describes what it is given: pass
    the template, the training rows and evaluations of this adapter to have them on it.

    Args:
        setup_or_model (`PeftSetup` or `peft.PeftModel`):
            What `apply_method`, `train` or `load_adapter` returned.
        path (`str` or `os.PathLike`):
            The adapter's directory.
        overwrite (`bool`, defaults to `False`):
            Replace an existing adapter (only an adapter: a folder of other files is refused).
        template (`PromptTemplate`, *optional*):
            The card shows it, with the first row of `data` rendered. `template`, `data` and `training`
            default to what the setup's last `train()` ran with.
        tokenizer (*optional*):
            Renders that example (needed for chat templates).
        data (sequence of mappings, *optional*):
            The training rows: the card gives their count, fields, label counts and SHA-256.
        metrics (sequence of `EvalResult`, *optional*):
            Evaluations of this adapter, shown with 95 % bootstrap intervals; one made on another
            adapter (or on this one before it trained further) is refused.
        license (`str`, *optional*):
            The card's licence (default: the embedded base model's, else "other").
        datasets (sequence of `str`, *optional*):
            Dataset names for the card's header.
        intended_use, limitations (`str`, *optional*):
            Your words for those sections (defaults say what little can be said in general).
        training (mapping, *optional*):
            Training settings to list (`train()` passes its steps, batch size, learning rate, seed, loss).

    Returns:
        `pathlib.Path`: the adapter's directory.

    Example:

    ```py
    >>> from pbft_widgets import apply_method, load_model, save_adapter
    >>> lm = load_model()
    >>> setup = apply_method(lm.model, "prompt-tuning", tokenizer=lm.tokenizer, num_virtual_tokens=8)
    >>> path = save_adapter(setup, "adapters/reviews")
    >>> sorted(p.name for p in path.iterdir())
    ['README.md', 'adapter_config.json', 'adapter_model.safetensors', 'pbft_adapter.json']

    ```
    """
    model, method, task, extra = _unpack(setup_or_model)
    check_metrics_belong(metrics, adapter_fingerprint(model))
    trained = getattr(setup_or_model, "trained", None)
    if trained is not None:
        template = template if template is not None else trained.template
        tokenizer = tokenizer if tokenizer is not None else trained.tokenizer
        data = data if data is not None else trained.rows
        training = training if training is not None else trained.settings
    target = Path(path).expanduser()
    atomic.recover_dir(target)
    if target.exists() and not overwrite:
        raise AdapterError(f"{target} already exists; pass overwrite=True to replace it, or choose a new path "
                           f"(pbft_widgets.adapters.next_version(path) gives {next_version(target).name!r})")
    if target.exists() and not target.is_dir():
        raise AdapterError(f"{target} is a file; choose a directory path for the adapter")
    if target.is_dir() and any(target.iterdir()) and not _is_adapter_dir(target):
        raise AdapterError(f"{target} holds files that are not an adapter; choose a new path (overwrite=True "
                           "only replaces adapters, so nothing there was touched)")
    tmp = atomic.staging_dir(target)
    try:
        _write_weights(model, tmp)
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "method": method, "task": task,
            "base_model": base_fingerprint(model), "quantization": quantization_of(model),
            **extra, "files": _file_table(tmp),
            "versions": {"peft": peft.__version__, "transformers": transformers.__version__,
                         "torch": torch.__version__},
        }
        (tmp / MANIFEST).write_text(json.dumps(_jsonable(manifest), indent=2) + "\n", encoding="utf-8")
        card = render_card(_jsonable(manifest), target, template=template, tokenizer=tokenizer, data=data,
                           metrics=metrics, license=license, datasets=datasets, intended_use=intended_use,
                           limitations=limitations, training=training, weights=tmp)
        (tmp / CARD).write_text(card, encoding="utf-8")
        atomic.replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def load_adapter(base_model, path: str | os.PathLike, *, is_trainable: bool = False,
                 tokenizer=None, method: str | None = None) -> PeftSetup:
    """Load a saved adapter onto a fresh base model, after checking it belongs there.

    The manifest's fingerprint must match `base_model` (an adapter on the wrong base produces fluent
    nonsense, not an error) and every file its recorded hash (a truncated copy fails loudly, naming
    the file). Plain PEFT folders (e.g. trainer checkpoints) load too, without the base check.

    Args:
        base_model (`transformers.PreTrainedModel`):
            A freshly loaded base (one without an adapter), e.g. `load_model(...).model`.
        path (`str` or `os.PathLike`):
            A directory written by `save_adapter` or by PEFT's `save_pretrained`.
        is_trainable (`bool`, defaults to `False`):
            Return a model ready to continue training (prompt methods included, which PEFT refuses).
        tokenizer (*optional*):
            Gets the method's padding side.
        method (`str`, *optional*):
            The method the caller expects; another method's adapter is refused.

    Returns:
        `PeftSetup`: as from `apply_method`, with the saved options and training defaults; the model
        is in eval mode with frozen weights unless `is_trainable`.

    Example:

    ```py
    >>> from pbft_widgets import apply_method, load_adapter, load_model, save_adapter
    >>> lm = load_model()
    >>> path = save_adapter(apply_method(lm.model, "lora", tokenizer=lm.tokenizer), "adapters/reviews-lora")
    >>> setup = load_adapter(load_model().model, path)  # a fresh base: apply_method changed lm.model in place
    >>> setup.method, setup.model.training
    ('lora', False)

    ```
    """
    directory = Path(path).expanduser()
    if carries_adapter(base_model):
        raise AdapterError("load_adapter needs a plain base model, but this one already carries an adapter; "
                           "load a fresh base with load_model(...)")
    expected = method
    method, task = check_adapter(base_model, directory)
    if expected is not None and expected != method:
        raise AdapterError(f"adapter {directory} was saved by {method}, not {expected}; load it without "
                           f"method= (or with method={method!r}), or point to a {expected} adapter")
    actual_task = infer_task(base_model)
    if actual_task is not None and actual_task != task:
        raise AdapterError(f"adapter {directory} is for {task} but the base model is a {actual_task} model; "
                           f"load the base with load_model(..., task={task!r})")
    manifest = read_manifest(directory)
    model = _load_weights(base_model, directory, method, is_trainable)
    if not is_trainable:
        # PEFT leaves prompt encoders trainable even when loaded for inference
        model.requires_grad_(False)
        model.eval()
    training = (manifest or {}).get("training_defaults") or spec_of(method).training_defaults()
    if tokenizer is not None:
        tokenizer.padding_side = training["padding_side"]
    notes = [f"loaded from {directory}" + ("" if manifest else " (plain PEFT folder: base model not checked)")]
    return PeftSetup(model=model, method=method, task=task, report=method_report(model, method, notes=notes),
                     training_defaults=training, options=(manifest or {}).get("options", {}))


def check_adapter(base_model, path: str | os.PathLike) -> tuple[str, str]:
    """(method, task) of the adapter at ``path`` after checking its files and its base model."""
    directory = Path(path).expanduser()
    manifest = read_manifest(directory)
    if manifest is None:
        return _describe_config(_peft_config(directory), base_model)
    check_base(manifest, base_model, directory)
    verify_files(manifest, directory)
    return manifest["method"], manifest["task"]


def read_manifest(path: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of an adapter directory; None for a plain PEFT folder; AdapterError otherwise."""
    directory = Path(path).expanduser()
    atomic.recover_dir(directory)
    if not directory.exists():
        raise AdapterError(f"no adapter at {directory}; check the path, or save one there with "
                           "save_adapter(setup, path)")
    if not directory.is_dir():
        raise AdapterError(f"{directory} is a file; pass the adapter's directory")
    refuse_incomplete_checkpoint(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        if (directory / "adapter_config.json").is_file():
            return None
        raise AdapterError(f"{directory} is not an adapter (no {MANIFEST} or adapter_config.json); point to "
                           "a directory written by save_adapter() or by PEFT's save_pretrained()")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterError(f"{manifest_path} is corrupted ({exc}); re-save the adapter with save_adapter("
                           "..., overwrite=True) or load the last good checkpoint") from None
    if manifest.get("format") != FORMAT:
        raise AdapterError(f"{manifest_path} is not a {FORMAT} manifest; re-save the adapter with save_adapter()")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise AdapterError(f"{directory} was written by a newer pbft_widgets (format "
                           f"{manifest['format_version']} > {FORMAT_VERSION}); upgrade pbft-widgets to load it")
    return manifest


def check_base(manifest: dict[str, Any], model, path: Path) -> None:
    """AdapterError naming the expected base when ``model`` is not the one the adapter was trained on."""
    expected, actual = manifest["base_model"], base_fingerprint(model)
    same_shape = all(expected[k] == actual[k] for k in ("model_type", "vocab_size", "hidden_size", "num_layers"))
    same_weights = same_shape and torch.allclose(torch.tensor(expected["embedding_probe"]),
                                                 torch.tensor(actual["embedding_probe"]), rtol=2e-2, atol=2e-3)
    if same_weights:
        return
    hint = (f"load it with load_model({expected['name_or_path']!r}, task={manifest['task']!r})"
            if expected["name_or_path"] else "load that base model")
    kind = "a model with other weights" if same_shape else _describe(actual)
    raise AdapterError(f"adapter {path} was trained on {_describe(expected)}, but the given model is {kind}; "
                       f"{hint} and pass it to load_adapter")


def verify_files(manifest: dict[str, Any], directory: Path) -> None:
    """Size and SHA-256 of every file against the manifest: catches truncated copies and bit rot."""
    for name, expected in manifest.get("files", {}).items():
        file = directory / name
        fix = ("re-save the adapter with save_adapter(..., overwrite=True) or load the last good "
               "checkpoint (e.g. output_dir/checkpoint-*)")
        if not file.is_file():
            raise AdapterError(f"adapter file {file} is missing; {fix}")
        size = file.stat().st_size
        if size != expected["bytes"]:
            raise AdapterError(f"adapter file {file} is truncated or corrupted ({size} bytes, expected "
                               f"{expected['bytes']}); {fix}")
        if atomic.sha256_of(file) != expected["sha256"]:
            raise AdapterError(f"adapter file {file} is corrupted (its checksum does not match); {fix}")


# ----------------------------------------------------------------------------- internals
def _unpack(setup_or_model) -> tuple[Any, str, str, dict[str, Any]]:
    if isinstance(setup_or_model, PeftSetup):
        s = setup_or_model
        extra = {"options": s.options, "training_defaults": s.training_defaults, "report": s.report.to_dict()}
        return s.model, s.method, s.task, extra
    if isinstance(setup_or_model, PeftModel):
        model = setup_or_model
        task = _describe_config(model.peft_config[model.active_adapter], model)[1]  # refuses unknown PEFT types
        spec = method_of(model)
        return model, spec.name, task, {"training_defaults": spec.training_defaults()}
    raise AdapterError(f"save_adapter needs a PeftSetup (from apply_method) or a PeftModel, got "
                       f"{type(setup_or_model).__name__}")


def _describe_config(config: PeftConfig, model) -> tuple[str, str]:
    """(method, task) for a PEFT config, e.g. of a plain PEFT folder."""
    try:
        spec = spec_for(config.peft_type, four_bit=quantization_of(model) == "4bit")
    except ConfigError as exc:
        raise AdapterError(str(exc)) from None
    tasks = {v: k for k, v in TASK_TYPES.items()}
    task = tasks.get(config.task_type) or infer_task(model) or "causal-lm"
    return spec.name, task


def _peft_config(directory: Path) -> PeftConfig:
    try:
        return PeftConfig.from_pretrained(str(directory))
    except (ValueError, TypeError, OSError) as exc:
        raise AdapterError(f"{directory / 'adapter_config.json'} is unreadable ({exc}); re-save the adapter "
                           "or load the last good checkpoint") from None


def _write_weights(model, directory: Path) -> None:
    from safetensors.torch import save_file

    if model.active_adapter != "default":
        raise AdapterError(f"the active adapter is {model.active_adapter!r}; save the model returned by "
                           "apply_method or load_adapter (its adapter is 'default')")
    if method_of(model).combines_prompt_and_lora:
        hybrid.save_parts(model, directory)
        return
    model.save_pretrained(str(directory))
    if has_prompt_encoder_weights(model):
        save_file(prompt_encoder_state(model), str(directory / ENCODER_FILE), metadata={"format": "pt"})


def _load_weights(base_model, directory: Path, method: str, is_trainable: bool):
    from safetensors import SafetensorError

    try:
        if spec_of(method).combines_prompt_and_lora:
            return hybrid.load_prompt_lora(base_model, directory, is_trainable=is_trainable)
        config = _peft_config(directory)
        if is_trainable and config.is_prompt_learning:
            return _trainable_prompt_model(base_model, directory, config)
        if spec_of(method).needs_4bit and quantization_of(base_model) == "4bit":
            base_model = prepare_4bit_base(base_model)
        model = PeftModel.from_pretrained(base_model, str(directory), is_trainable=is_trainable)
        _restore_trained_precision(model, directory)
        return model
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise AdapterError(f"could not load the adapter in {directory} ({str(exc).splitlines()[0]}); its files "
                           "may be corrupted or made for another base model: re-save it with save_adapter(..., "
                           "overwrite=True) or load the last good checkpoint") from None


_HALF_PRECISION = {"BF16": torch.bfloat16, "F16": torch.float16}


def _restore_trained_precision(model, directory: Path) -> None:
    """Give a 4-bit model's adapter back the half precision it was trained and saved in.

    TRL trains QLoRA adapters in bf16 (the QLoRA paper's recipe) and they are saved so, while PEFT
    casts adapter weights to fp32 when loading: the reloaded model would compute in another precision
    and answer differently from the one that was trained.
    """
    from safetensors import safe_open

    weights = directory / "adapter_model.safetensors"
    if quantization_of(model) != "4bit" or not weights.is_file():
        return
    with safe_open(str(weights), "pt") as handle:
        saved = {handle.get_slice(key).get_dtype() for key in handle.keys()}
    if len(saved) == 1 and (dtype := _HALF_PRECISION.get(saved.pop())) is not None:
        for name, param in model.named_parameters():
            if "lora_" in name and param.is_floating_point():
                param.data = param.data.to(dtype)


def _trainable_prompt_model(base_model, directory: Path, config: PeftConfig):
    """PEFT refuses is_trainable=True for prompt methods; rebuild a trainable model and load into it."""
    from safetensors.torch import load_file

    config.inference_mode = False
    if config.peft_type == PeftType.PROMPT_TUNING:
        config.prompt_tuning_init = PromptTuningInit.RANDOM  # the weights are loaded right after
    model = get_peft_model(base_model, config)
    weights = load_peft_weights(str(directory))
    if not has_prompt_encoder_weights(model):
        set_peft_model_state_dict(model, weights)
        return model
    encoder_file = directory / ENCODER_FILE
    if not encoder_file.is_file():
        raise AdapterError(f"{directory} holds only the final prompt, not its {config.peft_type.value} "
                           "encoder, so training cannot resume from it; load it with is_trainable=False "
                           "for inference, or re-save with save_adapter() to keep the encoder")
    encoder_state = load_file(str(encoder_file))
    # PEFT's file holds the encoder's *output*; the trainable state is the encoder file. Load the rest
    # (e.g. a classification head) through PEFT, then the encoder itself.
    weights["prompt_embeddings"] = encoder_state["embedding.weight"]
    set_peft_model_state_dict(model, weights)
    model.prompt_encoder[model.active_adapter].load_state_dict(encoder_state, strict=True)
    return model


def _file_table(directory: Path) -> dict[str, dict[str, Any]]:
    """Size and hash of every file loading reads (weights and configs; a model card may be edited)."""
    return atomic.file_table(directory, (file for file in sorted(directory.rglob("*"))
                                         if file.suffix in (".safetensors", ".json")))


def next_version(path: str | os.PathLike) -> Path:
    """The first of ``path``, ``path-v2``, ``path-v3``, ... that does not exist: keep every version."""
    target = Path(path).expanduser()
    version = 1
    candidate = target
    while candidate.exists():
        version += 1
        candidate = target.with_name(f"{target.name}-v{version}")
    return candidate


def _is_adapter_dir(directory: Path) -> bool:
    return (directory / MANIFEST).is_file() or (directory / "adapter_config.json").is_file()


def _describe(fingerprint: dict[str, Any]) -> str:
    name = f"'{fingerprint['name_or_path']}'" if fingerprint["name_or_path"] else "an unnamed model"
    return (f"{name} ({fingerprint['model_type']}, vocab {fingerprint['vocab_size']}, hidden "
            f"{fingerprint['hidden_size']}, {fingerprint['num_layers']} layers)")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
