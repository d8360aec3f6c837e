"""Prompt templates: turn dataset rows into prompt/completion pairs a model is trained on.

A prompt has an anatomy (instruction, context, input placeholders, output indicator, optional
demonstrations) and a style: ``prefix`` (the answer continues the prompt), ``cloze`` (the answer is
a label word from a :class:`Verbalizer`) or ``chat`` (the tokenizer's chat template wraps a user
message). Rendering is strict on purpose: a silently wrong prompt wastes a whole training run, so
every problem raises an error that names its fix, and every cut token is counted and reported.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import string
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import DataError, TemplateError
from .verbalizer import Verbalizer, is_missing

FORMAT_VERSION = 1
STYLES = ("prefix", "cloze", "chat")
ORDERS = ("given", "random", "label-balanced")
# transformers stores 1e30 when a tokenizer does not know its model's context size.
_SENSIBLE_MODEL_MAX = 1_000_000


@dataclass(frozen=True)
class RenderedExample:
    """One rendered row; token counts are filled only when a tokenizer was given."""

    prompt: str
    completion: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    truncated_tokens: int = 0


def _placeholders(template: str, where: str) -> list[str]:
    """Named placeholders of ``template``; malformed or positional braces raise TemplateError."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(
            f"malformed braces in {where} {template!r} ({exc}); close every '{{' with '}}' "
            "and write literal braces as '{{' and '}}'"
        ) from None
    names: list[str] = []
    for _, name, _, _ in parsed:
        if name is None:
            continue
        if not name.isidentifier():
            raise TemplateError(f"{where} has placeholder {{{name}}}; use a named column such as {{text}}")
        if name not in names:
            names.append(name)
    return names


