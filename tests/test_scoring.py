"""Label-word scoring: batched scores equal a plain one-sequence-at-a-time reference for every method."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from peft import PeftModel

from conftest import nudged, spice
from pbft_widgets import PromptTemplate, Verbalizer, load_model
from pbft_widgets.methods import apply_method
from pbft_widgets.mixing import BASE_ROUTE, MixedRows, soft_prompt
from pbft_widgets.model_facts import virtual_tokens
from pbft_widgets.registry import METHODS, spec_of
from pbft_widgets.scoring import label_word_ids, score_label_words

TEXTS = ["a wonderful, moving film", "dull", "the plot falls apart in the second half and never recovers", "fine"]
# single-token and multi-token words, and a label with two words (logsumexp)
WORDS = {"pos": ["positive", "wonderfully uplifting"], "neg": "negative", "mixed": "ambivalent-ish"}
TEMPLATE = PromptTemplate(instruction="Is this review positive, negative or ambivalent?", input_template="Review: {text}",
                          output_indicator="Sentiment:", style="cloze", verbalizer=Verbalizer(WORDS, allow_multi_token=True))


def reference_scores(model, tokenizer, prompt: str, word_ids) -> np.ndarray:
    """log P(label | prompt) by full teacher forcing of prompt + word, one unpadded sequence at a time."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    scores = []
    for label, words in word_ids.items():
        per_word = []
        for tokens in words:
            ids = torch.tensor([prompt_ids + tokens])
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0].float().log_softmax(-1)
            offset = logits.shape[0] - ids.shape[1]
            start = offset + len(prompt_ids) - 1
            per_word.append(sum(float(logits[start + k, t]) for k, t in enumerate(tokens)))
        scores.append(np.logaddexp.reduce(per_word))
    return np.array(scores)


def rendered(tokenizer, shared: str) -> list[str]:
    """TEXTS as prompts sharing the instruction, or (shared='nothing') each starting with its own text."""
    prompts = [TEMPLATE.render_prompt({"text": t}, tokenizer) for t in TEXTS]
    if shared == "nothing":
        prompts = [prompt.split("\n\n", 1)[1].replace("Review: ", "", 1) for prompt in prompts]
        assert len({tokenizer(p)["input_ids"][0] for p in prompts}) == len(prompts)
    return prompts


@pytest.fixture
def lm(tiny_causal_lm):
    return spice(tiny_causal_lm)


# Gemma-3 (sliding window of 8 tokens) with the methods that change what its layers attend to: the shared
# instruction (about 15 tokens), the longer prompts and the virtual tokens all exceed the window, and the
# multi-token words continue past it.
GEMMA3_METHODS = [None, "prompt-tuning", "prefix-tuning", "p-tuning", "prompt+lora", "lora"]


@pytest.mark.parametrize("shared", ["instruction", "nothing"])
@pytest.mark.parametrize(("tiny_causal_lm", "method"), [("llama", m) for m in (None, *METHODS)]
                         + [("gemma3", m) for m in GEMMA3_METHODS], indirect=["tiny_causal_lm"])
def test_batched_scores_equal_the_one_by_one_reference(lm, smol_tokenizer, tmp_path, method, shared, one_thread):
    """Prompts sharing an instruction take the shared-prefix path; prompts sharing no first token the other."""
    if method is None:
        model = lm
    else:
        base = lm
        if spec_of(method).needs_4bit:
            lm.save_pretrained(tmp_path / "base")
            smol_tokenizer.save_pretrained(tmp_path / "base")
            base = load_model(tmp_path / "base", quantization="4bit").model
        options = {"r": 4} if spec_of(method).mergeable else {"num_virtual_tokens": 5}
        model = apply_method(copy.deepcopy(base), method, tokenizer=smol_tokenizer, **options).model
        torch.manual_seed(3)
        with torch.no_grad():
            for param in model.parameters():
                if param.requires_grad:
                    param.add_(0.5 * torch.randn_like(param))
    model.eval()
    word_ids = label_word_ids(TEMPLATE, smol_tokenizer)
    assert any(len(w) > 1 for words in word_ids.values() for w in words)
    prompts = rendered(smol_tokenizer, shared)
    scores = score_label_words(model, smol_tokenizer, prompts, word_ids, batch_size=3)
    expected = np.stack([reference_scores(model, smol_tokenizer, p, word_ids) for p in prompts])
    np.testing.assert_allclose(scores.log_probs, expected, atol=1e-4 if lm.config.model_type == "gemma3_text" else 2e-4)
    assert scores.labels == ["pos", "neg", "mixed"]
    np.testing.assert_allclose(scores.probabilities.sum(1), 1.0)
    assert set(scores.predictions) <= set(scores.labels)
    if method is not None and spec_of(method).inserts_input_tokens:
        assert virtual_tokens(model) == 5 and isinstance(model, PeftModel)


