"""Fitting the delivered model on one time layout: plain functions over frames.

A layout names three consecutive groups of snapshot dates: the booster fits on the first, early
stopping and the calibrator use the second (whose dates follow the first by at least one
horizon, so no label window is shared), and the third, in a backtest fold, is the test.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from expansion_scorer.config import FeatureSet, LightGBMParams, Strength, TrainingConfig
from expansion_scorer.errors import UserError
from expansion_scorer.features.ledger import EXPANSION_KINDS
from expansion_scorer.features.snapshots import motion_label
from expansion_scorer.training.calibration import Calibrator
from expansion_scorer.training.model import (
    Choice,
    Head,
    Offset,
    PropensityModel,
    prepare,
    season_offset,
)

SIZE_ROUNDS = 200
DATASET_PARAMS = {"feature_pre_filter": False, "verbosity": -1}
"""Binning is shared by every parameter set tried on a dataset, so nothing is pre-filtered."""


@dataclass(frozen=True)
class Layout:
    """Snapshot dates for the booster, for early stopping and calibration, and for the test."""

    index: int
    """1-based fold number; 0 for the final fit, which has no test dates."""
    fit_dates: tuple[date, ...]
    calib_dates: tuple[date, ...]
    test_dates: tuple[date, ...] = ()

    @property
    def name(self) -> str:
        return f"fold {self.index}" if self.index else "final fit"


Frames = pd.DataFrame | Mapping[int, pd.DataFrame]
"""One training frame for every layout, or one per layout index (0: the final fit) when part
of the features is fitted on each layout's training rows (a learned affinity)."""


def frame_for(frames: Frames, layout: Layout) -> pd.DataFrame:
    return frames if isinstance(frames, pd.DataFrame) else frames[layout.index]


class FoldFrames(Mapping[int, pd.DataFrame]):
    """One frame per layout index, kept as one shared frame and, per layout, only the columns
    that differ from it: five copies of a million snapshots would not fit in memory."""

    def __init__(self, base: pd.DataFrame, columns: dict[int, dict[str, pd.Series]]) -> None:
        self.base = base
        self.columns = columns

    def __getitem__(self, index: int) -> pd.DataFrame:
        own = self.columns[index]
        return self.base.assign(**own) if own else self.base

    def __iter__(self) -> Iterator[int]:
        return iter(self.columns)

    def __len__(self) -> int:
        return len(self.columns)


def schema(feature_set: FeatureSet, frame: pd.DataFrame) -> tuple[list[str], dict[str, list[str]]]:
    """Numeric feature names and, per categorical feature, its sorted training categories."""
    numeric = [f.name for f in feature_set.features if f.kind == "numeric"]
    categories = {
        f.name: sorted(str(v) for v in frame[f.name].dropna().unique())
        for f in feature_set.features
        if f.kind == "categorical"
    }
    return numeric, categories


def lgb_params(params: LightGBMParams, seed: int) -> dict[str, Any]:
    return {
        "objective": "binary",
        "verbosity": -1,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 0,
        "learning_rate": params.learning_rate,
        "num_leaves": params.num_leaves,
        "min_child_samples": params.min_child_samples,
        "bagging_fraction": params.subsample,
        "bagging_freq": params.subsample_freq,
        "feature_fraction": params.colsample_bytree,
        "lambda_l2": params.reg_lambda,
    }


def rows_of(frame: pd.DataFrame, dates: Sequence[date]) -> pd.DataFrame:
    return frame[frame["as_of"].isin(set(dates))]


def require_both_outcomes(part: pd.DataFrame, what: str, fix: str) -> None:
    """Stop with the dates and a remedy when a set of snapshots holds a single outcome."""
    positives = int(part["label"].sum())
    if len(part) and 0 < positives < len(part):
        return
    span = f"{part['as_of'].min()}..{part['as_of'].max()}" if len(part) else "no dates"
    outcome = "no expansion" if positives == 0 else "only expansions"
    raise UserError(f"{what} ({span}, {len(part)} snapshots) holds {outcome}; {fix}")


