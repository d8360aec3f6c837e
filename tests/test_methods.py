"""apply_method: every method trains, generates, saves and reloads to identical output; errors name fixes.

Tiny random models stand in for the real ones. Their weights are re-drawn with a larger spread so
greedy decoding produces varied tokens with clear margins: a degenerate model that repeats one
token would let a broken generate() pass.
"""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import BertForSequenceClassification, BertForTokenClassification

from conftest import every_architecture, spice
from pbft_widgets.adapters import load_adapter, save_adapter
from pbft_widgets.methods import apply_method, describe_methods
from pbft_widgets.model_facts import quantization_of
from pbft_widgets.registry import METHODS, spec_of
from pbft_widgets.templates import PromptTemplate, Verbalizer

TEXTS = ["Review: a moving, funny film. Sentiment: positive", "Review: dull and far too long. Sentiment: negative"]
PROMPT = "Review: a fine film. Sentiment:"
LABELS = {0: "O", 1: "B-DIS", 2: "I-DIS"}


@pytest.fixture
def lm(tiny_causal_lm):
    return spice(tiny_causal_lm)


def lm_batch(tokenizer):
    enc = tokenizer(TEXTS, return_tensors="pt", padding=True)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return {**enc, "labels": labels}


def train(setup, batch, steps: int = 4) -> list[float]:
    """A few plain AdamW steps at the method's default learning rate; returns the losses."""
    model = setup.model
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=setup.training_defaults["learning_rate"])
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    model.eval()
    return losses


def snapshot(model) -> tuple[dict, dict]:
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    return trainable, frozen


def assert_trained(model, before) -> None:
    trainable, frozen = before
    params = dict(model.named_parameters())
    assert trainable
    unchanged = [n for n, v in trainable.items() if torch.equal(params[n], v)]
    assert not unchanged, f"trainable weights did not move: {unchanged}"
    assert all(torch.equal(params[n], v) for n, v in frozen.items()), "a frozen weight changed"


def greedy(model, tokenizer, prompt=PROMPT, n=6, **kwargs) -> list[int]:
    enc = tokenizer([prompt], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=n, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                             **kwargs)
    return out[0, enc["input_ids"].shape[1]:].tolist()


CAUSAL_CASES = [
    ("prompt-tuning", {"init": "random"}),
    ("prompt-tuning", {"init": "text", "init_text": "Classify the sentiment of the review"}),
    ("prompt-tuning", {"init": "sample-vocab", "num_virtual_tokens": 8}),
    ("prefix-tuning", {"prefix_projection": False}),
    ("prefix-tuning", {"init": "random"}),
    ("prefix-tuning", {"init_text": "Classify the sentiment"}),
    ("prefix-tuning", {"prefix_projection": True, "encoder_hidden_size": 16}),
    ("p-tuning", {"encoder": "mlp"}),
    ("p-tuning", {"encoder": "lstm", "encoder_hidden_size": 16}),
    ("lora", {}),
    ("prompt+lora", {"num_virtual_tokens": 8}),
]
# Gemma-3 (scaled embeddings, sliding-window layers, one key/value head): one case per method, with the
# inits that read the model: text embeddings, and a prefix of 20 tokens (longer than the tiny model's
# window) from its own keys and values.
GEMMA3_CASES = [
    ("prompt-tuning", {"init": "text", "init_text": "Classify the sentiment of the review"}),
    ("prefix-tuning", {"init_text": "Classify the sentiment"}),
    ("p-tuning", {"encoder": "mlp"}),
    ("lora", {}),
    ("prompt+lora", {"num_virtual_tokens": 8}),
]


@pytest.mark.parametrize(("tiny_causal_lm", "method", "options"),
                         [("llama", *case) for case in CAUSAL_CASES] + [("gemma3", *case) for case in GEMMA3_CASES],
                         indirect=["tiny_causal_lm"], ids=lambda v: str(v))
