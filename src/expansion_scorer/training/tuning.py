"""Optuna search over the LightGBM parameters on the time folds, deterministic for a seed.

Each trial fits every fold's booster on its training months with early stopping on its
calibration months (cross-fitted: on its latest block, fitted on the months before it) and is
scored by the mean validation log loss: the test months of the folds
are never looked at, so the backtest that follows stays honest about them.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd

from expansion_scorer.config import FeatureSet, LightGBMParams, TrainingConfig
from expansion_scorer.training.train import (
    Frames,
    Layout,
    datasets,
    frame_for,
    offset_for,
    purged_blocks,
    rows_of,
    schema,
    train_early_stopped,
)


def _datasets(
    frames: Frames, folds: Sequence[Layout], feature_set: FeatureSet, cfg: TrainingConfig
) -> list[tuple[lgb.Dataset, lgb.Dataset]]:
    """Binned once per fold and reused by every trial."""
    out = []
    for fold in folds:
        frame = frame_for(frames, fold)
        if fold.calib_dates:
            fit, valid = rows_of(frame, fold.fit_dates), rows_of(frame, fold.calib_dates)
        else:  # cross-fitted: the latest block, predicted from the months a horizon before it
            train, held = purged_blocks(
                fold.fit_dates, cfg.horizon_days, cfg.backtest.crossfit_blocks
            )[-1]
            fit, valid = rows_of(frame, train), rows_of(frame, held)
        numeric, categories = schema(feature_set, pd.concat([fit, valid]))
        offset = offset_for(fit, cfg)
        train_set, valid_set = datasets(fit, valid, numeric, categories, offset)
        out.append((train_set, valid_set))
    return out


def _suggest(trial: optuna.Trial, base: LightGBMParams) -> LightGBMParams:
    return LightGBMParams.model_validate(
        {
            **base.model_dump(),
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.15, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 7, 63, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 20, 500, log=True),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.3, 1.0),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
        }
    )


def tune(
    frames: Frames, folds: Sequence[Layout], feature_set: FeatureSet, cfg: TrainingConfig
) -> tuple[LightGBMParams, optuna.Study]:
    """The best parameters found in `cfg.tuning.trials` trials (the configured ones first)."""
    data = _datasets(frames, folds, feature_set, cfg)

    def objective(trial: optuna.Trial) -> float:
        params = _suggest(trial, cfg.lightgbm)
        losses = []
        for train_set, valid_set in data:
            booster = train_early_stopped(params, train_set, valid_set, cfg)
            losses.append(booster.best_score["valid"]["binary_logloss"])
        return float(np.mean(losses))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize", sampler=optuna.samplers.TPESampler(seed=cfg.seed)
    )
    start = cfg.lightgbm
    study.enqueue_trial(
        {
            "learning_rate": start.learning_rate,
            "num_leaves": start.num_leaves,
            "min_child_samples": start.min_child_samples,
            "subsample": start.subsample,
            "colsample_bytree": start.colsample_bytree,
            "reg_lambda": start.reg_lambda,
        },
        skip_if_exists=True,
    )
    study.optimize(objective, n_trials=cfg.tuning.trials, n_jobs=1)
    return LightGBMParams.model_validate({**cfg.lightgbm.model_dump(), **study.best_params}), study
