"""Nearest vocabulary tokens of a soft prompt, how far training moved it, and its map among them.

Nearest vocabulary tokens are a hint, not a translation: soft prompts are "wayward" (they can
perform well while their nearest words mean nothing), so every view of them carries :data:`CAVEAT`.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..model_facts import base_of
from .prompts import soft_prompt

CAVEAT = ("Nearest words are a hint, not a translation: a soft prompt can work well while its nearest "
          "words mean nothing.")


@dataclass
class _Vocabulary:
    key: tuple
    unit: torch.Tensor  # row-normalised input embeddings, in search dtype


_VOCABULARIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _input_embedding(model) -> torch.nn.Module:
    return base_of(model).get_input_embeddings()


def _unit_vocabulary(model) -> torch.Tensor:
    """The normalised embedding matrix, cached per embedding module.

    Normalising costs more than the search itself (~200 ms for 49k x 576), so it runs once; the
    key includes the tensor's version counter, so an in-place change to the embeddings (training
    them, resizing) recomputes it.
    """
    module = _input_embedding(model)
    weight = module.weight
    key = (weight.data_ptr(), tuple(weight.shape), weight.dtype, weight.device, weight._version)
    cached = _VOCABULARIES.get(module)
    if cached is None or cached.key != key:
        # fp32 on CPU (half-precision matmuls are slow there); the model's own dtype on accelerators
        dtype = torch.float32 if weight.device.type == "cpu" else weight.dtype
        with torch.no_grad():
            unit = F.normalize(weight.detach().to(dtype), dim=1)
        cached = _VOCABULARIES[module] = _Vocabulary(key, unit)
    return cached.unit


def _raw_vocabulary(model) -> torch.Tensor:
    """The input embedding matrix as it is (fp32 on CPU, where half-precision matmuls are slow)."""
    weight = _input_embedding(model).weight.detach()
    return weight.float() if weight.device.type == "cpu" else weight


def shown(token: str) -> str:
    """Token text with its whitespace and control characters made visible (' Class' -> '␣Class', '\\x18' -> '␘').

    Control characters are vocabulary entries too (byte-level tokenizers have one per byte); left
    raw they are invisible in a table and break plotly's text rendering, so each becomes its
    Unicode "control picture" (U+2400 + code) or, past that block, its escape.
    """
    token = token.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")
    return "".join(_visible(char) for char in token) or "∅"


def _visible(char: str) -> str:
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)
    if code == 0x7F:
        return "␡"
    return char if char.isprintable() else f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def token_texts(tokenizer, ids: Sequence[int]) -> list[str]:
    """Each token id decoded on its own (its text as a vocabulary entry)."""
    return tokenizer.batch_decode([[int(i)] for i in ids])


SIMILARITIES = ("cosine", "dot")


def _search(model, tokenizer, vectors: torch.Tensor, k: int, similarity: str = "cosine") -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k similarities and token ids of ``vectors`` against the tokenizer's vocabulary.

    ``similarity`` is "cosine" (direction only: the neighbour views) or "dot" (the raw inner product,
    which also rewards a large norm: the logit a vector would get from a tied output layer).
    """
    if similarity not in SIMILARITIES:
        raise ConfigError(f"similarity={similarity!r}; use one of {', '.join(map(repr, SIMILARITIES))}")
    vocab = _unit_vocabulary(model) if similarity == "cosine" else _raw_vocabulary(model)
    # Rows past the tokenizer's vocabulary are padding (never trained); they would be junk neighbours.
    vocab = vocab[: min(len(tokenizer), vocab.shape[0])]
    if not 1 <= k <= vocab.shape[0]:
        raise ConfigError(f"k={k!r}; use an integer between 1 and the vocabulary size ({vocab.shape[0]})")
    if vectors.shape[-1] != vocab.shape[1]:
        raise ConfigError(f"prompt vectors have {vectors.shape[-1]} dimensions but the model's embeddings have "
                          f"{vocab.shape[1]}; pass a prompt taken from this model (soft_prompt(model))")
    with torch.no_grad():
        queries = vectors.detach().to(vocab.device, vocab.dtype)
        if similarity == "cosine":
            queries = F.normalize(queries, dim=1)
        scores, ids = (queries @ vocab.T).topk(k, dim=1)
    return scores.float().cpu(), ids.cpu()


