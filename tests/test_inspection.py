"""Inspection of learned prompts: neighbours, attention to virtual tokens, prefix norms, checkpoint traces.

Every number is checked against a computation written out in the test from the model's own
tensors (normalise + matmul + top-k; sums over output_attentions; norms of get_prompt). Neighbours,
drift and attention run on a tiny Gemma-3 too: its embeddings are scaled on lookup and half its
layers attend within a window shorter than the text.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from transformers import BertForSequenceClassification

from conftest import every_architecture
from pbft_widgets import inspection
from pbft_widgets.inspection.neighbours import _unit_vocabulary, shown
from pbft_widgets.adapters import save_adapter
from pbft_widgets.errors import ConfigError
from pbft_widgets.methods import apply_method

TEXT = "The patient reported severe headaches after the second dose and the third dose."
COPIED_ID = 3907  # a vocabulary row copied into the soft prompt


@pytest.fixture
def prompt_model(tiny_causal_lm, smol_tokenizer):
    """Prompt tuning with 4 virtual tokens whose rows are spread like real embeddings."""
    model = apply_method(tiny_causal_lm, "prompt-tuning", tokenizer=smol_tokenizer, num_virtual_tokens=4).model
    with torch.no_grad():
        model.prompt_encoder["default"].embedding.weight.normal_(0.0, 0.05)
    return model


@pytest.fixture
def prefix_model(tiny_causal_lm, smol_tokenizer):
    return apply_method(tiny_causal_lm, "prefix-tuning", tokenizer=smol_tokenizer, num_virtual_tokens=3).model


def hand_neighbours(weight: torch.Tensor, prompt: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    # the padding row is all zeros; the clamp gives it cosine 0 instead of NaN
    vocab = weight.detach() / weight.detach().norm(dim=1, keepdim=True).clamp_min(1e-12)
    queries = prompt.detach() / prompt.detach().norm(dim=1, keepdim=True)
    return torch.topk(queries @ vocab.T, k, dim=1)


def hand_attentions(model, tokenizer, text=TEXT):
    """output_attentions from the model itself, switched to eager here (not by the code under test)."""
    base = model.get_base_model()
    original = base.config._attn_implementation
    base.set_attn_implementation("eager")
    enc = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc, output_attentions=True)
    base.set_attn_implementation(original)
    return out.attentions, enc["input_ids"].shape[1]


def set_prompt_row(model, row: int, token_id: int) -> None:
    with torch.no_grad():
        embedding = model.get_base_model().get_input_embeddings().weight
        model.prompt_encoder["default"].embedding.weight[row] = embedding[token_id]


# ----------------------------------------------------------------------------- neighbours
@every_architecture
def test_nearest_tokens_match_hand_computation_and_copied_row_finds_itself(prompt_model, smol_tokenizer):
    set_prompt_row(prompt_model, 2, COPIED_ID)
    rows = inspection.nearest_tokens(prompt_model, smol_tokenizer, k=5)
    prompt = prompt_model.prompt_encoder["default"].embedding.weight
    scores, ids = hand_neighbours(prompt_model.get_input_embeddings().weight, prompt, 5)
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    for row, row_scores, row_ids in zip(rows, scores, ids):
        assert [t for t, _ in row["neighbours"]] == [smol_tokenizer.decode([i]) for i in row_ids.tolist()]
        assert [c for _, c in row["neighbours"]] == pytest.approx(row_scores.tolist(), abs=1e-5)
        assert row["norm"] == pytest.approx(prompt[row["index"]].norm().item(), rel=1e-5)
    token, cosine = rows[2]["neighbours"][0]
    assert token == smol_tokenizer.decode([COPIED_ID]) and cosine == pytest.approx(1.0, abs=1e-5)


def test_normalised_vocabulary_is_cached_and_refreshed_when_embeddings_change(prompt_model, smol_tokenizer):
    inspection.nearest_tokens(prompt_model, smol_tokenizer, k=1)
    cached = _unit_vocabulary(prompt_model)
    assert _unit_vocabulary(prompt_model) is cached  # repeated calls: no re-normalisation
    # Edit the vocabulary in place: a row now points exactly where virtual token 0 points.
    prompt = prompt_model.prompt_encoder["default"].embedding.weight
    with torch.no_grad():
        prompt_model.get_input_embeddings().weight[COPIED_ID] = prompt[0] * 3.0
    assert _unit_vocabulary(prompt_model) is not cached
    token, cosine = inspection.nearest_tokens(prompt_model, smol_tokenizer, k=1)[0]["neighbours"][0]
    assert token == smol_tokenizer.decode([COPIED_ID]) and cosine == pytest.approx(1.0, abs=1e-5)


def test_p_tuning_soft_prompt_is_what_forward_inserts_and_what_checkpoints_hold(tiny_causal_lm, smol_tokenizer,
                                                                                 tmp_path):
    model = apply_method(tiny_causal_lm, "p-tuning", tokenizer=smol_tokenizer, num_virtual_tokens=5).model.eval()
    prompt = inspection.soft_prompt(model)
    enc = smol_tokenizer(TEXT, return_tensors="pt")
    with torch.no_grad():
        embedded = model(**enc, output_hidden_states=True).hidden_states[0][0]
    assert prompt.shape == (5, tiny_causal_lm.config.hidden_size)
    torch.testing.assert_close(prompt, embedded[:5])
    assert inspection.prompt_kind(model) == "p-tuning"
    rows = inspection.nearest_tokens(model, smol_tokenizer, k=2)
    model.save_pretrained(str(tmp_path / "checkpoint-3"))  # PEFT saves the encoder's output
    trace = inspection.neighbours_at_checkpoints(tiny_causal_lm, smol_tokenizer, [tmp_path / "checkpoint-3"], k=2)
    assert [[t for t, _ in r["neighbours"]] for r in trace.neighbours[0]] == [[t for t, _ in r["neighbours"]]
                                                                             for r in rows]


def test_hybrid_prompt_is_inspected_like_prompt_tuning(tiny_causal_lm, smol_tokenizer, tmp_path):
    setup = apply_method(tiny_causal_lm, "prompt+lora", tokenizer=smol_tokenizer, num_virtual_tokens=3,
                         init="text", init_text="Classify the sentiment")
    model = setup.model
    assert inspection.prompt_kind(model) == "prompt+lora"
    rows = inspection.nearest_tokens(model, smol_tokenizer, k=1)
    # text init copies real embeddings: each virtual token's nearest word is its init token
    expected = [smol_tokenizer.decode([i]) for i in smol_tokenizer("Classify the sentiment",
                                                                    add_special_tokens=False)["input_ids"][:3]]
    assert [r["neighbours"][0][0] for r in rows] == expected
    assert all(r["neighbours"][0][1] == pytest.approx(1.0, abs=1e-5) for r in rows)
    save_adapter(setup, tmp_path / "adapter")  # the hybrid keeps its prompt in prompt/
    trace = inspection.neighbours_at_checkpoints(model, smol_tokenizer, tmp_path / "adapter", k=1)
    assert trace.labels == ["adapter"] and trace.steps == [None] and trace.neighbours[0] == rows


@every_architecture
def test_snapshot_and_drift(prompt_model, smol_tokenizer):
    with pytest.raises(ConfigError):
        inspection.initial_prompt(prompt_model)
    set_prompt_row(prompt_model, 0, COPIED_ID)
    before = inspection.snapshot_prompt(prompt_model)
    assert inspection.initial_prompt(prompt_model) is before
    set_prompt_row(prompt_model, 0, COPIED_ID + 1)  # "training" moves token 0 to another word
    after = inspection.soft_prompt(prompt_model)
    rows = inspection.drift(before, after, model=prompt_model, tokenizer=smol_tokenizer)
    cosines = F.cosine_similarity(before, after, dim=1)
    assert [r["cosine"] for r in rows] == pytest.approx(cosines.tolist(), abs=1e-6)
    assert rows[0]["top1_initial"] == smol_tokenizer.decode([COPIED_ID])
    assert rows[0]["top1_learned"] == smol_tokenizer.decode([COPIED_ID + 1])
    assert [r["top1_changed"] for r in rows] == [True, False, False, False]
    assert rows[1]["cosine"] == pytest.approx(1.0)
    with pytest.raises(ConfigError):
        inspection.drift(before[:2], after, model=prompt_model, tokenizer=smol_tokenizer)


def test_neighbour_figure_marks_soft_tokens_and_carries_the_caveat(prompt_model, smol_tokenizer):
    fig = inspection.neighbour_figure(prompt_model, smol_tokenizer, k=3)
    assert [t.name for t in fig.data] == ["nearest vocabulary tokens", "virtual tokens (learned)"]
    assert list(fig.data[1].text) == ["v0", "v1", "v2", "v3"]
    assert 1 <= len(fig.data[0].x) <= 12  # unique neighbours of 4 tokens x 3
    assert inspection.CAVEAT in [a.text for a in fig.layout.annotations]
    assert fig.layout.title.text and fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    # the map is the top-2 PCA of the unit vectors: same 2-D geometry as an SVD computed here
    prompt = prompt_model.prompt_encoder["default"].embedding.weight.detach()
    _, ids = hand_neighbours(prompt_model.get_input_embeddings().weight, prompt, 3)
    words = prompt_model.get_input_embeddings().weight.detach()[sorted(set(ids.flatten().tolist()))]
    points = F.normalize(torch.cat([prompt, words]), dim=1).double()
    u, s, _ = torch.linalg.svd(points - points.mean(0), full_matrices=False)
    expected = (u[:, :2] * s[:2])[:4]
    shown = torch.tensor([list(fig.data[1].x), list(fig.data[1].y)], dtype=torch.float64).T
    torch.testing.assert_close(torch.cdist(shown, shown), torch.cdist(expected, expected))
    start = inspection.snapshot_prompt(prompt_model)
    fig = inspection.neighbour_figure(prompt_model, smol_tokenizer, k=3, initial=start)
    assert len(fig.data) == 3 and len(fig.data[1].x) == 4


# ----------------------------------------------------------------------------- attention
@every_architecture
def test_prompt_attention_share_matches_output_attentions(prompt_model, smol_tokenizer):
    prompt_model.train()  # the report must run in eval mode and leave the mode as it was
    assert prompt_model.get_base_model().config._attn_implementation == "sdpa"
    report = inspection.prompt_attention(prompt_model, smol_tokenizer, TEXT, compare_base=True)
    assert prompt_model.get_base_model().config._attn_implementation == "sdpa"
    assert prompt_model.training and all(m.training for m in prompt_model.modules())
    prompt_model.eval()
    attentions, n = hand_attentions(prompt_model, smol_tokenizer)
    nv = 4
    for layer, a in enumerate(attentions):
        assert a.shape == (1, 4, nv + n, nv + n)  # virtual tokens are sequence positions
        queries = a[0, :, nv:, :]  # input tokens as queries
        on_prompt = queries[:, :, :nv].sum(-1).mean(-1)
        on_input = queries[:, :, nv:].sum(-1).mean(-1)
        torch.testing.assert_close(report.share[layer], on_prompt)
        torch.testing.assert_close(report.input_share[layer], on_input)
        torch.testing.assert_close(on_prompt + on_input, torch.ones(4))
        torch.testing.assert_close(report.attentions[layer], queries)
    assert ((report.share >= 0) & (report.share <= 1)).all()
    assert report.share.shape == (2, 4) and report.kind == "prompt-tuning" and report.n_virtual == nv
    assert report.attentions.shape == (2, 4, n, nv + n)
    assert report.base_attentions.shape == (2, 4, n, n)
    assert len(report.tokens) == n and report.key_labels[:nv] == ["v0", "v1", "v2", "v3"]
    assert report.query_labels[:2] == ["0 The", "1 ␣patient"]
    rows = report.rows()
    assert len(rows) == 8 and all(0.0 <= r["shift"] <= 1.0 for r in rows)
    assert rows[5]["prompt_share"] + rows[5]["input_share"] == pytest.approx(1.0)


def test_base_attention_is_the_model_without_any_adapter(tiny_causal_lm, smol_tokenizer):
    plain = copy.deepcopy(tiny_causal_lm)
    model = apply_method(tiny_causal_lm, "prompt+lora", tokenizer=smol_tokenizer, num_virtual_tokens=3).model
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    with torch.no_grad():
        for p in lora_b:
            p.normal_(0.0, 0.5)  # LoRA B starts at zero; make LoRA change the attention
    report = inspection.prompt_attention(model, smol_tokenizer, TEXT)
    plain.set_attn_implementation("eager")
    with torch.no_grad():
        expected = plain(**smol_tokenizer(TEXT, return_tensors="pt"), output_attentions=True).attentions
    for layer, a in enumerate(expected):
        torch.testing.assert_close(report.base_attentions[layer], a[0])
    assert all(p.requires_grad for p in lora_b)  # the LoRA part is still trainable and active afterwards
    with torch.no_grad():
        lora_out = model.get_base_model()(**smol_tokenizer(TEXT, return_tensors="pt")).logits
        plain_out = plain(**smol_tokenizer(TEXT, return_tensors="pt")).logits
    assert not torch.allclose(lora_out, plain_out)


@every_architecture
def test_prefix_attention_reports_mass_on_the_prefix(prefix_model, smol_tokenizer):
    report = inspection.prompt_attention(prefix_model, smol_tokenizer, TEXT, compare_base=False)
    attentions, n = hand_attentions(prefix_model, smol_tokenizer)
    for layer, a in enumerate(attentions):
        assert a.shape == (1, 4, n, 3 + n)  # prefix keys in every layer, no extra query positions
        torch.testing.assert_close(report.share[layer], a[0, :, :, :3].sum(-1).mean(-1))
    assert report.kind == "prefix-tuning" and report.base_attentions is None and report.shift is None
    assert "prefix" in inspection.attention_share_figure(report).layout.title.text


def test_prefix_attention_on_an_encoder_classifier(tiny_bert_config, bert_tokenizer):
    torch.manual_seed(0)
    bert = BertForSequenceClassification(tiny_bert_config)
    model = apply_method(bert, "prefix-tuning", task="sequence-classification", num_virtual_tokens=2).model
    report = inspection.prompt_attention(model, bert_tokenizer, "no fever, mild cough")
    n = len(bert_tokenizer("no fever, mild cough")["input_ids"])
    assert report.attentions.shape == (2, 4, n, 2 + n) and report.base_attentions.shape == (2, 4, n, n)
    torch.testing.assert_close(report.attentions.sum(-1), torch.ones(2, 4, n))


def test_attention_figures(prompt_model, smol_tokenizer):
    report = inspection.prompt_attention(prompt_model, smol_tokenizer, TEXT)
    share = inspection.attention_share_figure(report)
    assert len(share.data) == 2 and [list(r) for r in share.data[0].z] == report.share.tolist()
    assert share.layout.xaxis.title.text == "attention head" and share.layout.title.text
    tokens = inspection.token_attention_figure(report, 1, 2)
    assert len(tokens.data) == 2
    assert list(tokens.data[0].x) == report.key_labels and list(tokens.data[1].x) == report.query_labels
    assert list(tokens.data[0].x[:4]) == ["v0", "v1", "v2", "v3"]
    assert len(set(tokens.data[0].y)) == len(report.tokens)  # repeated words stay apart
    assert [list(r) for r in tokens.data[0].z] == report.attentions[1, 2].tolist()
    assert tokens.layout.xaxis.title.text and tokens.layout.yaxis.title.text
    alone = inspection.prompt_attention(prompt_model, smol_tokenizer, TEXT, compare_base=False)
    assert len(inspection.attention_share_figure(alone).data) == 1
    assert len(inspection.token_attention_figure(alone, 0, 0).data) == 1
    with pytest.raises(ConfigError):
        inspection.token_attention_figure(report, 0, 4)


# ----------------------------------------------------------------------------- prefix norms
def test_prefix_summary_matches_get_prompt(prefix_model):
    with torch.no_grad():
        prefix_model.prompt_encoder["default"].embedding.weight.normal_(0.0, 1.0)
        cache = prefix_model.get_prompt(batch_size=1)
    raw = prefix_model.prompt_encoder["default"].embedding.weight.detach()
    by_layer = raw.view(3, 2, 2, -1)  # [virtual, layer, key/value, kv_heads * head_dim]: PEFT's layout
    rows = inspection.prefix_summary(prefix_model)
    assert [r["layer"] for r in rows] == [0, 1]
    for row, layer in zip(rows, cache.layers):
        keys = layer.keys[0].permute(1, 0, 2).reshape(3, -1)
        values = layer.values[0].permute(1, 0, 2).reshape(3, -1)
        assert row["key_norm"] == pytest.approx(keys.norm(dim=1).mean().item(), rel=1e-5)
        assert row["value_norm"] == pytest.approx(values.norm(dim=1).mean().item(), rel=1e-5)
        assert row["key_norm"] == pytest.approx(by_layer[:, row["layer"], 0].norm(dim=1).mean().item(), rel=1e-5)
    fig = inspection.prefix_figure(rows)
    assert [t.name for t in fig.data] == ["prefix keys", "prefix values"] and list(fig.data[0].x) == [0, 1]
    assert fig.layout.title.text and fig.layout.xaxis.title.text and fig.layout.yaxis.title.text


# ----------------------------------------------------------------------------- checkpoint trace
def test_neighbours_at_real_checkpoints(prompt_model, smol_tokenizer, tmp_path):
    saved = {}
    for step, token_id in ((2, COPIED_ID), (10, COPIED_ID + 7)):
        set_prompt_row(prompt_model, 1, token_id)
        prompt_model.save_pretrained(str(tmp_path / f"checkpoint-{step}"))
        saved[step] = prompt_model.prompt_encoder["default"].embedding.weight.detach().clone()
    base = prompt_model.get_base_model()
    trace = inspection.neighbours_at_checkpoints(base, smol_tokenizer, tmp_path, k=3)  # an output directory
    assert trace.steps == [2, 10] and trace.labels == ["step 2", "step 10"]
    for step, rows in zip(trace.steps, trace.neighbours):
        assert rows == inspection.nearest_tokens(base, smol_tokenizer, k=3, prompt=saved[step])
    assert trace.neighbours[0][1]["neighbours"][0][0] == smol_tokenizer.decode([COPIED_ID])
    assert trace.neighbours[1][1]["neighbours"][0][0] == smol_tokenizer.decode([COPIED_ID + 7])
    listed = inspection.neighbours_at_checkpoints(base, smol_tokenizer, [tmp_path / "checkpoint-10"], k=1)
    assert listed.steps == [10] and len(listed.rows()) == 4
    single = inspection.neighbours_at_checkpoints(base, smol_tokenizer, tmp_path / "checkpoint-10", k=1)
    assert single.neighbours == listed.neighbours
    fig = inspection.trace_figure(trace)
    assert len(fig.data) == 1 and list(fig.data[0].x) == ["step 2", "step 10"]
    assert len(fig.data[0].z) == 4 and len(fig.data[0].z[0]) == 2
    assert fig.data[0].text[1][0] == shown(smol_tokenizer.decode([COPIED_ID]))
    assert inspection.CAVEAT in [a.text for a in fig.layout.annotations]
