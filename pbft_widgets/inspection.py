"""Look inside a learned prompt: vocabulary neighbours, attention to virtual tokens, prefix norms.

Plain functions return data (lists of dicts, dataclasses) and plotly figures; widgets wrap both.
Everything works on PEFT objects (prompt tuning, P-tuning, prefix tuning, and the prompt+LoRA
hybrid, which is a prompt-tuning PeftModel), so models built with plain ``peft`` work too.

Nearest vocabulary tokens are a hint, not a translation: soft prompts are "wayward", they can
perform well while their nearest words mean nothing. Every neighbour figure says so.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from peft import PeftModel, PeftType
from peft.tuners.tuners_utils import BaseTunerLayer
from plotly.subplots import make_subplots
from safetensors import SafetensorError
from safetensors.torch import load_file

from . import hybrid
from .errors import AdapterError, ConfigError

CAVEAT = ("Nearest words are a hint, not a translation: a soft prompt can work well while its nearest "
          "words mean nothing.")
PROMPT_KEY = "prompt_embeddings"  # the tensor PEFT saves for every prompt-learning method
ADAPTER_FILE = "adapter_model.safetensors"
_EMBEDDING_TYPES = (PeftType.PROMPT_TUNING, PeftType.P_TUNING)
_CHECKPOINT_STEP = re.compile(r"checkpoint-(\d+)$")


# ----------------------------------------------------------------------------- what the model holds
def prompt_kind(model) -> str:
    """'prompt-tuning', 'p-tuning', 'prompt+lora' or 'prefix-tuning'; ConfigError for anything else.

    The error names the inspection that does apply, so a notebook cell fails with its fix.
    """
    if not isinstance(model, PeftModel):
        raise ConfigError(f"{type(model).__name__} carries no PEFT adapter, so there is no learned prompt to "
                          "inspect; wrap it with apply_method(model, 'prompt-tuning', ...) and train it, or load "
                          "a trained adapter with load_adapter(base_model, path)")
    peft_type = model.peft_config[model.active_adapter].peft_type
    if peft_type == PeftType.PROMPT_TUNING:
        return "prompt+lora" if hybrid.is_prompt_lora(model) else "prompt-tuning"
    if peft_type == PeftType.P_TUNING:
        return "p-tuning"
    if peft_type == PeftType.PREFIX_TUNING:
        return "prefix-tuning"
    raise ConfigError(f"the active adapter is {peft_type.value}, which changes weights and adds no soft prompt or "
                      "prefix; these inspections need prompt-tuning, p-tuning, prompt+lora or prefix-tuning. "
                      "Judge a LoRA adapter against its base model with evaluation.evaluate(...) and "
                      "evaluation.compare(...)")


def _require_embedding_prompt(model, what: str) -> None:
    if prompt_kind(model) == "prefix-tuning":
        raise ConfigError(f"{what} needs a soft prompt in the input embedding space, but prefix tuning learns "
                          "keys and values inside every layer; use prefix_summary(model) for their sizes or "
                          "prompt_attention(model, tokenizer, text) for the attention they draw")


@contextmanager
def _inference(model) -> Iterator[None]:
    """Eval mode (no dropout on the attention weights) and no autograd; each module's mode restored."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, training in modes.items():
            module.training = training


def soft_prompt(model) -> torch.Tensor:
    """The virtual-token embeddings the model puts in front of every input: [n_virtual, dim].

    Taken from ``get_prompt``, i.e. exactly what forward() inserts: the learned table for prompt
    tuning and the hybrid, the prompt encoder's output for P-tuning.
    """
    _require_embedding_prompt(model, "soft_prompt")
    with _inference(model.prompt_encoder):  # an LSTM prompt encoder drops out in train mode
        return model.get_prompt(batch_size=1)[0].detach()


_SNAPSHOTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def snapshot_prompt(model) -> torch.Tensor:
    """Copy the current soft prompt (call before training) and remember it for initial_prompt()."""
    snapshot = soft_prompt(model).clone()
    _SNAPSHOTS[model] = snapshot
    return snapshot