@pytest.mark.parametrize("shared", ["instruction", "nothing"])
@pytest.mark.parametrize("tiny_causal_lm", ["gemma3"], indirect=True)
def test_prefixes_longer_than_the_window_score_as_peft_runs_them(lm, smol_tokenizer, shared, one_thread):
    """10 prefixes, window 8: PEFT's cache keeps only the last 7 in the sliding layer, all the window reaches."""
    model = nudged(lm, "prefix-tuning", seed=6, tokenizer=smol_tokenizer, num_virtual_tokens=10).model
    word_ids = label_word_ids(TEMPLATE, smol_tokenizer)
    prompts = rendered(smol_tokenizer, shared)
    scores = score_label_words(model, smol_tokenizer, prompts, word_ids, batch_size=3)
    expected = np.stack([reference_scores(model, smol_tokenizer, p, word_ids) for p in prompts])
    np.testing.assert_allclose(scores.log_probs, expected, atol=1e-4)


@pytest.mark.parametrize("tiny_causal_lm", ["gemma3"], indirect=True)
def test_a_mixed_batch_scores_each_row_as_its_adapter_alone(lm, smol_tokenizer, one_thread):
    """Soft-prompt, LoRA and base rows in one right-padded batch (as an AdapterBank mixes them) on Gemma-3,
    whose window (8) the prompts and virtual tokens exceed: each row equals its own model's reference."""
    lora = nudged(lm, "lora", seed=4, tokenizer=smol_tokenizer, r=4).model
    prompt = nudged(lm, "prompt-tuning", seed=5, tokenizer=smol_tokenizer, num_virtual_tokens=5).model
    models = {None: lm, "lora": lora, "prompt": prompt}
    kinds = [None, "lora", "prompt", "prompt", "lora", "prompt", None, "lora"]  # each text under two models
    prompts = [TEMPLATE.render_prompt({"text": TEXTS[i % len(TEXTS)]}, smol_tokenizer) for i in range(len(kinds))]
    mix = MixedRows(prompts=[soft_prompt(prompt) if kind == "prompt" else None for kind in kinds],
                    adapters=[lora.active_adapter if kind == "lora" else BASE_ROUTE for kind in kinds])
    word_ids = label_word_ids(TEMPLATE, smol_tokenizer)
    scores = score_label_words(lora, smol_tokenizer, prompts, word_ids, batch_size=3, mix=mix)
    expected = np.stack([reference_scores(models[k], smol_tokenizer, p, word_ids) for k, p in zip(kinds, prompts)])
    np.testing.assert_allclose(scores.log_probs, expected, atol=1e-4)
    assert len({tuple(row.round(3)) for row in expected}) == len(kinds)  # the models differ: the comparison has teeth


def test_word_forms_follow_the_completion_convention(smol_tokenizer):
    """A space after 'Sentiment:' (as training attaches the answer), none after a chat assistant header."""
    ids = label_word_ids(TEMPLATE, smol_tokenizer)
    assert ids["neg"] == [smol_tokenizer(" negative", add_special_tokens=False)["input_ids"]]
    chat = label_word_ids(TEMPLATE.with_changes(style="chat"), smol_tokenizer)
    assert chat["neg"] == [smol_tokenizer("negative", add_special_tokens=False)["input_ids"]]
