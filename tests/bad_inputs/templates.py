"""Bad prompt templates and rows that do not fit them."""

from __future__ import annotations

import json

from pbft_widgets import errors as E

from .bench import ROWS, Bench, Case, template


def _template_file_with_unknown_setting(bench: Bench):
    from pbft_widgets import PromptTemplate

    path = bench.path("template-unknown.json")
    path.write_text(json.dumps({**template().to_dict(), "colour": "blue"}))
    return PromptTemplate.load(path)


def _demonstrations_too_long(bench: Bench):
    demos = [{"text": "an endless, rambling, beautiful film " * 12, "label": "pos"}] * 3
    return template(demonstrations=demos, max_length=60).validate(bench.tokenizer)


def _multi_token_template():
    from pbft_widgets import Verbalizer

    return template(verbalizer=Verbalizer({"pos": "wonderfulness", "neg": "negative"}))


def _multi_token_label(bench: Bench):
    return _multi_token_template().render(ROWS[0], bench.tokenizer)



def _demonstrations_too_long_at_render(bench: Bench):
    demos = [{"text": "word " * 40, "label": "pos"}, {"text": "word " * 40, "label": "neg"}]
    return template(demonstrations=demos, max_length=60).render(ROWS[0], bench.tokenizer)


def _multi_token_label_at_validate(bench: Bench):
    return _multi_token_template().validate(bench.tokenizer)


def _sample_row_missing_field(bench: Bench):
    return template(input_template="Q: {question}").validate(bench.tokenizer, sample_row=ROWS[0])


def _empty_answer_in_second_row(bench: Bench):
    from pbft_widgets import PromptTemplate

    rows = [{"text": "a", "summary": "fine"}, {"text": "b", "summary": "  "}]
    return PromptTemplate(target_field="summary").to_pairs(rows)


def _verbalizer(words: dict):
    def run(bench: Bench):
        from pbft_widgets import Verbalizer

        return Verbalizer(words)
    return run


def _with_version_9() -> str:
    return json.dumps({**template().to_dict(), "version": 9})


def _load_template_file(name: str, content):
    """Write ``content`` (text, a function making it, or None for no file) to ``name`` and load it."""
    def run(bench: Bench):
        from pbft_widgets import PromptTemplate

        path = bench.path(name)
        if content is not None:
            path.write_text(content() if callable(content) else content)
        return PromptTemplate.load(path)
    return run


def _tpl(**fields):
    def run(bench: Bench):
        from pbft_widgets import PromptTemplate

        return PromptTemplate(**fields)
    return run


def _render(template_changes: dict, row: dict, tokenizer: bool = True):
    def run(bench: Bench):
        return template(**template_changes).render(row, bench.tokenizer if tokenizer else None)
    return run


def _chat_without_chat_template(bench: Bench):
    from pbft_widgets import PromptTemplate

    return PromptTemplate(style="chat").render({"text": "hi", "label": "x"}, bench.bert_tokenizer)


