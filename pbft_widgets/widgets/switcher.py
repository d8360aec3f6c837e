"""AdapterSwitcher: pick a task adapter from an AdapterBank, type a text, see base and tuned side by side.

Switching and generation are the bank's (:meth:`AdapterBank.compare`); the view only collects
the request and lays out the two answers.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as w

from ..errors import ConfigError, PbftError
from ..serve import AdapterBank
from ._common import MessageBox, View

_PANEL = ("flex:1;border:1px solid #ddd;border-radius:4px;padding:6px;margin:2px;white-space:pre-wrap;"
          "font-family:monospace")


class AdapterSwitcher(View):
    """Dropdown of the bank's tasks, a text box and Run: base model and tuned adapter outputs side by side.

    ``.outputs`` holds the last ``{"prompt", "base", "tuned"}`` row. Tasks added to the bank later
    appear after ``.refresh()``.
    """

    def __init__(self, bank: AdapterBank, *, text: str = "", max_new_tokens: int | None = None) -> None:
        self.bank = bank
        self.outputs: dict[str, Any] | None = None
        self.message = MessageBox()
        self.task = w.Dropdown(description="Adapter")
        self.text = w.Textarea(text, description="Text", rows=3, layout=w.Layout(width="100%"))
        self.max_new_tokens = w.IntText(max_new_tokens or bank.max_new_tokens, description="New tokens",
                                        disabled=bank.task_type != "causal-lm")
        self.run_button = w.Button(description="Run", icon="play", button_style="primary")
        self.result = w.HTML()
        self.widget = w.VBox([w.HBox([self.task, self.max_new_tokens, self.run_button]), self.text,
                              self.message.html, self.result])
        self.run_button.on_click(lambda _: self.run())
        self.refresh()

    def refresh(self) -> None:
        """Re-read the bank's task list (keeps the selection when it still exists)."""
        current = self.task.value
        tasks = self.bank.tasks
        self.task.options = tasks
        self.task.value = current if current in tasks else (tasks[0] if tasks else None)
        if self.bank.tasks:
            self.message.clear()
        else:
            self.message.note("the bank has no adapters yet; add one with bank.add(name, path), then refresh()")

    def run(self) -> None:
        """Answer the text with the base model and with the selected adapter; problems show inline."""
        self.message.clear()
        try:
            if self.task.value is None:
                raise ConfigError("no adapter selected; add one with bank.add(name, path), then refresh()")
            if not self.text.value.strip():
                raise ConfigError("the text is empty; type an input to compare the base and tuned models on")
            kwargs = {}
            if self.bank.task_type == "causal-lm":
                if self.max_new_tokens.value < 1:
                    raise ConfigError(f"new tokens = {self.max_new_tokens.value}; use 1 or more")
                kwargs["max_new_tokens"] = self.max_new_tokens.value
            row = self.bank.compare(self.task.value, [self.text.value], **kwargs)[0]
        except PbftError as exc:
            self.message.error(exc)
            return
        self.outputs = row
        panels = (("base model", row["base"]), (f"tuned: {self.task.value}", row["tuned"]))
        self.result.value = '<div style="display:flex">' + "".join(
            f'<div style="{_PANEL}"><b>{html.escape(title)}</b><br>{html.escape(_text(value))}</div>'
            for title, value in panels) + "</div>"


def _text(value: Any) -> str:
    """Generated text as is; classification labels (one per word for NER) joined."""
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)