def test_causal_method_trains_saves_and_reloads_identically(lm, smol_tokenizer, tmp_path, method, options):
    pristine = copy.deepcopy(lm)
    setup = apply_method(lm, method, tokenizer=smol_tokenizer, **options)
    assert setup.method == method and setup.task == "causal-lm"
    assert smol_tokenizer.padding_side == setup.training_defaults["padding_side"] == "right"
    before = snapshot(setup.model)
    batch = lm_batch(smol_tokenizer)
    losses = train(setup, batch)
    assert losses[-1] < losses[0]
    assert_trained(setup.model, before)

    expected_tokens = greedy(setup.model, smol_tokenizer)
    with torch.no_grad():
        expected_loss = setup.model(**batch).loss.item()
    path = save_adapter(setup, tmp_path / "adapter")

    for_inference = load_adapter(copy.deepcopy(pristine), path)
    assert for_inference.method == method
    assert greedy(for_inference.model, smol_tokenizer) == expected_tokens
    assert not any(p.requires_grad for p in for_inference.model.parameters())

    # Resuming training must not drift (peft #2043/#1607): same loss, same trainable parameter count.
    resumed = load_adapter(pristine, path, is_trainable=True)
    resumed.model.eval()
    with torch.no_grad():
        assert resumed.model(**batch).loss.item() == pytest.approx(expected_loss, abs=1e-5)
    assert resumed.report.trainable_params == setup.report.trainable_params


@every_architecture
def test_text_and_label_word_inits_start_at_vocabulary_embeddings(lm, smol_tokenizer):
    """The embeddings the model reads for those tokens: Gemma-3 scales its table by sqrt(hidden) on lookup."""
    template = PromptTemplate(instruction="Classify the review", style="cloze",
                              verbalizer=Verbalizer({"pos": "positive", "neg": "negative"}))
    with torch.no_grad():
        embeddings = lm.get_input_embeddings()(torch.arange(lm.config.vocab_size))
    setup = apply_method(copy.deepcopy(lm), "prompt-tuning", tokenizer=smol_tokenizer, template=template,
                         init="text", num_virtual_tokens=6)
    ids = smol_tokenizer("Classify the review", add_special_tokens=False)["input_ids"]
    prompt = setup.model.get_prompt_embedding_to_save("default")
    assert torch.equal(prompt[: len(ids)], embeddings[ids])
    assert torch.equal(prompt[len(ids): 2 * len(ids)][: 6 - len(ids)], embeddings[ids][: 6 - len(ids)])

    labelled = apply_method(lm, "prompt-tuning", tokenizer=smol_tokenizer, template=template,
                            init="label-words", num_virtual_tokens=4)
    words = smol_tokenizer(" positive negative", add_special_tokens=False)["input_ids"]
    assert torch.equal(labelled.model.get_prompt_embedding_to_save("default"), embeddings[(words * 4)[:4]])


@every_architecture
def test_prefix_starts_at_the_models_own_keys_and_values(lm, smol_tokenizer):
    """Initialised from the activations of tokens T, the prefix-tuned model reading P is the base model
    reading T + P: same keys/values in every layer, same positions (GQA layout included). T is longer
    than the tiny Gemma-3's window, whose sliding layers keep only their last keys in a cache."""
    text = "Classify the sentiment of this film review as positive or negative"
    ids = smol_tokenizer(text, add_special_tokens=False)["input_ids"]
    pristine = copy.deepcopy(lm)
    setup = apply_method(lm, "prefix-tuning", tokenizer=smol_tokenizer, num_virtual_tokens=len(ids),
                         init_text=text)
    assert setup.options["init"] == "activations"
    assert any(f"activations of {text!r}" in note for note in setup.report.notes)
    prompt = smol_tokenizer([PROMPT], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        tuned = setup.model(input_ids=prompt, attention_mask=torch.ones_like(prompt)).logits
        base = pristine(input_ids=torch.cat([torch.tensor([ids]), prompt], dim=1)).logits[:, len(ids):]
    torch.testing.assert_close(tuned, base, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", ["prompt-tuning", "p-tuning", "prefix-tuning"])
def test_generate_matches_forward_pass(lm, smol_tokenizer, method):
    """peft #2123/#2379: generate() must see the prompt exactly as forward() does."""
    setup = apply_method(lm, method, tokenizer=smol_tokenizer, num_virtual_tokens=5)
    model = setup.model
    with torch.no_grad():  # move the prompt away from its initialisation
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param))
    model.eval()
    enc = smol_tokenizer([PROMPT], return_tensors="pt")
    with torch.no_grad():
        first = model(**enc).logits[0, -1].argmax().item()
        ids = enc["input_ids"]
        for _ in range(6):  # manual greedy loop of full forward passes
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    manual = ids[0, enc["input_ids"].shape[1]:].tolist()
    # prefix tuning keeps its prefix in the KV cache, so it generates with the cache only
    for use_cache in ([True] if method == "prefix-tuning" else [True, False]):
        tokens = greedy(model, smol_tokenizer, use_cache=use_cache)
        assert tokens[0] == first
        assert tokens == manual


