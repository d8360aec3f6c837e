"""Reuse and combine trained soft prompts: transfer one to a new task, average prompts, ensemble them.

* :func:`start_from` is SPoT-style transfer (Vu et al., ACL 2022): a new task's soft prompt starts
  where a prompt trained on a related task ended, instead of at the embeddings of some text.
* :func:`prompt_soup` averages K prompts' embeddings into one prompt (one forward pass to serve,
  like a model soup); :func:`ensemble` averages K prompts' label probabilities (K passes). Whether
  the soup keeps what the ensemble gains is an empirical question; 05_method_study measures it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .errors import ConfigError, DataError
from .inspection.prompts import prompt_spec, soft_prompt
from .inspection.trace import read_prompt
from .metrics import compute_metrics
from .probability_metrics import probability_scores

if TYPE_CHECKING:
    from .evaluation import EvalResult


def start_from(model: Any, source: Any) -> torch.Tensor:
    """Overwrite `model`'s soft prompt with a trained one (before training it on a new task).

    Args:
        model: a prompt-tuning (or prompt+lora) PeftModel, e.g. ``apply_method(...).model``.
        source: the prompt to start from: a tensor ``[num_virtual_tokens, hidden]``, a PeftModel with a
            soft prompt, or an adapter or checkpoint folder holding one.

    Returns:
        The prompt now in `model` (a copy), for ``drift`` and the neighbour tools.

    Example:
        >>> import torch
        >>> from pbft_widgets import apply_method, load_model
        >>> from pbft_widgets.composition import start_from
        >>> lm = load_model()
        >>> setup = apply_method(lm.model, "prompt-tuning", tokenizer=lm.tokenizer, num_virtual_tokens=4)
        >>> start_from(setup.model, torch.zeros(4, 576)).abs().sum().item()
        0.0
    """
    spec = prompt_spec(model)
    if not spec.inserts_input_tokens or spec.name == "p-tuning":
        raise ConfigError(f"start_from writes a prompt-tuning embedding table, and this model's prompt is "
                          f"{spec.name} ({'produced by an encoder' if spec.name == 'p-tuning' else 'keys and values'}); "
                          "transfer with method='prompt-tuning' (or 'prompt+lora') on both tasks")
    prompt = _prompt_of(source)
    table = model.prompt_encoder[model.active_adapter].embedding.weight
    if tuple(prompt.shape) != tuple(table.shape):
        raise ConfigError(f"the source prompt is {tuple(prompt.shape)} (virtual tokens, hidden size) and this "
                          f"model's is {tuple(table.shape)}; apply_method(..., num_virtual_tokens={prompt.shape[0]}) "
                          "on the same base model as the source")
    with torch.no_grad():
        table.copy_(prompt.to(device=table.device, dtype=table.dtype))
    return table.detach().clone()


def prompt_soup(prompts: Sequence[torch.Tensor]) -> torch.Tensor:
    """The element-wise mean of K soft prompts of one shape (load it into a model with `start_from`).

    Args:
        prompts: tensors ``[num_virtual_tokens, hidden]``, e.g. ``soft_prompt(model)`` of K seeds.

    Returns:
        Their mean, in float32.

    Example:
        >>> import torch
        >>> from pbft_widgets.composition import prompt_soup
        >>> prompt_soup([torch.zeros(2, 3), torch.ones(2, 3)]).tolist()
        [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]
    """
    prompts = [_prompt_of(prompt) for prompt in prompts]
    if len(prompts) < 2:
        raise ConfigError(f"a soup averages at least two prompts; got {len(prompts)}")
    shapes = {tuple(prompt.shape) for prompt in prompts}
    if len(shapes) > 1:
        raise ConfigError(f"prompts of different shapes {sorted(shapes)} cannot be averaged; train them with the "
                          "same num_virtual_tokens on the same base model")
    return torch.stack([prompt.float() for prompt in prompts]).mean(dim=0)


def ensemble(results: Sequence[EvalResult], *, name: str = "ensemble") -> EvalResult:
    """Average the label probabilities of K evaluations of the same rows and score the average.

    Args:
        results: label-word (or head) evaluations of the same rows with the same labels, e.g. one
            per prompt trained with a different seed.
        name: the new result's name.

    Returns:
        An `EvalResult` whose probabilities are the mean of the K, its predictions their argmax, its
        scores recomputed (accuracy, macro-F1, ECE, ... as `evaluate` reports them).

    Example:
        >>> from pbft_widgets.composition import ensemble
        >>> from pbft_widgets.evaluation import EvalResult
        >>> a = EvalResult("a", "classification", {}, ["x"], ["x"], ["row"], 1.0, probabilities=[[0.6, 0.4]],
        ...                labels=["x", "y"])
        >>> b = EvalResult("b", "classification", {}, ["y"], ["x"], ["row"], 1.0, probabilities=[[0.3, 0.7]],
        ...                labels=["x", "y"])
        >>> ensemble([a, b]).predictions
        ['y']
    """
    from .evaluation import EvalResult

    results = list(results)
    if len(results) < 2:
        raise ConfigError(f"an ensemble combines at least two evaluations; got {len(results)}")
    first = results[0]
    for result in results:
        if result.probabilities is None:
            raise DataError(f"{result.name!r} has no label probabilities (it was scored by generation); evaluate "
                            "with label-word scoring (the default for a template with a verbalizer)")
        if result.labels != first.labels or result.references != first.references or result.inputs != first.inputs:
            raise DataError(f"{result.name!r} and {first.name!r} were not evaluated on the same rows with the same "
                            "labels; evaluate every member on one list of rows with one verbalizer")
    probabilities = np.mean([np.asarray(result.probabilities) for result in results], axis=0)
    predictions = [first.labels[i] for i in probabilities.argmax(axis=1)]
    options = dict(first.metric_options or {})
    scores = compute_metrics(first.task_kind, first.references, predictions, **options)
    scores.update(probability_scores(probabilities, first.references, first.labels))
    return EvalResult(name=name, task_kind=first.task_kind, scores=scores, predictions=predictions,
                      references=list(first.references), inputs=list(first.inputs),
                      seconds=sum(result.seconds for result in results), probabilities=probabilities.tolist(),
                      labels=list(first.labels), scoring=first.scoring, metric_options=options)


def _prompt_of(source: Any) -> torch.Tensor:
    if isinstance(source, torch.Tensor):
        if source.dim() != 2:
            raise ConfigError(f"a soft prompt is a 2-D tensor [num_virtual_tokens, hidden]; got shape "
                              f"{tuple(source.shape)}")
        return source.detach().cpu()
    if isinstance(source, (str, os.PathLike)):
        return read_prompt(Path(source))
    return soft_prompt(source).cpu()
