"""Progress bars: one bar per long call, steps and loss on it, none under CI or when nested."""

from __future__ import annotations

import pytest

from pbft_widgets import PromptTemplate, Verbalizer, evaluate
from pbft_widgets.inspection import ablate_tokens
from pbft_widgets.methods import apply_method
from pbft_widgets.progress import bars_enabled
from pbft_widgets.training import train

ROWS = [{"text": "a wonderful, moving film", "label": "pos"}, {"text": "dull and far too long", "label": "neg"},
        {"text": "I loved every minute", "label": "pos"}, {"text": "a waste of an evening", "label": "neg"}] * 3


def _template() -> PromptTemplate:
    return PromptTemplate(input_template="Review: {text}", output_indicator="Sentiment:", style="cloze",
                          verbalizer=Verbalizer({"pos": "positive", "neg": "negative"}))


@pytest.mark.parametrize("env, progress, shown", [
    ({}, None, True), ({"CI": "true"}, None, False), ({"PBFT_PROGRESS": "0"}, None, False),
    ({"CI": "true"}, True, True), ({}, False, False), ({"CI": "false"}, None, True)])
def test_bars_are_on_by_default_and_off_under_ci(env, progress, shown, monkeypatch):
    for name in ("CI", "PBFT_PROGRESS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert bars_enabled(progress) is shown


def test_train_shows_one_bar_with_its_steps_and_loss(tiny_causal_lm, smol_tokenizer, tmp_path, capsys,
                                                     monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("PBFT_PROGRESS", raising=False)
    setup = apply_method(tiny_causal_lm, "prompt-tuning", tokenizer=smol_tokenizer, num_virtual_tokens=2,
                         init="random")
    train(setup, ROWS, tokenizer=smol_tokenizer, template=_template(), eval_rows=ROWS[:4], output_dir=tmp_path,
          max_steps=3, batch_size=4, eval_every=3, smoke=False, save_final_adapter=False)
    err = capsys.readouterr().err
    assert "training" in err and "3/3" in err and "loss=" in err and "eval_loss=" in err
    assert "evaluating" not in err  # evaluations inside the run move no bar of their own


def test_train_leaves_progress_to_a_listener_that_shows_it(tiny_causal_lm, smol_tokenizer, tmp_path, capsys,
                                                            monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    class Board:
        shows_progress = True

        def __init__(self) -> None:
            self.events = []

        def on_event(self, event) -> None:
            self.events.append(event)

    board = Board()
    setup = apply_method(tiny_causal_lm, "prompt-tuning", tokenizer=smol_tokenizer, num_virtual_tokens=2,
                         init="random")
    train(setup, ROWS, tokenizer=smol_tokenizer, template=_template(), output_dir=tmp_path, max_steps=2,
          batch_size=4, smoke=False, save_final_adapter=False, listeners=[board.on_event], progress=None)
    assert board.events and "training" not in capsys.readouterr().err


def test_evaluate_counts_rows_and_an_ablation_shows_one_bar(tiny_causal_lm, smol_tokenizer, capsys):
    model = apply_method(tiny_causal_lm, "prompt-tuning", tokenizer=smol_tokenizer, num_virtual_tokens=2,
                         init="random").model
    evaluate(model, smol_tokenizer, ROWS, template=_template(), task_kind="classification", batch_size=5,
             progress=True)
    err = capsys.readouterr().err
    assert "evaluating classification" in err and "12/12" in err
    ablate_tokens(model, smol_tokenizer, _template(), ROWS, replacements=["zero"], progress=True)
    err = capsys.readouterr().err
    assert "ablating tokens" in err and "3/3" in err and "evaluating" not in err
    evaluate(model, smol_tokenizer, ROWS, template=_template(), task_kind="classification", progress=False)
    assert capsys.readouterr().err == ""
