"""Bad calls to label-word scoring, calibration, probability metrics and the bootstrap / seed helpers."""

from __future__ import annotations

import numpy as np

from pbft_widgets import errors as E

from .bench import ROWS, Bench, Case, template


def _verbalizer(words):
    def run(bench: Bench):
        from pbft_widgets import Verbalizer

        return Verbalizer(words)
    return run


def _word_ids(words, *, tokenizer: str = "smol", **changes):
    def run(bench: Bench):
        from pbft_widgets import Verbalizer
        from pbft_widgets.scoring import label_word_ids

        chosen = bench.bert_tokenizer if tokenizer == "bert" else bench.tokenizer
        return label_word_ids(template(verbalizer=Verbalizer(words), **changes), chosen)
    return run


def _evaluate(*, model: str = "lm", rows=ROWS, **options):
    def run(bench: Bench):
        from pbft_widgets import evaluate

        if model == "lm":
            network, tokenizer = bench.lm(), bench.tokenizer
        else:
            network, tokenizer = bench.bert(model, ["neg", "pos"]), bench.bert_tokenizer
        return evaluate(network, tokenizer, rows, **options)
    return run


def _score_with_token_classifier(bench: Bench):
    from pbft_widgets.scoring import score_rows

    return score_rows(bench.bert("token-classification", ["O", "B-D"]), bench.bert_tokenizer, template(), ROWS)


def _calibrate(rows, **options):
    def run(bench: Bench):
        from pbft_widgets.calibration import calibrate

        return calibrate(bench.lm(), bench.tokenizer, template(), rows, **options)
    return run


def _calibration_for_other_labels(bench: Bench):
    from pbft_widgets.calibration import no_calibration
    from pbft_widgets.scoring import LabelScores

    return no_calibration(["yes", "no"]).apply(LabelScores(["pos", "neg"], np.zeros((1, 2))))


def _temperature_with_foreign_labels(bench: Bench):
    from pbft_widgets.calibration import no_calibration
    from pbft_widgets.scoring import LabelScores

    return no_calibration(["pos", "neg"]).fit_temperature(LabelScores(["pos", "neg"], np.zeros((2, 2))),
                                                          ["pos", "neutral"])


def _compare_one_row(bench: Bench):
    from pbft_widgets.comparison import compare
    from pbft_widgets.evaluation import EvalResult

    one = EvalResult("a", "classification", {"accuracy": 1.0}, ["pos"], ["pos"], ["x"], 1.0)
    return compare({"zero-shot": one, "tuned": one})


def _one_seed(bench: Bench):
    from pbft_widgets.uncertainty import over_seeds

    return over_seeds(lambda seed: None, seeds=(0,))


def _probabilities_of_wrong_shape(bench: Bench):
    from pbft_widgets.probability_metrics import probability_scores

    return probability_scores(np.full((3, 2), 0.5), ["pos", "neg"], ["pos", "neg"])


def _generate_with_calibration(bench: Bench):
    from pbft_widgets import evaluate
    from pbft_widgets.calibration import no_calibration

    return evaluate(bench.lm(), bench.tokenizer, ROWS, template=template(), task_kind="classification",
                    scoring="generate", calibration=no_calibration(["pos", "neg"]))


CASES: list[Case] = [
    Case("verbalizer-empty", "scoring", "a Verbalizer with no labels at all",
         E.TemplateError, "pass e.g. {'pos': 'great', 'neg': 'bad'}", _verbalizer({})),
    Case("verbalizer-label-without-words", "scoring", "a label given an empty list of words",
         E.TemplateError, "give it at least one", _verbalizer({"pos": "great", "neg": []}),
         says=("label 'neg' has no label words",)),
    Case("label-words-identical-tokens", "scoring",
         "label words of two labels that an accent-stripping, lower-casing tokenizer turns into the same tokens "
         "('café' and 'cafe')",
         E.TemplateError, "give one of the labels another word",
         _word_ids({"coffee shop": "café", "cheap eatery": "cafe"}, tokenizer="bert"),
         says=("'café' (label 'coffee shop')", "cannot be told apart")),
    Case("label-words-without-output-indicator", "scoring",
         "label-word scoring with a template whose output indicator is empty",
         E.TemplateError, "set output_indicator (e.g. 'Answer:')",
         _evaluate(template=template(output_indicator=""), task_kind="classification"),
         says=("reads the label words right after the output indicator",)),
    Case("label-words-on-a-token-classifier", "scoring",
         "scoring a verbalizer's label words with a token-classification model",
         E.ConfigError, "evaluate it without a verbalizer", _score_with_token_classifier,
         says=("has a classification head",)),
    Case("label-words-scoring-on-a-classifier", "scoring", "evaluate(..., scoring='label-words') on a classification head",
         E.ConfigError, "drop scoring=",
         _evaluate(model="sequence-classification", template=template(), task_kind="classification",
                   scoring="label-words"), says=("has a classification head",)),
    Case("label-words-for-generation", "scoring", "scoring='label-words' with task_kind='generation'",
         E.ConfigError, "drop scoring=", _evaluate(template=template(), task_kind="generation", scoring="label-words"),
         says=("is not classification",)),
    Case("scoring-unknown", "scoring", "scoring='logits'",
         E.ConfigError, "use one of label-words, generate",
         _evaluate(template=template(), task_kind="classification", scoring="logits")),
    Case("label-words-with-generation-options", "scoring",
         "max_new_tokens passed to a classification that scores label words (nothing is generated)",
         E.ConfigError, "pass scoring='generate' to generate, or drop them",
         _evaluate(template=template(), task_kind="classification", max_new_tokens=4)),
    Case("calibration-without-probabilities", "scoring", "a calibration passed to an evaluation that generates",
         E.ConfigError, "use it with classification by label words or by a classification head",
         _generate_with_calibration),
    Case("calibration-no-validation-rows", "scoring", "calibrate() with an empty list of validation rows",
         E.DataError, "or temperature=False for contextual calibration alone", _calibrate([]),
         says=("none were given",)),
    Case("calibration-validation-row-without-label", "scoring", "a validation row without the label column",
         E.DataError, "give every validation row its label", _calibrate([{"text": "great"}]),
         says=("has no 'label' column",)),
    Case("calibration-for-other-labels", "scoring", "applying a calibration fitted for another verbalizer",
         E.DataError, "fit it with the same template's verbalizer", _calibration_for_other_labels),
    Case("temperature-unknown-validation-label", "scoring", "fitting a temperature on rows with a label the "
         "verbalizer lacks", E.DataError, "fix the rows or the verbalizer", _temperature_with_foreign_labels,
         says=("'neutral'",)),
    Case("probabilities-wrong-shape", "scoring", "probability metrics for 3 rows of probabilities and 2 references",
         E.DataError, "pass one row per reference and one column per label", _probabilities_of_wrong_shape),
    Case("bootstrap-one-row", "scoring", "compare() with intervals on results of a single test row",
         E.DataError, "evaluate more rows, or compare without intervals", _compare_one_row,
         says=("needs at least 2, got 1",)),
    Case("seeds-one-seed", "scoring", "over_seeds with a single seed",
         E.DataError, "pass e.g. seeds=(0, 1, 2)", _one_seed, says=("at least two distinct seeds",)),
]