CASES: list[Case] = [
    Case("template-no-placeholder", "template", "template without an input placeholder ('Review:')",
         E.TemplateError, "add one, e.g. 'Review: {text}'", _tpl(input_template="Review:")),
    Case("template-attribute-placeholder", "template", "placeholder with an attribute ('{text.lower}')",
         E.TemplateError, "use a named column", _tpl(input_template="Review: {text.lower}")),
    Case("template-bad-braces", "template", "unclosed brace in the input template ('Review: {text')",
         E.TemplateError, "close every '{' with '}'", _tpl(input_template="Review: {text"),
         says=("malformed braces in input_template", "write literal braces as '{{'")),
    Case("template-lone-closing-brace", "template", "closing brace without an opening one ('Review: text}')",
         E.TemplateError, "write literal braces as '{{' and '}}'", _tpl(input_template="Review: text}"),
         says=("malformed braces",)),
    Case("template-empty-placeholder", "template", "placeholder without a name ('Review: {}')",
         E.TemplateError, "use a named column such as {text}", _tpl(input_template="Review: {}")),
    Case("template-bad-braces-in-context", "template", "unclosed brace in the context ('Doc: {doc')",
         E.TemplateError, "close every '{' with '}'", _tpl(context="Doc: {doc", input_template="{text}"),
         says=("malformed braces in context",)),
    Case("template-unknown-style", "template", "style that does not exist ('mask')",
         E.TemplateError, "use one of prefix, cloze, chat", _tpl(style="mask")),
    Case("template-unknown-demonstration-order", "template", "demonstration_order that does not exist ('sorted')",
         E.TemplateError, "use one of given, random, label-balanced", _tpl(demonstration_order="sorted")),
    Case("template-max-length-zero", "template", "max_length=0",
         E.TemplateError, "use a positive number", _tpl(max_length=0)),
    Case("template-unknown-field", "template", "template placeholder the rows do not have ('{question}')",
         E.DataError, "Rename the column, or change the template's placeholder",
         _render({"input_template": "Q: {question}"}, {"text": "hi", "label": "pos"}),
         says=("no column 'question'; available columns: text, label",)),
    Case("sample-row-missing-field", "template", "validate() with a sample row lacking a placeholder",
         E.DataError, "change the template's placeholder or target_field", _sample_row_missing_field,
         says=("sample_row has no column 'question'",)),
    Case("template-unknown-setting", "template", "template file with an unknown setting ('colour')",
         E.TemplateError, "remove them (known settings:", _template_file_with_unknown_setting,
         says=("malformed entry", "'colour'")),
    Case("template-demos-too-long", "template", "demonstrations longer than the context (max_length=60)",
         E.TemplateError, "lower k_shot, shorten the instruction or demonstrations", _demonstrations_too_long,
         says=("raise max_length", "3 demonstrations")),
    Case("template-demos-too-long-at-render", "template", "rendering with demonstrations that fill the context",
         E.TemplateError, "raise max_length", _demonstrations_too_long_at_render,
         says=("2 demonstrations", "max_length=60")),
    Case("template-k-shot-too-many", "template", "k_shot=5 with 1 demonstration",
         E.TemplateError, "add demonstrations or choose k_shot",
         lambda bench: template(demonstrations=[{"text": "great", "label": "pos"}], k_shot=5)),
    Case("cloze-multi-token-label", "template", "cloze label word that is several tokens ('wonderfulness')",
         E.TemplateError, "pass allow_multi_token=True to the Verbalizer or choose a single-token word",
         _multi_token_label, says=("' wonderfulness'", "'Ġwonder'")),
    Case("cloze-multi-token-label-at-validate", "template", "validate() with a label word of several tokens",
         E.TemplateError, "pass allow_multi_token=True", _multi_token_label_at_validate,
         says=("' wonderfulness'", "(label 'pos') is 2 tokens")),
    Case("cloze-without-verbalizer", "template", "style='cloze' without label words",
         E.TemplateError, "pass verbalizer=Verbalizer", _tpl(style="cloze")),
    Case("chat-without-chat-template", "template", "style='chat' with a tokenizer that has no chat template",
         E.TemplateError, "use style='prefix'", _chat_without_chat_template, says=("has no chat template",)),
    Case("chat-without-tokenizer", "template", "style='chat' rendered without a tokenizer",
         E.TemplateError, "use style='prefix'", _render({"style": "chat"}, ROWS[0], tokenizer=False),
         says=("no tokenizer was given",)),
    Case("token-report-without-tokenizer", "template", "token_report() without a tokenizer",
         E.TemplateError, "pass the model's tokenizer", lambda bench: template().token_report(ROWS, None)),
    Case("verbalizer-shared-word", "template", "two labels sharing a label word ('good')",
         E.TemplateError, "give each label its own word", _verbalizer({"pos": "Good", "neg": ["bad", "good"]}),
         says=("'good' is used by labels 'pos' and 'neg'",)),
    Case("verbalizer-empty-word", "template", "label word that is only a space",
         E.TemplateError, "give it a non-empty word", _verbalizer({"pos": " "}), says=("label 'pos'",)),
    Case("verbalizer-no-words", "template", "Verbalizer({})",
         E.TemplateError, "pass e.g. {'pos': 'great', 'neg': 'bad'}", _verbalizer({})),
    Case("template-file-future-version", "template", "template file of format version 9",
         E.TemplateError, "re-save the template", _load_template_file("v9.json", _with_version_9),
         says=("version 9 is not supported",)),
    Case("template-file-broken-json", "template", "template file that is not valid JSON",
         E.TemplateError, "fix or re-save it", _load_template_file("broken.json", "{not json"),
         says=("not valid JSON",)),
    Case("template-file-broken-yaml", "template", "template file that is not valid YAML",
         E.TemplateError, "fix or re-save it", _load_template_file("broken.yaml", "style: [cloze\n"),
         says=("not valid YAML",)),
    Case("template-file-not-a-mapping", "template", "YAML template file holding a list",
         E.TemplateError, "re-save it with .save()", _load_template_file("list.yaml", "- 1\n"),
         says=("must hold a mapping",)),
    Case("template-file-missing", "template", "loading a template file that does not exist",
         E.TemplateError, "check the path", _load_template_file("missing.json", None)),
    Case("template-save-unknown-suffix", "template", "saving a template as template.txt",
         E.TemplateError, "name it *.json, *.yaml or *.yml",
         lambda bench: template().save(bench.path("template.txt"))),
    Case("completion-empty", "data", "row whose answer is whitespace (prefix style)",
         E.DataError, "drop the row or fill in the answer",
         _render({"style": "prefix", "verbalizer": None}, {"text": "hi", "label": "   "})),
    Case("completion-empty-in-rows", "data", "second of two rows with a whitespace answer",
         E.DataError, "drop the row or fill in the answer", _empty_answer_in_second_row,
         says=("row 1: 'summary' is empty or whitespace",)),
    Case("no-rows", "data", "to_dataset([]) (an empty split or a filter that kept nothing)",
         E.DataError, "pass at least one row", lambda bench: template().to_dataset([])),
    Case("label-none", "data", "row whose label is None",
         E.DataError, "drop the row or fill in its label", _render({}, {"text": "hi", "label": None}),
         says=("'label' is None/NaN",)),
    Case("label-nan", "data", "row whose label is NaN (an empty spreadsheet cell)",
         E.DataError, "drop the row or fill in its label", _render({}, {"text": "hi", "label": float("nan")}),
         says=("'label' is None/NaN",)),
    Case("demonstration-label-none", "data", "demonstration whose label is None",
         E.DataError, "drop the row or fill in its label",
         lambda bench: template(demonstrations=[ROWS[0], {"text": "b", "label": None}]),
         says=("demonstration 1: 'label' is None/NaN",)),
    Case("label-not-in-verbalizer", "data", "row with a label the verbalizer does not know ('neutral')",
         E.DataError, "Add it to the Verbalizer or fix the row's label",
         _render({}, {"text": "hi", "label": "neutral"}), says=("label 'neutral'", "known labels: pos, neg")),
    Case("label-not-in-verbalizer-in-rows", "data", "first of several rows with an unknown label ('meh')",
         E.DataError, "Add it to the Verbalizer or fix the row's label",
         lambda bench: template().to_pairs([{"text": "x", "label": "meh"}, ROWS[0]]),
         says=("row 0: label 'meh' is not in the verbalizer; known labels: pos, neg",)),
    Case("row-missing-label", "data", "row without the label column",
         E.DataError, "change the template's placeholder or target_field",
         _render({}, {"text": "x"}), says=("no column 'label'; available columns: text",)),
    Case("row-missing-target", "data", "dataset row without the template's target field",
         E.DataError, "change the template's placeholder or target_field",
         lambda bench: template().to_pairs([ROWS[0], {"text": "no label here"}])),
]
