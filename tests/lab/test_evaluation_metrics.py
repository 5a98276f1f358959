"""The accuracy lab's measures on small hand-built sets of (label, grade) pairs."""

from __future__ import annotations

import pytest

from lab.metrics import agreement, confusion_matrix, quadratic_weighted_kappa

E, C, L, N = "Extensive Evidence", "Convincing Evidence", "Limited Evidence", "No Evidence"


def test_the_confusion_matrix_has_labels_as_rows_and_grades_as_columns():
    pairs = [(E, E), (E, C), (C, C), (N, L), (N, L), (L, N)]
    assert confusion_matrix(pairs) == [
        [1, 1, 0, 0],
        [0, 1, 0, 0],
        [0, 0, 0, 1],
        [0, 0, 2, 0],
    ]


def test_perfect_agreement_has_kappa_one():
    assert quadratic_weighted_kappa([[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 3, 0], [0, 0, 0, 1]]) == 1.0


def test_kappa_of_two_raters_who_always_disagree_is_minus_one():
    # 2 grades: observed weighted disagreement 2; rows and columns (1, 1): expected (1 + 1) / 2 = 1.
    assert quadratic_weighted_kappa([[0, 1], [1, 0]]) == -1.0


def test_kappa_of_independent_raters_is_zero():
    # Every cell equal: what the raters agree on is exactly what chance gives.
    assert quadratic_weighted_kappa([[1, 1, 1, 1]] * 4) == pytest.approx(0.0)


def test_kappa_weighs_a_far_disagreement_more_than_a_near_one():
    # Both matrices: 3 pairs, one disagreement; rows (2, 0, 0, 1) in both.
    # Near: labels E, E, N; grades E, C, N. Columns (1, 1, 0, 1). Weighted by d^2 (the 1/9 cancels):
    #   observed (0,1) d^2=1 -> 1.
    #   expected: row E (2) x [1*1 + 9*1] = 20; row N (1) x [9*1 + 4*1] = 13; (20 + 13) / 3 = 11.
    #   kappa = 1 - 1/11 = 0.909091.
    near = [[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
    # Far: labels E, E, N; grades E, N, N. Columns (1, 0, 0, 2).
    #   observed (0,3) d^2=9 -> 9.
    #   expected: row E (2) x [9*2] = 36; row N (1) x [9*1] = 9; (36 + 9) / 3 = 15.
    #   kappa = 1 - 9/15 = 0.4.
    far = [[1, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
    assert quadratic_weighted_kappa(near) == pytest.approx(1 - 1 / 11)
    assert quadratic_weighted_kappa(far) == pytest.approx(0.4)


def test_kappa_is_undefined_when_chance_cannot_disagree():
    assert quadratic_weighted_kappa([[0, 0], [0, 0]]) is None  # nothing graded
    assert quadratic_weighted_kappa([[0, 0, 0, 0], [0, 5, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]) is None


def test_agreement_counts_exact_and_pass_fail_matches():
    # E->C passes on both sides; C->L flips; L->N fails on both sides; N->N exact.
    pairs = [(E, E), (E, C), (C, L), (L, N), (N, N)]
    result = agreement(pairs).as_json()
    # Matrix [[1,1,0,0],[0,0,1,0],[0,0,0,1],[0,0,0,1]]; rows (2,1,1,1), columns (1,1,1,2), 5 pairs.
    # observed: 1 + 1 + 1 = 3. expected: row E 2 x (0 + 1 + 4 + 18) = 46; row C 1 x (1 + 0 + 1 + 8) = 10;
    # row L 1 x (4 + 1 + 0 + 2) = 7; row N 1 x (9 + 4 + 1 + 0) = 14; (46 + 10 + 7 + 14) / 5 = 15.4.
    # kappa = 1 - 3/15.4 = 0.805195 -> 0.8052.
    assert result == {
        "count": 5,
        "exact_matches": 2,
        "accuracy": 0.4,
        "pass_fail_matches": 4,
        "pass_fail_accuracy": 0.8,
        "kappa": 0.8052,
        "confusion_matrix": [[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1]],
    }


def test_no_pairs_have_no_measures():
    result = agreement([]).as_json()
    assert (result["count"], result["accuracy"], result["pass_fail_accuracy"], result["kappa"]) == (
        0,
        None,
        None,
        None,
    )
