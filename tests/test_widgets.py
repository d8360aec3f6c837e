"""Widgets, headless: set control values, click buttons, and check state, HTML and figure data.

No kernel is needed: ipywidgets and plotly FigureWidgets keep their state in Python. Models are
the tiny random ones from conftest; the dashboard tests run real (short) training.
"""

from __future__ import annotations

import copy
import html
import time

import plotly.graph_objects as go
import pytest
import torch
from peft import PeftModel

from pbft_widgets.adapters import save_adapter
from pbft_widgets.errors import ConfigError, DataError, TemplateError
from pbft_widgets.inspection import initial_prompt, prompt_attention, snapshot_prompt, soft_prompt
from pbft_widgets.methods import apply_method
from pbft_widgets.serve import AdapterBank
from pbft_widgets.templates import PromptTemplate, Verbalizer
from pbft_widgets.checkpoints import CHECKPOINT_MARKER
from pbft_widgets.widgets import (AdapterSwitcher, AttentionExplorer, NeighbourExplorer, PromptEditor,
                                  TrainingDashboard)
from pbft_widgets.widgets.neighbours import ALL

REVIEWS = [("a wonderful, moving film", "pos"), ("dull and far too long", "neg"),
           ("I loved every minute", "pos"), ("a waste of an evening", "neg")]
ROWS = [{"text": text, "label": label} for text, label in REVIEWS]
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def sentiment() -> PromptTemplate:
    return PromptTemplate(instruction="Is the review positive or negative?", input_template="Review: {text}",
                          output_indicator="Sentiment:", style="cloze",
                          verbalizer=Verbalizer({"pos": "positive", "neg": "negative"}))


def displays_its_root(view) -> bool:
    return view._repr_mimebundle_()[WIDGET_MIME]["model_id"] == view.widget.model_id


def chips(view_html: str, colour: str) -> int:
    return view_html.count(f"background:{colour}") - 1  # minus the legend chip


# ----------------------------------------------------------------------------- PromptEditor
def test_editor_previews_counts_and_shows_where_virtual_tokens_go(smol_tokenizer):
    from pbft_widgets.widgets.prompt_editor import COLOURS

    template = sentiment()
    editor = PromptEditor(ROWS, smol_tokenizer, template, n_preview=2, num_virtual_tokens=4)
    assert editor.error is None and editor.template == template
    assert displays_its_root(editor)
    first = template.render(ROWS[0], smol_tokenizer)
    assert editor.examples == [first, template.render(ROWS[1], smol_tokenizer)]
    preview = html.unescape(editor.preview.value)
    assert first.prompt in preview and " positive<|im_end|>" in preview
    assert f"prompt {first.prompt_tokens} + completion {first.completion_tokens} tokens + 4 virtual" in preview
    assert chips(editor.tokens.value, COLOURS["virtual"]) == 4
    assert chips(editor.tokens.value, COLOURS["prompt"]) == first.prompt_tokens
    assert chips(editor.tokens.value, COLOURS["completion"]) == first.completion_tokens == 2
    report = template.token_report(ROWS, smol_tokenizer)
    assert editor.report == report
    assert f"<td style=\"padding:2px 8px\">{report['total_tokens_max'] + 4}</td>" in editor.totals.value


def test_editor_edits_make_new_templates_and_notify(smol_tokenizer):
    editor = PromptEditor(ROWS, smol_tokenizer, sentiment())
    seen = []
    editor.on_change(seen.append)
    editor.instruction.value = "Classify the review."
    assert seen[-1].instruction == "Classify the review." and editor.template is seen[-1]
    editor.demonstrations.value = '{"text": "great fun", "label": "pos"}\n{"text": "boring", "label": "neg"}'
    editor.k_shot.value = "1"
    editor.order.value = "label-balanced"
    assert editor.template.k_shot == 1 and len(editor.template.demonstrations) == 2
    assert editor.examples[0].prompt == editor.template.render(ROWS[0], smol_tokenizer).prompt
    assert editor.examples[0].prompt.count("Review: ") == 2  # one demonstration + the query
    editor.verbalizer.value = "pos: good, great\nneg: bad"
    assert editor.template.verbalizer.word("pos") == "good"
    assert " good<|im_end|>" in html.unescape(editor.preview.value)
    editor.style.value = "chat"
    assert editor.examples[0].prompt.startswith("<|im_start|>")
    assert len(seen) == 6


