"""The model card save_adapter writes: Hub metadata, what the body claims, and that plain peft still loads the folder."""

from __future__ import annotations

import copy

import pytest
import torch
from huggingface_hub import ModelCard
from peft import PeftModel

from conftest import nudged, spice
from pbft_widgets import PromptTemplate, Verbalizer, evaluate
from pbft_widgets.adapters import save_adapter
from pbft_widgets.errors import AdapterError
from pbft_widgets.model_card import data_hash
from pbft_widgets.uncertainty import paired_bootstrap

TEMPLATE = PromptTemplate(instruction="Is the review positive or negative?", input_template="Review: {text}",
                          output_indicator="Sentiment:", style="cloze",
                          verbalizer=Verbalizer({"pos": "positive", "neg": "negative"}))
ROWS = [{"text": f"review number {i}, {'wonderful' if i % 3 else 'dull'}", "label": "pos" if i % 3 else "neg"}
        for i in range(12)]


@pytest.fixture
def lm(tiny_causal_lm):
    return spice(tiny_causal_lm)


def test_the_card_carries_hub_metadata_the_data_and_the_scores_with_intervals(lm, smol_tokenizer, tmp_path):
    setup = nudged(lm, "lora", seed=0)
    result = evaluate(setup.model, smol_tokenizer, ROWS, template=TEMPLATE, task_kind="classification",
                      name="held-out reviews")
    path = save_adapter(setup, tmp_path / "reviews", template=TEMPLATE, tokenizer=smol_tokenizer, data=ROWS,
                        metrics=[result], license="apache-2.0", datasets=["imdb-sample"],
                        training={"max_steps": 30, "seed": 0})
    card = ModelCard.load(path / "README.md")  # the Hub's own parser: header and model-index must be valid
    meta = card.data.to_dict()
    assert meta["library_name"] == "peft" and meta["license"] == "apache-2.0"
    assert meta["datasets"] == ["imdb-sample"] and meta["pipeline_tag"] == "text-generation"
    assert {"peft", "lora", "pbft-widgets"} <= set(meta["tags"])
    assert meta["base_model"] == lm.config._name_or_path or meta["base_model"] == "unknown"
    found = {e.metric_type: e.metric_value for e in card.data.eval_results}
    assert found["accuracy"] == pytest.approx(result.scores["accuracy"], abs=1e-4)
    assert found["macro_f1"] == pytest.approx(result.scores["macro_f1"], abs=1e-4)

    body = card.text
    assert TEMPLATE.render(ROWS[0], smol_tokenizer).prompt in body  # one rendered example
    assert data_hash(ROWS) in body and "- rows: 12" in body and "- labels: pos 8, neg 4" in body
    low, high = paired_bootstrap([result], ["accuracy"])[0]["accuracy"]
    assert f"| held-out reviews | 12 | label-words | accuracy | {result.scores['accuracy']:.3f} | " \
           f"[{low:.3f}, {high:.3f}] |" in body
    assert "- max_steps: `30`" in body and "PeftModel.from_pretrained" in body
    assert data_hash(ROWS[::-1]) != data_hash(ROWS)


def test_plain_peft_loads_a_folder_with_a_card(lm, smol_tokenizer, tmp_path):
    setup = nudged(lm, "prompt-tuning", seed=0, num_virtual_tokens=4)
    path = save_adapter(setup, tmp_path / "prompt", template=TEMPLATE, data=ROWS)
    assert "No evaluation was recorded" in (path / "README.md").read_text()
    loaded = PeftModel.from_pretrained(copy.deepcopy(lm), str(path)).eval()
    inputs = smol_tokenizer(["Review: fine. Sentiment:"], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(loaded(**inputs).logits, setup.model(**inputs).logits, atol=1e-5)


def test_the_hybrid_card_says_how_plain_peft_loads_its_two_parts_and_that_recipe_works(lm, smol_tokenizer, tmp_path):
    setup = nudged(lm, "prompt+lora", seed=0, num_virtual_tokens=4)
    path = save_adapter(setup, tmp_path / "hybrid")
    text = (path / "README.md").read_text()
    assert "'hybrid/lora'" in text and "'hybrid/prompt'" in text
    base = PeftModel.from_pretrained(copy.deepcopy(lm), str(path / "lora")).merge_and_unload()
    loaded = PeftModel.from_pretrained(base, str(path / "prompt")).eval()
    inputs = smol_tokenizer(["Review: fine. Sentiment:"], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(loaded(**inputs).logits, setup.model(**inputs).logits, atol=1e-4)


def test_scores_of_another_adapter_or_of_an_older_state_are_refused(lm, smol_tokenizer, tmp_path):
    first, second = nudged(lm, "lora", seed=1), nudged(lm, "lora", seed=2)
    scored = evaluate(first.model, smol_tokenizer, ROWS, template=TEMPLATE, task_kind="classification")
    with pytest.raises(AdapterError, match="another adapter"):
        save_adapter(second, tmp_path / "second", metrics=[scored])
    with torch.no_grad():  # the same adapter, trained further after it was scored
        next(p for p in first.model.parameters() if p.requires_grad).add_(0.1)
    with pytest.raises(AdapterError, match="another adapter"):
        save_adapter(first, tmp_path / "first", metrics=[scored])
    assert not (tmp_path / "first").exists() and not (tmp_path / "second").exists()
    zero_shot = evaluate(lm, smol_tokenizer, ROWS, template=TEMPLATE, task_kind="classification")
    assert zero_shot.adapter_fingerprint is None  # a plain model: nothing to tie, nothing refused


def test_a_trained_setup_saved_later_carries_its_run_on_the_card(lm, smol_tokenizer, tmp_path):
    from pbft_widgets import apply_method, train

    setup = apply_method(copy.deepcopy(lm), "lora", tokenizer=smol_tokenizer)
    train(setup, ROWS, tokenizer=smol_tokenizer, template=TEMPLATE, output_dir=tmp_path / "run", max_steps=2,
          batch_size=4, learning_rate=2e-3, seed=3, smoke=False)
    for path in (tmp_path / "run" / "adapter", save_adapter(setup, tmp_path / "later")):
        body = (path / "README.md").read_text()
        assert "- steps_done: `2`" in body and "- learning_rate: `0.002`" in body and "- seed: `3`" in body
        assert data_hash(ROWS) in body and TEMPLATE.render(ROWS[0], smol_tokenizer).prompt in body
    untrained = save_adapter(nudged(lm, "lora", seed=0), tmp_path / "untrained")
    assert "settings were not recorded" in (untrained / "README.md").read_text()


def test_a_chat_template_card_renders_its_example_with_the_runs_tokenizer_or_says_why_not(lm, smol_tokenizer,
                                                                                          tmp_path):
    from pbft_widgets import apply_method, train

    chat = PromptTemplate(instruction="Sentiment?", input_template="{text}", style="chat", target_field="label")
    setup = apply_method(copy.deepcopy(lm), "prompt-tuning", tokenizer=smol_tokenizer, num_virtual_tokens=4)
    train(setup, ROWS, tokenizer=smol_tokenizer, template=chat, output_dir=tmp_path / "run", max_steps=1,
          batch_size=4, smoke=False)
    assert chat.render(ROWS[0], smol_tokenizer).prompt in (save_adapter(setup, tmp_path / "later") / "README.md").read_text()
    bare = save_adapter(nudged(lm, "lora", seed=0), tmp_path / "bare", template=chat, data=ROWS)
    assert "pass `tokenizer=` to show an example" in (bare / "README.md").read_text()