@dataclass(frozen=True, kw_only=True)
class PromptTemplate:
    """How a row becomes a prompt (and the completion the loss is computed on).

    Frozen so a template can be shared between a widget, a trainer and an evaluator without one of
    them changing it under the others; use :meth:`with_changes` to derive a new one.
    """

    instruction: str = ""
    context: str = ""
    input_template: str = "{text}"
    output_indicator: str = "Answer:"
    target_field: str = "label"
    style: Literal["prefix", "cloze", "chat"] = "prefix"
    verbalizer: Verbalizer | None = None
    demonstrations: Sequence[Mapping[str, Any]] = ()
    k_shot: int | None = None
    demonstration_order: Literal["given", "random", "label-balanced"] = "given"
    seed: int = 0
    separator: str = "\n\n"
    max_length: int | None = None
    fields: list[str] = field(init=False, compare=False)
    _inputs: list[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise TemplateError(f"unknown style {self.style!r}; use one of {', '.join(STYLES)}")
        if self.demonstration_order not in ORDERS:
            raise TemplateError(
                f"unknown demonstration_order {self.demonstration_order!r}; use one of {', '.join(ORDERS)}"
            )
        if self.style == "cloze" and self.verbalizer is None:
            raise TemplateError("style='cloze' needs label words; pass verbalizer=Verbalizer({...})")
        inputs = _placeholders(self.input_template, "input_template")
        if not inputs:
            raise TemplateError(
                f"input_template {self.input_template!r} has no {{text}} placeholder; "
                "add one, e.g. 'Review: {text}'"
            )
        context = _placeholders(self.context, "context")
        object.__setattr__(self, "_inputs", inputs)
        object.__setattr__(self, "fields", context + [f for f in inputs if f not in context])
        object.__setattr__(self, "demonstrations", tuple(dict(d) for d in self.demonstrations))
        if self.k_shot is not None and not 0 <= self.k_shot <= len(self.demonstrations):
            raise TemplateError(
                f"k_shot={self.k_shot} but {len(self.demonstrations)} demonstrations were given; "
                "add demonstrations or choose k_shot between 0 and their number"
            )
        if self.max_length is not None and self.max_length <= 0:
            raise TemplateError(f"max_length={self.max_length}; use a positive number of tokens or None")
        for i, demo in enumerate(self.demonstrations):
            self._check_columns(demo, [*inputs, self.target_field], f"demonstration {i}")
            self._answer(demo, f"demonstration {i}")

    # ----------------------------------------------------------------- rendering
    def render(
        self, row: Mapping, tokenizer: Any = None, *, with_completion: bool = True
    ) -> RenderedExample:
        """Render one row; with a tokenizer, count tokens and truncate the input text to fit."""
        self._check_tokenizer(tokenizer)
        return self._render(row, tokenizer, with_completion, "row")

    def render_prompt(self, row: Mapping, tokenizer: Any = None) -> str:
        """The prompt alone, for generation at inference time."""
        return self.render(row, tokenizer, with_completion=False).prompt

    def to_pairs(self, rows: Iterable[Mapping], tokenizer: Any = None) -> list[dict]:
        """Prompt/completion dicts for completion-only loss; warns when input text was cut."""
        rendered = self._render_all(rows, tokenizer)
        self._warn_truncation(rendered, tokenizer)
        return [{"prompt": r.prompt, "completion": r.completion} for r in rendered]

    def to_dataset(self, rows: Iterable[Mapping], tokenizer: Any = None):
        """A ``datasets.Dataset`` with the prompt/completion columns TRL's SFTTrainer expects."""
        from datasets import Dataset

        pairs = self.to_pairs(rows, tokenizer)
        return Dataset.from_dict({key: [p[key] for p in pairs] for key in ("prompt", "completion")})

    def token_report(self, rows: Iterable[Mapping], tokenizer: Any) -> dict:
        """Token counts over ``rows`` so users see the context budget before training."""
        if tokenizer is None:
            raise TemplateError("token_report counts tokens; pass the model's tokenizer")
        rendered = self._render_all(rows, tokenizer)
        self._warn_truncation(rendered, tokenizer)
        counts = {
            "prompt": [r.prompt_tokens for r in rendered],
            "completion": [r.completion_tokens for r in rendered],
            "total": [r.prompt_tokens + r.completion_tokens for r in rendered],
        }
        report: dict[str, Any] = {"rows": len(rendered), "max_length": self._max_length(tokenizer)}
        for kind, values in counts.items():
            report[f"{kind}_tokens_max"] = max(values)
            report[f"{kind}_tokens_mean"] = sum(values) / len(values)
        report["truncated_rows"] = sum(r.truncated_tokens > 0 for r in rendered)
        report["truncated_tokens"] = sum(r.truncated_tokens for r in rendered)
        return report

    def validate(self, tokenizer: Any = None, *, sample_row: Mapping | None = None) -> None:
        """Check what can be checked before training: label words, context budget, a sample row."""
        if tokenizer is not None or sample_row is not None:
            self._check_tokenizer(tokenizer)
        if tokenizer is not None:
            max_length = self._max_length(tokenizer)
            if max_length is not None:
                empty = {f: "" for f in self.fields}
                demos = self._demo_block(empty)
                used = self._count(self._build(empty, demos, tokenizer), tokenizer, prompt=True)
                if used >= max_length:
                    raise TemplateError(self._too_long_message(len(demos), used, max_length))
        if sample_row is not None:
            self._render(sample_row, tokenizer, True, "sample_row")

    def label_for_text(self, generated: str) -> str | None:
        """Map generated text back to a label through the verbalizer; None without one."""
        return None if self.verbalizer is None else self.verbalizer.label_for_text(generated)

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        """Plain data (with a format ``version``) that JSON and YAML can hold."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        data["verbalizer"] = None if self.verbalizer is None else self.verbalizer.to_dict()
        data["demonstrations"] = [dict(d) for d in self.demonstrations]
        return {"version": FORMAT_VERSION, **data}

    @classmethod
    def from_dict(cls, data: Mapping) -> PromptTemplate:
        """Rebuild a template from :meth:`to_dict` output, refusing versions this code cannot read."""
        if not isinstance(data, Mapping):
            raise TemplateError(
                f"a template file must hold a mapping, not {type(data).__name__}; re-save it with .save()"
            )
        data = dict(data)
        version = data.pop("version", None)
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TemplateError(f"template file has a malformed entry: unknown setting(s) "
                                f"{', '.join(map(repr, unknown))}; remove them (known settings: "
                                f"{', '.join(sorted(known))})")
        if version != FORMAT_VERSION:
            raise TemplateError(
                f"template format version {version!r} is not supported (this library reads version "
                f"{FORMAT_VERSION}); re-save the template with this version of pbft_widgets"
            )
        try:
            if data.get("verbalizer") is not None:
                data["verbalizer"] = Verbalizer(**data["verbalizer"])
            return cls(**data)
        except TypeError as exc:
            raise TemplateError(f"template file has a malformed entry ({exc}); fix or re-save it") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSON or YAML (by suffix) atomically, so a crash never leaves half a template."""
        path = Path(path)
        text = self._dump(self.to_dict(), path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; a template is meant to be shared
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> PromptTemplate:
        """Read a template written by :meth:`save` (format from the suffix)."""
        path = Path(path)
        if not path.is_file():
            raise TemplateError(f"no template file at {path}; check the path or write one with .save()")
        text = path.read_text(encoding="utf-8")
        try:
            if cls._format(path) == "json":
                data = json.loads(text)
            else:
                data = yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            kind = cls._format(path).upper()
            raise TemplateError(f"{path} is not valid {kind} ({exc}); fix or re-save it") from None
        return cls.from_dict(data)

    def with_changes(self, **changes: Any) -> PromptTemplate:
        """A copy with some settings changed (the template itself is immutable)."""
        return dataclasses.replace(self, **changes)

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _format(path: Path) -> str:
        suffix = path.suffix.lower()
        if suffix == ".json":
            return "json"
        if suffix in (".yaml", ".yml"):
            return "yaml"
        raise TemplateError(f"cannot tell the format of {path.name!r}; name it *.json, *.yaml or *.yml")

    @classmethod
    def _dump(cls, data: dict, path: Path) -> str:
        if cls._format(path) == "json":
            return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)

    def _check_tokenizer(self, tokenizer: Any) -> None:
        if self.style == "chat" and (tokenizer is None or not getattr(tokenizer, "chat_template", None)):
            problem = "no tokenizer was given" if tokenizer is None else "the tokenizer has no chat template"
            raise TemplateError(
                f"style='chat' needs a tokenizer with a chat template but {problem}; "
                "pass an instruct model's tokenizer or use style='prefix'"
            )
        if tokenizer is not None and self.verbalizer is not None and self.style == "cloze":
            self.verbalizer.validate(tokenizer, leading_space=True)

    def _max_length(self, tokenizer: Any) -> int | None:
        if self.max_length is not None:
            return self.max_length
        model_max = getattr(tokenizer, "model_max_length", None)
        sensible = isinstance(model_max, int) and model_max <= _SENSIBLE_MODEL_MAX
        return model_max if sensible else None

    @staticmethod
    def _check_columns(row: Mapping, needed: Sequence[str], where: str) -> None:
        missing = [name for name in needed if name not in row]
        if missing:
            raise DataError(
                f"{where} has no column {', '.join(map(repr, missing))}; available columns: "
                f"{', '.join(map(str, row)) or '(none)'}. Rename the column, or change the template's "
                "placeholder or target_field"
            )

    def _answer(self, row: Mapping, where: str) -> str:
        value = row[self.target_field]
        if is_missing(value):
            raise DataError(f"{where}: {self.target_field!r} is None/NaN; drop the row or fill in its label")
        if self.verbalizer is not None:
            try:
                return self.verbalizer.word(value)
            except DataError as exc:
                raise DataError(f"{where}: {exc}") from None
        answer = str(value)
        if not answer.strip():
            raise DataError(
                f"{where}: {self.target_field!r} is empty or whitespace; drop the row or fill in the answer"
            )
        return answer

    @staticmethod
    def _attach(prompt: str, answer: str) -> str:
        """The completion convention: one space between an indicator and its answer."""
        return answer if not prompt or prompt[-1].isspace() or answer[:1].isspace() else f" {answer}"

    def _with_indicator(self, text: str) -> str:
        return f"{text}\n{self.output_indicator}" if self.output_indicator else text

    def _demo_block(self, query: Mapping) -> list[str]:
        """Demonstrations in the chosen order (seeded, same for every row), minus the query itself."""
        demos = list(self.demonstrations)
        rng = random.Random(self.seed)
        if self.demonstration_order == "random":
            rng.shuffle(demos)
        elif self.demonstration_order == "label-balanced":
            groups: dict[str, list[Mapping]] = {}
            for demo in demos:
                groups.setdefault(str(demo[self.target_field]), []).append(demo)
            for group in groups.values():
                rng.shuffle(group)
            rounds = max(map(len, groups.values()), default=0)
            demos = [g[i] for i in range(rounds) for g in groups.values() if i < len(g)]
        demos = [d for d in demos if any(str(d[f]) != str(query.get(f)) for f in self._inputs)]
        demos = demos[: self.k_shot] if self.k_shot is not None else demos
        texts = []
        for demo in demos:
            shown = self._with_indicator(self.input_template.format(**{f: demo[f] for f in self._inputs}))
            texts.append(shown + self._attach(shown, self._answer(demo, "demonstration")))
        return texts

    def _build(self, values: Mapping[str, str], demos: list[str], tokenizer: Any) -> str:
        query = self.input_template.format(**values)
        parts = [self.instruction, self.context.format(**values), *demos, query]
        body = self._with_indicator(self.separator.join(p for p in parts if p))
        if self.style != "chat":
            return body
        message = [{"role": "user", "content": body}]
        return tokenizer.apply_chat_template(message, tokenize=False, add_generation_prompt=True)

    def _count(self, text: str, tokenizer: Any, *, prompt: bool) -> int:
        # Chat prompts already contain their special tokens as text; plain prompts get the tokenizer's.
        special = prompt and self.style != "chat"
        return len(tokenizer(text, add_special_tokens=special)["input_ids"])

    @staticmethod
    def _too_long_message(n_demos: int, used: int, max_length: int) -> str:
        return (
            f"the instruction, context, {n_demos} demonstrations, output indicator and answer "
            f"take {used} tokens, leaving no room for the input within max_length={max_length}; "
            "lower k_shot, shorten the instruction or demonstrations, or raise max_length"
        )

    def _render(self, row: Mapping, tokenizer: Any, with_completion: bool, where: str) -> RenderedExample:
        self._check_columns(row, self.fields + ([self.target_field] if with_completion else []), where)
        values = {f: str(row[f]) for f in self.fields}
        demos = self._demo_block(row)
        answer = self._answer(row, where) if with_completion else ""
        prompt = self._build(values, demos, tokenizer)
        if with_completion:
            completion = answer if self.style == "chat" else self._attach(prompt, answer)
            completion += getattr(tokenizer, "eos_token", None) or ""
        else:
            completion = ""
        if tokenizer is None:
            return RenderedExample(prompt, completion)
        n_completion = self._count(completion, tokenizer, prompt=False) if completion else 0
        n_prompt = self._count(prompt, tokenizer, prompt=True)
        max_length = self._max_length(tokenizer)
        if max_length is None or n_prompt + n_completion <= max_length:
            return RenderedExample(prompt, completion, n_prompt, n_completion)
        # Too long: cut tokens from the end of the longest input field until prompt + answer fit.
        ids = {f: tokenizer(values[f], add_special_tokens=False)["input_ids"] for f in self.fields}
        keep = {f: len(v) for f, v in ids.items()}
        while n_prompt + n_completion > max_length:
            longest = max(keep, key=keep.get)
            if keep[longest] == 0:
                empty = self._build({f: "" for f in self.fields}, demos, tokenizer)
                fixed = self._count(empty, tokenizer, prompt=True)
                raise TemplateError(self._too_long_message(len(demos), fixed + n_completion, max_length))
            keep[longest] -= min(keep[longest], n_prompt + n_completion - max_length)
            values[longest] = tokenizer.decode(ids[longest][: keep[longest]])
            prompt = self._build(values, demos, tokenizer)
            n_prompt = self._count(prompt, tokenizer, prompt=True)
        cut = sum(len(ids[f]) - keep[f] for f in ids)
        return RenderedExample(prompt, completion, n_prompt, n_completion, cut)

    def _render_all(self, rows: Iterable[Mapping], tokenizer: Any) -> list[RenderedExample]:
        self._check_tokenizer(tokenizer)
        rendered = [self._render(row, tokenizer, True, f"row {i}") for i, row in enumerate(rows)]
        if not rendered:
            raise DataError("no rows to render; pass at least one row (check the data loader or filters)")
        return rendered

    def _warn_truncation(self, rendered: list[RenderedExample], tokenizer: Any) -> None:
        cut = [r.truncated_tokens for r in rendered if r.truncated_tokens]
        if cut:
            warnings.warn(
                f"{sum(cut)} input tokens were cut from {len(cut)} of {len(rendered)} rows to fit "
                f"max_length={self._max_length(tokenizer)}; raise max_length or shorten the inputs",
                UserWarning,
                stacklevel=3,
            )