@pytest.mark.parametrize("control, value, error", [
    ("verbalizer", "pos: positive\nneg:", TemplateError),
    ("verbalizer", "positive", TemplateError),
    ("verbalizer", "pos: very positive\nneg: negative", TemplateError),
    ("k_shot", "3", TemplateError),
    ("k_shot", "two", TemplateError),
    ("input_template", "Review", TemplateError),
    ("input_template", "Review: {text", TemplateError),
    ("demonstrations", "{not json", DataError),
    ("target_field", "sentiment", DataError),
    ("num_virtual_tokens", -1, TemplateError),
])
def test_editor_shows_invalid_values_inline_and_recovers(smol_tokenizer, control, value, error):
    editor = PromptEditor(ROWS, smol_tokenizer, sentiment())
    good = getattr(editor, control).value
    getattr(editor, control).value = value
    with pytest.raises(error) as raised:  # what the message says is checked in the bad-input catalogue
        editor.template
    assert editor.error == str(raised.value)  # shown inline, word for word
    assert editor.error in html.unescape(editor.message.html.value) and "#d32f2f" in editor.message.html.value
    assert editor.preview.value == editor.tokens.value == ""
    getattr(editor, control).value = good
    assert editor.error is None and editor.message.html.value == "" and editor.preview.value


def test_editor_accepts_multi_token_words_when_allowed_and_reports_empty_rows(smol_tokenizer):
    editor = PromptEditor(ROWS, smol_tokenizer, sentiment())
    editor.verbalizer.value = "pos: very positive\nneg: negative"
    assert editor.error is not None
    editor.allow_multi_token.value = True
    assert editor.error is None and editor.template.verbalizer.allow_multi_token
    empty = PromptEditor([], smol_tokenizer, sentiment())
    assert "no rows to render" in empty.error


def test_editor_notes_truncation_without_failing(smol_tokenizer):
    rows = [{"text": "an endless, aimless, tedious and far too long film " * 4, "label": "neg"}, *ROWS]
    editor = PromptEditor(rows, smol_tokenizer, sentiment().with_changes(max_length=24))
    assert editor.error is None and editor.examples[0].truncated_tokens > 0
    assert "input tokens were cut from 1 of 5 rows" in editor.message.text
    assert "#f9a825" in editor.message.html.value  # a note, not an error
    assert "truncated rows 1" in editor.totals.value


