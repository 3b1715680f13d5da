"""Optuna tuning on the time folds: a real search, deterministic for a seed."""

from __future__ import annotations

from pathlib import Path

from expansion_scorer.data.loading import open_world
from expansion_scorer.settings import load_feature_set
from expansion_scorer.training.backtest import plan_folds
from expansion_scorer.training.dataset import training_frame
from expansion_scorer.training.tuning import tune
from tests.training.test_train import small_config


def test_tuning_searches_and_repeats_for_a_seed(small_world_dir: Path) -> None:
    cfg = small_config(tuning=small_config().tuning.model_copy(update={"trials": 3}))
    features = load_feature_set()
    frame = training_frame(open_world(small_world_dir), features, cfg, None)
    folds = plan_folds(sorted(frame["as_of"].unique()), cfg)

    first, study = tune(frame, folds, features, cfg)
    again, _ = tune(frame, folds, features, cfg)

    assert len(study.trials) == 3
    assert first == again
    assert study.best_value == min(t.value for t in study.trials if t.value is not None)
