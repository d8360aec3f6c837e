"""AdapterBank: one base model in memory, many task adapters, switched per request or mixed in one batch.

LoRA adapters live in one PeftModel and are switched with PEFT's multi-adapter API
(load_adapter / set_adapter). Prompt-learning adapters (prompt tuning, prefix tuning, P-tuning)
cannot join that PeftModel: PEFT allows one kind of method per PeftModel, and a prompt adapter
changes the *inputs* (virtual tokens, KV prefixes) rather than layers. Each gets its own thin
PeftModel wrapper around the SAME base model object; only its prompt encoder is new memory. The
prompt+LoRA hybrid uses both: its LoRA weights join the LoRA PeftModel, its prompt gets a wrapper.

Before every request the bank sets the whole adapter state explicitly (LoRA layers on with the
task's adapter or off, classification-head copies switched to the task's or the base's), so
switching A -> B -> A gives A's exact outputs.

Requests for different tasks can also share one batch (:mod:`pbft_widgets.mixing`): each row gets
its task's soft prompt in front of its text and PEFT routes it to its task's LoRA weights, so a
stream of requests for sixteen tasks runs in full batches instead of one switch per request.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from peft.utils import ModulesToSaveWrapper

from . import hybrid
from .adapters import check_adapter
from .errors import AdapterError
from .generation import generate_texts, predict_tags
from .mixing import BASE_ROUTE, MixedRows, soft_prompt
from .scoring import LabelScores, head_scores, label_word_ids, score_label_words
from .model_facts import carries_adapter, infer_task
from .registry import MethodSpec, spec_of


@dataclass
class _Task:
    name: str
    spec: MethodSpec
    path: Path
    model: Any  # what runs the task: the LoRA PeftModel or the task's prompt wrapper
    prompt: torch.Tensor | None = None  # its virtual tokens' embeddings, for mixed batches (prompt methods)


class AdapterBank:
    """Serve many task adapters of one base model held once in memory.

    LoRA tasks share one PeftModel (switched with PEFT's multi-adapter API); prompt tasks get a thin
    wrapper around the same base; the whole adapter state is set before each request, so switching
    A -> B -> A gives A's exact answers. ``generate_many`` and ``predict_many`` serve requests for
    different tasks in shared batches (each row with its own soft prompt and LoRA weights), with
    the answers each task gives alone. Generation and prediction go through the same engine as
    `evaluate()`, so a task answers exactly what it was scored on.

    Args:
        model (`transformers.PreTrainedModel`):
            The plain base model the adapters were trained on (checked for each adapter added).
        tokenizer:
            Its tokenizer.
        max_new_tokens (`int`, defaults to 32):
            Default answer budget of `generate` (per call: `max_new_tokens=`).
        batch_size (`int`, defaults to 8):
            Prompts per forward pass.

    Example:

    ```py
    >>> from pbft_widgets import AdapterBank, apply_method, load_model, save_adapter
    >>> path = save_adapter(apply_method(load_model().model, "prompt-tuning", num_virtual_tokens=8), "adapters/task-a")
    >>> lm = load_model()
    >>> bank = AdapterBank(lm.model, lm.tokenizer, max_new_tokens=8)
    >>> bank.add("task-a", path)
    >>> answers = bank.generate("task-a", ["Review: a fine film. Sentiment:", "Review: dull. Sentiment:"])
    >>> len(answers), bank.describe()[0]["method"]
    (2, 'prompt-tuning')
    >>> mixed = bank.generate_many([("task-a", "Review: a fine film. Sentiment:"), (None, "Hello")])  # one batch
    >>> mixed[0] == answers[0]
    True

    ```

    `task=None` anywhere means the base model without adapters.
    """

    def __init__(self, model, tokenizer, *, max_new_tokens: int = 32, batch_size: int = 8) -> None:
        if carries_adapter(model):
            raise AdapterError("AdapterBank needs the plain base model; pass a freshly loaded one "
                               "(load_model(...).model), not a PeftModel")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.task_type = infer_task(model) or "causal-lm"
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self._tasks: dict[str, _Task] = {}
        self._lora: PeftModel | None = None

    # ------------------------------------------------------------------------- adapters
    @property
    def tasks(self) -> list[str]:
        """Names of the loaded tasks, in the order they were added."""
        return list(self._tasks)

    def describe(self) -> list[dict[str, str]]:
        """One row per task: name, method and where it was loaded from."""
        return [{"task": t.name, "method": t.spec.name, "path": str(t.path)} for t in self._tasks.values()]

    def add(self, task: str, path: str | os.PathLike) -> None:
        """Load the adapter at ``path`` under the name ``task`` (checked against this base model)."""
        if not isinstance(task, str) or not task:
            raise AdapterError(f"task name must be a non-empty string, got {task!r}")
        if task in self._tasks:
            raise AdapterError(f"task {task!r} is already in the bank; choose another name")
        directory = Path(path).expanduser()
        method, task_type = check_adapter(self.model, directory)
        spec = spec_of(method)
        if task_type != self.task_type:
            raise AdapterError(f"adapter {directory} is for {task_type} but this bank serves a {self.task_type} "
                               "model; put it in a bank built on a matching base model")
        if spec.combines_prompt_and_lora:
            self._add_lora(task, directory / hybrid.LORA_DIR)
            runner = PeftModel.from_pretrained(self.model, str(directory / hybrid.PROMPT_DIR), adapter_name=task)
        elif spec.has_lora:
            runner = self._add_lora(task, directory)
        else:
            runner = PeftModel.from_pretrained(self.model, str(directory), adapter_name=task)
        runner.eval()
        prompt = soft_prompt(runner) if spec.inserts_input_tokens else None
        self._tasks[task] = _Task(name=task, spec=spec, path=directory, model=runner, prompt=prompt)

    def _add_lora(self, task: str, directory: Path) -> PeftModel:
        if self._lora is None:
            self._lora = PeftModel.from_pretrained(self.model, str(directory), adapter_name=task)
        else:
            self._lora.load_adapter(str(directory), adapter_name=task)
        return self._lora

    # ------------------------------------------------------------------------- inference
    def generate(self, task: str | None, prompts: str | Sequence[str], **gen_kwargs) -> str | list[str]:
        """Completions (new text only) of ``prompts`` with ``task``'s adapter; a str in gives a str out.

        The same engine as ``evaluate()`` (:func:`pbft_widgets.generation.generate_texts`), so a served
        task answers what it was scored on. ``max_new_tokens`` and other generate() options may be passed.
        """
        if self.task_type != "causal-lm":
            raise AdapterError(f"this bank serves a {self.task_type} model; use bank.predict(task, texts)")
        single = isinstance(prompts, str)
        prompts = [prompts] if single else list(prompts)
        max_new_tokens = gen_kwargs.pop("max_new_tokens", self.max_new_tokens)
        entry = self._entry(task)
        with self._active(entry) as runner:
            outputs = generate_texts(runner, self.tokenizer, prompts, batch_size=self.batch_size,
                                     max_new_tokens=max_new_tokens, generation_kwargs=gen_kwargs)
        return outputs[0] if single else outputs

    def generate_many(self, requests: Sequence[tuple[str | None, str]], *, mixed: bool = True,
                      **gen_kwargs) -> list[str]:
        """Answer ``(task, prompt)`` requests for any tasks, in order.

        With ``mixed=True`` (the default) rows of different tasks share each batch: one forward pass
        per batch whatever the tasks, each row with its own soft prompt and LoRA weights, answers
        equal to serving each task alone (``generate``). ``mixed=False`` groups the requests per task
        instead (one adapter switch per task), which also serves prefix-tuning tasks.

        Args:
            requests: ``(task, prompt)`` pairs; ``task=None`` is the base model, prompts are rendered.
            mixed: share batches between tasks (prefix-tuning tasks refuse; pass ``False`` for them).
            **gen_kwargs: ``max_new_tokens`` and other ``generate()`` options.

        Returns:
            One answer (new text only) per request, in the requests' order.
        """
        if not mixed:
            outputs: list[str] = [""] * len(requests)
            for task in dict.fromkeys(task for task, _ in requests):
                indices = [i for i, (t, _) in enumerate(requests) if t == task]
                for i, text in zip(indices, self.generate(task, [requests[i][1] for i in indices], **gen_kwargs)):
                    outputs[i] = text
            return outputs
        if self.task_type != "causal-lm":
            raise AdapterError(f"this bank serves a {self.task_type} model; use bank.predict(task, texts)")
        max_new_tokens = gen_kwargs.pop("max_new_tokens", self.max_new_tokens)
        with self._mixed([task for task, _ in requests]) as (runner, mix):
            return generate_texts(runner, self.tokenizer, [prompt for _, prompt in requests],
                                  batch_size=self.batch_size, max_new_tokens=max_new_tokens,
                                  generation_kwargs=gen_kwargs, mix=mix)

    def predict_many(self, requests: Sequence[tuple[str | None, Any]], *, template: Any,
                     probabilities: bool = False) -> list:
        """Label-word predictions for ``(task, row)`` requests of any tasks, rows of all tasks in shared batches.

        The mixed-batch counterpart of ``predict`` for a causal-LM bank: ``template`` is the
        PromptTemplate with the verbalizer (one for all tasks), or a mapping task -> template when
        tasks use different label sets (rows are then scored per template, tasks mixed within each).
        Rows may be dicts (rendered with their task's template) or already rendered prompts.

        Args:
            requests: ``(task, row)`` pairs; ``task=None`` is the base model.
            template: a PromptTemplate with a verbalizer, or a mapping task -> PromptTemplate.
            probabilities: return ``{"label", "probabilities"}`` per request instead of the label.

        Returns:
            One label (or dict) per request, in the requests' order; equal to ``predict(task, [row])``.
        """
        if self.task_type != "causal-lm":
            raise AdapterError(f"mixed batches serve causal-LM banks, and this bank serves a {self.task_type} "
                               "model; call bank.predict(task, texts) once per task")
        templates = [self._template_for(task, template) for task, _ in requests]
        answers: list[Any] = [None] * len(requests)
        for chosen in {id(t): t for t in templates}.values():
            indices = [i for i, t in enumerate(templates) if t is chosen]
            with self._mixed([requests[i][0] for i in indices]) as (runner, mix):
                scores = self._label_word_scores(runner, [requests[i][1] for i in indices], chosen, mix=mix)
            for i, item in zip(indices, self._answers(scores, probabilities)):
                answers[i] = item
        return answers

    def _template_for(self, task: str | None, template: Any) -> Any:
        if not isinstance(template, Mapping):
            return template
        if task not in template:
            raise AdapterError(f"no template for task {task!r} in template=; give one per task that has requests "
                               f"(got templates for {', '.join(map(repr, template)) or 'none'})")
        return template[task]

    def predict(self, task: str | None, texts: Sequence[Any], *, template: Any = None, probabilities: bool = False,
                calibration: Any = None) -> list:
        """Labels: one per text (classification) or one per word (token classification).

        A causal-LM bank classifies by label words, as ``evaluate()`` does: pass the ``template``
        with its verbalizer, and rows (rendered with it) or already rendered prompts. A
        sequence-classification bank reads its head. For token classification pass each text as a
        list of words (a string is split on spaces); each word gets its first sub-token's label.
        With ``probabilities=True`` each item is ``{"label": ..., "probabilities": {label: p}}``
        (after ``calibration``, a `Calibration`, when given).
        """
        entry = self._entry(task)
        if self.task_type == "token-classification":
            if probabilities or calibration is not None:
                raise AdapterError("probabilities are given per text; a token-classification bank predicts one "
                                   "label per word, so call predict(task, texts) without probabilities=")
            words = [item.split() if isinstance(item, str) else list(item) for item in texts]
            with self._active(entry) as runner:
                return predict_tags(runner, self.tokenizer, words, self.batch_size)[0]
        with self._active(entry) as runner:
            if self.task_type == "causal-lm":
                scores = self._label_word_scores(runner, texts, template)
            else:
                scores = head_scores(runner, self.tokenizer, [str(t) for t in texts], self.batch_size)
        if calibration is not None:
            scores = calibration.apply(scores)
        return self._answers(scores, probabilities)

    @staticmethod
    def _answers(scores: LabelScores, probabilities: bool) -> list:
        if not probabilities:
            return scores.predictions
        return [{"label": label, "probabilities": dict(zip(scores.labels, map(float, row)))}
                for label, row in zip(scores.predictions, scores.probabilities)]

    def _label_word_scores(self, runner: Any, texts: Sequence[Any], template: Any,
                           mix: MixedRows | None = None) -> LabelScores:
        if template is None or template.verbalizer is None:
            raise AdapterError("a causal-LM bank classifies by label words; pass template= (the PromptTemplate "
                               "with the verbalizer the task was trained with), or use bank.generate(task, prompts)")
        prompts = [text if isinstance(text, str) else template.render_prompt(text, self.tokenizer) for text in texts]
        return score_label_words(runner, self.tokenizer, prompts, label_word_ids(template, self.tokenizer),
                                 batch_size=self.batch_size, add_special_tokens=template.style != "chat", mix=mix)

    def compare(self, task: str, prompts: Sequence[str], **gen_kwargs) -> list[dict[str, Any]]:
        """Base model and tuned model side by side: [{'prompt', 'base', 'tuned'}, ...]."""
        self._entry(task)
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if self.task_type == "causal-lm":
            base, tuned = self.generate(None, prompts, **gen_kwargs), self.generate(task, prompts, **gen_kwargs)
        else:
            base, tuned = self.predict(None, prompts), self.predict(task, prompts)  # heads: no template needed
        return [{"prompt": p, "base": b, "tuned": t} for p, b, t in zip(prompts, base, tuned)]

    def merge(self, task: str):
        """A standalone model with ``task``'s LoRA merged into the weights (no adapter overhead).

        Works on a deep copy, so the bank keeps serving every task; the copy costs one more model
        in memory. On a 4-bit base the merged weights are re-quantized, so greedy outputs can differ
        slightly from the unmerged adapter; merge onto a full-precision base for identical outputs.
        """
        entry = self._entry(task)
        if entry is None or not entry.spec.mergeable:
            lora_tasks = [t.name for t in self._tasks.values() if t.spec.mergeable]
            raise AdapterError(f"merge works for LoRA tasks ({', '.join(lora_tasks) or 'none loaded'}); {task!r} "
                               "adds virtual tokens or prefixes, which have no weights to merge into")
        host = copy.deepcopy(self._lora)
        host.base_model.enable_adapter_layers()
        host.set_adapter(task)
        return host.merge_and_unload(adapter_names=[task]).eval()

    # ------------------------------------------------------------------------- internals
    def _entry(self, task: str | None) -> _Task | None:
        if task is None:
            return None
        if task not in self._tasks:
            known = ", ".join(self._tasks) or "none yet (use bank.add(name, path))"
            raise AdapterError(f"unknown task {task!r}; known tasks: {known} (or None for the base model)")
        return self._tasks[task]

    @contextmanager
    def _active(self, entry: _Task | None):
        """Set every adapter switch for ``entry`` and yield the module that runs it."""
        if self._lora is not None:
            if entry is not None and entry.spec.has_lora:
                self._lora.base_model.enable_adapter_layers()
                self._lora.set_adapter(entry.name, inference_mode=True)
            else:
                self._lora.base_model.disable_adapter_layers()
        for module in self.model.modules():
            if isinstance(module, ModulesToSaveWrapper):  # per-task copies of a classification head
                module.enable_adapters(True)
                module.set_adapter(entry.name if entry is not None and entry.name in module.modules_to_save else [],
                                   inference_mode=True)
        with torch.no_grad():
            yield self.model if entry is None else entry.model

    @contextmanager
    def _mixed(self, tasks: Sequence[str | None]):
        """Every LoRA adapter on, routed per row; yield the module that runs the mix and each row's inputs."""
        entries = [self._entry(task) for task in tasks]
        cached = sorted({e.name for e in entries if e is not None and e.spec.prompt_in_cache})
        if cached:
            raise AdapterError(f"task(s) {', '.join(map(repr, cached))} use prefix tuning, whose prompt is a key/value "
                               "prefix inside every layer that one batch cannot hold per row; serve them one task at a "
                               "time with bank.generate_many(requests, mixed=False) or bank.predict(task, rows), or "
                               "retrain them with prompt tuning, P-tuning or LoRA, which mix")
        mix = MixedRows(prompts=[None if e is None else e.prompt for e in entries],
                        adapters=None if self._lora is None else
                        [e.name if e is not None and e.spec.has_lora else BASE_ROUTE for e in entries])
        if self._lora is not None:
            self._lora.base_model.enable_adapter_layers()
        with torch.no_grad():
            yield (self.model if self._lora is None else self._lora), mix
