"""Bad predictions and references given to the metrics."""

from __future__ import annotations

from pbft_widgets import errors as E
from pbft_widgets import metrics

from .bench import Case


def _score(metric: str, *args, **kwargs):
    """A run that calls pbft_widgets.metrics.<metric>(*args, **kwargs)."""
    return lambda bench: getattr(metrics, metric)(*args, **kwargs)


ENTITY_CASES = [
    Case("entities-iobes-b-at-start", "metrics", "IOBES tags whose entity 'B-LOC' never ends (entity_scores)",
         E.DataError, "make the tags valid IOBES or pass strict=False",
         _score("entity_scores", [["B-LOC", "O"]], [["O", "O"]], scheme="IOBES"),
         says=("true_tags[0][0]: 'B-LOC' follows the sentence start", "IOBES")),
    Case("entities-i-after-o", "metrics", "reference tags with an entity started by I- (entity_scores)",
         E.DataError, "to_iob2(tags) or pass strict=False",
         _score("entity_scores", [["O", "O"], ["O", "I-Disease"]], [["O", "O"], ["O", "O"]]),
         says=("true_tags[1][1]: 'I-Disease' follows 'O'",)),
    Case("entities-count-mismatch", "metrics", "1 predicted sentence for 2 reference sentences",
         E.DataError, "pass exactly one prediction per reference",
         _score("entity_scores", [["O"], ["O"]], [["O"]]), says=("1 predictions but 2 references",)),
    Case("entities-no-examples", "metrics", "entity_scores on no sentences",
         E.DataError, "pass at least one prediction/reference pair", _score("entity_scores", [], []),
         says=("no examples",)),
    Case("entities-length-mismatch", "metrics", "a sentence with 2 reference tags but 1 predicted tag",
         E.DataError, "predict exactly one tag per word", _score("entity_scores", [["O", "B-X"]], [["O"]]),
         says=("sentence 0: 2 true tags but 1 predicted",)),
    Case("entities-unknown-prefix", "metrics", "a tag with an unknown prefix ('X-PER')",
         E.DataError, "pass the matching scheme= or convert the tags", _score("entity_scores", [["X-PER"]], [["O"]]),
         says=("true_tags[0][0] = 'X-PER' has unknown prefix 'X'",)),
    Case("entities-no-prefix", "metrics", "a predicted tag without a prefix ('PER')",
         E.DataError, "e.g. 'B-PER'", _score("entity_scores", [["O"]], [["PER"]]),
         says=("pred_tags[0][0] = 'PER' has no '<prefix>-<type>' form",)),
    Case("entities-label-ids", "metrics", "label ids instead of tag names ([[3]])",
         E.DataError, "id2label", _score("entity_scores", [[3]], [["O"]]), says=("not a string tag",)),
    Case("entities-string-not-list", "metrics", "a sentence's tags as one string ('B-PER O')",
         E.DataError, "pass one list of tags per sentence", _score("entity_scores", ["B-PER O"], [["O"]])),
    Case("entities-unknown-scheme", "metrics", "scheme='BIO' (the name is IOB2)",
         E.ConfigError, "use one of ['BILOU', 'IOB2', 'IOBES']",
         _score("entity_scores", [["O"]], [["O"]], scheme="BIO"), says=("unknown tagging scheme 'BIO'",)),
]

CLASSIFICATION_CASES = [
    Case("labels-reference-not-listed", "metrics", "a reference label missing from labels= ('q')",
         E.DataError, "add them to labels or pass labels=None",
         _score("accuracy_and_macro_f1", ["q"], ["x"], labels=["x"]),
         says=("reference label(s) ['q'] are not in labels",)),
    Case("labels-count-mismatch", "metrics", "2 predicted labels for 1 reference",
         E.DataError, "pass exactly one prediction per reference",
         _score("accuracy_and_macro_f1", ["a"], ["a", "b"]), says=("2 predictions but 1 references",)),
    Case("labels-no-examples", "metrics", "accuracy_and_macro_f1 on no rows",
         E.DataError, "pass at least one prediction/reference pair", _score("accuracy_and_macro_f1", [], []),
         says=("no examples",)),
    Case("labels-reference-none", "metrics", "a reference label that is None",
         E.DataError, "drop unlabelled rows", _score("accuracy_and_macro_f1", ["a", None], ["a", "a"]),
         says=("true[1] is None",)),
]

GENERATION_CASES = [
    Case("bleu-uneven-references", "metrics", "BLEU with 1, 2 and 1 references for three hypotheses",
         E.DataError, "the same number of reference strings for every hypothesis",
         _score("bleu", ["a", "b", "c"], [["a"], ["b", "c"], ["d"]])),
]
for _metric in ("bleu", "chrf", "rouge_l", "exact_match"):
    GENERATION_CASES += [
        Case(f"{_metric}-no-examples", "metrics", f"{_metric} on no texts",
             E.DataError, "pass at least one prediction/reference pair", _score(_metric, [], []),
             says=("no examples",)),
        Case(f"{_metric}-count-mismatch", "metrics", f"{_metric} with 1 hypothesis for 2 references",
             E.DataError, "pass exactly one prediction per reference", _score(_metric, ["a"], ["a", "b"]),
             says=("1 predictions but 2 references",)),
        Case(f"{_metric}-none-hypothesis", "metrics", f"{_metric} with None as a generation",
             E.DataError, "use '' for an empty generation", _score(_metric, [None], ["a"]),
             says=("hyps[0] is NoneType",)),
    ]

TASK_CASES = [
    Case("metric-option-wrong-task", "metrics", "compute_metrics('ner', ..., labels=[...]) (an option of another task)",
         E.ConfigError, "allowed: ['scheme', 'strict']", _score("compute_metrics", "ner", [["O"]], [["O"]], labels=["a"]),
         says=("['labels'] do not apply to 'ner'",)),
    Case("metric-unknown-task", "metrics", "compute_metrics('qa', ...)",
         E.ConfigError, "use one of ['classification', 'generation', 'ner', 'translation']",
         _score("compute_metrics", "qa", ["a"], ["a"]), says=("unknown task kind 'qa'",)),
]

CASES: list[Case] = [*ENTITY_CASES, *CLASSIFICATION_CASES, *GENERATION_CASES, *TASK_CASES]