# ----------------------------------------------------------------------------- TrainingDashboard
def test_dashboard_trains_synchronously_with_live_curves(tiny_causal_lm, smol_tokenizer, tmp_path):
    editor = PromptEditor(ROWS, smol_tokenizer, sentiment())
    board = TrainingDashboard(tiny_causal_lm, smol_tokenizer, ROWS * 2, template=editor, eval_rows=ROWS,
                              output_dir=str(tmp_path / "run"), max_steps=4, batch_size=4, background=False,
                              eval_every=2)
    assert displays_its_root(board)
    assert board.learning_rate.value == 3e-2  # prompt tuning's default, shown before Start
    assert [c.description for c in board.options.children] == [
        "num_virtual_tokens", "init", "init_text", "gradient_checkpointing"]
    board.options.children[0].value = 4
    board.start_button.click()

    result = board.result
    assert board.error is None and not result.stopped_by_user
    assert board.setup.method == "prompt-tuning" and board.setup.options["num_virtual_tokens"] == 4
    loss = board.loss_figure.data[0]
    assert loss.name == "train loss" and list(loss.x) == [1, 2, 3, 4]
    assert list(zip(loss.x, loss.y)) == result.losses()
    assert list(board.loss_figure.data[1].x) == [2, 4]  # eval loss
    curves = {t.name: t for t in board.metric_figure.data}
    assert "mean_token_accuracy" in curves
    assert list(curves["accuracy"].x) == [2, 4] and "ece" in curves  # label-word scoring of the eval rows, live
    assert "epoch" not in [t.name for t in board.metric_figure.data]
    assert board.progress.value == board.progress.max == 4 and board.progress.bar_style == "success"
    assert "step 4/4" in board.readout.value and "tokens/s" in board.readout.value
    assert "MiB" in board.readout.value or "GiB" in board.readout.value
    assert f"{4 * tiny_causal_lm.config.hidden_size:,} trainable" in board.report.value  # 4 virtual tokens
    start = initial_prompt(board.setup.model)  # snapshot taken when the method was applied
    assert start.shape == (4, tiny_causal_lm.config.hidden_size) and not torch.allclose(start, soft_prompt(board.setup.model))
    assert board.history == result.history and board.history[-1].kind == "end"
    assert (result.adapter_path / "pbft_adapter.json").is_file()
    assert not board.start_button.disabled and board.stop_button.disabled

    board.start_button.click()  # a second run would stack adapters on the same base model
    assert "already finished a prompt-tuning run" in board.message.text
    assert board.result is result and not isinstance(board.setup.model.base_model, PeftModel)


def test_dashboard_stop_keeps_a_complete_checkpoint_and_start_resumes(tiny_causal_lm, smol_tokenizer, tmp_path):
    board = TrainingDashboard(tiny_causal_lm, smol_tokenizer, ROWS * 2, template=sentiment(),
                              output_dir=str(tmp_path / "run"), max_steps=500, batch_size=4)
    board.options.children[0].value = 4
    board.start_button.click()
    assert board.running and board.start_button.disabled and not board.stop_button.disabled
    deadline = time.monotonic() + 60
    while not any(e.kind == "log" for e in board.history) and time.monotonic() < deadline:
        time.sleep(0.02)
    board.stop_button.click()
    result = board.wait(60)
    assert not board.running and board.error is None
    assert result.stopped_by_user and board.progress.bar_style == "warning"
    stopped_at = result.history[-1].step
    assert 1 <= stopped_at < 500
    assert result.last_checkpoint.name == f"checkpoint-{stopped_at}"
    assert (result.last_checkpoint / CHECKPOINT_MARKER).is_file()
    assert "press Start to resume" in board.message.text

    board.background = False
    board.max_steps.value = stopped_at + 2
    board.start_button.click()
    logs = [e.step for e in board.history if e.kind == "log"]
    assert logs[-2:] == [stopped_at + 1, stopped_at + 2]
    assert not board.result.stopped_by_user and board.progress.value == stopped_at + 2


