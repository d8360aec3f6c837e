"""Does the learned prompt do what its neighbours suggest? Discretise it and score it; ablate its tokens.

Nearest words are correlation: a soft prompt can sit next to arbitrary text and still work
(Khashabi et al., "Prompt Waywardness", NAACL 2022). Two interventions test it instead:

* **discretise**: replace every virtual token by its nearest vocabulary token and run that *hard*
  prompt on the task. If the nearest-word text scored like the soft prompt, the words would be a
  faithful reading of it; the gap between the two is how unfaithful they are.
* **ablate**: replace one virtual token at a time (by the mean vocabulary embedding, by its initial
  value, or by zeros) and measure the task score and loss it costs: which tokens the prompt relies on.

Both run the model exactly as it is served: the replacement prompt goes where PEFT puts the learned
one (``get_prompt``), so label-word scoring, its shared-prefix cache and generation are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from ..comparison import columns, compare
from ..errors import ConfigError
from ..evaluation import EvalResult, evaluate
from ..model_facts import base_of, device_of
from ..progress import bar
from ..uncertainty import accuracy_differences
from .neighbours import _input_embedding, _search, shown, token_texts
from .prompts import initial_prompt, inference, require_embedding_prompt, soft_prompt

REPLACEMENTS = ("mean", "initial", "zero")


@contextmanager
def replaced_prompt(model, prompt: torch.Tensor) -> Iterator[None]:
    """Within the block, ``model`` puts ``prompt`` [n_virtual, dim] in front of every input instead of its own.

    Everything that runs the model (evaluate, generate, training excluded) sees the replacement; the
    learned prompt is untouched and back in place after the block, also when it raises.

    Args:
        model: a prompt-tuning, P-tuning or prompt+LoRA PeftModel.
        prompt: the virtual-token embeddings to use, shaped like ``soft_prompt(model)``.

    Returns:
        A context manager; nothing is bound by ``as``.

    Example:
        >>> import torch
        >>> from pbft_widgets import apply_method, load_model
        >>> from pbft_widgets.inspection import soft_prompt
        >>> from pbft_widgets.inspection.causal import replaced_prompt
        >>> lm = load_model()
        >>> model = apply_method(lm.model, "prompt-tuning", num_virtual_tokens=4).model
        >>> with replaced_prompt(model, torch.zeros(4, 576)):
        ...     bool(soft_prompt(model).abs().sum() == 0)
        True
    """
    learned = soft_prompt(model)
    if tuple(prompt.shape) != tuple(learned.shape):
        raise ConfigError(f"the replacement prompt is {tuple(prompt.shape)} but the model's is "
                          f"{tuple(learned.shape)}; pass one vector per virtual token in the model's embedding size")
    fixed = prompt.detach().to(learned.device, learned.dtype)

    def get_prompt(batch_size: int, task_ids: Any = None, max_cache_len: Any = None) -> torch.Tensor:
        return fixed.unsqueeze(0).expand(batch_size, -1, -1)

    model.get_prompt = get_prompt  # an instance attribute shadows PEFT's method for this model only
    try:
        yield
    finally:
        del model.get_prompt


@dataclass(frozen=True)
class HardPrompt:
    """A soft prompt read as text: each virtual token's nearest vocabulary token.

    Attributes:
        ids: one token id per virtual token.
        tokens: each token's text, whitespace made visible.
        text: the ids decoded together (what a user would paste as an instruction).
        similarity: "cosine" or "dot", how "nearest" was measured.
    """

    ids: list[int]
    tokens: list[str]
    text: str
    similarity: str


def discretise(model, tokenizer, *, similarity: str = "cosine", prompt: torch.Tensor | None = None) -> HardPrompt:
    """Each virtual token replaced by its nearest vocabulary token.

    Args:
        model: a model with a soft prompt in its input (prompt tuning, P-tuning, prompt+LoRA).
        tokenizer: its tokenizer (the vocabulary searched).
        similarity: "cosine" (the neighbour views' measure) or "dot" (also rewards norm).
        prompt: search this prompt (e.g. a snapshot) instead of the model's current one.

    Returns:
        A `HardPrompt`.

    Example:
        >>> from pbft_widgets import apply_method, load_model
        >>> from pbft_widgets.inspection.causal import discretise
        >>> lm = load_model()
        >>> model = apply_method(lm.model, "prompt-tuning", tokenizer=lm.tokenizer, num_virtual_tokens=4,
        ...                      init="text", init_text="Classify the clause").model
        >>> discretise(model, lm.tokenizer).text  # a text-initialised prompt is its text, before training
        'Classify the clause'
    """
    vectors = soft_prompt(model) if prompt is None else prompt
    ids = _search(model, tokenizer, vectors, 1, similarity)[1][:, 0].tolist()
    return HardPrompt(ids=ids, tokens=[shown(t) for t in token_texts(tokenizer, ids)], text=tokenizer.decode(ids),
                      similarity=similarity)


def hard_prompt_embeddings(model, ids: Sequence[int]) -> torch.Tensor:
    """The input embeddings of ``ids``: running them as a soft prompt is running the text itself."""
    weight = _input_embedding(model).weight
    return weight.detach()[torch.tensor(list(ids), device=weight.device)]


def fluency(model, tokenizer, text_or_ids: str | Sequence[int]) -> float:
    """Mean log-probability per token (nats) of a text under the model without its prompt.

    Teacher-forced: token k is scored given tokens 1..k-1 (the first token is given). Natural
    instructions score around -2 to -4 on small models; nearest-token readings of soft prompts are
    usually far lower, which is one sign that they are not what the prompt "means".
    """
    ids = tokenizer(text_or_ids, add_special_tokens=False)["input_ids"] if isinstance(text_or_ids, str) else list(text_or_ids)
    if len(ids) < 2:
        raise ConfigError(f"fluency needs a text of at least two tokens; got {len(ids)}")
    base = base_of(model)
    tokens = torch.tensor([ids], device=device_of(base))
    with inference(base):
        logits = base(input_ids=tokens).logits[0, :-1].float()
    return float(logits.log_softmax(-1).gather(-1, tokens[0, 1:, None]).mean())


@dataclass
class Faithfulness:
    """The learned prompt against its nearest-token readings and a hand-written instruction.

    Attributes:
        runs: name -> evaluation on the same rows, the soft prompt first (``compare(runs)`` gives
            paired-bootstrap intervals of every score and of its difference to the soft prompt).
        prompts: name -> the `HardPrompt` behind each nearest-token run.
        fluency: name -> mean log-prob per token under the base model (nearest-token texts and the
            hand-written instruction).
    """

    runs: dict[str, EvalResult]
    prompts: dict[str, HardPrompt]
    fluency: dict[str, float]

    def table(self, metric: str = "accuracy") -> list[dict[str, Any]]:
        """One row per run: the text run, ``metric`` and its difference to the soft prompt with 95 % intervals, fluency."""
        texts = {name: prompt.text for name, prompt in self.prompts.items()}
        return [{"prompt": row["name"], "text": texts.get(row["name"], "—"), **columns(row, metric, f"delta_{metric}"),
                 "log-prob / token": self.fluency.get(row["name"])} for row in compare(self.runs)]


def faithfulness(model, tokenizer, template, rows: Sequence[Mapping[str, Any]], *, instruction_template=None,
                 similarities: Sequence[str] = ("cosine", "dot"), batch_size: int = 8,
                 progress: bool | None = None) -> Faithfulness:
    """Score the soft prompt, its nearest-token text (one run per similarity) and a hand-written instruction.

    Args:
        model: a trained prompt-tuning, P-tuning or prompt+LoRA model.
        tokenizer: its tokenizer.
        template: the classification template the prompt was trained with (with its verbalizer).
        rows: the evaluation rows (validation or test), labels in ``template.target_field``.
        instruction_template: a template with a hand-written ``instruction``, run on the model
            without its prompt; leave out to skip that row.
        similarities: which nearest-token readings to score ("cosine", "dot").
        batch_size: rows per forward pass.
        progress: a bar over the evaluations (default: shown unless ``CI`` or ``PBFT_PROGRESS=0``).

    Returns:
        A `Faithfulness`; ``.table()`` is ready for ``to_markdown``.

    Example:
        >>> from pbft_widgets import PromptTemplate, Verbalizer, apply_method, load_model
        >>> from pbft_widgets.inspection import faithfulness
        >>> lm = load_model()
        >>> template = PromptTemplate(input_template="Review: {text}", output_indicator="Sentiment:", style="cloze",
        ...                           verbalizer=Verbalizer({"pos": "positive", "neg": "negative"}))
        >>> model = apply_method(lm.model, "prompt-tuning", tokenizer=lm.tokenizer, num_virtual_tokens=4).model
        >>> rows = [{"text": "a wonderful film", "label": "pos"}, {"text": "dull and far too long", "label": "neg"}]
        >>> found = faithfulness(model, lm.tokenizer, template, rows,
        ...                      instruction_template=template.with_changes(instruction="Positive or negative?"))
        >>> [row["prompt"] for row in found.table()]
        ['soft prompt (learned)', 'nearest tokens (cosine)', 'nearest tokens (dot)', 'hand-written instruction']
    """
    require_embedding_prompt(model, "faithfulness")
    rows = list(rows)

    evaluations = 1 + len(similarities) + (instruction_template is not None)
    with bar(evaluations, "faithfulness", "evaluation", progress) as counter:

        def run(name: str, shown_template=None, on=model) -> EvalResult:
            result = evaluate(on, tokenizer, rows, template=shown_template or template, task_kind="classification",
                              batch_size=batch_size, name=name)
            counter.update(1)
            return result

        runs = {"soft prompt (learned)": run("soft prompt (learned)")}
        prompts, scores = {}, {}
        for similarity in similarities:
            name = f"nearest tokens ({similarity})"
            prompts[name] = discretise(model, tokenizer, similarity=similarity)
            with replaced_prompt(model, hard_prompt_embeddings(model, prompts[name].ids)):
                runs[name] = run(name)
            if len(prompts[name].ids) > 1:
                scores[name] = fluency(model, tokenizer, prompts[name].ids)
        if instruction_template is not None:
            name = "hand-written instruction"
            runs[name] = run(name, instruction_template, base_of(model))
            if instruction_template.instruction:
                prompts[name] = HardPrompt([], [], instruction_template.instruction, "hand-written")
                scores[name] = fluency(model, tokenizer, instruction_template.instruction)
    return Faithfulness(runs, prompts, scores)


def ablation_vector(model, kind: str, index: int, initial: torch.Tensor | None = None) -> torch.Tensor:
    """What virtual token ``index`` becomes when ablated by ``kind`` ("mean", "initial" or "zero")."""
    learned = soft_prompt(model)
    if kind == "mean":
        return _input_embedding(model).weight.detach().float().mean(0).to(learned.dtype)
    if kind == "zero":
        return torch.zeros_like(learned[index])
    if kind == "initial":
        start = initial_prompt(model) if initial is None else initial
        return start[index].to(learned.device, learned.dtype)
    raise ConfigError(f"ablation {kind!r}; use one of {', '.join(map(repr, REPLACEMENTS))}")


def ablate_tokens(model, tokenizer, template, rows: Sequence[Mapping[str, Any]], *,
                  replacements: Sequence[str] = ("mean", "zero"), initial: torch.Tensor | None = None,
                  tokens: Sequence[int] | None = None, batch_size: int = 8, seed: int = 0,
                  progress: bool | None = None) -> list[dict[str, Any]]:
    """Replace one virtual token at a time and measure what the task loses.

    Args:
        model: a trained prompt-tuning, P-tuning or prompt+LoRA model.
        tokenizer: its tokenizer.
        template: the classification template the prompt was trained with (label-word scoring).
        rows: the evaluation rows.
        replacements: any of "mean" (the mean vocabulary embedding: an average word), "initial"
            (where the token started: needs ``initial`` or an earlier ``snapshot_prompt(model)``),
            "zero".
        initial: the prompt before training, for "initial" (e.g. saved with ``snapshot_prompt``).
        tokens: which virtual tokens to ablate (default: all).
        batch_size: rows per forward pass.
        seed: seeds the paired bootstrap of the differences.
        progress: a bar over the evaluations (default: shown unless ``CI`` or ``PBFT_PROGRESS=0``).

    Returns:
        One dict per (token, replacement): ``token``, ``replacement``, ``neighbour`` (its nearest
        word), ``accuracy``, ``delta_accuracy`` with 95 % paired-bootstrap bounds
        (``delta_accuracy_low``/``_high``, over the rows), ``nll`` and ``delta_nll`` (the label-set
        cross-entropy, the loss label-word scoring reads), in ``tokens`` order.

    Example:
        >>> from pbft_widgets import PromptTemplate, Verbalizer, apply_method, load_model
        >>> from pbft_widgets.inspection import ablate_tokens, ablation_figure
        >>> lm = load_model()
        >>> template = PromptTemplate(input_template="Review: {text}", output_indicator="Sentiment:", style="cloze",
        ...                           verbalizer=Verbalizer({"pos": "positive", "neg": "negative"}))
        >>> model = apply_method(lm.model, "prompt-tuning", tokenizer=lm.tokenizer, num_virtual_tokens=2).model
        >>> rows = [{"text": "a wonderful film", "label": "pos"}, {"text": "dull and far too long", "label": "neg"}]
        >>> table = ablate_tokens(model, lm.tokenizer, template, rows, replacements=["mean", "zero"])
        >>> [(row["token"], row["replacement"]) for row in table]
        [(0, 'mean'), (0, 'zero'), (1, 'mean'), (1, 'zero')]
        >>> fig = ablation_figure(table)  # bars per token, one colour per replacement
    """
    require_embedding_prompt(model, "ablate_tokens")
    for kind in replacements:
        if kind not in REPLACEMENTS:
            raise ConfigError(f"ablation {kind!r}; use one of {', '.join(map(repr, REPLACEMENTS))}")
    learned = soft_prompt(model)
    indices = list(range(len(learned))) if tokens is None else [int(i) for i in tokens]
    if bad := [i for i in indices if not 0 <= i < len(learned)]:
        raise ConfigError(f"tokens {bad} do not exist; the prompt has virtual tokens 0..{len(learned) - 1}")
    if "initial" in replacements:
        initial = initial_prompt(model) if initial is None else initial  # fails early, naming snapshot_prompt
    rows = list(rows)
    neighbours = discretise(model, tokenizer).tokens
    with bar(1 + len(replacements) * len(indices), "ablating tokens", "evaluation", progress) as counter:
        reference = evaluate(model, tokenizer, rows, template=template, task_kind="classification",
                             batch_size=batch_size, name="learned")
        counter.update(1)
        measured = {}
        for kind in replacements:
            for index in indices:
                ablated = learned.clone()
                ablated[index] = ablation_vector(model, kind, index, initial)
                with replaced_prompt(model, ablated):
                    measured[kind, index] = evaluate(model, tokenizer, rows, template=template,
                                                     task_kind="classification", batch_size=batch_size,
                                                     name=f"token {index} -> {kind}")
                counter.update(1)
    table = []
    for kind in replacements:
        runs = [measured[kind, index] for index in indices]
        for index, run, (low, high) in zip(indices, runs, accuracy_differences(reference, runs, seed=seed)):
            table.append({"token": index, "replacement": kind, "neighbour": neighbours[index],
                          "accuracy": run.scores["accuracy"],
                          "delta_accuracy": run.scores["accuracy"] - reference.scores["accuracy"],
                          "delta_accuracy_low": low, "delta_accuracy_high": high, "nll": run.scores["nll"],
                          "delta_nll": run.scores["nll"] - reference.scores["nll"]})
    return sorted(table, key=lambda row: (indices.index(row["token"]), replacements.index(row["replacement"])))
