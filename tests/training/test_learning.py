"""The learners the trainer chooses among on calibration months, and how a combined one explains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from expansion_scorer.config import LabelConfig, LearningConfig
from expansion_scorer.data.loading import open_world
from expansion_scorer.features.ledger import EXPANSION_KINDS
from expansion_scorer.features.snapshots import motion_label
from expansion_scorer.jobs import training_frame
from expansion_scorer.serving.explain import family_points
from expansion_scorer.serving.scoring import _delivered_base
from expansion_scorer.settings import load_feature_set
from expansion_scorer.training.backtest import plan_folds
from expansion_scorer.training.contributions import contributions
from expansion_scorer.training.model import any_of
from expansion_scorer.training.train import fit
from tests.training.test_train import small_config


@pytest.fixture(scope="module")
def frame(world_dir: Path) -> pd.DataFrame:
    cfg = small_config(learning=LearningConfig())  # every learner: the motion labels too
    return training_frame(open_world(world_dir), load_feature_set(), cfg, None)


def learning(*candidates: str) -> LearningConfig:
    return LearningConfig(candidates=list(candidates))


def test_the_frame_carries_one_label_per_motion_that_add_up_to_the_label(
    frame: pd.DataFrame,
) -> None:
    per_motion = frame[[motion_label(m) for m in EXPANSION_KINDS]]
    # any expansion is an expansion of at least one motion, and only then
    assert (per_motion.max(axis=1) == frame["label"]).all()
    assert (per_motion.sum() > 0).all()


def test_the_choice_reads_calibration_months_never_the_test_fold(frame: pd.DataFrame) -> None:
    # Given the first fold of the backtest and every learner
    cfg = small_config(learning=learning("single", "regularised", "motions"))
    fold = plan_folds(sorted(frame["as_of"].unique()), cfg)[0]
    chosen = fit(frame, fold, load_feature_set(), cfg)

    # When the test months' outcomes are turned upside down
    test = frame["as_of"].isin(set(fold.test_dates))
    flipped = frame.copy()
    for column in ["label", *(motion_label(m) for m in EXPANSION_KINDS)]:
        flipped.loc[test, column] = 1 - flipped.loc[test, column]
    again = fit(flipped, fold, load_feature_set(), cfg)

    # Then the same learner wins with the same calibration AUCs, and scores the same
    assert chosen.choice is not None and again.choice is not None
    assert chosen.choice == again.choice
    assert list(chosen.choice.calibration_auc) == [n for n, _, _ in cfg.learning.learners()]
    at = frame[test]
    np.testing.assert_array_equal(chosen.predict_proba(at), again.predict_proba(at))


def test_the_kept_learner_has_the_best_calibration_auc(frame: pd.DataFrame) -> None:
    cfg = small_config(learning=learning("single", "regularised", "motions"))
    fold = plan_folds(sorted(frame["as_of"].unique()), cfg)[0]
    model = fit(frame, fold, load_feature_set(), cfg)
    assert model.choice is not None
    aucs = model.choice.calibration_auc
    assert model.learner == max(aucs, key=aucs.__getitem__)
    names = [h.name for h in model.heads]
    motions = model.learner.startswith("motions")
    assert names == ["any"] or (motions and set(names) <= set(EXPANSION_KINDS))


def test_a_motions_model_is_the_chance_of_any_motion_and_explains_as_its_parts(
    frame: pd.DataFrame,
) -> None:
    # Given a model of one booster per motion
    cfg = small_config(learning=learning("motions"))
    fold = plan_folds(sorted(frame["as_of"].unique()), cfg)[0]
    model = fit(frame, fold, load_feature_set(), cfg)
    # (a motion with fewer than learning.min_positives expansions on these rows is left out)
    assert model.learner.startswith("motions") and len(model.heads) >= 2
    rows = frame[frame["as_of"].isin(set(fold.test_dates))].head(200)

    # Then its raw probability is 1 - prod(1 - p) over the motions' own probabilities
    x = model.matrix(rows)
    parts = np.stack([1 / (1 + np.exp(-h.margin(x, rows))) for h in model.heads])
    np.testing.assert_allclose(model.raw_proba(rows), any_of(parts), rtol=1e-12)
    assert (model.raw_proba(rows) >= parts.max(axis=0) - 1e-12).all()

    # And each account's family points add up to its score minus the calibrated base rate
    contrib = contributions(model, rows)
    score = model.predict_proba(rows)
    base = _delivered_base(model, contrib.base_logit)
    points = family_points(contrib, load_feature_set(), score, base)
    np.testing.assert_allclose(points.sum(axis=1) / 100, score - base, atol=1e-9)
    # and a family's sign follows the motions' own SHAP values (positive weights)
    assert (np.sign(points.sum(axis=1)) == np.sign(score - base)).all()


def test_motions_is_not_tried_when_the_label_is_one_motion(world_dir: Path) -> None:
    cfg = small_config(label=LabelConfig(motion="seats"), learning=learning("single", "motions"))
    frame = training_frame(open_world(world_dir), load_feature_set(), cfg, None)
    fold = plan_folds(sorted(frame["as_of"].unique()), cfg)[0]
    model = fit(frame, fold, load_feature_set(), cfg)
    assert model.choice is not None and model.learner == "single"
    assert "one motion (seats)" in model.choice.skipped["motions"]


def test_every_learner_is_tried_at_every_strength() -> None:
    names = [name for name, _, _ in LearningConfig().learners()]
    assert names == ["single", "regularised 7/10%", "regularised 3/30%", "motions 7/10%",
                     "motions 3/30%"]  # fmt: skip


def test_a_learner_named_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match="twice"):
        LearningConfig(candidates=["single", "single"])
