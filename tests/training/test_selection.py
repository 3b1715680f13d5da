"""The learner kept when the held-out evidence is thin: a more flexible learner has to beat a
simpler one month by month, beyond what the spread of the months allows by chance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from expansion_scorer.config import LearningConfig
from expansion_scorer.data.loading import open_world
from expansion_scorer.settings import load_feature_set
from expansion_scorer.training.backtest import plan_folds
from expansion_scorer.training.dataset import training_frame
from expansion_scorer.training.selection import (
    auc_influence,
    complexity,
    month_gaps,
    separated,
    simplest_within,
)
from expansion_scorer.training.train import fit
from tests.training.test_train import small_config

RANK = complexity([("single", "single", None), ("regularised 3/30%", "regularised", 3)], 15)


def _world(months: int, rows: int, seed: int) -> tuple[np.ndarray, ...]:
    """`rows` snapshots in each of `months` months: a label driven by x1 and, more weakly, x2."""
    rng = np.random.default_rng(seed)
    month = np.repeat(np.arange(months), rows)
    x1, x2 = rng.normal(size=(2, len(month)))
    y = (rng.random(len(month)) < 1 / (1 + np.exp(-(x1 + 0.3 * x2 - 1)))).astype(int)
    return x1, x2, y, month


def test_the_influences_give_the_roc_auc_and_sum_to_zero() -> None:
    x1, x2, y, _ = _world(1, 500, 0)
    score = np.round(x1 + x2, 1)  # with ties
    auc, influence = auc_influence(score, y)
    assert auc == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert abs(influence.sum()) < 1e-12


def test_the_gaps_are_taken_within_each_month_that_holds_both_outcomes() -> None:
    x1, x2, y, month = _world(4, 300, 1)
    y[month == 3] = 0  # a month without an expansion says nothing about ranking
    gaps = month_gaps(x1 + 0.3 * x2, x1, y, month)
    expected = [
        roc_auc_score(y[month == m], (x1 + 0.3 * x2)[month == m])
        - roc_auc_score(y[month == m], x1[month == m])
        for m in range(3)
    ]
    np.testing.assert_allclose(gaps, expected, atol=1e-12)


def test_a_lead_is_clear_only_when_the_months_agree_beyond_their_spread() -> None:
    # One month cannot be tested; a steady lead over many months is clear
    assert not separated(np.array([0.05]), 0.95)[0]
    assert separated(np.full(10, 0.01) + np.linspace(-0.002, 0.002, 10), 0.95)[0]
    # The same mean and spread are not enough over three months (t needs 4.30) but are over
    # twelve (2.20)
    spread = np.array([0.0, 0.01, 0.02])
    clear, said = separated(spread, 0.95)
    assert not clear and "needs 4.30" in said
    assert separated(np.tile(spread, 4), 0.95)[0]
    # and a lead that changes sign from month to month is not one
    assert not separated(np.array([0.02, -0.02, 0.03, -0.025, 0.01, -0.01]), 0.95)[0]


def test_the_simpler_learner_is_kept_until_the_flexible_one_is_clearly_better() -> None:
    for months, expected in ((3, "gam"), (12, "single")):
        # Given a gam that sees x1 alone and a booster that also sees x2, 400 rows a month
        x1, x2, y, month = _world(months, 400, 6)
        held = {"gam": x1, "single": x1 + 0.3 * x2}
        scored = {k: float(roc_auc_score(y, v)) for k, v in held.items()}
        assert scored["single"] > scored["gam"]
        # Then over three months the gam is kept (t needs 4.30 on two degrees of freedom);
        # over twelve the booster has earned its place
        kept = simplest_within(held, scored, y, month, RANK, 0.95)
        assert kept.learner == expected and kept.best == "single"
        assert (kept.reason != "") == (expected != "single")
        # and without the rule, or on a history of at least `below_months` held-out months,
        # the best is kept whatever the evidence
        assert simplest_within(held, scored, y, month, RANK, None).learner == "single"
        longer = simplest_within(held, scored, y, month, RANK, 0.95, below_months=months)
        assert longer.learner == "single" and longer.reason == ""
        shorter = simplest_within(held, scored, y, month, RANK, 0.95, below_months=months + 1)
        assert shorter.learner == expected


def test_learners_rank_from_the_gam_through_the_boosters_to_the_blend() -> None:
    names = ["blend", "single", "gam", "regularised 3/30%"]
    assert sorted(names, key=RANK) == ["gam", "regularised 3/30%", "single", "blend"]


@pytest.fixture(scope="module")
def frame(small_world_dir: Path) -> pd.DataFrame:
    return training_frame(open_world(small_world_dir), load_feature_set(), small_config(), None)


def test_a_layout_keeps_the_simplest_learner_the_best_does_not_clearly_beat(
    frame: pd.DataFrame,
) -> None:
    # Given a fold fitted with and without the rule
    loose = LearningConfig(candidates=["single", "gam", "blend"], simpler_confidence=None)
    fold = plan_folds(sorted(frame["as_of"].unique()), small_config())[0]
    best = fit(frame, fold, load_feature_set(), small_config(learning=loose))
    ruled = loose.model_copy(update={"simpler_confidence": 0.95, "simpler_below_months": None})
    kept = fit(frame, fold, load_feature_set(), small_config(learning=ruled))
    assert best.choice is not None and kept.choice is not None
    # Then without it the best held-out ROC AUC wins; with it the same evidence keeps the
    # best or a simpler learner, saying which led and by how much month by month
    aucs = best.choice.calibration_auc
    assert best.learner == max(aucs, key=aucs.__getitem__) and best.choice.preferred == ""
    assert kept.choice.calibration_auc == aucs
    if kept.learner == best.learner:
        assert kept.choice.preferred == ""
    else:
        assert RANK(kept.learner) < RANK(best.learner)
        assert kept.choice.preferred.startswith(f"{best.learner} led by")
        assert "held-out month" in kept.choice.preferred
