"""Bad calls to evaluate(), generate_texts(), compare(), columns() and to_markdown()."""

from __future__ import annotations

import copy

from pbft_widgets import errors as E

from .bench import Bench, Case

ANSWER_ROWS = [{"text": "a great film", "answer": "yes"}, {"text": "bad", "answer": "no"}]
NER_ROWS = [{"text": "fever and cough", "tokens": ["fever", "and", "cough"], "tags": ["B-D", "O", "B-D"]}]


def _answer_template():
    from pbft_widgets import PromptTemplate

    return PromptTemplate(input_template="Review: {text}", output_indicator="Answer:", target_field="answer")


def _tags_template():
    from pbft_widgets import PromptTemplate

    return PromptTemplate(input_template="Sentence: {text}", output_indicator="Diseases:", target_field="tags")


def _evaluate(rows=ANSWER_ROWS, *, model: str = "lm", **options):
    """evaluate() on the tiny LM (or a tiny BERT classifier) with ``options``."""
    def run(bench: Bench):
        from pbft_widgets import evaluate

        network = bench.bert("classification", ["neg", "pos"]) if model == "bert" else bench.lm()
        tokenizer = bench.bert_tokenizer if model == "bert" else bench.tokenizer
        return evaluate(network, tokenizer, rows, **options)
    return run


def _generate(prompts: list[str], *, pad_token: bool = True):
    def run(bench: Bench):
        from pbft_widgets.generation import generate_texts

        tokenizer = bench.tokenizer
        if not pad_token:
            tokenizer = copy.deepcopy(tokenizer)
            tokenizer.pad_token = None
        return generate_texts(bench.lm(), tokenizer, prompts)
    return run


def _result(name: str, kind: str = "ner", n: int = 4):
    from pbft_widgets.evaluation import EvalResult

    scores = {"ner": {"f1": 0.5}, "translation": {"chrf": 1.0}}[kind]
    return EvalResult(name, kind, scores, [[]] * n, [[]] * n, [""] * n, seconds=1.0)


def _compare(*results):
    def run(bench: Bench):
        from pbft_widgets.comparison import compare

        return compare({result.name: result for result in results})
    return run


def _columns_unknown(bench: Bench):
    from pbft_widgets.comparison import columns

    return columns({"name": "tuned", "accuracy": 0.5, "accuracy_low": 0.4, "accuracy_high": 0.6}, "f1")


def _to_markdown_empty(bench: Bench):
    from pbft_widgets.comparison import to_markdown

    return to_markdown([])


CASES: list[Case] = [
    Case("generate-empty-prompt", "evaluation", "an empty prompt among the prompts to generate from",
         E.DataError, "give every row some input text", _generate([""]), says=("prompt 0 is empty",)),
    Case("generate-no-pad-token", "evaluation", "a tokenizer without a pad token for batched generation",
         E.ConfigError, "pad_token = tokenizer.eos_token", _generate(["Hi"], pad_token=False),
         says=("no pad token",)),
    Case("evaluate-ner-generation-without-parse", "evaluation",
         "NER by generation without a function that reads the tags back",
         E.ConfigError, "parse=callable", _evaluate(NER_ROWS, task_kind="ner", max_new_tokens=3,
                                                   template=_tags_template())),
    Case("evaluate-ner-on-a-sequence-classifier", "evaluation", "task_kind='ner' on a sequence-classification model",
         E.ConfigError, "load it with task='token-classification'",
         _evaluate([{"tokens": ["No", "findings"], "tags": ["O", "O"]}], model="bert", task_kind="ner"),
         says=("needs a token-classification model",)),
    Case("evaluate-generation-on-a-classifier", "evaluation", "task_kind='generation' on a classification head",
         E.ConfigError, "needs a model that generates (a causal LM)",
         _evaluate(model="bert", task_kind="generation", label_field="answer")),
    Case("evaluate-no-rows", "evaluation", "evaluate() on an empty list of rows",
         E.DataError, "pass at least one example", _evaluate([], template=_answer_template(), task_kind="generation"),
         says=("no rows",)),
    Case("evaluate-unknown-task-kind", "evaluation", "task_kind='qa'",
         E.ConfigError, "use one of classification, ner, generation, translation",
         _evaluate(template=_answer_template(), task_kind="qa"), says=("unknown task_kind 'qa'",)),
    Case("evaluate-missing-label-column", "evaluation", "label_field naming a column the rows lack ('gold')",
         E.DataError, "Pass label_field=", _evaluate(task_kind="generation", label_field="gold",
                                                      template=_answer_template()),
         says=("row 0 has no 'gold' column",)),
    Case("evaluate-without-label-field", "evaluation", "translation without a template or label_field",
         E.ConfigError, "needs label_field=", _evaluate(task_kind="translation")),
    Case("evaluate-without-template", "evaluation", "generation on a causal LM without a prompt template",
         E.ConfigError, "pass template=PromptTemplate(...)", _evaluate(task_kind="generation", label_field="answer"),
         says=("needs a prompt template",)),
    Case("evaluate-classification-without-verbalizer", "evaluation",
         "classification by generation with a template that has no verbalizer",
         E.ConfigError, "pass template.with_changes(verbalizer=",
         _evaluate(template=_answer_template(), task_kind="classification"), says=("parse=callable",)),
    Case("evaluate-batch-size-zero", "evaluation", "batch_size=0",
         E.ConfigError, "use 1 or more", _evaluate(template=_answer_template(), task_kind="generation",
                                                  batch_size=0), says=("batch_size=0",)),
    Case("compare-mixed-task-kinds", "evaluation", "comparing an NER result with a translation result",
         E.DataError, "compare results of one task kind", _compare(_result("a"), _result("b", "translation")),
         says=("mix task kinds",)),
    Case("compare-different-sizes", "evaluation", "comparing results scored on 4 and 5 examples",
         E.DataError, "evaluate every model on the same rows", _compare(_result("a"), _result("b", n=5)),
         says=("different numbers of examples",)),
    Case("compare-nothing", "evaluation", "compare({})",
         E.DataError, "pass e.g. {'zero-shot': r0, 'tuned': r1}", _compare(), says=("no results",)),
    Case("columns-unknown", "evaluation", "columns(row, 'f1') on a classification row (it has accuracy)",
         E.DataError, "choose among ['accuracy', 'name']", _columns_unknown, says=("no column 'f1'",)),
    Case("markdown-empty-table", "evaluation", "to_markdown([])",
         E.DataError, "pass compare(...) output", _to_markdown_empty, says=("empty table",)),
]
