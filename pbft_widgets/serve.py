"""AdapterBank: one base model in memory, many task adapters, switched per request.

LoRA adapters live in one PeftModel and are switched with PEFT's multi-adapter API
(load_adapter / set_adapter). Prompt-learning adapters (prompt tuning, prefix tuning, P-tuning)
cannot join that PeftModel: PEFT allows one kind of method per PeftModel, and a prompt adapter
changes the *inputs* (virtual tokens, KV prefixes) rather than layers. Each gets its own thin
PeftModel wrapper around the SAME base model object; only its prompt encoder is new memory. The
prompt+LoRA hybrid uses both: its LoRA weights join the LoRA PeftModel, its prompt gets a wrapper.

Before every request the bank sets the whole adapter state explicitly (LoRA layers on with the
task's adapter or off, classification-head copies switched to the task's or the base's), so
switching A -> B -> A gives A's exact outputs.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils import ModulesToSaveWrapper

from . import hybrid
from .adapters import check_adapter
from .errors import AdapterError
from .methods import infer_task

# Methods whose virtual tokens are input embeddings: PEFT ignores position_ids for them, so a
# padded batch shifts positions (peft #1093) and the bank batches only prompts of equal length.
_EQUAL_LENGTH_METHODS = ("prompt-tuning", "p-tuning", "prompt+lora")


@dataclass
class _Task:
    name: str
    method: str
    path: Path
    model: Any  # what runs the task: the LoRA PeftModel or the task's prompt wrapper

    @property
    def has_lora(self) -> bool:
        return self.method in ("lora", "qlora", "prompt+lora")


class AdapterBank:
    """Serve many adapters of one base model: ``bank.add("legal", path)``, then ``bank.generate("legal", prompts)``.

    ``task=None`` anywhere means the base model without adapters. Decoding is greedy unless
    generation kwargs say otherwise.
    """

    def __init__(self, model, tokenizer, *, max_new_tokens: int = 32, batch_size: int = 8) -> None:
        if isinstance(model, PeftModel) or any(isinstance(m, BaseTunerLayer) for m in model.modules()):
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
        return list(self._tasks)

    def describe(self) -> list[dict[str, str]]:
        """One row per task: name, method and where it was loaded from."""
        return [{"task": t.name, "method": t.method, "path": str(t.path)} for t in self._tasks.values()]

    def add(self, task: str, path: str | os.PathLike) -> None:
        """Load the adapter at ``path`` under the name ``task`` (checked against this base model)."""
        if not isinstance(task, str) or not task:
            raise AdapterError(f"task name must be a non-empty string, got {task!r}")
        if task in self._tasks:
            raise AdapterError(f"task {task!r} is already in the bank; choose another name")
        directory = Path(path).expanduser()
        method, task_type = check_adapter(self.model, directory)
        if task_type != self.task_type:
            raise AdapterError(f"adapter {directory} is for {task_type} but this bank serves a {self.task_type} "
                               "model; put it in a bank built on a matching base model")
        if method == "prompt+lora":
            self._add_lora(task, directory / hybrid.LORA_DIR)
            runner = PeftModel.from_pretrained(self.model, str(directory / hybrid.PROMPT_DIR), adapter_name=task)
        elif method in ("lora", "qlora"):
            runner = self._add_lora(task, directory)
        else:
            runner = PeftModel.from_pretrained(self.model, str(directory), adapter_name=task)
        runner.eval()
        self._tasks[task] = _Task(name=task, method=method, path=directory, model=runner)

    def _add_lora(self, task: str, directory: Path) -> PeftModel:
        if self._lora is None:
            self._lora = PeftModel.from_pretrained(self.model, str(directory), adapter_name=task)
        else:
            self._lora.load_adapter(str(directory), adapter_name=task)
        return self._lora

    # ------------------------------------------------------------------------- inference
    def generate(self, task: str | None, prompts: str | Sequence[str], **gen_kwargs) -> str | list[str]:
        """Completions (new text only) of ``prompts`` with ``task``'s adapter; a str in gives a str out."""
        if self.task_type != "causal-lm":
            raise AdapterError(f"this bank serves a {self.task_type} model; use bank.predict(task, texts)")
        single = isinstance(prompts, str)
        prompts = [prompts] if single else list(prompts)
        entry = self._entry(task)
        kwargs = {"max_new_tokens": self.max_new_tokens, "do_sample": False,
                  "pad_token_id": self.tokenizer.pad_token_id, **gen_kwargs}
        if entry is not None and entry.method == "prefix-tuning":
            kwargs["use_cache"] = True  # the prefix lives in the KV cache; PEFT fails without it
        outputs: list[str] = [""] * len(prompts)
        with self._active(entry) as runner:
            for batch in self._batches(prompts, equal_length=entry is not None
                                       and entry.method in _EQUAL_LENGTH_METHODS):
                encoded = self._encode([prompts[i] for i in batch], padding_side="left")
                generated = runner.generate(**encoded, **kwargs)[:, encoded["input_ids"].shape[1]:]
                texts = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
                for i, text in zip(batch, texts):
                    outputs[i] = text
        return outputs[0] if single else outputs

    def generate_many(self, requests: Sequence[tuple[str | None, str]], **gen_kwargs) -> list[str]:
        """Serve mixed ``(task, prompt)`` requests: grouped per task (one switch each), answered in order."""
        outputs: list[str] = [""] * len(requests)
        for task in dict.fromkeys(task for task, _ in requests):
            indices = [i for i, (t, _) in enumerate(requests) if t == task]
            for i, text in zip(indices, self.generate(task, [requests[i][1] for i in indices], **gen_kwargs)):
                outputs[i] = text
        return outputs

    def predict(self, task: str | None, texts: Sequence[str] | Sequence[Sequence[str]]) -> list:
        """Labels: one per text (sequence classification) or one per word (token classification).

        For token classification pass each text as a list of words (a string is split on spaces);
        each word gets the label of its first sub-token.
        """
        if self.task_type == "causal-lm":
            raise AdapterError("this bank serves a causal LM; use bank.generate(task, prompts)")
        entry = self._entry(task)
        id2label = self.model.config.id2label
        results: list = []
        with self._active(entry) as runner:
            for batch in self._batches(list(texts), equal_length=False):
                items = [texts[i] for i in batch]
                if self.task_type == "token-classification":
                    words = [item.split() if isinstance(item, str) else list(item) for item in items]
                    encoded = self._encode(words, padding_side="right", is_split_into_words=True)
                else:
                    encoded = self._encode(items, padding_side="right")
                predicted = runner(**encoded).logits.argmax(-1).tolist()
                if self.task_type == "sequence-classification":
                    results += [id2label[p] for p in predicted]
                    continue
                for row, labels in enumerate(predicted):
                    word_ids = encoded.word_ids(row)
                    firsts = [i for i, w in enumerate(word_ids) if w is not None and (i == 0 or word_ids[i - 1] != w)]
                    results.append([id2label[labels[i]] for i in firsts])
        return results

    def compare(self, task: str, prompts: Sequence[str], **gen_kwargs) -> list[dict[str, Any]]:
        """Base model and tuned model side by side: [{'prompt', 'base', 'tuned'}, ...]."""
        self._entry(task)
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if self.task_type == "causal-lm":
            base, tuned = self.generate(None, prompts, **gen_kwargs), self.generate(task, prompts, **gen_kwargs)
        else:
            base, tuned = self.predict(None, prompts), self.predict(task, prompts)
        return [{"prompt": p, "base": b, "tuned": t} for p, b, t in zip(prompts, base, tuned)]

    def merge(self, task: str):
        """A standalone model with ``task``'s LoRA merged into the weights (no adapter overhead).

        Works on a deep copy, so the bank keeps serving every task; the copy costs one more model
        in memory. On a 4-bit base the merged weights are re-quantized, so greedy outputs can differ
        slightly from the unmerged adapter; merge onto a full-precision base for identical outputs.
        """
        entry = self._entry(task)
        if entry is None or entry.method not in ("lora", "qlora"):
            lora_tasks = [t.name for t in self._tasks.values() if t.method in ("lora", "qlora")]
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
            if entry is not None and entry.has_lora:
                self._lora.base_model.enable_adapter_layers()
                self._lora.set_adapter(entry.name, inference_mode=True)
            else:
                self._lora.base_model.disable_adapter_layers()
        for module in self.model.modules():
            if isinstance(module, ModulesToSaveWrapper):  # per-task copies of a classification head
                module.enable_adapters(True)
                module.set_adapter(entry.name if entry is not None and entry.name in module.modules_to_save else [],
                                   inference_mode=True)
        with torch.no_grad(), warnings.catch_warnings():
            # generate() passes position_ids, which PEFT drops (with a warning per step) for prompt methods
            warnings.filterwarnings("ignore", message="Position ids are not supported")
            yield self.model if entry is None else entry.model

    def _batches(self, items: list, *, equal_length: bool) -> list[list[int]]:
        """Index batches; with ``equal_length`` only prompts of the same token count share a batch."""
        order = list(range(len(items)))
        groups: dict[int, list[int]] = {0: order}
        if equal_length:
            lengths = [len(self.tokenizer(item)["input_ids"]) for item in items]
            groups = {}
            for i in order:
                groups.setdefault(lengths[i], []).append(i)
        return [group[start:start + self.batch_size] for group in groups.values()
                for start in range(0, len(group), self.batch_size)]

    def _encode(self, items: list, *, padding_side: str, **kwargs):
        device = next(self.model.parameters()).device
        encoded = self.tokenizer(items, return_tensors="pt", padding=True, padding_side=padding_side, **kwargs)
        return encoded.to(device)