def offset_for(fit: pd.DataFrame, cfg: TrainingConfig, label: str = "label") -> Offset | None:
    """The seasonal offset of `cfg.season_feature`, learnt from the booster's training rows."""
    if cfg.season_feature is None or cfg.season_feature not in fit.columns:
        return None
    return season_offset(fit, cfg.season_feature, label=label)


def datasets(
    fit: pd.DataFrame,
    valid: pd.DataFrame,
    numeric: list[str],
    categories: dict[str, list[str]],
    offset: Offset | None = None,
    label: str = "label",
) -> tuple[lgb.Dataset, lgb.Dataset]:
    """Binned training and validation sets (validation on the training bins) of `label`, ready
    to reuse; with an offset, both start from it (LightGBM's init_score)."""
    train_set = lgb.Dataset(
        prepare(fit, numeric, categories),
        label=fit[label].to_numpy(),
        init_score=None if offset is None else offset.of(fit),
        params=DATASET_PARAMS,
        free_raw_data=False,
    ).construct()
    valid_set = lgb.Dataset(
        prepare(valid, numeric, categories),
        label=valid[label].to_numpy(),
        init_score=None if offset is None else offset.of(valid),
        reference=train_set,
        params=DATASET_PARAMS,
    ).construct()
    return train_set, valid_set


def train_early_stopped(
    params: LightGBMParams, train_set: lgb.Dataset, valid_set: lgb.Dataset, cfg: TrainingConfig
) -> lgb.Booster:
    """LightGBM up to `params.n_estimators` rounds, stopped early on `valid_set`'s log loss."""
    return lgb.train(
        lgb_params(params, cfg.seed),
        train_set,
        num_boost_round=params.n_estimators,
        valid_sets=[valid_set],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(cfg.tuning.early_stopping_rounds, verbose=False)],
    )


def fit_booster(
    fit: pd.DataFrame,
    valid: pd.DataFrame,
    numeric: list[str],
    categories: dict[str, list[str]],
    params: LightGBMParams,
    cfg: TrainingConfig,
    offset: Offset | None = None,
    label: str = "label",
) -> lgb.Booster:
    """LightGBM on `fit`'s `label`, stopped early on `valid`, cut to its best iteration."""
    train_set, valid_set = datasets(fit, valid, numeric, categories, offset, label)
    booster = train_early_stopped(params, train_set, valid_set, cfg)
    best = booster.best_iteration or booster.current_iteration()
    # A booster holding only the kept trees: SHAP and predict then agree without arguments.
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))


def fit_size(
    frame: pd.DataFrame, numeric: list[str], categories: dict[str, list[str]], cfg: TrainingConfig
) -> lgb.Booster | None:
    """Expected expansion ARR given an expansion: a gamma regression on the positives."""
    positives = frame[(frame["label"] == 1) & (frame["expansion_arr"] > 0)]
    if len(positives) < 20:
        return None
    params = lgb_params(cfg.lightgbm, cfg.seed)
    params.update(objective="gamma", learning_rate=0.05, min_child_samples=20)
    data = lgb.Dataset(
        prepare(positives, numeric, categories),
        label=positives["expansion_arr"].to_numpy(dtype="float64"),
        params=DATASET_PARAMS,
    )
    return lgb.train(params, data, num_boost_round=SIZE_ROUNDS)


@dataclass(frozen=True)
class _Rows:
    fit: pd.DataFrame
    calib: pd.DataFrame
    numeric: list[str]
    categories: dict[str, list[str]]


def regularised(params: LightGBMParams, strength: Strength, positives: int) -> LightGBMParams:
    """Fewer, larger leaves: `strength.leaves` of at least `rows_per_leaf` x the positives."""
    rows = max(params.min_child_samples, int(np.ceil(strength.rows_per_leaf * positives)))
    leaves = min(params.num_leaves, strength.leaves)
    return params.model_copy(update={"num_leaves": leaves, "min_child_samples": rows})


def _head(rows: _Rows, params: LightGBMParams, cfg: TrainingConfig, label: str, name: str) -> Head:
    offset = offset_for(rows.fit, cfg, label)
    booster = fit_booster(
        rows.fit, rows.calib, rows.numeric, rows.categories, params, cfg, offset, label
    )
    return Head(name, booster, offset)