def test_dashboard_shows_bad_settings_inline(tiny_causal_lm, smol_tokenizer, tmp_path):
    board = TrainingDashboard(tiny_causal_lm, smol_tokenizer, ROWS, template=sentiment(),
                              methods=["lora", "prefix-tuning"], output_dir=str(tmp_path / "run"), max_steps=1, batch_size=8, background=False)
    assert board.method.options == ("lora", "prefix-tuning") and board.learning_rate.value == 5e-4
    board.stop()
    assert "no run in progress" in board.message.text
    board.learning_rate.value = 0.0
    board.start_button.click()
    assert "use a positive learning rate" in board.message.text and board.setup is None
    board.method.value = "prefix-tuning"  # resets lr to the method's default
    board.method.value = "lora"
    options = {c.description: c for c in board.options.children}
    options["r"].value = 0
    board.start_button.click()
    assert "LoRA rank r=0" in board.message.text and board.setup is None
    assert not isinstance(tiny_causal_lm, PeftModel) and not hasattr(tiny_causal_lm, "peft_config")
    options["r"].value = 2
    options["target_modules"].value = "q_proj, v_proj"
    assert board.method_options()["target_modules"] == ["q_proj", "v_proj"]
    board.start_button.click()  # 4 rows < batch size 8: train() refuses after the method was applied
    assert "lower batch_size to at most 4" in board.message.text and board.result is None
    assert board.progress.bar_style == "danger"
    board.method.value = "prefix-tuning"
    board.start_button.click()
    assert "already carries the lora adapter" in board.message.text
    board.method.value = "lora"
    board.batch_size.value = 4
    board.start_button.click()  # retries with the adapter already applied
    assert board.error is None and board.result.losses()[0][0] == 1
    assert board.setup.options["target_modules"] == ["q_proj", "v_proj"]
    with pytest.raises(ConfigError):
        TrainingDashboard(tiny_causal_lm, smol_tokenizer, ROWS, methods=["adapter-soup"])


# ----------------------------------------------------------------------------- inspection views
@pytest.fixture
def prompt_model(tiny_causal_lm, smol_tokenizer):
    """Prompt tuning from the text 'Classify the review' (one token each); v1 then moves away."""
    setup = apply_method(tiny_causal_lm, "prompt-tuning", tokenizer=smol_tokenizer, num_virtual_tokens=4,
                         init="text", init_text="Classify the review")
    snapshot_prompt(setup.model)
    with torch.no_grad():
        setup.model.prompt_encoder["default"].embedding.weight[1] += 1.0
    return setup.model


def test_neighbour_explorer_table_map_and_drift(prompt_model, smol_tokenizer):
    explorer = NeighbourExplorer(prompt_model, smol_tokenizer, k=3)
    assert displays_its_root(explorer) and explorer.message.text is None
    assert [label for label, _ in explorer.token.options] == ["all", "v0", "v1", "v2", "v3"]
    starts = [row["top-1 before training"] for row in explorer.rows]
    init_tokens = [smol_tokenizer.decode([i]) for i in smol_tokenizer("Classify the review")["input_ids"]]
    assert starts == (init_tokens * 4)[:4]
    unmoved = [row for i, row in enumerate(explorer.rows) if i != 1]
    assert all(row["cosine to start"] > 0.999 and row["neighbours (cosine)"][0].endswith("(1.00)") for row in unmoved)
    assert explorer.rows[1]["cosine to start"] < 0.9
    names = [trace.name for trace in explorer.figure.data]
    assert names == ["nearest vocabulary tokens", "virtual tokens before training", "virtual tokens (learned)"]
    assert len(explorer.figure.data[2].x) == 4

    explorer.token.value = 1
    assert [row["rank"] for row in explorer.rows] == [1, 2, 3]
    assert explorer.figure.data[2].text == ("v1",) and len(explorer.figure.data[0].x) == 3
    explorer.k.value = 99  # beyond the slider
    assert explorer.message.text == "k=99 is outside 1..50; showing k=50" and len(explorer.rows) == 50
    explorer.token.label = "all"
    assert explorer.token.value == ALL and explorer.message.text is None and len(explorer.rows) == 4


def test_neighbour_explorer_explains_models_without_a_soft_prompt(tiny_causal_lm, smol_tokenizer):
    base = copy.deepcopy(tiny_causal_lm)
    plain = NeighbourExplorer(base, smol_tokenizer)
    assert "carries no PEFT adapter" in plain.message.text and plain.rows == []
    prefix = apply_method(tiny_causal_lm, "prefix-tuning", num_virtual_tokens=3).model
    explorer = NeighbourExplorer(prefix, smol_tokenizer)
    assert "no vocabulary neighbours" in explorer.message.text and explorer.token.disabled
    assert [row["layer"] for row in explorer.rows] == [0, 1]
    assert [trace.name for trace in explorer.figure.data] == ["prefix keys", "prefix values"]


