"""Time-split training and evaluation of the propensity model: plain functions over frames."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from expansion_scorer.config import FeatureSet, TrainingConfig
from expansion_scorer.errors import UserError
from expansion_scorer.training.model import PropensityModel, prepare


@dataclass(frozen=True)
class TimeSplit:
    train_dates: list[date]
    test_dates: list[date]


def time_split(dates: list[date], cfg: TrainingConfig) -> TimeSplit:
    """Latest `test_months` snapshot dates for test; training labels must close before them."""
    dates = sorted(set(dates))
    needed = cfg.test_months + 2
    if len(dates) < needed:
        span = f"{dates[0]} to {dates[-1]}" if dates else "none"
        raise UserError(
            f"only {len(dates)} snapshot months ({span}) fit the data with a {cfg.horizon_days}-day"
            f" horizon; {needed} are needed for {cfg.test_months} test months: use more history,"
            " a shorter horizon or fewer test_months"
        )
    test = dates[-cfg.test_months :]
    train = [d for d in dates if d + timedelta(days=cfg.horizon_days) <= test[0]]
    if not train:
        raise UserError(
            f"no training snapshot closes its {cfg.horizon_days}-day label window before the first"
            f" test date {test[0]}; use more history or fewer test_months"
        )
    return TimeSplit(train_dates=train, test_dates=test)


def schema(feature_set: FeatureSet, frame: pd.DataFrame) -> tuple[list[str], dict[str, list[str]]]:
    """Numeric feature names and, per categorical feature, its sorted training categories."""
    numeric = [f.name for f in feature_set.features if f.kind == "numeric"]
    categories = {
        f.name: sorted(str(v) for v in frame[f.name].dropna().unique())
        for f in feature_set.features
        if f.kind == "categorical"
    }
    return numeric, categories


def fit(frame: pd.DataFrame, feature_set: FeatureSet, cfg: TrainingConfig) -> PropensityModel:
    """Fit LightGBM on a labelled snapshot frame."""
    positives = int(frame["label"].sum())
    if positives == 0 or positives == len(frame):
        raise UserError(
            f"the training snapshots ({frame['as_of'].min()} to {frame['as_of'].max()}) hold"
            f" {positives} expansions in {len(frame)} rows; both outcomes are needed"
        )
    numeric, categories = schema(feature_set, frame)
    params = {
        "objective": "binary",
        "verbosity": -1,
        "seed": cfg.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 0,
        "learning_rate": cfg.lightgbm.learning_rate,
        "num_leaves": cfg.lightgbm.num_leaves,
        "min_child_samples": cfg.lightgbm.min_child_samples,
        "bagging_fraction": cfg.lightgbm.subsample,
        "bagging_freq": cfg.lightgbm.subsample_freq,
        "feature_fraction": cfg.lightgbm.colsample_bytree,
        "lambda_l2": cfg.lightgbm.reg_lambda,
    }
    data = lgb.Dataset(
        prepare(frame, numeric, categories), label=frame["label"].to_numpy(), free_raw_data=True
    )
    booster = lgb.train(params, data, num_boost_round=cfg.lightgbm.n_estimators)
    return PropensityModel(
        booster=booster, numeric=numeric, categories=categories, horizon_days=cfg.horizon_days
    )


def lift_at(y: np.ndarray, p: np.ndarray, fraction: float) -> float:
    """Positive rate in the top `fraction` by score over the overall positive rate."""
    k = max(1, round(len(y) * fraction))
    top = np.argsort(-p, kind="stable")[:k]
    base = y.mean()
    return float(y[top].mean() / base) if base > 0 else float("nan")


def evaluate(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y = np.asarray(y, dtype=int)
    if y.min() == y.max():
        raise UserError("the test snapshots hold only one outcome; use a longer test window")
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "lift_top_decile": lift_at(y, p, 0.1),
        "base_rate": float(y.mean()),
        "rows": float(len(y)),
    }
