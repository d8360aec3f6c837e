"""Label-word scoring: batched scores equal a plain one-sequence-at-a-time reference for every method."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from peft import PeftModel

from conftest import spice
from pbft_widgets import PromptTemplate, Verbalizer, load_model
from pbft_widgets.methods import apply_method
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


@pytest.fixture
def lm(tiny_causal_lm):
    return spice(tiny_causal_lm)


@pytest.mark.parametrize("shared", ["instruction", "nothing"])
@pytest.mark.parametrize("method", [None, *METHODS])
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
    prompts = [TEMPLATE.render_prompt({"text": t}, smol_tokenizer) for t in TEXTS]
    if shared == "nothing":  # every prompt starts with its own text
        prompts = [prompt.split("\n\n", 1)[1].replace("Review: ", "", 1) for prompt in prompts]
        assert len({smol_tokenizer(p)["input_ids"][0] for p in prompts}) == len(prompts)
    scores = score_label_words(model, smol_tokenizer, prompts, word_ids, batch_size=3)
    expected = np.stack([reference_scores(model, smol_tokenizer, p, word_ids) for p in prompts])
    np.testing.assert_allclose(scores.log_probs, expected, atol=2e-4)
    assert scores.labels == ["pos", "neg", "mixed"]
    np.testing.assert_allclose(scores.probabilities.sum(1), 1.0)
    assert set(scores.predictions) <= set(scores.labels)
    if method is not None and spec_of(method).inserts_input_tokens:
        assert virtual_tokens(model) == 5 and isinstance(model, PeftModel)


def test_word_forms_follow_the_completion_convention(smol_tokenizer):
    """A space after 'Sentiment:' (as training attaches the answer), none after a chat assistant header."""
    ids = label_word_ids(TEMPLATE, smol_tokenizer)
    assert ids["neg"] == [smol_tokenizer(" negative", add_special_tokens=False)["input_ids"]]
    chat = label_word_ids(TEMPLATE.with_changes(style="chat"), smol_tokenizer)
    assert chat["neg"] == [smol_tokenizer("negative", add_special_tokens=False)["input_ids"]]