def test_virtual_tokens_change_the_output(lm, smol_tokenizer):
    base_tokens = greedy(lm, smol_tokenizer)
    setup = apply_method(lm, "prompt-tuning", tokenizer=smol_tokenizer, init="sample-vocab")
    assert greedy(setup.model, smol_tokenizer) != base_tokens


# ----------------------------------------------------------------------------- encoders
ENCODER_CASES = [
    ("token-classification", "prefix-tuning", {}),
    ("token-classification", "prefix-tuning", {"prefix_projection": True, "encoder_hidden_size": 16}),
    ("token-classification", "lora", {}),
    ("sequence-classification", "prefix-tuning", {}),
    ("sequence-classification", "lora", {}),
    ("sequence-classification", "prompt-tuning", {"num_virtual_tokens": 8}),
    ("sequence-classification", "p-tuning", {"num_virtual_tokens": 8}),
]


def bert(config, task):
    torch.manual_seed(0)
    cls = BertForTokenClassification if task == "token-classification" else BertForSequenceClassification
    config = copy.deepcopy(config)
    config.id2label, config.label2id = LABELS, {v: k for k, v in LABELS.items()}
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0  # a loss that can be compared
    return cls(config).eval()


def bert_batch(tokenizer, task):
    enc = tokenizer(["aspirin relieved the migraine", "no signs of diabetes"], return_tensors="pt", padding=True)
    if task == "sequence-classification":
        return {**enc, "labels": torch.tensor([1, 2])}
    labels = torch.tensor([[i % 3 for i in range(enc["input_ids"].shape[1])]] * 2)
    return {**enc, "labels": labels.masked_fill(enc["attention_mask"] == 0, -100)}


@pytest.mark.parametrize(("task", "method", "options"), ENCODER_CASES, ids=lambda v: str(v))
def test_encoder_method_trains_head_and_reloads(tiny_bert_config, bert_tokenizer, tmp_path, task, method, options):
    model = bert(tiny_bert_config, task)
    pristine = copy.deepcopy(model)
    setup = apply_method(model, method, tokenizer=bert_tokenizer, task=task, **options)
    trainable = [n for n, p in setup.model.named_parameters() if p.requires_grad]
    assert any("classifier" in n for n in trainable), "the classification head must train with the adapter"
    before = snapshot(setup.model)
    batch = bert_batch(bert_tokenizer, task)
    losses = train(setup, batch, steps=5)
    assert losses[-1] < losses[0]
    assert_trained(setup.model, before)
    with torch.no_grad():
        expected = setup.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    path = save_adapter(setup, tmp_path / "adapter")
    loaded = load_adapter(pristine, path)
    with torch.no_grad():
        got = loaded.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    torch.testing.assert_close(got, expected)
    assert torch.equal(got.argmax(-1), expected.argmax(-1))


def test_prefix_tuning_on_encoders_reaches_every_layer(tiny_bert_config, bert_tokenizer):
    """P-tuning v2: the prefix gets gradient, i.e. the encoder really attends to it."""
    setup = apply_method(bert(tiny_bert_config, "token-classification"), "prefix-tuning",
                         task="token-classification")
    setup.model(**bert_batch(bert_tokenizer, "token-classification")).loss.backward()
    prefix = setup.model.prompt_encoder["default"].embedding.weight
    assert prefix.grad is not None and prefix.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- QLoRA on real 4-bit weights
