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


def _multi_token_label(bench: Bench):
    from pbft_widgets import Verbalizer

    multi_token = template(verbalizer=Verbalizer({"pos": "wonderfulness", "neg": "negative"}))
    return multi_token.render(ROWS[0], bench.tokenizer)



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
         E.TemplateError, "close every '{' with '}'", _tpl(input_template="Review: {text")),
    Case("template-unknown-field", "template", "template placeholder the rows do not have ('{question}')",
         E.DataError, "Rename the column, or change the template's placeholder",
         _render({"input_template": "Q: {question}"}, {"text": "hi", "label": "pos"})),
    Case("template-unknown-setting", "template", "template file with an unknown setting ('colour')",
         E.TemplateError, "remove them (known settings:", _template_file_with_unknown_setting),
    Case("template-demos-too-long", "template", "demonstrations longer than the context (max_length=60)",
         E.TemplateError, "lower k_shot, shorten the instruction or demonstrations", _demonstrations_too_long),
    Case("template-k-shot-too-many", "template", "k_shot=5 with 1 demonstration",
         E.TemplateError, "add demonstrations or choose k_shot",
         lambda bench: template(demonstrations=[{"text": "great", "label": "pos"}], k_shot=5)),
    Case("cloze-multi-token-label", "template", "cloze label word that is several tokens ('wonderfulness')",
         E.TemplateError, "pass allow_multi_token=True to the Verbalizer or choose a single-token word",
         _multi_token_label),
    Case("cloze-without-verbalizer", "template", "style='cloze' without label words",
         E.TemplateError, "pass verbalizer=Verbalizer", _tpl(style="cloze")),
    Case("chat-without-chat-template", "template", "style='chat' with a tokenizer that has no chat template",
         E.TemplateError, "use style='prefix'", _chat_without_chat_template),
    Case("completion-empty", "data", "row whose answer is whitespace (prefix style)",
         E.DataError, "drop the row or fill in the answer",
         _render({"style": "prefix", "verbalizer": None}, {"text": "hi", "label": "   "})),
    Case("label-none", "data", "row whose label is None",
         E.DataError, "drop the row or fill in its label", _render({}, {"text": "hi", "label": None})),
    Case("label-nan", "data", "row whose label is NaN (an empty spreadsheet cell)",
         E.DataError, "drop the row or fill in its label", _render({}, {"text": "hi", "label": float("nan")})),
    Case("label-not-in-verbalizer", "data", "row with a label the verbalizer does not know ('neutral')",
         E.DataError, "Add it to the Verbalizer or fix the row's label",
         _render({}, {"text": "hi", "label": "neutral"})),
    Case("row-missing-target", "data", "dataset row without the template's target field",
         E.DataError, "change the template's placeholder or target_field",
         lambda bench: template().to_pairs([ROWS[0], {"text": "no label here"}])),
]