def test_neighbour_explorer_tests_the_prompt_causally(prompt_model, smol_tokenizer):
    from pbft_widgets.inspection import ablate_tokens, faithfulness

    plain = NeighbourExplorer(prompt_model, smol_tokenizer)
    assert plain.causal_button.disabled and plain.causal.children == ()
    explorer = NeighbourExplorer(prompt_model, smol_tokenizer, template=sentiment(), eval_rows=ROWS,
                                 instruction_template=sentiment())
    assert not explorer.causal_button.disabled and explorer.ablation == []
    explorer.causal_button.click()
    assert explorer.message.text is None
    expected = ablate_tokens(prompt_model, smol_tokenizer, sentiment(), ROWS, replacements=["mean", "zero"])
    assert explorer.ablation == expected  # the same rows the core function gives
    table = faithfulness(prompt_model, smol_tokenizer, sentiment(), ROWS, instruction_template=sentiment()).table()
    assert explorer.faithfulness.table() == table
    shown, figure = explorer.causal.children
    assert "nearest tokens (cosine)" in shown.value and "hand-written instruction" in shown.value
    assert {trace.name for trace in figure.data} == {"replaced by mean", "replaced by zero"}
    assert explorer.figures() == [explorer.figure, figure]

    explorer.test_causally(["initial"])  # the snapshot from prompt_model is the start; only v1 moved since
    assert {row["replacement"] for row in explorer.ablation} == {"initial"}
    assert all(row["delta_nll"] == 0 for row in explorer.ablation if row["token"] != 1)
    explorer.test_causally(["noise"])
    assert "use one of 'mean', 'initial', 'zero'" in explorer.message.text
    assert not explorer.causal_button.disabled


def test_neighbour_explorer_ablates_a_prefix_layer_by_layer(tiny_causal_lm, smol_tokenizer):
    prefix = apply_method(tiny_causal_lm, "prefix-tuning", num_virtual_tokens=3).model
    explorer = NeighbourExplorer(prefix, smol_tokenizer, template=sentiment(), eval_rows=ROWS)
    explorer.test_causally()
    assert [(row["layer"], row["replacement"]) for row in explorer.ablation] == [(0, "zero"), (1, "zero")]
    assert explorer.faithfulness is None
    assert list(explorer.causal.children[1].data[0].x) == [0, 1]


def test_views_carry_a_png_of_their_charts_for_readers_without_a_kernel(prompt_model, smol_tokenizer):
    from pbft_widgets.display import can_render_png

    explorer = NeighbourExplorer(prompt_model, smol_tokenizer)
    bundle = explorer._repr_mimebundle_()
    assert WIDGET_MIME in bundle
    if not can_render_png():
        assert "image/png" not in bundle  # no browser here: the widget alone, no error
        return
    import base64

    png = base64.b64decode(bundle["image/png"])
    assert png.startswith(b"\x89PNG")
    explorer.causal.children = [go.FigureWidget(go.Bar(x=[1], y=[1]))]
    taller = base64.b64decode(explorer._repr_mimebundle_()["image/png"])
    assert int.from_bytes(taller[20:24], "big") > int.from_bytes(png[20:24], "big")  # both charts, stacked


