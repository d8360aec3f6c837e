"""Shared fixtures: real tokenizers of the embedded models, tiny random models built from configs.

Tiny models keep unit tests to seconds; the real tokenizers keep them honest about tokenisation
(label words, chat templates, padding) which random vocabularies would hide.
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def smol_tokenizer():
    """The real SmolLM2-135M-Instruct tokenizer (vocab 49,152, chat template, pad == eos)."""
    from pbft_widgets.models import load_tokenizer

    return load_tokenizer("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def bert_tokenizer():
    """The real all-MiniLM-L6-v2 tokenizer (uncased WordPiece, vocab 30,522)."""
    from pbft_widgets.models import load_tokenizer

    return load_tokenizer("minilm-l6")


def tiny_llama(tokenizer, seed: int = 0):
    """A fresh 2-layer Llama with ``tokenizer``'s vocabulary, seeded so tests are reproducible.

    Every linear layer's output size is a multiple of 32: on CPUs with AVX512-BF16, bitsandbytes
    repacks 4-bit weights in blocks of 32 rows for inference and fails on smaller layers.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
    )
    return LlamaForCausalLM(config).eval()


def spice(model, seed: int = 1):
    """Re-draw matrix weights with std 0.3 (seeded) so greedy outputs and label scores vary with clear margins."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.3)
    return model.eval()


def nudged(base, method: str, *, seed: int, task: str = "causal-lm", **options):
    """``method`` applied to a copy of ``base``, its fresh trainable weights moved by seeded noise.

    That gives each adapter distinct, deterministic outputs in milliseconds, which is all serving
    and saving tests need. The model is in eval mode.
    """
    import copy

    from pbft_widgets.methods import apply_method

    setup = apply_method(copy.deepcopy(base), method, task=task, **options)
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in setup.model.parameters():
            if param.requires_grad:
                param.add_(0.5 * torch.randn_like(param))
    setup.model.eval()
    return setup


def tiny_bert(tokenizer, **changes):
    """A 2-layer BERT config with ``tokenizer``'s vocabulary; build heads with from_config in the test."""
    from transformers import BertConfig

    return BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, max_position_embeddings=512, **changes)


@pytest.fixture
def tiny_causal_lm(smol_tokenizer):
    """A fresh tiny Llama with SmolLM2's vocabulary (see tiny_llama)."""
    return tiny_llama(smol_tokenizer)


@pytest.fixture
def tiny_bert_config(bert_tokenizer):
    """A 2-layer BERT config with MiniLM's vocabulary; build heads with from_config in the test."""
    return tiny_bert(bert_tokenizer)


@pytest.fixture
def one_thread():
    """Tiny models: thread hand-offs cost more than the matmuls (50x slower on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
