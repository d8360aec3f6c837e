"""Metrics against hand-computed values and the reference libraries called directly."""

from __future__ import annotations

import pytest
import sacrebleu

from pbft_widgets.metrics import (
    METRICS_BY_TASK,
    _lcs_length,
    accuracy_and_macro_f1,
    bleu,
    chrf,
    compute_metrics,
    confusion_matrix,
    entity_scores,
    exact_match,
    normalise_answer,
    rouge_l,
    rouge_l_pair,
    rouge_tokens,
    to_iob2,
)

# ------------------------------------------------------------------------------------ entities

TRUE = [["B-Disease", "I-Disease", "O", "B-Chemical"], ["O", "B-Disease", "O"]]
PRED = [["B-Disease", "I-Disease", "O", "O"], ["O", "B-Disease", "I-Disease"]]


def test_entity_scores_match_hand_count():
    # True entities: Disease[0:2], Chemical[3], Disease(s1)[1]. Predicted: Disease[0:2], Disease(s1)[1:3].
    # One exact match: precision 1/2, recall 1/3, F1 = 2PR/(P+R) = 0.4.
    scores = entity_scores(TRUE, PRED)
    assert scores["precision"] == pytest.approx(1 / 2)
    assert scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(0.4)
    assert scores["support"] == 3
    assert scores["per_type"]["Disease"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert scores["per_type"]["Chemical"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_strict_mode_rejects_an_entity_started_by_i_but_lenient_mode_accepts_it():
    true = [["O", "B-Disease", "I-Disease"]]
    pred = [["O", "I-Disease", "I-Disease"]]
    assert entity_scores(true, pred)["f1"] == 0.0  # invalid IOB2 prediction is no entity
    assert entity_scores(true, pred, strict=False)["f1"] == 1.0  # conlleval: I- after O starts one


def test_no_entities_anywhere_scores_zero_without_crashing():
    assert entity_scores([["O", "O"]], [["O", "O"]]) == {
        "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "per_type": {},
    }


def test_iobes_scheme_is_scored():
    tags = [["S-PER", "O", "B-LOC", "E-LOC"]]
    assert entity_scores(tags, tags, scheme="IOBES")["f1"] == 1.0


def test_to_iob2_starts_every_entity_with_b():
    assert to_iob2(["I-PER", "I-PER", "O", "I-LOC", "I-ORG", "B-ORG", "I-ORG"]) == [
        "B-PER", "I-PER", "O", "B-LOC", "B-ORG", "B-ORG", "I-ORG",
    ]
    # the converted tags pass strict validation
    assert entity_scores([to_iob2(["O", "I-X"])], [["O", "B-X"]])["f1"] == 1.0


# ------------------------------------------------------------------------------ classification


def test_accuracy_and_macro_f1_by_hand():
    # a: TP 1, FN 1 -> F1 2/3; b: one false positive, one miss -> 0; c: 1. Macro = 5/9.
    scores = accuracy_and_macro_f1(["a", "b", "a", "c"], ["a", None, "b", "c"])
    assert scores["accuracy"] == pytest.approx(0.5)
    assert scores["macro_f1"] == pytest.approx(5 / 9)
    assert scores["per_label_f1"] == pytest.approx({"a": 2 / 3, "b": 0.0, "c": 1.0})
    assert scores["support"] == {"a": 2, "b": 1, "c": 1}
    assert scores["unparsed"] == 1


def test_unparsed_predictions_never_become_a_label():
    scores = accuracy_and_macro_f1(["a", "b"], [None, None])
    assert scores["accuracy"] == 0.0 and scores["unparsed"] == 2
    assert set(scores["per_label_f1"]) == {"a", "b"}


def test_explicit_labels_keep_order_and_count_out_of_set_predictions_wrong():
    scores = accuracy_and_macro_f1(["x", "y"], ["x", "z"], labels=["y", "x"])
    assert list(scores["per_label_f1"]) == ["y", "x"]
    assert scores["accuracy"] == 0.5 and scores["unparsed"] == 0


def test_integer_labels_work():
    scores = accuracy_and_macro_f1([0, 1, 1], [0, 1, 0])
    assert scores["accuracy"] == pytest.approx(2 / 3)
    assert scores["per_label_f1"] == pytest.approx({0: 2 / 3, 1: 2 / 3})


def test_confusion_matrix_rows_are_references():
    matrix = confusion_matrix(["a", "b", "a", "c"], ["a", None, "b", "c"], ["a", "b", "c"])
    assert matrix == [[1, 1, 0], [0, 0, 0], [0, 0, 1]]
    assert all(isinstance(v, int) for row in matrix for v in row)


# ---------------------------------------------------------------------------------- generation

HYPS = ["the cat sat on the mat today", "a quick brown fox jumps over dogs", "hello there general"]
REFS = ["the cat sat on a mat today", "the quick brown fox jumps over the lazy dog", "hello there"]


def test_bleu_and_chrf_equal_sacrebleu_called_directly():
    assert bleu(HYPS, REFS) == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    assert chrf(HYPS, REFS) == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS], word_order=2).score)
    # chrF++ (with word bigrams) is not plain chrF
    assert chrf(HYPS, REFS) != pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score)