def test_attention_explorer_sliders_modes_and_errors(prompt_model, smol_tokenizer):
    explorer = AttentionExplorer(prompt_model, smol_tokenizer, "a fine film")
    assert displays_its_root(explorer) and explorer.message.text is None
    report = prompt_attention(prompt_model, smol_tokenizer, "a fine film")
    assert (explorer.layer.max, explorer.head.max) == (1, 3)
    assert [t.type for t in explorer.share_figure.data] == ["heatmap", "heatmap"]  # share + change vs base
    assert torch.allclose(torch.tensor(explorer.share_figure.data[0].z), report.share)
    explorer.layer.value, explorer.head.value = 1, 2
    tuned = explorer.token_figure.data[0]
    assert torch.allclose(torch.tensor(tuned.z), report.attentions[1, 2])
    assert len(tuned.z[0]) == report.n_virtual + len(report.tokens) == 4 + 3
    assert "layer 1, head 2" in explorer.token_figure.layout.title.text

    explorer.head.value = 7
    assert explorer.message.text == "head 7 is outside 0..3; showing head 3"
    assert "layer 1, head 3" in explorer.token_figure.layout.title.text
    explorer.mode.value = "tuned"
    assert len(explorer.share_figure.data) == len(explorer.token_figure.data) == 1
    explorer.text.value = ""
    explorer.run_button.click()
    assert "text is empty" in explorer.message.text and explorer.layer.disabled
    lora = apply_method(copy.deepcopy(prompt_model.get_base_model()), "lora").model
    assert "changes weights and adds no soft prompt" in AttentionExplorer(lora, smol_tokenizer, "hi").message.text


# ----------------------------------------------------------------------------- AdapterSwitcher
def test_adapter_switcher_shows_base_and_tuned_side_by_side(tiny_causal_lm, smol_tokenizer, tmp_path):
    with torch.no_grad():
        for param in tiny_causal_lm.parameters():
            param.normal_(0.0, 0.3)
    setup = apply_method(copy.deepcopy(tiny_causal_lm), "lora", r=4)
    with torch.no_grad():
        for param in setup.model.parameters():
            if param.requires_grad:
                param.add_(0.5 * torch.randn_like(param))
    save_adapter(setup, tmp_path / "legal")
    bank = AdapterBank(tiny_causal_lm, smol_tokenizer, max_new_tokens=4)
    switcher = AdapterSwitcher(bank, text="The licence grants")
    assert displays_its_root(switcher) and "no adapters yet" in switcher.message.text
    switcher.run_button.click()
    assert "no adapter selected" in switcher.message.text

    bank.add("legal", tmp_path / "legal")
    switcher.refresh()
    assert switcher.task.value == "legal" and switcher.message.text is None
    switcher.run_button.click()
    expected = bank.compare("legal", ["The licence grants"], max_new_tokens=4)[0]
    assert switcher.outputs == expected and expected["base"] != expected["tuned"]
    shown = html.unescape(switcher.result.value)
    assert "base model" in shown and "tuned: legal" in shown
    assert expected["base"] in shown and expected["tuned"] in shown

    switcher.max_new_tokens.value = 0
    switcher.run_button.click()
    assert "use 1 or more" in switcher.message.text
    switcher.max_new_tokens.value = 2
    switcher.text.value = "  "
    switcher.run_button.click()
    assert "text is empty" in switcher.message.text and switcher.outputs == expected


def test_dashboard_says_when_a_prompt_is_not_learning(tiny_causal_lm, smol_tokenizer, tmp_path):
    board = TrainingDashboard(tiny_causal_lm, smol_tokenizer, ROWS * 2, template=sentiment(), eval_rows=ROWS,
                              output_dir=str(tmp_path / "run"), max_steps=20, batch_size=4, background=False,
                              eval_every=5, smoke=False)  # make test sets PBFT_SMOKE=1: 4 steps are too few to judge
    board.options.children[0].value = 4
    board.learning_rate.value = 1e-7  # a LoRA-sized rate divided by a thousand: the prompt cannot move
    board.start_button.click()
    assert board.error is None
    logs = [event for event in board.history if event.kind == "log"]
    assert all(event.grad_norm is not None and event.grad_norm > 0 for event in logs)
    assert 0 < logs[-1].relative_drift < 1e-3
    warnings = board.warnings()
    assert any("far below the usual range" in text for text in warnings)
    assert any("trainable weights moved" in text for text in warnings)
    assert "Is it learning?" in board.health.value and "far below the usual range" in board.health.value
    assert "grad norm" in board.readout.value and "from the start" in board.readout.value