@pytest.fixture
def four_bit(lm, smol_tokenizer, tmp_path):
    """The tiny model saved and reloaded in 4-bit nf4 through load_model, on CPU (bitsandbytes)."""
    from pbft_widgets.models import load_model

    folder = tmp_path / "tiny-llama"
    lm.save_pretrained(folder)
    smol_tokenizer.save_pretrained(folder)
    return lambda: load_model(folder, quantization="4bit").model


def test_qlora_trains_and_reloads_on_a_4bit_model(four_bit, smol_tokenizer, tmp_path):
    model = four_bit()
    assert quantization_of(model) == "4bit"
    dense_params = sum(p.numel() for p in model.parameters() if p.__class__.__name__ != "Params4bit")
    packed = sum(p.numel() for p in model.parameters() if p.__class__.__name__ == "Params4bit")
    setup = apply_method(model, "qlora", tokenizer=smol_tokenizer)
    report = setup.report
    assert report.total_params == dense_params + 2 * packed + report.trainable_params  # 2 values per byte
    assert setup.training_defaults["gradient_checkpointing"] is True  # memory is what QLoRA is for
    assert any("prepare_model_for_kbit_training" in note for note in report.notes)
    before = snapshot(setup.model)
    losses = train(setup, lm_batch(smol_tokenizer))
    assert losses[-1] < losses[0]
    assert_trained(setup.model, before)
    expected = greedy(setup.model, smol_tokenizer)
    path = save_adapter(setup, tmp_path / "qlora")
    loaded = load_adapter(four_bit(), path)
    assert loaded.method == "qlora"
    assert greedy(loaded.model, smol_tokenizer) == expected


@pytest.mark.parametrize("method", ["prompt-tuning", "p-tuning"])
def test_soft_prompts_train_on_a_4bit_model(four_bit, smol_tokenizer, method):
    setup = apply_method(four_bit(), method, tokenizer=smol_tokenizer, num_virtual_tokens=4)
    before = snapshot(setup.model)
    losses = train(setup, lm_batch(smol_tokenizer), steps=3)
    assert losses[-1] < losses[0]
    assert_trained(setup.model, before)


# ----------------------------------------------------------------------------- reports and defaults
def test_report_counts_parameters_bytes_and_memory(lm, smol_tokenizer, tmp_path):
    setup = apply_method(lm, "p-tuning", tokenizer=smol_tokenizer, encoder_hidden_size=16)
    report = setup.report
    params = list(setup.model.parameters())
    assert report.trainable_params == sum(p.numel() for p in params if p.requires_grad)
    assert report.total_params == sum(p.numel() for p in params)
    assert report.percent_trainable == pytest.approx(100 * report.trainable_params / report.total_params)
    weights = sum(p.numel() * p.element_size() for p in params)
    assert report.expected_memory_bytes == weights + 4 * report.trainable_params + 8 * report.trainable_params
    path = save_adapter(setup, tmp_path / "a")
    on_disk = sum(f.stat().st_size for f in path.rglob("*.safetensors"))
    assert report.adapter_bytes <= on_disk < report.adapter_bytes + 4096  # only safetensors headers on top
    assert "p-tuning" in str(report)


