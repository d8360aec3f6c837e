"""Look inside a learned prompt: vocabulary neighbours, attention to virtual tokens, prefix norms.

Computations return data (lists of dicts, dataclasses) and live in one module each: ``prompts``
(what the model holds), ``neighbours``, ``attention``, ``trace`` (checkpoints over time), ``causal``
(interventions: the prompt discretised to its nearest words and scored, its tokens ablated), ``layers``
(a prefix's layers ablated one at a time); their
plotly figures are in ``figures``; widgets wrap both. Everything works on PEFT objects (prompt
tuning, P-tuning, prefix tuning, and the prompt+LoRA hybrid, which is a prompt-tuning PeftModel),
so models built with plain ``peft`` work too.

Nearest vocabulary tokens are a hint, not a translation: soft prompts are "wayward", they can
perform well while their nearest words mean nothing. Every neighbour figure says so.
"""

from .attention import AttentionReport, prompt_attention
from .causal import (Faithfulness, HardPrompt, ablate_tokens, discretise, faithfulness, fluency, hard_prompt_embeddings,
                     replaced_prompt)
from .figures import (ablation_figure, attention_share_figure, layer_ablation_figure, neighbour_figure, prefix_figure,
                      token_attention_figure, trace_figure)
from .layers import LAYER_REPLACEMENTS, ablate_layers, completion_losses, replaced_prefix_layer
from .neighbours import CAVEAT, NeighbourMap, drift, nearest_tokens, neighbour_map
from .prompts import initial_prompt, prefix_summary, prompt_kind, prompt_spec, snapshot_prompt, soft_prompt
from .trace import NeighbourTrace, neighbours_at_checkpoints

__all__ = [
    "CAVEAT", "LAYER_REPLACEMENTS", "AttentionReport", "Faithfulness", "HardPrompt", "NeighbourMap", "NeighbourTrace",
    "ablate_layers", "ablate_tokens", "ablation_figure", "attention_share_figure", "completion_losses", "discretise",
    "drift", "faithfulness", "fluency", "hard_prompt_embeddings", "initial_prompt", "layer_ablation_figure",
    "nearest_tokens", "neighbour_figure", "neighbour_map", "neighbours_at_checkpoints", "prefix_figure",
    "prefix_summary", "prompt_attention", "prompt_kind", "prompt_spec", "replaced_prefix_layer", "replaced_prompt",
    "snapshot_prompt", "soft_prompt", "token_attention_figure", "trace_figure",
]
