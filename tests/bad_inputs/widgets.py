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


def _export_into_foreign_folder(bench: Bench):
    from pbft_widgets import export_recipe

    folder = bench.path("project")
    folder.mkdir(exist_ok=True)
    (folder / "main.py").write_text("print('mine')\n")
    return export_recipe(folder, model="smollm2-135m-instruct", method="lora", train_rows=ROWS,
                         template=template())


CASES: list[Case] = [
    Case("widget-negative-virtual-tokens", "widget", "PromptEditor 'Virtual tok.' set to -4",
         E.TemplateError, "use 0 (none) or more", lambda bench: _editor(bench, num_virtual_tokens=-4)),
    Case("widget-k-shot-not-a-number", "widget", "PromptEditor 'k-shot' set to 'two'",
         E.TemplateError, "type e.g. 2", lambda bench: _editor(bench, k_shot="two")),
    Case("export-foreign-folder", "export", "export_recipe into an existing folder that is not a recipe",
         E.OutputExistsError, "choose a new target directory", _export_into_foreign_folder),
]