def test_training_defaults_per_method(lm):
    """Each method's defaults sit in the range where it trains (ranges from the literature and our runs)."""
    assert spec_of("prefix-tuning").training_defaults()["gradient_checkpointing"] is False
    assert 3e-2 <= spec_of("prompt-tuning").training_defaults()["learning_rate"] <= 1e-1
    assert 5e-3 <= spec_of("prefix-tuning").training_defaults()["learning_rate"] <= 3e-2
    assert 1e-4 <= spec_of("p-tuning").training_defaults()["learning_rate"] <= 1e-3  # 1e-2 diverges on SmolLM2
    for method in ("lora", "qlora"):
        assert 2e-4 <= spec_of(method).training_defaults()["learning_rate"] <= 1e-3
    for method in ("prompt-tuning", "p-tuning", "prompt+lora"):  # peft #1093
        assert spec_of(method).training_defaults()["padding_side"] == "right"
        assert spec_of(method).training_defaults()["generation_batching"] == "equal-length"
    assert [row["method"] for row in describe_methods()] == list(METHODS)
    lora = apply_method(lm, "lora")  # the typed default is what the adapter really gets
    assert lora.model.peft_config["default"].r == spec_of("lora").option_defaults()["r"] == lora.options["r"]


def test_gradient_checkpointing_already_on_is_turned_off_for_prefix_tuning(lm):
    lm.activation_checkpointing_enable()
    setup = apply_method(lm, "prefix-tuning")
    assert not setup.model.get_base_model().is_activation_checkpointing
    assert any("peft #869" in note for note in setup.report.notes)


def test_half_precision_on_cpu_is_cast_to_fp32(lm):
    setup = apply_method(lm.to(torch.bfloat16), "lora")
    assert all(p.dtype == torch.float32 for p in setup.model.parameters())
    assert any("fp32" in note for note in setup.report.notes)


def test_lora_auto_targets_match_the_architecture(lm, tiny_bert_config):
    assert apply_method(lm, "lora").options["target_modules"] == ["q_proj", "v_proj"]
    encoder = apply_method(bert(tiny_bert_config, "sequence-classification"), "lora",
                           task="sequence-classification")
    assert encoder.options["target_modules"] == ["query", "value"]


def test_qlora_trains_every_layer_after_an_evaluation_repacked_its_4bit_weights(four_bit, smol_tokenizer,
                                                                                tmp_path):
    """bitsandbytes repacks 4-bit weights for CPU inference (AVX-512 BF16) at the first eval forward;
    repacked layers pass no gradient back, so train() must restore their layout: LoRA moves in every layer."""
    from pbft_widgets.four_bit import _four_bit_layers, is_packed_for_cpu_inference, trainable_4bit
    from pbft_widgets.templates import PromptTemplate
    from pbft_widgets.training import train as train_run

    setup = apply_method(four_bit(), "qlora", tokenizer=smol_tokenizer, r=4, lora_dropout=0.0)
    setup.model.eval()
    with torch.no_grad():  # an evaluation before training: repacks where the CPU has AVX-512 BF16
        setup.model(**{k: v for k, v in lm_batch(smol_tokenizer).items() if k != "labels"})
    layers = _four_bit_layers(setup.model)
    if any(is_packed_for_cpu_inference(layer) for layer in layers):
        with trainable_4bit(setup.model) as unpacked:
            assert unpacked and not any(is_packed_for_cpu_inference(layer) for layer in layers)
            setup.model.eval()
            with torch.no_grad():  # evaluations inside training keep the layout
                setup.model(**{k: v for k, v in lm_batch(smol_tokenizer).items() if k != "labels"})
            assert not any(is_packed_for_cpu_inference(layer) for layer in layers)
        with torch.no_grad():
            setup.model(**{k: v for k, v in lm_batch(smol_tokenizer).items() if k != "labels"})
    lora_b = {n: p.detach().clone() for n, p in setup.model.named_parameters() if "lora_B" in n}
    template = PromptTemplate(input_template="{text}", output_indicator="Summary:")
    rows = [{"text": text, "label": text.split()[0]} for text in TEXTS] * 4
    # saved only at the end: bitsandbytes' own save also restores the layout, which would hide a miss
    train_run(setup, rows, tokenizer=smol_tokenizer, template=template, output_dir=tmp_path / "run", max_steps=2,
              batch_size=4, save_every=2, smoke=False, save_final_adapter=False, progress=False)
    moved = {n: not torch.equal(p, lora_b[n]) for n, p in setup.model.named_parameters() if n in lora_b}
    assert len(moved) >= 4 and all(moved.values()), moved  # layer 0's LoRA too: gradients reach it