def initial_prompt(model) -> torch.Tensor:
    """The prompt recorded by the last snapshot_prompt(model) call."""
    if model not in _SNAPSHOTS:
        raise ConfigError("no snapshot of this model's prompt was taken; call snapshot_prompt(model) before "
                          "training to compare the learned prompt with where it started")
    return _SNAPSHOTS[model]


# ----------------------------------------------------------------------------- vocabulary neighbours
@dataclass
class _Vocabulary:
    key: tuple
    unit: torch.Tensor  # row-normalised input embeddings, in search dtype


_VOCABULARIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _input_embedding(model) -> torch.nn.Module:
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    return base.get_input_embeddings()


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


def _token_texts(tokenizer, ids: Sequence[int]) -> list[str]:
    return tokenizer.batch_decode([[int(i)] for i in ids])


def _search(model, tokenizer, vectors: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k cosine similarities and token ids of ``vectors`` against the tokenizer's vocabulary."""
    vocab = _unit_vocabulary(model)
    # Rows past the tokenizer's vocabulary are padding (never trained); they would be junk neighbours.
    vocab = vocab[: min(len(tokenizer), vocab.shape[0])]
    if not 1 <= k <= vocab.shape[0]:
        raise ConfigError(f"k={k!r}; use an integer between 1 and the vocabulary size ({vocab.shape[0]})")
    if vectors.shape[-1] != vocab.shape[1]:
        raise ConfigError(f"prompt vectors have {vectors.shape[-1]} dimensions but the model's embeddings have "
                          f"{vocab.shape[1]}; pass a prompt taken from this model (soft_prompt(model))")
    with torch.no_grad():
        queries = F.normalize(vectors.detach().to(vocab.device, vocab.dtype), dim=1)
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
    texts = _token_texts(tokenizer, ids.flatten().tolist())
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


def _shown(token: str) -> str:
    """Token text with its whitespace made visible (' Class' -> '␣Class')."""
    return token.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥") or "∅"


def _caveat(fig: go.Figure) -> None:
    """The caveat sits a fixed number of pixels under the plot, clear of the x-axis title at any height."""
    fig.add_annotation(text=CAVEAT, xref="paper", yref="paper", x=0, y=0, yshift=-66, xanchor="left",
                       yanchor="top", showarrow=False, font={"size": 11, "color": "#555"})
    fig.update_layout(margin={"b": 96})


def neighbour_figure(model, tokenizer, *, k: int = 5, prompt: torch.Tensor | None = None,
                     initial: torch.Tensor | None = None) -> go.Figure:
    """2-D PCA map of the virtual tokens among their nearest vocabulary tokens (and where they started).

    The projection is of unit-normalised vectors, the geometry cosine neighbours live in; soft
    prompts often have norms far from real tokens', which would otherwise dominate the map.
    """
    vectors = (soft_prompt(model) if prompt is None else prompt).detach().float().cpu()
    rows, ids = _neighbour_rows(model, tokenizer, vectors, k)
    neighbour_ids = sorted(set(ids.flatten().tolist()))
    weight = _input_embedding(model).weight.detach()
    words = weight[torch.tensor(neighbour_ids, device=weight.device)].float().cpu()
    parts = [vectors, words] + ([initial.detach().float().cpu()] if initial is not None else [])
    points = F.normalize(torch.cat(parts), dim=1)
    centred = (points - points.mean(dim=0)).double()
    # PCA through the small points x points Gram matrix: exact, and far faster than an SVD of the
    # wide points x dim matrix (seconds on near-duplicate rows, e.g. a prompt next to its start).
    variances, axes = torch.linalg.eigh(centred @ centred.T)
    variances, axes = variances.flip(0).clamp_min(0.0), axes.flip(1)
    xy = (axes[:, :2] * variances[:2].sqrt()).tolist()
    explained = (variances[:2] / variances.sum()).tolist()
    n = len(vectors)
    fig = go.Figure()
    word_texts = _token_texts(tokenizer, neighbour_ids)
    fig.add_trace(go.Scatter(
        x=[p[0] for p in xy[n:n + len(words)]], y=[p[1] for p in xy[n:n + len(words)]], mode="markers+text",
        name="nearest vocabulary tokens", text=[_shown(t) for t in word_texts], textposition="top center",
        textfont={"size": 9, "color": "#52606d"},
        marker={"color": "#9aa5b1", "size": 7}, hovertemplate="%{text}<extra>vocabulary token</extra>"))
    if initial is not None:
        start = xy[n + len(words):]
        fig.add_trace(go.Scatter(
            x=[p[0] for p in start], y=[p[1] for p in start], mode="markers", name="virtual tokens before training",
            marker={"symbol": "circle-open", "color": "#d62728", "size": 9},
            text=[f"v{i}" for i in range(len(start))], hovertemplate="%{text} (initial)<extra></extra>"))
    hover = [f"v{r['index']} · norm {r['norm']:.2f}<br>" + "<br>".join(f"{_shown(t)}: {c:.3f}" for t, c in
                                                                       r["neighbours"]) for r in rows]
    fig.add_trace(go.Scatter(
        x=[p[0] for p in xy[:n]], y=[p[1] for p in xy[:n]], mode="markers+text", name="virtual tokens (learned)",
        text=[f"v{i}" for i in range(n)], textposition="bottom center", hovertext=hover, hoverinfo="text",
        marker={"symbol": "diamond", "color": "#d62728", "size": 11, "line": {"width": 1, "color": "black"}}))
    fig.update_layout(
        title=f"Soft prompt among its nearest vocabulary tokens<br><sup>{k} per virtual token by cosine; "
              "PCA of unit vectors</sup>", height=520,
        xaxis_title=f"principal component 1 ({explained[0]:.0%} of variance)",
        yaxis_title=f"principal component 2 ({explained[1]:.0%} of variance)", legend_title="point")
    _caveat(fig)
    return fig


# ----------------------------------------------------------------------------- attention to the prompt
@dataclass
class AttentionReport:
    """Attention of one input text to the learned prompt, per layer and head.

    ``attentions`` has shape [layers, heads, n_tokens, n_virtual + n_tokens]: rows are the input
    tokens as queries, columns the virtual tokens (or prefix positions) then the input tokens.
    ``share[l, h]`` is the mean over input queries of the attention mass on the virtual tokens;
    the input share is its complement. ``base_attentions`` ([layers, heads, n, n]) is the same
    text through the model without its adapter, when compared.

    A head with nearly all its attention on v0 has often just moved its "attention sink" (the
    first position many heads park attention on) onto the prompt; check the base model's
    attention to its own first token before reading meaning into it.
    """

    text: str
    kind: str
    tokens: list[str]
    n_virtual: int
    attentions: torch.Tensor
    share: torch.Tensor
    base_attentions: torch.Tensor | None = None

    @property
    def input_share(self) -> torch.Tensor:
        return 1.0 - self.share

    @property
    def query_labels(self) -> list[str]:
        """Input tokens as '<position> <text>': unique, so repeated words stay apart on a plot axis."""
        return [f"{i} {_shown(t)}" for i, t in enumerate(self.tokens)]

    @property
    def key_labels(self) -> list[str]:
        """Virtual tokens (or prefix positions) v0..vN, then the input tokens."""
        return [f"v{i}" for i in range(self.n_virtual)] + self.query_labels

    @property
    def shift(self) -> torch.Tensor | None:
        """How much the prompt re-routes attention among the input tokens, per layer and head.

        Total-variation distance (0 = same pattern, 1 = disjoint) between the base model's attention
        row and the tuned model's attention to the input tokens (renormalised), averaged over queries.
        """
        if self.base_attentions is None:
            return None
        tuned = self.attentions[..., self.n_virtual:]
        tuned = tuned / tuned.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        return 0.5 * (tuned - self.base_attentions).abs().sum(dim=-1).mean(dim=-1)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per layer and head: prompt_share, input_share and (when compared) shift."""
        shift = self.shift
        return [{"layer": layer, "head": head, "prompt_share": float(self.share[layer, head]),
                 "input_share": float(self.input_share[layer, head]),
                 **({"shift": float(shift[layer, head])} if shift is not None else {})}
                for layer in range(self.share.shape[0]) for head in range(self.share.shape[1])]


@contextmanager
def _eager_attention(model) -> Iterator[None]:
    """Eager attention for the duration (only it returns attention weights), then the original."""
    base = model.get_base_model()
    original = base.config._attn_implementation
    if original != "eager":
        base.set_attn_implementation("eager")
    try:
        yield
    finally:
        if original != "eager":
            base.set_attn_implementation(original)


@contextmanager
def _base_only(model) -> Iterator[torch.nn.Module]:
    """The transformers model under the adapter, with any LoRA layers in it (the hybrid's) switched off.

    For prompt learning PEFT's disable_adapter() only routes forward() to this same model, and it
    fails on models without generate() (sequence classifiers); calling the base model is the same
    computation without that failure.
    """
    base = model.get_base_model()
    layers = [m for m in base.modules() if isinstance(m, BaseTunerLayer) and not m.disable_adapters]
    # enable_adapters(True) marks adapter weights trainable; put back what each weight was instead
    grads = {p: p.requires_grad for layer in layers for p in layer.parameters()}
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield base
    finally:
        for layer in layers:
            layer.enable_adapters(True)
        for param, requires_grad in grads.items():
            param.requires_grad_(requires_grad)


def _attention_stack(model, inputs: dict[str, torch.Tensor], n_tokens: int) -> torch.Tensor:
    """One forward; attention of the input-token queries, stacked to [layers, heads, n, keys]."""
    attentions = model(**inputs, output_attentions=True, return_dict=True).attentions
    if not attentions or any(a is None for a in attentions):
        raise ConfigError(f"the model returned no attention weights (attention implementation "
                          f"{model.config._attn_implementation!r}); load it with attn_implementation='eager', "
                          "e.g. load_model(..., attn_implementation='eager')")
    return torch.stack([a[0, :, -n_tokens:, :].float().cpu() for a in attentions])


def _forward_inputs(model, encoding) -> dict[str, torch.Tensor]:
    """input_ids + attention_mask, and logits for the last position only where the model allows it.

    Attention needs no logits; skipping the vocabulary projection for all but one position saves
    a tenth of a small model's forward pass.
    """
    device = next(model.parameters()).device
    inputs = {"input_ids": encoding["input_ids"].to(device), "attention_mask": encoding["attention_mask"].to(device)}
    if "logits_to_keep" in inspect.signature(model.get_base_model().forward).parameters:
        inputs["logits_to_keep"] = 1
    return inputs


def prompt_attention(model, tokenizer, text: str, *, compare_base: bool = True) -> AttentionReport:
    """Share of attention the input tokens pay to the learned prompt, for every layer and head.

    Works for prompt tuning, P-tuning and the hybrid (virtual tokens are sequence positions) and
    prefix tuning (prefix keys in every layer). One forward pass with the adapter, plus one without
    it when ``compare_base``; the model's attention implementation and train/eval mode are restored.
    """
    kind = prompt_kind(model)
    if not text:
        raise ConfigError("text is empty; pass the input whose attention to the prompt you want to see")
    encoding = tokenizer(text, return_tensors="pt")
    ids = encoding["input_ids"][0].tolist()
    n_virtual = model.peft_config[model.active_adapter].num_virtual_tokens
    inputs = _forward_inputs(model, encoding)
    with _eager_attention(model), _inference(model):
        attentions = _attention_stack(model, inputs, len(ids))
        base = None
        if compare_base:
            with _base_only(model) as base_model:
                base = _attention_stack(base_model, inputs, len(ids))
    expected = n_virtual + len(ids)
    if attentions.shape[-1] != expected:
        raise ConfigError(f"attention covers {attentions.shape[-1]} keys, expected {n_virtual} virtual + {len(ids)} "
                          f"input tokens; {type(model.get_base_model()).__name__} may handle the "
                          f"{kind} prompt differently, so this inspection does not apply to it")
    share = attentions[..., :n_virtual].sum(dim=-1).mean(dim=-1)
    return AttentionReport(text=text, kind=kind, tokens=_token_texts(tokenizer, ids), n_virtual=n_virtual,
                           attentions=attentions, share=share, base_attentions=base)


def attention_share_figure(report: AttentionReport) -> go.Figure:
    """Heatmap layers x heads of the attention share on the prompt (and the shift from the base model)."""
    prompt_name = "prefix" if report.kind == "prefix-tuning" else "virtual tokens"
    layers, heads = report.share.shape
    panels = [(report.share, f"share of attention on the {prompt_name}", "Viridis")]
    if report.shift is not None:
        panels.append((report.shift, "change vs. base model among input tokens (total variation)", "Magma"))
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[1] for p in panels], horizontal_spacing=0.12)
    for col, (values, label, scale) in enumerate(panels, start=1):
        bar_x = 0.44 if (col == 1 and len(panels) == 2) else 1.0
        fig.add_trace(go.Heatmap(
            z=values.tolist(), x=list(range(heads)), y=list(range(layers)), zmin=0.0, zmax=1.0, colorscale=scale,
            colorbar={"x": bar_x, "len": 0.9}, name=label,
            hovertemplate="layer %{y}, head %{x}<br>" + label + ": %{z:.3f}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text="attention head", row=1, col=col)
        fig.update_yaxes(title_text="layer (0 = nearest the input)", row=1, col=col)
    fig.update_layout(title=f"How much the input tokens attend to the learned {prompt_name} ({report.kind}, "
                            f"{report.n_virtual} {prompt_name}, {len(report.tokens)} input tokens; mean over queries)")
    return fig


def token_attention_figure(report: AttentionReport, layer: int, head: int) -> go.Figure:
    """Token-level map for one head: input tokens (queries) x [virtual tokens + input tokens] (keys)."""
    layers, heads = report.share.shape
    if not (0 <= layer < layers and 0 <= head < heads):
        raise ConfigError(f"layer={layer}, head={head}; this model has layers 0..{layers - 1} and heads 0..{heads - 1}")
    queries = report.query_labels
    panels = [(report.attentions[layer, head], report.key_labels, "with the learned prompt")]
    if report.base_attentions is not None:
        panels.append((report.base_attentions[layer, head], queries, "base model (no adapter)"))
    zmax = max(float(p[0].max()) for p in panels)
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[2] for p in panels], shared_yaxes=True,
                        column_widths=[len(p[1]) for p in panels], horizontal_spacing=0.04)
    for col, (values, keys, _) in enumerate(panels, start=1):
        fig.add_trace(go.Heatmap(z=values.tolist(), x=keys, y=queries, coloraxis="coloraxis",
                                 hovertemplate="query %{y} → key %{x}: %{z:.3f}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text="attended token (key)", type="category", tickangle=-60, row=1, col=col)
    fig.update_yaxes(title_text="input token (query)", type="category", autorange="reversed", row=1, col=1)
    if report.n_virtual:
        fig.add_vline(x=report.n_virtual - 0.5, line={"color": "white", "dash": "dash"}, row=1, col=1)
    prompt_name = "prefix positions" if report.kind == "prefix-tuning" else "virtual tokens"
    fig.update_layout(title=f"Attention of layer {layer}, head {head}: v0..v{report.n_virtual - 1} are the "
                            f"{prompt_name} ({report.share[layer, head]:.0%} of this head's attention)",
                      coloraxis={"colorscale": "Viridis", "cmin": 0.0, "cmax": zmax,
                                 "colorbar": {"title": {"text": "attention weight"}}})
    return fig


# ----------------------------------------------------------------------------- prefix tuning
def prefix_summary(model) -> list[dict[str, Any]]:
    """Per layer: mean L2 norm of the learned prefix keys and values (heads concatenated, per virtual token).

    Read from ``get_prompt``, the key/value cache PEFT hands to every attention layer.
    """
    if prompt_kind(model) != "prefix-tuning":
        raise ConfigError("prefix_summary needs a prefix-tuning adapter; for soft prompts in the input use "
                          "nearest_tokens(model, tokenizer) and prompt_attention(model, tokenizer, text)")
    with torch.no_grad():
        cache = model.get_prompt(batch_size=1)
    rows = []
    for index, layer in enumerate(cache.layers):
        norms = [t[0].transpose(0, 1).flatten(1).float().norm(dim=1).mean().item() for t in (layer.keys, layer.values)]
        rows.append({"layer": index, "key_norm": norms[0], "value_norm": norms[1]})
    return rows


def prefix_figure(summary: Sequence[dict[str, Any]]) -> go.Figure:
    """Line chart of prefix key and value norms per layer (from prefix_summary)."""
    layers = [row["layer"] for row in summary]
    fig = go.Figure([go.Scatter(x=layers, y=[row[f"{part}_norm"] for row in summary], mode="lines+markers",
                                name=f"prefix {part}s") for part in ("key", "value")])
    fig.update_layout(title="Size of the learned prefix in each layer (larger = the prefix can pull harder on "
                            "attention)", xaxis_title="layer (0 = nearest the input)",
                      yaxis_title="mean L2 norm per prefix position", legend_title="learned")
    return fig


# ----------------------------------------------------------------------------- training trace
@dataclass
class NeighbourTrace:
    """Nearest vocabulary tokens of every virtual token at each saved checkpoint."""

    labels: list[str]  # "step 40" for trainer checkpoints, else the directory name
    steps: list[int | None]
    paths: list[Path]
    neighbours: list[list[dict[str, Any]]]  # per checkpoint: nearest_tokens rows

    def rows(self) -> list[dict[str, Any]]:
        """Long format: one dict per checkpoint and virtual token with its top-1 neighbour."""
        return [{"checkpoint": label, "step": step, "index": row["index"], "token": row["neighbours"][0][0],
                 "cosine": row["neighbours"][0][1], "norm": row["norm"]}
                for label, step, rows in zip(self.labels, self.steps, self.neighbours) for row in rows]


def _checkpoint_dirs(checkpoint_dirs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """A list as given; one path: itself if it holds an adapter, else its checkpoint-N/ children."""
    if not isinstance(checkpoint_dirs, (str, os.PathLike)):
        return [Path(p) for p in checkpoint_dirs]
    root = Path(checkpoint_dirs)
    if any((folder / ADAPTER_FILE).is_file() for folder in (root, root / hybrid.PROMPT_DIR)):
        return [root]
    found = [p for p in root.glob("checkpoint-*") if p.is_dir()]
    if not found:
        raise AdapterError(f"{root} holds no adapter and no checkpoint-* directories; pass the training output "
                           "directory, one checkpoint directory, or a list of them")
    return found


def _adapter_file(directory: Path) -> Path:
    """The prompt weights of a trainer checkpoint, a PEFT adapter, or a saved hybrid (its prompt/ part)."""
    for folder in (directory, directory / hybrid.PROMPT_DIR):
        if (folder / ADAPTER_FILE).is_file():
            return folder
    raise AdapterError(f"{directory} has no {ADAPTER_FILE}; pass checkpoint directories written by training "
                       "(checkpoint-N/) or adapters written by save_adapter/save_pretrained")


def _read_prompt(directory: Path) -> torch.Tensor:
    folder = _adapter_file(directory)
    config_path = folder / "adapter_config.json"
    try:
        peft_type = json.loads(config_path.read_text(encoding="utf-8"))["peft_type"]
        tensors = load_file(str(folder / ADAPTER_FILE))
    except (OSError, KeyError, json.JSONDecodeError, SafetensorError) as exc:
        raise AdapterError(f"cannot read the adapter in {folder} ({exc}); the checkpoint may be incomplete, "
                           "pick a finished one") from None
    if peft_type not in {t.value for t in _EMBEDDING_TYPES}:
        raise ConfigError(f"{folder} holds a {peft_type} adapter, which has no soft prompt in the input embedding "
                          "space; neighbours_at_checkpoints needs PROMPT_TUNING, P_TUNING or the prompt+lora "
                          "hybrid (for PREFIX_TUNING load it and use prefix_summary)")
    if PROMPT_KEY not in tensors:
        raise AdapterError(f"{folder / ADAPTER_FILE} has no {PROMPT_KEY!r} tensor; it was not written by PEFT "
                           "prompt learning, pick a checkpoint of a prompt-tuning run")
    return tensors[PROMPT_KEY]


def _step_of(directory: Path) -> int | None:
    match = _CHECKPOINT_STEP.search(directory.name)
    return int(match.group(1)) if match else None


def neighbours_at_checkpoints(base_model, tokenizer, checkpoint_dirs, k: int = 3) -> NeighbourTrace:
    """Per checkpoint, the k nearest vocabulary tokens of each virtual token.

    ``checkpoint_dirs``: a list of checkpoint/adapter directories, or a training output directory
    (its checkpoint-N/ children). The prompt tensor is read straight from each adapter's
    safetensors file; no model is rebuilt. Trainer checkpoints come out sorted by step.
    """
    dirs = _checkpoint_dirs(checkpoint_dirs)
    if not dirs:
        raise AdapterError("no checkpoint directories given; pass a list of checkpoint-N/ directories")
    steps = [_step_of(d) for d in dirs]
    if all(s is not None for s in steps):
        dirs, steps = [list(t) for t in zip(*sorted(zip(dirs, steps), key=lambda pair: pair[1]))]
    embedding_dim = _input_embedding(base_model).weight.shape[1]
    neighbours = []
    for directory in dirs:
        prompt = _read_prompt(directory)
        if prompt.shape[1] != embedding_dim:
            raise AdapterError(f"{directory} holds a prompt of width {prompt.shape[1]} but the base model's embeddings "
                               f"have {embedding_dim}; pass the base model the adapter was trained on")
        neighbours.append(nearest_tokens(base_model, tokenizer, k=k, prompt=prompt))
    if len({len(rows) for rows in neighbours}) > 1:
        raise AdapterError(f"the checkpoints hold prompts of different lengths ({[len(r) for r in neighbours]} "
                           "virtual tokens); trace the checkpoints of one run at a time")
    labels = [f"step {s}" if s is not None else d.name for d, s in zip(dirs, steps)]
    return NeighbourTrace(labels=labels, steps=steps, paths=dirs, neighbours=neighbours)


def trace_figure(trace: NeighbourTrace) -> go.Figure:
    """Checkpoints on x, virtual tokens on y; each cell shows the top-1 word, coloured by its cosine."""
    n_virtual = len(trace.neighbours[0])
    top1 = [[rows[i]["neighbours"][0] for rows in trace.neighbours] for i in range(n_virtual)]
    cosine = [[score for _, score in row] for row in top1]
    words = [[_shown(token) for token, _ in row] for row in top1]
    fig = go.Figure(go.Heatmap(
        z=cosine, x=trace.labels, y=[f"v{i}" for i in range(n_virtual)], text=words, texttemplate="%{text}",
        colorscale="Blues", zmin=0.0, zmax=1.0, colorbar={"title": {"text": "cosine to nearest word"}},
        hovertemplate="%{y} at %{x}: nearest %{text} (cosine %{z:.3f})<extra></extra>"))
    fig.update_layout(title="Nearest vocabulary token of each virtual token during training",
                      xaxis_title="checkpoint (training step)", yaxis_title="virtual token",
                      yaxis={"autorange": "reversed"})
    _caveat(fig)
    return fig
