"""Task metrics against the reference implementations: scikit-learn, seqeval, scipy, SQuAD's rules."""

from __future__ import annotations

import numpy as np
import pytest

from polyformer.tasks.metrics import (
    classification_scores,
    confusion_matrix,
    correlation_scores,
    entity_scores,
    exact_match,
    format_entity_report,
    normalize_answer,
    plot_confusion,
    squad_scores,
    token_f1,
)


def test_classification_scores_match_scikit_learn():
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.metrics import confusion_matrix as sk_confusion

    rng = np.random.default_rng(0)
    gold, predicted = rng.integers(0, 3, 200).tolist(), rng.integers(0, 3, 200).tolist()
    scores = classification_scores(gold, predicted, ["a", "b", "c"])
    assert scores["accuracy"] == pytest.approx(accuracy_score(gold, predicted))
    assert scores["macro_f1"] == pytest.approx(f1_score(gold, predicted, average="macro"))
    assert [scores[f"f1_{n}"] for n in "abc"] == pytest.approx(f1_score(gold, predicted, average=None).tolist())
    assert confusion_matrix(gold, predicted, 3).tolist() == sk_confusion(gold, predicted).tolist()
    # a label neither true nor predicted does not count towards the macro average (as in scikit-learn)
    assert classification_scores([0, 1], [0, 1], ["a", "b", "never"])["macro_f1"] == 1.0


def test_entity_scores_are_seqeval_entity_level():
    gold = [["B-person", "I-person", "O", "B-geo-loc"], ["O", "B-company"]]
    predicted = [["B-person", "O", "O", "B-geo-loc"], ["O", "B-company"]]  # the person's boundary is wrong
    scores, per_type = entity_scores(gold, predicted)
    assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(2 / 3)
    assert scores["token_accuracy"] == pytest.approx(5 / 6)
    assert per_type["person"]["f1-score"] == 0.0 and per_type["geo-loc"]["f1-score"] == 1.0
    assert "| person | 0.000 | 0.000 | 0.000 | 1 |" in format_entity_report(per_type)


def test_correlations_match_scipy_and_handle_constant_predictions():
    from scipy.stats import pearsonr, spearmanr

    gold, predicted = [0.1, 0.4, 0.35, 0.8, 0.9], [0.2, 0.3, 0.5, 0.7, 1.0]
    scores = correlation_scores(gold, predicted)
    assert scores["pearson"] == pytest.approx(pearsonr(gold, predicted)[0])
    assert scores["spearman"] == pytest.approx(spearmanr(gold, predicted)[0])
    assert correlation_scores(gold, [0.5] * 5)["spearman"] == 0.0  # a constant model correlates with nothing


def test_squad_normalisation_exact_match_and_f1():
    assert normalize_answer("The  Prince of Denmark!") == "prince of denmark"
    assert exact_match("the Prince of Denmark", "Prince of Denmark.") == 1.0
    assert token_f1("prince of norway", "the prince of denmark") == pytest.approx(2 * (2 / 3) * (2 / 3) / (4 / 3))
    assert token_f1("", "anything") == 0.0
    scores = squad_scores(["Juliet", "a sea of troubles here"], [["juliet", "the sun"], ["a sea of troubles"]])
    assert scores["exact_match"] == 0.5 and scores["f1"] == pytest.approx((1 + 2 * 1 * 0.75 / 1.75) / 2)


def test_confusion_matrix_png(tmp_path):
    path = plot_confusion(np.array([[5, 1], [2, 7]]), ["fresh", "rotten"], tmp_path / "plots" / "confusion.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
