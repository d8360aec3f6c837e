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


@pytest.fixture
def tiny_causal_lm(smol_tokenizer):
    """A fresh 2-layer Llama with SmolLM2's vocabulary, seeded so tests are reproducible."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(smol_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=smol_tokenizer.pad_token_id,
        eos_token_id=smol_tokenizer.eos_token_id,
        bos_token_id=smol_tokenizer.bos_token_id,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def tiny_bert_config(bert_tokenizer):
    """A 2-layer BERT config with MiniLM's vocabulary; build heads with from_config in the test."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(bert_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=512,
    )


@pytest.fixture
def one_thread():
    """Tiny models: thread hand-offs cost more than the matmuls (50x slower on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