def nearest_tokens(model, tokenizer, k: int = 5, prompt: torch.Tensor | None = None) -> list[dict[str, Any]]:
    """For each virtual token: its k nearest vocabulary tokens by cosine similarity, and its norm.

    ``prompt`` (e.g. a snapshot_prompt) replaces the model's current prompt; it may be searched
    against any model's vocabulary, base models included. Returns
    ``[{"index": i, "neighbours": [(token, cosine), ...], "norm": float}, ...]``.
    """
    return _neighbour_rows(model, tokenizer, soft_prompt(model) if prompt is None else prompt, k)[0]


def _neighbour_rows(model, tokenizer, vectors: torch.Tensor, k: int) -> tuple[list[dict[str, Any]], torch.Tensor]:
    scores, ids = _search(model, tokenizer, vectors, k)
    texts = token_texts(tokenizer, ids.flatten().tolist())
    norms = vectors.detach().float().norm(dim=1).cpu().tolist()
    rows = [{"index": i, "neighbours": list(zip(texts[i * k:(i + 1) * k], scores[i].tolist())), "norm": norms[i]}
            for i in range(len(norms))]
    return rows, ids


def drift(initial: torch.Tensor, learned: torch.Tensor, *, model, tokenizer) -> list[dict[str, Any]]:
    """How far each virtual token moved in training: cosine to its start, norms, top-1 word change."""
    if initial.shape != learned.shape:
        raise ConfigError(f"initial prompt {tuple(initial.shape)} and learned prompt {tuple(learned.shape)} differ "
                          "in shape; take both from the same model (snapshot_prompt before, soft_prompt after)")
    (before, before_ids), (after, after_ids) = (_neighbour_rows(model, tokenizer, v, 1) for v in (initial, learned))
    cosines = F.cosine_similarity(initial.detach().float().cpu(), learned.detach().float().cpu(), dim=1).tolist()
    changed = (before_ids[:, 0] != after_ids[:, 0]).tolist()  # by id: distinct byte tokens can print alike
    return [{"index": i, "cosine": cosines[i], "norm_initial": b["norm"], "norm_learned": a["norm"],
             "top1_initial": b["neighbours"][0][0], "top1_learned": a["neighbours"][0][0], "top1_changed": changed[i]}
            for i, (b, a) in enumerate(zip(before, after))]


@dataclass
class NeighbourMap:
    """A 2-D PCA of the virtual tokens among their nearest vocabulary tokens (and where they started).

    ``points`` holds the virtual tokens first, then the ``word_ids`` tokens, then the initial prompt
    when one was given; ``explained`` is the share of variance of the two components.
    """

    rows: list[dict[str, Any]]
    word_ids: list[int]
    words: list[str]
    points: list[list[float]]
    explained: list[float]
    n_virtual: int
    with_initial: bool


def neighbour_map(model, tokenizer, *, k: int = 5, prompt: torch.Tensor | None = None,
                  initial: torch.Tensor | None = None) -> NeighbourMap:
    """The virtual tokens and their k nearest vocabulary tokens, projected to two principal components.

    The projection is of unit-normalised vectors, the geometry cosine neighbours live in; soft
    prompts often have norms far from real tokens', which would otherwise dominate the map.
    """
    vectors = (soft_prompt(model) if prompt is None else prompt).detach().float().cpu()
    rows, ids = _neighbour_rows(model, tokenizer, vectors, k)
    word_ids = sorted(set(ids.flatten().tolist()))
    weight = _input_embedding(model).weight.detach()
    words = weight[torch.tensor(word_ids, device=weight.device)].float().cpu()
    parts = [vectors, words] + ([initial.detach().float().cpu()] if initial is not None else [])
    points = F.normalize(torch.cat(parts), dim=1)
    centred = (points - points.mean(dim=0)).double()
    # PCA through the small points x points Gram matrix: exact, and far faster than an SVD of the
    # wide points x dim matrix (seconds on near-duplicate rows, e.g. a prompt next to its start).
    variances, axes = torch.linalg.eigh(centred @ centred.T)
    variances, axes = variances.flip(0).clamp_min(0.0), axes.flip(1)
    return NeighbourMap(rows=rows, word_ids=word_ids, words=token_texts(tokenizer, word_ids),
                        points=(axes[:, :2] * variances[:2].sqrt()).tolist(),
                        explained=(variances[:2] / variances.sum()).tolist(), n_virtual=len(vectors),
                        with_initial=initial is not None)