def test_bleu_and_chrf_are_100_for_identical_text_and_0_for_disjoint():
    assert bleu(REFS, REFS) == pytest.approx(100.0)
    assert chrf(REFS, REFS) == pytest.approx(100.0)
    assert chrf(["xyz"], ["abc"]) == 0.0


def test_multiple_references_per_hypothesis():
    refs = [[r, "something else entirely"] for r in REFS]
    streams = [REFS, ["something else entirely"] * 3]
    assert bleu(HYPS, refs) == pytest.approx(sacrebleu.corpus_bleu(HYPS, streams).score)


def test_lcs_length_by_hand():
    assert _lcs_length("abcbdab", "bdcaba") == 4  # the textbook example: "bcba"
    assert _lcs_length([], ["a"]) == 0


def test_rouge_l_by_hand():
    # hyp 7 tokens, ref 6, LCS 6 ("the cat was under the bed"): P = 6/7, R = 1, F = 12/13
    score = rouge_l_pair("The cat was found under the bed", "the cat was under the bed")
    assert score == pytest.approx(12 / 13)
    # punctuation and case do not matter, as in rouge_score's tokeniser
    assert rouge_l_pair("Hello, World!", "hello world") == 1.0
    assert rouge_l_pair("", "hello") == 0.0
    assert rouge_l_pair("abc", "xyz") == 0.0
    assert rouge_l(["a b", "a b c d"], ["a b", "a x y z"]) == pytest.approx((1.0 + 0.25) / 2)


def test_rouge_tokens_keep_non_ascii_words_whole():
    assert rouge_tokens("¡Canción BONITA_de 2024!") == ["canción", "bonita", "de", "2024"]
    assert rouge_l_pair("canción bonita", "canción fea") == pytest.approx(0.5)


def test_exact_match_normalises_by_default():
    assert normalise_answer("  The END. ") == "the end"
    assert exact_match(["The end.", "no"], ["the  end", "yes"]) == 0.5
    assert exact_match(["The end.", "no"], ["the  end", "yes"], normalise=False) == 0.0


# ------------------------------------------------------------------------------- per task kind


def test_compute_metrics_gives_each_task_its_metrics_headline_first():
    for task, refs, preds in [
        ("classification", ["a", "b"], ["a", "a"]),
        ("ner", TRUE, PRED),
        ("generation", REFS, HYPS),
        ("translation", REFS, HYPS),
    ]:
        scores = compute_metrics(task, refs, preds)
        assert list(scores)[: len(METRICS_BY_TASK[task])] == list(METRICS_BY_TASK[task])
    assert compute_metrics("ner", TRUE, PRED)["f1"] == pytest.approx(0.4)
    assert compute_metrics("translation", REFS, HYPS)["chrf"] == pytest.approx(chrf(HYPS, REFS))


def test_compute_metrics_passes_options_to_the_metric():
    lenient = compute_metrics("ner", [["O", "B-X"]], [["O", "I-X"]], strict=False)
    assert lenient["f1"] == 1.0


def test_accuracy_and_macro_f1_agree_with_scikit_learn_on_random_labels():
    """The count-matrix implementation (fast enough to bootstrap) equals scikit-learn's zero_division=0 scores."""
    import random

    from sklearn.metrics import f1_score, precision_score, recall_score

    rng = random.Random(0)
    labels = list("abcde")
    for _ in range(100):
        true = [rng.choice(labels[:4]) for _ in range(30)]
        pred = [rng.choice([*labels, None]) for _ in range(30)]
        scores = accuracy_and_macro_f1(true, pred, labels)
        index = {label: i for i, label in enumerate(labels)}
        y_true = [index[t] for t in true]
        y_pred = [index.get(p, len(labels)) if p is not None else len(labels) for p in pred]
        options = {"labels": list(range(len(labels))), "average": None, "zero_division": 0}
        for name, reference in (("f1", f1_score), ("precision", precision_score), ("recall", recall_score)):
            expected = reference(y_true, y_pred, **options)
            assert [scores[f"per_label_{name}"][label] for label in labels] == pytest.approx(list(expected))
        assert scores["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, **options).mean())
        assert scores["accuracy"] == pytest.approx(sum(t == p for t, p in zip(true, pred)) / len(true))
