"""Bad model names, paths, precisions and missing packages."""

from __future__ import annotations

import importlib.util
from unittest import mock

import torch

from pbft_widgets import errors as E

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

CASES: list[Case] = [
    Case("4bit-without-bitsandbytes", "model", "quantization='4bit' where bitsandbytes is not installed",
         E.DependencyError, "pip install bitsandbytes", _no_bitsandbytes),
    Case("bf16-without-support", "model", "dtype='bf16' on a GPU without bf16 (a T4)",
         E.ConfigError, "use dtype='fp16'", _bf16_on_t4),
    Case("hub-id-offline", "model", "a Hub id while offline",
         E.ModelNotFoundError, "use an embedded model instead", _hub_id_offline, max_seconds=5.0),
    Case("model-path-missing", "model", "a local model path that does not exist",
         E.ModelNotFoundError, "check the path",
         lambda bench: _load_model(str(bench.path("no-such-model")))),
    Case("model-path-not-a-model", "model", "a folder that is not a model",
         E.ModelNotFoundError, "point to a folder written by save_pretrained()", _folder_not_a_model),
]
