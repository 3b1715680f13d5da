"""The uplift metrics on lists small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest

from expansion_scorer.training.metrics import (
    incremental_at_capacity,
    qini_coefficient,
    qini_curve,
    top_k_weights,
)

# six accounts, best score first: treated (listed) and control alternate
SCORE = np.array([6.0, 5, 4, 3, 2, 1])
TREATED = np.array([1, 0, 1, 0, 1, 0], dtype=bool)
EXPANDED = np.array([1, 0, 1, 1, 0, 1])


def test_the_qini_curve_and_coefficient_match_the_hand_computation() -> None:
    # Given the curve by hand: after each account, treated expansions minus the control's
    # scaled to as many treated (0 while no control account is reached), over 6 accounts
    expected = np.array([0, 1, 1, 2, 1, 0.5, 0]) / 6

    curve = qini_curve(EXPANDED, TREATED, SCORE)

    np.testing.assert_allclose(curve["share"], np.arange(7) / 6)
    np.testing.assert_allclose(curve["qini"], expected)
    # the trapezoids sum to 5.5 / 36, and random targeting ends at 0 here (equal rates)
    assert qini_coefficient(EXPANDED, TREATED, SCORE) == pytest.approx(5.5 / 36)
    # the same accounts ranked the other way round put the control's expansions first
    assert qini_coefficient(EXPANDED, TREATED, -SCORE) == pytest.approx(-(10 / 3) / 36)


def test_a_ranking_that_cannot_tell_accounts_apart_scores_zero() -> None:
    rng = np.random.default_rng(1)
    y, t = rng.integers(0, 2, 200), rng.random(200) < 0.4

    # one block of ties is the straight line of random targeting, whatever the outcomes
    assert qini_coefficient(y, t, np.zeros(200)) == pytest.approx(0.0, abs=1e-12)
    # and the order rows arrive in changes nothing when scores tie
    s = rng.integers(0, 3, 200).astype(float)
    order = rng.permutation(200)
    assert qini_coefficient(y, t, s) == pytest.approx(qini_coefficient(y[order], t[order],
                                                                       s[order]))  # fmt: skip


def test_capacity_takes_the_top_k_of_each_group_and_shares_ties() -> None:
    # Given two CSMs' cohorts; the second has a tie across its cut
    score = np.array([0.9, 0.5, 0.1, 0.7, 0.7, 0.2])
    group = np.array(["a", "a", "a", "b", "b", "b"])

    w = top_k_weights(score, group, k=1)

    np.testing.assert_allclose(w, [1, 0, 0, 0.5, 0.5, 0])
    # When the top 1 of each is worked: a's pick is treated and expands; of b's tie, the
    # treated one expands and the control one does not
    treated = np.array([1, 0, 0, 1, 0, 0], dtype=bool)
    expanded = np.array([1, 0, 0, 1, 0, 1])
    at = incremental_at_capacity(expanded, treated, score, group, k=1)

    # Then treated rate 1.5 / 1.5 = 1, control rate 0 / 0.5 = 0, over 2 accounts taken
    assert at["taken"] == pytest.approx(2.0)
    assert at["uplift"] == pytest.approx(1.0)
    assert at["incremental"] == pytest.approx(2.0)
