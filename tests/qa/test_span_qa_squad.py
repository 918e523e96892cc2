"""The SQuAD scorer against hand-computed cases of the official evaluate-v2.0.py definitions."""
import pytest

from spacy_electra.qa.squad import ScoredQuestion, best_threshold, exact_match, f1_score, normalize_answer, squad_scores


def test_normalisation_drops_case_punctuation_articles_and_extra_space():
    assert normalize_answer("The  Quick, brown-fox!") == "quick brownfox"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("Theatre") == "theatre"  # "the" only as a word


def test_exact_and_f1_of_single_pairs():
    assert exact_match("Denver Broncos", "the denver broncos.") == 1
    # gold [cat, sat], prediction [cat, sat, on, mat]: precision 2/4, recall 2/2 -> F1 2/3
    assert f1_score("the cat sat", "cat sat on the mat") == pytest.approx(2 / 3)
    # repeated tokens count with multiplicity: gold [a1, a1, b], pred [a1, b, b]: common {a1, b} = 2
    assert f1_score("x x y", "x y y") == pytest.approx(2 / 3)
    assert f1_score("", "") == 1.0 and f1_score("", "Paris") == 0.0 and f1_score("Paris", "") == 0.0


def test_max_over_gold_answers_and_no_answer_as_exact_match():
    questions = [
        ScoredQuestion(["Denver Broncos", "Broncos", "the Broncos"], "Broncos win", 0.0),  # EM 0, F1 max(2/3*.., 2/3)
        ScoredQuestion(["1990"], "November 1990", -5.0),  # EM 0, F1 2*(1/2*1)/(1.5) = 2/3
        ScoredQuestion([], "London", 3.0),  # unanswerable, na 3 > 1: abstains -> EM 1
        ScoredQuestion([], "Paris", 0.5),  # unanswerable, answered -> 0
        ScoredQuestion(["Paris"], "Paris", None),  # not asked (None): always no answer -> 0
    ]
    scores = squad_scores(questions, threshold=1.0)
    # Q1: gold "broncos" vs pred [broncos, win]: p 1/2, r 1 -> 2/3; "denver broncos": p 1/2, r 1/2 -> 1/2
    assert scores["has_ans_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert scores["has_ans_exact"] == 0.0
    assert scores["no_ans_acc"] == 0.5
    assert scores["exact"] == pytest.approx(1 / 5)
    assert scores["f1"] == pytest.approx((2 / 3 + 2 / 3 + 1 + 0 + 0) / 5)
    assert scores["total"] == 5


def test_best_threshold_follows_find_best_thresh():
    questions = [
        ScoredQuestion(["rome"], "Rome", -2.0),  # right answer, confident
        ScoredQuestion([], "oslo", -1.0),  # unanswerable, would be answered below -1
        ScoredQuestion(["paris"], "Paris", 0.5),  # right answer, less confident
        ScoredQuestion([], "bonn", 2.0),  # unanswerable
    ]
    # abstain everywhere: 2 right; thresholds at -2: 3; -1: 2; 0.5: 3; 2.0: 2 -> best 3, first at -2.0
    thresh, best = best_threshold(questions, "f1")
    assert (thresh, best) == (-2.0, 0.75)
    assert squad_scores(questions, thresh)["f1"] == 0.75
    assert best_threshold([ScoredQuestion([], "x", 1.0)], "exact") == (0.0, 1.0)  # abstaining is best
    # gold answers that normalise to nothing ("a" is an article) leave the question unanswerable
    assert not ScoredQuestion(["a", "The"], "", 0.0).has_answer
