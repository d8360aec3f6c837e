"""Bad values typed into the widgets, and bad recipe exports."""

from __future__ import annotations

from pbft_widgets import errors as E

from .bench import ROWS, Bench, Case, template


def _editor(bench: Bench, **values):
    from pbft_widgets.widgets import PromptEditor

    editor = PromptEditor(ROWS, bench.tokenizer, template())
    for name, value in values.items():
        getattr(editor, name).value = value
    return editor.template


def _export_to(bench: Bench, name: str, **options):
    from pbft_widgets import export_recipe

    settings = {"model": "smollm2-135m-instruct", "method": "lora", "train_rows": ROWS, "template": template(),
                **options}
    return export_recipe(bench.path(name), **settings)


def _export(name: str, **options):
    return lambda bench: _export_to(bench, name, **options)


def _export_into_foreign_folder(bench: Bench):
    folder = bench.path("project")
    folder.mkdir(exist_ok=True)
    (folder / "main.py").write_text("print('mine')\n")
    return _export_to(bench, "project")


def _export_over_a_recipe(bench: Bench):
    _export_to(bench, "recipe-twice")
    return _export_to(bench, "recipe-twice")


def _dashboard_of_unknown_methods(bench: Bench):
    from pbft_widgets.widgets import TrainingDashboard

    return TrainingDashboard(bench.lm(), bench.tokenizer, ROWS, methods=["adapter-soup"])


def _explorer(bench: Bench, **options):
    from pbft_widgets import apply_method
    from pbft_widgets.widgets import NeighbourExplorer

    model = apply_method(bench.lm(), "prompt-tuning", tokenizer=bench.tokenizer, num_virtual_tokens=4).model
    return NeighbourExplorer(model, bench.tokenizer, **options)


CASES: list[Case] = [
    Case("widget-negative-virtual-tokens", "widget", "PromptEditor 'Virtual tok.' set to -4",
         E.TemplateError, "use 0 (none) or more", lambda bench: _editor(bench, num_virtual_tokens=-4)),
    Case("widget-k-shot-not-a-number", "widget", "PromptEditor 'k-shot' set to 'two'",
         E.TemplateError, "type e.g. 2", lambda bench: _editor(bench, k_shot="two"), says=("not a whole number",)),
    Case("widget-verbalizer-empty-word", "widget", "PromptEditor label words with an empty word ('neg:')",
         E.TemplateError, "give it a non-empty word", lambda bench: _editor(bench, verbalizer="pos: positive\nneg:"),
         says=("label 'neg' has an empty label word",)),
    Case("widget-verbalizer-without-colon", "widget", "PromptEditor label words without 'label: word' ('positive')",
         E.TemplateError, "write one label per line, e.g. 'pos: great'",
         lambda bench: _editor(bench, verbalizer="positive"),
         says=("is not 'label: word'",)),
    Case("widget-verbalizer-multi-token", "widget", "PromptEditor label word of two words ('very positive')",
         E.TemplateError, "allow_multi_token=True",
         lambda bench: _editor(bench, verbalizer="pos: very positive\nneg: negative")),
    Case("widget-k-shot-without-demonstrations", "widget", "PromptEditor 'k-shot' 3 with no demonstrations",
         E.TemplateError, "add demonstrations or choose k_shot", lambda bench: _editor(bench, k_shot="3"),
         says=("k_shot=3 but 0 demonstrations",)),
    Case("widget-input-without-placeholder", "widget", "PromptEditor input template without '{text}'",
         E.TemplateError, "add one, e.g. 'Review: {text}'", lambda bench: _editor(bench, input_template="Review"),
         says=("no {text} placeholder",)),
    Case("widget-input-bad-braces", "widget", "PromptEditor input template 'Review: {text'",
         E.TemplateError, "close every '{' with '}'", lambda bench: _editor(bench, input_template="Review: {text"),
         says=("malformed braces",)),
    Case("widget-demonstrations-not-json", "widget", "PromptEditor demonstrations that are not JSON",
         E.DataError, "write one object per line", lambda bench: _editor(bench, demonstrations="{not json"),
         says=("not valid JSON",)),
    Case("widget-target-field-missing", "widget", "PromptEditor target field the rows lack ('sentiment')",
         E.DataError, "change the template's placeholder or target_field",
         lambda bench: _editor(bench, target_field="sentiment"), says=("no column 'sentiment'",)),
    Case("export-foreign-folder", "export", "export_recipe into an existing folder that is not a recipe",
         E.OutputExistsError, "choose a new target directory", _export_into_foreign_folder,
         says=("not a recipe written by export_recipe",)),
    Case("export-over-a-recipe", "export", "export_recipe twice into the same folder",
         E.OutputExistsError, "pass overwrite=True to replace it", _export_over_a_recipe,
         says=("already holds an exported recipe",)),
    Case("export-without-template", "export", "export_recipe of a causal-LM recipe without a template",
         E.ConfigError, "needs template=PromptTemplate(...)", _export("recipe-no-template", template=None)),
    Case("export-unserialisable-option", "export", "a method option that is an object, not a plain value",
         E.ConfigError, "must hold plain values (numbers, strings, lists, dicts)",
         _export("recipe-object-option", method_options={"callback": object()})),
    Case("explorer-template-without-rows", "widget", "NeighbourExplorer(template=...) without eval_rows",
         E.ConfigError, "pass both, or neither", lambda bench: _explorer(bench, template=template())),
    Case("explorer-causal-without-rows", "widget", "NeighbourExplorer.test_causally() on an explorer built without rows",
         E.ConfigError, "build it with template=... and eval_rows=...",
         lambda bench: _explorer(bench).test_causally()),
    Case("dashboard-unknown-methods", "widget", "TrainingDashboard offered only a method that does not exist",
         E.ConfigError, "choose from prompt-tuning, prefix-tuning", _dashboard_of_unknown_methods,
         says=("['adapter-soup'] do not exist or do not support task 'causal-lm'",)),
]
