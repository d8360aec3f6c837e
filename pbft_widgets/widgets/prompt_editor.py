"""PromptEditor: edit a PromptTemplate and see, on the user's own rows, what the model will be trained on.

All rendering, counting and validation is PromptTemplate's; the editor only turns control values
into a template, shows the result, and puts any TemplateError/DataError in a red box inline.
"""

from __future__ import annotations

import html
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as w

from ..errors import DataError, PbftError, TemplateError
from ..templates import ORDERS, STYLES, PromptTemplate, RenderedExample, Verbalizer
from ._common import MessageBox, View, html_table

MAX_CHIPS = 300  # per kind; long prompts would otherwise flood the page
_CHIP = "display:inline-block;margin:1px;padding:0 3px;border-radius:3px;font-family:monospace;font-size:85%"
COLOURS = {"virtual": "#d1c4e9", "prompt": "#eeeeee", "completion": "#a5d6a7"}
_BOX = "font-family:monospace;white-space:pre-wrap;border:1px solid #ddd;padding:6px;margin:4px 0"


def parse_verbalizer(text: str, *, allow_multi_token: bool = False) -> Verbalizer | None:
    """'label: word[, synonym ...]' per line -> Verbalizer; blank text means no verbalizer."""
    words: dict[str, list[str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        label, colon, rest = line.partition(":")
        if not colon or not label.strip():
            raise TemplateError(f"verbalizer line {number} {line.strip()!r} is not 'label: word'; "
                                "write one label per line, e.g. 'pos: great'")
        words[label.strip()] = [word.strip() for word in rest.split(",")]
    return Verbalizer(words, allow_multi_token=allow_multi_token) if words else None


def format_verbalizer(verbalizer: Verbalizer | None) -> str:
    """A verbalizer as the editor's text form, one 'label: word, synonym' line per label."""
    if verbalizer is None:
        return ""
    return "\n".join(f"{label}: {', '.join(ws)}" for label, ws in verbalizer.to_dict()["label_words"].items())


def parse_demonstrations(text: str) -> list[dict]:
    """One JSON object per line -> demonstration rows."""
    demos = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            demo = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"demonstration line {number} is not valid JSON ({exc.msg}); write one object per "
                            'line, e.g. {"text": "a fine film", "label": "pos"}') from None
        if not isinstance(demo, dict):
            raise DataError(f"demonstration line {number} is a {type(demo).__name__}; write a JSON object "
                            'such as {"text": "a fine film", "label": "pos"}')
        demos.append(demo)
    return demos


def parse_k_shot(text: str) -> int | None:
    """The k-shot field's number (empty: all demonstrations); TemplateError for anything else."""
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise TemplateError(f"k_shot {text!r} is not a whole number; type e.g. 2, or leave it empty "
                            "for all demonstrations") from None


class PromptEditor(View):
    """Edit a prompt template with a live preview on ``rows``, token counts and a tokenisation view.

    ``.template`` is the current valid PromptTemplate (it raises the last validation error while
    the controls hold an invalid one); ``.on_change(fn)`` calls ``fn(template)`` on each valid edit.
    ``num_virtual_tokens`` only affects the view: it shows where a soft prompt's tokens go.
    ``.examples`` (the rendered preview rows) and ``.report`` (token counts over the first
    ``report_rows`` rows) describe the last valid template. Text fields update on Enter or when
    they lose focus, so a long dataset is not re-tokenised on every keystroke.
    """

    def __init__(self, rows: Sequence[Mapping[str, Any]], tokenizer: Any, template: PromptTemplate | None = None,
                 *, n_preview: int = 3, num_virtual_tokens: int = 0, report_rows: int = 200) -> None:
        self.rows = list(rows)
        self.tokenizer = tokenizer
        self.n_preview = n_preview
        self.report_rows = report_rows
        base = template or PromptTemplate()
        self._base = base
        self._template: PromptTemplate | None = None
        self._error: Exception | None = None
        self._callbacks: list[Callable[[PromptTemplate], None]] = []
        self.examples: list[RenderedExample] = []
        self.report: dict[str, Any] = {}

        text = dict(continuous_update=False, layout=w.Layout(width="100%"))
        self.instruction = w.Textarea(base.instruction, description="Instruction", rows=2, **text)
        self.context = w.Textarea(base.context, description="Context", rows=2, **text)
        self.input_template = w.Text(base.input_template, description="Input", **text)
        self.output_indicator = w.Text(base.output_indicator, description="Indicator", **text)
        self.target_field = w.Text(base.target_field, description="Answer col.", **text)
        self.style = w.Dropdown(options=STYLES, value=base.style, description="Style")
        self.verbalizer = w.Textarea(format_verbalizer(base.verbalizer), description="Verbalizer", rows=3,
                                     placeholder="label: word, synonym (one label per line)", **text)
        self.allow_multi_token = w.Checkbox(bool(base.verbalizer and base.verbalizer.allow_multi_token),
                                            description="multi-token label words")
        self.demonstrations = w.Textarea("\n".join(json.dumps(d, ensure_ascii=False) for d in base.demonstrations),
                                         description="Demos", rows=3, placeholder='{"text": ..., "label": ...}',
                                         **text)
        self.k_shot = w.Text("" if base.k_shot is None else str(base.k_shot), description="k-shot",
                             placeholder="all", continuous_update=False)
        self.order = w.Dropdown(options=ORDERS, value=base.demonstration_order, description="Order")
        self.num_virtual_tokens = w.IntText(num_virtual_tokens, description="Virtual tok.")
        self.controls = [self.instruction, self.context, self.input_template, self.output_indicator,
                         self.target_field, self.style, self.verbalizer, self.allow_multi_token,
                         self.demonstrations, self.k_shot, self.order, self.num_virtual_tokens]

        self.message = MessageBox()
        self.preview = w.HTML()
        self.tokens = w.HTML()
        self.totals = w.HTML()
        outputs = w.VBox([self.message.html, w.HTML("<b>Preview</b>"), self.preview,
                          w.HTML("<b>Tokenisation</b> (first example)"), self.tokens,
                          w.HTML("<b>Token counts</b>"), self.totals], layout=w.Layout(width="58%"))
        self.widget = w.HBox([w.VBox(self.controls, layout=w.Layout(width="42%")), outputs])
        for control in self.controls:
            control.observe(self._update, names="value")
        self._update()

    # ------------------------------------------------------------------------- public
    @property
    def template(self) -> PromptTemplate:
        """The template the controls describe; raises the validation error while they are invalid."""
        if self._error is not None:
            raise self._error
        return self._template

    @property
    def error(self) -> str | None:
        """The message shown inline, or None when the template is valid."""
        return None if self._error is None else str(self._error)

    def on_change(self, callback: Callable[[PromptTemplate], None]) -> None:
        """Call ``callback(template)`` after every edit that gives a valid template."""
        self._callbacks.append(callback)

    # ------------------------------------------------------------------------- internals
    def _build(self) -> PromptTemplate:
        if self.num_virtual_tokens.value < 0:
            raise TemplateError(f"virtual tokens = {self.num_virtual_tokens.value}; use 0 (none) or more")
        return self._base.with_changes(
            instruction=self.instruction.value, context=self.context.value,
            input_template=self.input_template.value, output_indicator=self.output_indicator.value,
            target_field=self.target_field.value.strip(), style=self.style.value,
            verbalizer=parse_verbalizer(self.verbalizer.value, allow_multi_token=self.allow_multi_token.value),
            demonstrations=parse_demonstrations(self.demonstrations.value), k_shot=parse_k_shot(self.k_shot.value),
            demonstration_order=self.order.value)

    def _update(self, change: Any = None) -> None:
        try:
            template = self._build()
            template.validate(self.tokenizer, sample_row=self.rows[0] if self.rows else None)
            examples = [template.render(row, self.tokenizer) for row in self.rows[: self.n_preview]]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                report = template.token_report(self.rows[: self.report_rows], self.tokenizer)
        except (PbftError, ValueError) as exc:  # ValueError: e.g. a bad format spec such as {text:d}
            self._error = exc
            self.message.error(exc)
            self.preview.value = self.tokens.value = self.totals.value = ""
            return
        self._template, self._error, self.examples, self.report = template, None, examples, report
        if caught:
            self.message.note("\n".join(str(c.message) for c in caught))
        else:
            self.message.clear()
        self.preview.value = "".join(self._example_html(e) for e in examples)
        self.tokens.value = self._chips_html(template, examples[0]) if examples else ""
        self.totals.value = self._totals_html(report)
        for callback in self._callbacks:
            callback(template)

    def _example_html(self, example: RenderedExample) -> str:
        virtual = self.num_virtual_tokens.value
        counts = f"prompt {example.prompt_tokens} + completion {example.completion_tokens} tokens"
        if virtual:
            counts += f" + {virtual} virtual"
        if example.truncated_tokens:
            counts += f"; {example.truncated_tokens} input tokens cut to fit"
        completion = (f'<span style="background:{COLOURS["completion"]}" title="completion: the loss is computed '
                      f'on this">{html.escape(example.completion)}</span>')
        return (f'<div style="{_BOX}">{html.escape(example.prompt)}{completion}</div>'
                f'<div style="font-size:85%;color:#555">{counts}</div>')

    def _chips_html(self, template: PromptTemplate, example: RenderedExample) -> str:
        # Same tokenisation as PromptTemplate's counts: chat prompts already hold their special tokens.
        prompt_ids = self.tokenizer(example.prompt, add_special_tokens=template.style != "chat")["input_ids"]
        completion_ids = self.tokenizer(example.completion, add_special_tokens=False)["input_ids"]
        virtual = [f"v{i}" for i in range(self.num_virtual_tokens.value)]
        parts = [self._chip_row("virtual", virtual), self._chip_row("prompt", self._pieces(prompt_ids)),
                 self._chip_row("completion", self._pieces(completion_ids))]
        legend = " ".join(f'<span style="{_CHIP};background:{COLOURS[k]}">{label}</span>' for k, label in (
            ("virtual", f"virtual ({len(virtual)})"), ("prompt", f"prompt ({len(prompt_ids)})"),
            ("completion", f"completion, trained ({len(completion_ids)})")))
        return f"<div>{legend}</div><div style='margin-top:4px'>{''.join(parts)}</div>"

    def _pieces(self, ids: list[int]) -> list[str]:
        return [self.tokenizer.decode([i]).replace(" ", "␣").replace("\n", "↵") for i in ids]

    @staticmethod
    def _chip_row(kind: str, pieces: list[str]) -> str:
        shown = "".join(f'<span style="{_CHIP};background:{COLOURS[kind]}">{html.escape(p)}</span>'
                        for p in pieces[:MAX_CHIPS])
        more = f" … {len(pieces) - MAX_CHIPS} more" if len(pieces) > MAX_CHIPS else ""
        return shown + more

    def _totals_html(self, report: Mapping[str, Any]) -> str:
        virtual = self.num_virtual_tokens.value
        rows = [{"tokens": kind, "max": report[f"{kind}_tokens_max"], "mean": report[f"{kind}_tokens_mean"]}
                for kind in ("prompt", "completion", "total")]
        if virtual:
            rows.append({"tokens": "total + virtual", "max": report["total_tokens_max"] + virtual,
                         "mean": report["total_tokens_mean"] + virtual})
        first = "the first " if len(self.rows) > report["rows"] else ""
        summary = (f"over {first}{report['rows']} rows; max_length {report['max_length'] or 'none'}; truncated rows "
                   f"{report['truncated_rows']} ({report['truncated_tokens']} tokens)")
        return html_table(rows) + f'<div style="font-size:85%;color:#555">{html.escape(summary)}</div>'
