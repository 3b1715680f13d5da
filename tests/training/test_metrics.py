"""Metrics, calibration and the gate's rule on numbers small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from expansion_scorer.config import GateConfig
from expansion_scorer.model.calibration import Calibrator
from expansion_scorer.training.metrics import (
    at_k,
    evaluate,
    expected_calibration_error,
    ranked_auc,
)
from expansion_scorer.training.registry import decide


def test_lift_at_k_shares_tied_scores_fairly() -> None:
    # Given one list of 10 accounts: a yes/no rule flags 4, of which 2 expand, and 1 more expands
    y = np.array([1, 1, 0, 0, 1, 0, 0, 0, 0, 0])
    rule = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=float)
    dates = np.zeros(10)

    # When CSMs can call 2 of them
    lift, recall = at_k(y, rule, dates, k=2)

    # Then the 2 calls land on flagged accounts at random: 1 expansion expected, not 0 or 2
    assert recall == pytest.approx(1 / 3)
    assert lift == pytest.approx((1 / 2) / (3 / 10))


def test_lift_at_k_is_per_list_date() -> None:
    y = np.array([1, 0, 0, 1, 0, 0])
    p = np.array([0.9, 0.1, 0.2, 0.2, 0.9, 0.1])
    dates = np.array([1, 1, 1, 2, 2, 2])

    lift, recall = at_k(y, p, dates, k=1)
    assert lift == pytest.approx((1 / 2) / (2 / 6))

    assert recall == pytest.approx(1 / 2)  # the top of date 1 expands, the top of date 2 not


def test_calibration_error_and_calibrators() -> None:
    rng = np.random.default_rng(0)
    true = rng.uniform(0.01, 0.6, 20_000)
    y = (rng.random(len(true)) < true).astype(int)
    logit = np.log(true / (1 - true))
    overconfident = 1 / (1 + np.exp(-(2.0 * logit + 0.8)))  # too sure, and too high

    assert expected_calibration_error(y, true) < 0.01
    assert expected_calibration_error(y, overconfident) > 0.08
    for method in ("platt", "isotonic"):
        cal = Calibrator(method).fit(overconfident[:10_000], y[:10_000])  # type: ignore[arg-type]
        fixed = cal.transform(overconfident[10_000:])
        assert expected_calibration_error(y[10_000:], fixed) < 0.02, method
        order = np.argsort(overconfident[10_000:])
        assert np.all(np.diff(fixed[order]) >= 0), "calibration keeps the ranking"
    metrics = evaluate(y, true, np.zeros(len(y)), k=100)
    assert metrics["brier"] < evaluate(y, overconfident, np.zeros(len(y)), k=100)["brier"]


def test_gate_rule_needs_more_lift_and_no_worse_calibration() -> None:
    gate = GateConfig(lift_margin=0.1, ece_tolerance=0.01)
    champion = {"lift_at_capacity": 2.0, "ece": 0.03}

    assert decide({"lift_at_capacity": 2.2, "ece": 0.035}, champion, gate, False).promote
    assert not decide({"lift_at_capacity": 2.05, "ece": 0.01}, champion, gate, False).promote
    worse = decide({"lift_at_capacity": 2.5, "ece": 0.06}, champion, gate, False)
    assert not worse.promote and "calibration worse" in worse.reason
    forced = decide({"lift_at_capacity": 1.0, "ece": 0.2}, champion, gate, True)
    assert forced.promote and forced.forced and forced.reason.startswith("forced")


def test_platt_with_a_fixed_offset_rescales_only_the_rest() -> None:
    # Given scores whose log-odds are a season offset plus an overconfident remainder
    rng = np.random.default_rng(1)
    season = rng.choice([-0.6, 0.0, 0.45], 40_000)
    rest = rng.normal(0.0, 1.0, len(season))
    y = (rng.random(len(season)) < 1 / (1 + np.exp(-(0.5 * rest - 1.2 + season)))).astype(int)
    raw = 1 / (1 + np.exp(-(rest + season)))

    # When Platt scaling is told which part is the offset
    cal = Calibrator("platt").fit(raw[:20_000], y[:20_000], season[:20_000])

    # Then it finds the remainder's slope and intercept and leaves the offset whole
    assert cal.x_[0] == pytest.approx(0.5, abs=0.05)
    assert cal.y_[0] == pytest.approx(-1.2, abs=0.05)
    fixed = cal.transform(raw[20_000:], season[20_000:])
    assert expected_calibration_error(y[20_000:], fixed) < 0.015
    for value in (-0.6, 0.0, 0.45):  # each season's level, not only the average
        mine = season[20_000:] == value
        assert abs(fixed[mine].mean() - y[20_000:][mine].mean()) < 0.015
    # and without the offset it is plain Platt scaling
    plain = Calibrator("platt").fit(raw[:20_000], y[:20_000])
    same = Calibrator("platt").fit(raw[:20_000], y[:20_000], np.zeros(20_000))
    assert same.x_[0] == pytest.approx(plain.x_[0], abs=1e-4)
    assert same.y_[0] == pytest.approx(plain.y_[0], abs=1e-4)


def test_the_ranked_auc_is_scikit_learns_with_ties_and_refuses_one_outcome() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.2).astype(int)
    score = np.round(rng.normal(size=2000) + y, 1)  # rounded: many ties
    assert ranked_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    with pytest.raises(ValueError, match="both outcomes"):
        ranked_auc(np.zeros(5), np.arange(5.0))