def _motions_to_fit(frame: pd.DataFrame, rows: _Rows, cfg: TrainingConfig) -> str | list[str]:
    """The motions the `motions` learner fits on these rows, or why it cannot."""
    if cfg.label.motion != "any" or cfg.label.product is not None:
        return f"the label is one motion ({cfg.label.motion}), not any expansion"
    if any(motion_label(m) not in frame.columns for m in EXPANSION_KINDS):
        return "the data has no expansion motions (a revenue ledger)"
    least = cfg.learning.min_positives
    kept = [
        m
        for m in EXPANSION_KINDS
        if min(int(rows.fit[motion_label(m)].sum()), int(rows.calib[motion_label(m)].sum()))
        >= least
    ]
    if not kept:
        return f"no motion has {least} expansions in both the training and calibration snapshots"
    return kept


def _learn(
    kind: str,
    strength: Strength | None,
    frame: pd.DataFrame,
    rows: _Rows,
    params: LightGBMParams,
    cfg: TrainingConfig,
) -> tuple[Head, ...] | str:
    """The heads of one learner on these rows, or why it does not apply."""
    if strength is None:
        return (_head(rows, params, cfg, "label", "any"),)
    if kind == "regularised":
        own = regularised(params, strength, int(rows.fit["label"].sum()))
        return (_head(rows, own, cfg, "label", "any"),)
    motions = _motions_to_fit(frame, rows, cfg)
    if isinstance(motions, str):
        return motions
    return tuple(
        _head(rows, regularised(params, strength, int(rows.fit[label].sum())), cfg, label, m)
        for m, label in ((m, motion_label(m)) for m in motions)
    )


def fit(
    frame: pd.DataFrame,
    layout: Layout,
    feature_set: FeatureSet,
    cfg: TrainingConfig,
    params: LightGBMParams | None = None,
) -> PropensityModel:
    """The delivered model for one layout: each configured learner fitted on the training
    months, the one with the best ROC AUC on the calibration months kept (its `choice`), then
    its out-of-time calibrator and the size model."""
    fit_rows = rows_of(frame, layout.fit_dates)
    calib_rows = rows_of(frame, layout.calib_dates)
    fix = "use more history, fewer folds or test_months, or a longer horizon"
    require_both_outcomes(fit_rows, f"{layout.name}: the training snapshots", fix)
    require_both_outcomes(calib_rows, f"{layout.name}: the calibration snapshots", fix)
    numeric, categories = schema(feature_set, pd.concat([fit_rows, calib_rows]))
    rows = _Rows(fit_rows, calib_rows, numeric, categories)
    offset = offset_for(fit_rows, cfg)
    size = (
        fit_size(pd.concat([fit_rows, calib_rows]), numeric, categories, cfg)
        if cfg.size_model and "expansion_arr" in frame.columns
        else None
    )
    y = calib_rows["label"].to_numpy()
    best: tuple[str, PropensityModel] | None = None
    scored: dict[str, float] = {}
    skipped: dict[str, str] = {}
    motions: tuple[str, ...] = ()
    for learner, kind, strength in cfg.learning.learners():
        heads = _learn(kind, strength, frame, rows, params or cfg.lightgbm, cfg)
        if isinstance(heads, str):
            skipped[kind] = heads
            continue
        model = PropensityModel(
            booster=heads[0].booster,
            numeric=numeric,
            categories=categories,
            horizon_days=cfg.horizon_days,
            size_booster=size,
            offset=offset,
        )
        if kind == "motions":
            model.motions = heads
            motions = tuple(h.name for h in heads)
        scored[learner] = float(roc_auc_score(y, model.raw_proba(calib_rows)))
        if best is None or scored[learner] > scored[best[0]]:
            best = learner, model
    if best is None:
        raise UserError(
            f"{layout.name}: no learner in learning.candidates applies ("
            + "; ".join(f"{k}: {v}" for k, v in skipped.items())
            + "); add single to learning.candidates"
        )
    learner, kept = best
    kept.choice = Choice(learner, scored, skipped, motions)
    raw = kept.raw_proba(calib_rows)
    kept.calibrator = Calibrator(cfg.backtest.calibration).fit(raw, y, kept.shift(calib_rows))
    return kept
