"""The prompt+LoRA hybrid: both parts train together, generate() sees both, one directory holds both."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer

from conftest import spice
from pbft_widgets import hybrid
from pbft_widgets.adapters import MANIFEST, load_adapter, save_adapter
from pbft_widgets.methods import apply_method
from pbft_widgets.model_facts import method_of

TEXTS = ["Question: capital of France? Answer: Paris", "Question: two plus two? Answer: four"]
PROMPT = "Question: capital of Spain? Answer:"


@pytest.fixture
def lm(tiny_causal_lm):
    """The tiny model with matrix weights re-drawn (std 0.3) so greedy tokens vary with clear margins."""
    return spice(tiny_causal_lm)


def batch(tokenizer):
    enc = tokenizer(TEXTS, return_tensors="pt", padding=True)
    return {**enc, "labels": enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)}


def greedy(model, tokenizer, n=6, **kwargs) -> list[int]:
    enc = tokenizer([PROMPT], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=n, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                             **kwargs)
    return out[0, enc["input_ids"].shape[1]:].tolist()


def lora_weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def test_both_parts_are_trainable_and_reported(lm, smol_tokenizer):
    pristine = copy.deepcopy(lm)
    setup = apply_method(lm, "prompt+lora", tokenizer=smol_tokenizer, num_virtual_tokens=8, r=4)
    model = setup.model
    assert method_of(model).combines_prompt_and_lora
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "prompt_encoder.default.embedding.weight" in trainable
    assert {n for n in trainable if "lora_" in n} == set(lora_weights(model))
    assert not any("lora_" not in n and not n.startswith("prompt_encoder") for n in trainable)
    parts = setup.report.parts
    assert parts["prompt"] == 8 * lm.config.hidden_size
    plain_lora = apply_method(copy.deepcopy(pristine), "lora", r=4).report.trainable_params
    assert parts["lora"] == plain_lora  # the same LoRA layers as LoRA alone
    assert setup.report.trainable_params == parts["prompt"] + parts["lora"]
    assert setup.training_defaults["prompt_learning_rate"] > 10 * setup.training_defaults["learning_rate"]


def test_joint_training_moves_both_parts_with_their_own_learning_rates(lm, smol_tokenizer):
    setup = apply_method(lm, "prompt+lora", tokenizer=smol_tokenizer, num_virtual_tokens=8)
    model = setup.model
    groups = hybrid.param_groups(model, prompt_lr=setup.training_defaults["prompt_learning_rate"],
                                 lora_lr=setup.training_defaults["learning_rate"], weight_decay=0.01)
    assert [g["lr"] for g in groups] == [3e-2, 5e-4]
    assert groups[0]["weight_decay"] == 0.0  # never decay a soft prompt towards zero
    optimizer = torch.optim.AdamW(groups)
    prompt_before = model.prompt_encoder["default"].embedding.weight.detach().clone()
    lora_before = lora_weights(model)
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    model.train()
    losses = []
    for _ in range(5):
        loss = model(**batch(smol_tokenizer)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert not torch.equal(model.prompt_encoder["default"].embedding.weight, prompt_before)
    params = dict(model.named_parameters())
    assert all(not torch.equal(params[n], v) for n, v in lora_before.items())
    assert all(torch.equal(params[n], v) for n, v in frozen_before.items())


def test_generate_sees_prompt_and_lora(lm, smol_tokenizer):
    """generate() equals a manual greedy loop of forward passes, with and without the KV cache."""
    base_tokens = greedy(lm, smol_tokenizer)
    setup = apply_method(lm, "prompt+lora", tokenizer=smol_tokenizer, num_virtual_tokens=5)
    model = setup.model
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.5 * torch.randn_like(param))
    model.eval()
    enc = smol_tokenizer([PROMPT], return_tensors="pt")
    ids = enc["input_ids"]
    with torch.no_grad():
        first = model(**enc).logits[0, -1].argmax().item()
        for _ in range(6):
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    manual = ids[0, enc["input_ids"].shape[1]:].tolist()
    for use_cache in (True, False):
        tokens = greedy(model, smol_tokenizer, use_cache=use_cache)
        assert tokens[0] == first and tokens == manual
    assert manual != base_tokens


def test_saved_as_one_directory_and_reloaded_identically(lm, smol_tokenizer, tmp_path):
    pristine = copy.deepcopy(lm)
    setup = apply_method(lm, "prompt+lora", tokenizer=smol_tokenizer, num_virtual_tokens=6)
    with torch.no_grad():
        for param in setup.model.parameters():
            if param.requires_grad:
                param.add_(0.3 * torch.randn_like(param))
    setup.model.eval()
    expected = greedy(setup.model, smol_tokenizer)
    with torch.no_grad():
        expected_loss = setup.model(**batch(smol_tokenizer)).loss.item()
    path = save_adapter(setup, tmp_path / "hybrid")
    files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    assert {"pbft_adapter.json", "prompt/adapter_config.json", "prompt/adapter_model.safetensors",
            "lora/adapter_config.json", "lora/adapter_model.safetensors"} <= set(files)
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["method"] == "prompt+lora" and manifest["report"]["parts"]["lora"] > 0
    assert [p.name for p in tmp_path.iterdir()] == ["hybrid"]  # no temporary directory left behind

    loaded = load_adapter(copy.deepcopy(pristine), path)
    assert method_of(loaded.model).combines_prompt_and_lora and loaded.method == "prompt+lora"
    assert greedy(loaded.model, smol_tokenizer) == expected
    assert not any(p.requires_grad for p in loaded.model.parameters())

    resumed = load_adapter(copy.deepcopy(pristine), path, is_trainable=True)
    assert resumed.report.parts == setup.report.parts
    resumed.model.eval()
    with torch.no_grad():
        assert resumed.model(**batch(smol_tokenizer)).loss.item() == pytest.approx(expected_loss, abs=1e-5)
    # a reloaded hybrid saves again (e.g. after more training) and round-trips
    again = save_adapter(resumed, tmp_path / "again")
    assert greedy(load_adapter(copy.deepcopy(pristine), again).model, smol_tokenizer) == expected

    # the LoRA half is a standard PEFT adapter: PEFT alone loads it (prompt not included)
    lora_only = PeftModel.from_pretrained(pristine, str(path / hybrid.LORA_DIR))
    assert any(isinstance(m, LoraLayer) for m in lora_only.modules())
    assert greedy(lora_only, smol_tokenizer) != expected
