"""Rolling-origin backtest: K time folds, the model and the baselines scored on the same rows.

Fold k tests on a block of the latest snapshot months. Everything fitted for it (booster,
calibrator, logistic baseline) uses only snapshots whose label window closes on or before the
block's first date: an embargo of one horizon, so no training label reaches into the test.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from expansion_scorer.config import FeatureSet, LightGBMParams, TrainingConfig
from expansion_scorer.errors import UserError
from expansion_scorer.model.propensity import Choice, PropensityModel
from expansion_scorer.progress import progress
from expansion_scorer.text import span
from expansion_scorer.training import baselines
from expansion_scorer.training.metrics import captured_arr, evaluate
from expansion_scorer.training.train import (
    Frames,
    Layout,
    fit_all,
    fit_booster,
    frame_for,
    offset_for,
    purged_blocks,
    require_both_outcomes,
    rows_of,
    schema,
)

TRUTH_COLUMN = "p_true"
"""The simulator's true probability, when the frame has it: scored as the Bayes limit."""
MODEL = "model"
UNCALIBRATED = "model_uncalibrated"
KINDS = ("booster", "gam", "blend")
"""The best booster learner, the gam and the blend of a layout, each scored beside the model."""


def _before(dates: Sequence[date], start: date, horizon_days: int) -> list[date]:
    """Dates whose label window [d, d + horizon) closes on or before `start`."""
    return [d for d in dates if d + timedelta(days=horizon_days) <= start]


REMEDY = (
    "use more history (a later --train-until), fewer backtest.folds or test_months,"
    " fewer backtest.calibration_months or a shorter horizon"
)


@dataclass(frozen=True)
class Shape:
    """How many folds, test months and calibration months a backtest has."""

    folds: int
    test_months: int
    calibration_months: int

    def __str__(self) -> str:
        return (
            f"{_count(self.folds, 'fold')} over {_count(self.test_months, 'test month')}"
            f" with {_count(self.calibration_months, 'calibration month')}"
        )

    def said(self, crossfit: bool) -> str:
        """As printed: cross-fitted backtests have no calibration months."""
        if crossfit:
            return f"{_count(self.folds, 'fold')} over {_count(self.test_months, 'test month')}"
        return str(self)


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def shape_of(cfg: TrainingConfig) -> Shape:
    return Shape(cfg.backtest.folds, cfg.test_months, cfg.backtest.calibration_months)


def with_shape(cfg: TrainingConfig, shape: Shape) -> TrainingConfig:
    """cfg with another backtest shape, through validation."""
    return TrainingConfig.model_validate(
        {
            **cfg.model_dump(),
            "test_months": shape.test_months,
            "backtest": {
                **cfg.backtest.model_dump(),
                "folds": shape.folds,
                "calibration_months": shape.calibration_months,
            },
        }
    )


def _layout(
    index: int,
    usable: list[date],
    horizon_days: int,
    c: int,
    test: Sequence[date],
    blocks: int | None = None,
) -> Layout | str:
    """The fold's layout, or why the snapshot months before it cannot hold one. With `blocks`
    it cross-fits inside every usable month; without, it calibrates on the latest `c`."""
    what = f"fold {index} (test {span(test)})" if index else "the final fit"
    if blocks is not None:
        if len(usable) < 2 or not purged_blocks(usable, horizon_days, blocks):
            return (
                f"{what} has {len(usable)} snapshot months ({span(usable)}) whose"
                f" {horizon_days}-day labels close before it: too few for any of them to be"
                f" predicted from months one horizon away"
            )
        return Layout(index, tuple(usable), (), tuple(test))
    if len(usable) < c:
        return (
            f"{what} has {len(usable)} snapshot months ({span(usable)}) whose"
            f" {horizon_days}-day labels close before it, {c} are needed to calibrate"
        )
    calib = usable[-c:]
    fit_dates = _before(usable, calib[0], horizon_days)
    if not fit_dates:
        return (
            f"{what} has no snapshot month to train on: its calibration months {span(calib)}"
            f" start {horizon_days} days after the first snapshot {usable[0]}"
        )
    return Layout(index, tuple(fit_dates), tuple(calib), tuple(test))


def _plan(
    dates: list[date], horizon_days: int, shape: Shape, crossfit: int | None = None
) -> tuple[list[Layout], Layout] | str:
    """The test folds and the final fit's layout of one shape, or why the dates cannot hold it."""
    months = shape.test_months
    if len(dates) <= months:
        return (
            f"only {len(dates)} snapshot months ({span(dates)}) fit the data with a"
            f" {horizon_days}-day horizon and {months} test months are asked for"
        )
    blocks = np.array_split(np.array(dates[-months:], dtype=object), shape.folds)
    folds = []
    for i, block in enumerate(blocks):
        usable = _before(dates, block[0], horizon_days)
        c = shape.calibration_months
        fold = _layout(i + 1, usable, horizon_days, c, list(block), crossfit)
        if isinstance(fold, str):
            return fold
        folds.append(fold)
    final = _layout(0, dates, horizon_days, shape.calibration_months, (), crossfit)
    return final if isinstance(final, str) else (folds, final)


def _blocks(cfg: TrainingConfig) -> int | None:
    """The cross-fitting blocks of the configured arrangement; None: later months."""
    return cfg.backtest.crossfit_blocks if cfg.backtest.arrangement == "crossfit" else None


def _check_shape(cfg: TrainingConfig) -> None:
    k, months = cfg.backtest.folds, cfg.test_months
    if months < k:
        raise UserError(
            f"training config: test_months ({months}) must be at least backtest.folds ({k});"
            " raise test_months or lower folds"
        )


def plan_folds(dates: Sequence[date], cfg: TrainingConfig) -> list[Layout]:
    """The K test folds over the latest `test_months` snapshot months, oldest first."""
    _check_shape(cfg)
    planned = _plan(sorted(set(dates)), cfg.horizon_days, shape_of(cfg), _blocks(cfg))
    if isinstance(planned, str):
        raise UserError(f"{planned}; {REMEDY}")
    return planned[0]


def final_layout(dates: Sequence[date], cfg: TrainingConfig) -> Layout:
    """The delivered model's layout: calibrated on the latest months, every label closed."""
    final = _layout(
        0, sorted(set(dates)), cfg.horizon_days, cfg.backtest.calibration_months, (), _blocks(cfg)
    )
    if isinstance(final, str):
        raise UserError(f"{final}; {REMEDY}")
    return final


def shrink_steps(configured: Shape, minimum: Shape) -> list[Shape]:
    """Ever smaller backtests, in the order they are tried: the oldest fold goes first (the
    later folds stay as configured), then test months, then calibration months, down to the
    minimum (each part of it capped at the configured value, so nothing ever grows)."""
    floor = Shape(
        min(configured.folds, minimum.folds),
        min(configured.test_months, minimum.test_months),
        min(configured.calibration_months, minimum.calibration_months),
    )
    blocks = [len(b) for b in np.array_split(np.arange(configured.test_months), configured.folds)]
    steps, folds, months = [], configured.folds, configured.test_months
    while folds > floor.folds and months - blocks[-folds] >= floor.test_months:
        months -= blocks[-folds]
        folds -= 1
        steps.append(Shape(folds, months, configured.calibration_months))
    while months > floor.test_months:
        months -= 1
        steps.append(Shape(folds, months, configured.calibration_months))
    for c in range(configured.calibration_months - 1, floor.calibration_months - 1, -1):
        steps.append(Shape(folds, months, c))
    return steps


def months_needed(shape: Shape, horizon_days: int, first: date, blocks: int | None = None) -> int:
    """How many consecutive month starts from `first` a backtest of this shape needs."""
    dates = [first]
    while isinstance(_plan(dates, horizon_days, shape, blocks), str):
        y, m = divmod(dates[-1].month, 12)
        dates.append(date(dates[-1].year + y, m + 1, 1))
    return len(dates)


@dataclass(frozen=True)
class Plan:
    """The backtest that runs: the configured one, or the largest smaller one the history holds."""

    cfg: TrainingConfig
    """The training config with the backtest that runs (the configured one when not shrunk)."""
    folds: list[Layout]
    final: Layout
    configured: Shape
    shape: Shape
    change: str = ""
    """What was shrunk, from what to what, and why; empty when the backtest runs as configured."""

    @property
    def shrunk(self) -> bool:
        return self.shape != self.configured

    @property
    def message(self) -> str:
        """The line training prints; empty when the backtest runs as configured."""
        return f"backtest shrunk to fit the history: {self.change}" if self.change else ""


def _changes(configured: Shape, shape: Shape, horizon_days: int, crossfit: bool) -> str:
    """'backtest.folds 3 -> 1, ... (backtest.calibration_months 3, the 90-day embargo kept)'."""
    parts = {
        "backtest.folds": (configured.folds, shape.folds),
        "test_months": (configured.test_months, shape.test_months),
    }
    if not crossfit:
        parts["backtest.calibration_months"] = (
            configured.calibration_months,
            shape.calibration_months,
        )
    changed = [f"{name} {a} -> {b}" for name, (a, b) in parts.items() if a != b]
    kept = [f"{name} {a}" for name, (a, b) in parts.items() if a == b]
    return f"{', '.join(changed)} ({', '.join([*kept, f'the {horizon_days}-day embargo'])} kept)"


def plan_backtest(dates: Sequence[date], cfg: TrainingConfig) -> Plan:
    """The configured backtest when the snapshot months hold it; otherwise the first of
    `shrink_steps` they hold, with a message saying so; below the minimum, a one-line error."""
    _check_shape(cfg)
    dates = sorted(set(dates))
    if not dates:
        raise UserError("no snapshot month to backtest on; use more history or a shorter horizon")
    h, configured, blocks = cfg.horizon_days, shape_of(cfg), _blocks(cfg)
    planned = _plan(dates, h, configured, blocks)
    if not isinstance(planned, str):
        return Plan(cfg, planned[0], planned[1], configured, configured)
    if cfg.backtest.minimum is None:
        raise UserError(f"{planned}; {REMEDY}")
    least = cfg.backtest.minimum
    minimum = Shape(least.folds, least.test_months, least.calibration_months)
    found = f"{_count(len(dates), 'snapshot month')} ({span(dates)}) with {h}-day labels closed"
    steps = shrink_steps(configured, minimum)
    if blocks is not None:  # cross-fitted: no calibration months to shrink
        steps = [s for s in steps if s.calibration_months == configured.calibration_months]
    for shape in steps:
        shrunk = _plan(dates, h, shape, blocks)
        if not isinstance(shrunk, str):
            change = (
                f"{_changes(configured, shape, h, blocks is not None)};"
                f" the configured {configured.said(blocks is not None)} needs"
                f" {months_needed(configured, h, dates[0], blocks)} snapshot months and the data"
                " has"
                f" {found}"
            )
            return Plan(with_shape(cfg, shape), shrunk[0], shrunk[1], configured, shape, change)
    smallest = steps[-1] if steps else configured
    raise UserError(
        f"the history is too short for the smallest backtest: the data has {found}, and"
        f" {smallest.said(blocks is not None)} and a {h}-day embargo"
        + (
            " before the test and around each cross-fitting block"
            if blocks is not None
            else " before calibration and before the test"
        )
        + " needs"
        f" {months_needed(smallest, h, dates[0], blocks)} (backtest.minimum); use more history"
        " (a later --train-until) or a shorter horizon"
    )


def check_folds(frame: pd.DataFrame, folds: Sequence[Layout]) -> None:
    """Every fold's parts hold both outcomes; checked before anything is fitted or logged."""
    fix = "use a longer window (more history or more test_months per fold) or a longer horizon"
    for fold in [*folds]:
        for what, dates in (
            ("training", fold.fit_dates),
            ("calibration", fold.calib_dates),
            ("test", fold.test_dates),
        ):
            if dates:
                require_both_outcomes(
                    rows_of(frame, dates), f"{fold.name}: the {what} snapshots", fix
                )


@dataclass
class FoldResult:
    layout: Layout
    scores: pd.DataFrame
    """account_id, as_of, label, expansion_arr and one column per scorer."""
    metrics: dict[str, dict[str, float]]
    """Scorer -> metric -> value."""
    best_iteration: int
    """The most rounds any of the model's boosters kept."""
    choice: Choice | None = None
    """The learner the fold's calibration months chose, and how each did."""

    @property
    def learner(self) -> str:
        return "single" if self.choice is None else self.choice.learner


@dataclass
class Backtest:
    folds: list[FoldResult]
    pooled: dict[str, dict[str, float]]
    scores: pd.DataFrame
    random_split_auc: float | None = None
    survivors: list[str] | None = None
    """The learners left after the last fold, which the final fit tries (successive halving:
    each fold drops the booster learners trailing its best); None: all."""

    @property
    def scorers(self) -> list[str]:
        return list(self.pooled)


def _metrics(scores: pd.DataFrame, scorers: list[str], k: int) -> dict[str, dict[str, float]]:
    y = scores["label"].to_numpy()
    dates = scores["as_of"].to_numpy()
    out = {name: evaluate(y, scores[name].to_numpy(), dates, k) for name in scorers}
    if "expected_arr" in scores and scores["expected_arr"].notna().all():
        arr = scores["expansion_arr"].to_numpy(dtype="float64")
        out[MODEL]["arr_captured_by_score"] = captured_arr(arr, scores[MODEL].to_numpy(), dates, k)
        out[MODEL]["arr_captured_by_expected_arr"] = captured_arr(
            arr, scores["expected_arr"].to_numpy(), dates, k
        )
    return out


def score_columns(frame: pd.DataFrame) -> list[str]:
    scorers = [MODEL, UNCALIBRATED, *baselines.NAMES]
    return [*scorers, TRUTH_COLUMN] if TRUTH_COLUMN in frame.columns else scorers


def run_fold(
    frames: Frames,
    layout: Layout,
    feature_set: FeatureSet,
    cfg: TrainingConfig,
    params: LightGBMParams,
    with_baselines: bool = True,
    only: Collection[str] | None = None,
) -> FoldResult:
    frame = frame_for(frames, layout)
    test = rows_of(frame, layout.test_dates)
    fitted = fit_all(frame, layout, feature_set, cfg, params, only)
    model = fitted.model
    keep = ["account_id", "as_of", "label", "expansion_arr"]
    scores = test[[c for c in keep if c in test.columns]].reset_index(drop=True)
    scores[MODEL] = model.predict_proba(test)
    scores[UNCALIBRATED] = model.raw_proba(test)
    scores["expected_arr"] = scores[MODEL] * model.expected_size(test)  # the score, once
    scorers = [MODEL, UNCALIBRATED]
    if with_baselines and len(fitted.kinds) > 1:  # each kind of learner tried, side by side
        for kind in KINDS:
            if kind in fitted.kinds:
                scores[kind] = fitted.kinds[kind].predict_proba(test)
                scorers.append(kind)
    if with_baselines:
        past = rows_of(frame, [*layout.fit_dates, *layout.calib_dates])
        logistic = baselines.logistic(feature_set, cfg.seed)
        logistic.fit(baselines.logistic_frame(past, feature_set), past["label"].to_numpy())
        scores["logistic"] = logistic.predict_proba(baselines.logistic_frame(test, feature_set))[
            :, 1
        ]
        scores["rule"] = baselines.rule_score(test, cfg.baselines)
        scores["recent"] = baselines.recent_score(test, cfg.baselines)
        scorers += list(baselines.NAMES)
    if TRUTH_COLUMN in test.columns:
        scores[TRUTH_COLUMN] = test[TRUTH_COLUMN].to_numpy()
        scorers.append(TRUTH_COLUMN)
    return FoldResult(
        layout=layout,
        scores=scores,
        metrics=_metrics(scores, scorers, cfg.capacity.k),
        best_iteration=model.rounds,
        choice=model.choice,
    )


def backtest(
    frames: Frames,
    folds: Sequence[Layout],
    feature_set: FeatureSet,
    cfg: TrainingConfig,
    params: LightGBMParams | None = None,
    with_baselines: bool = True,
) -> Backtest:
    """Fit and score every fold; metrics per fold and pooled over all test snapshots."""
    check_folds(frame_for(frames, folds[0]), folds)  # the labels are the same in every frame
    results: list[FoldResult] = []
    survivors: list[str] | None = None
    for fold in progress(folds, "backtest folds"):
        results.append(
            run_fold(frames, fold, feature_set, cfg, params or cfg.lightgbm, with_baselines,
                     survivors)
        )  # fmt: skip
        survivors = _survivors(results[-1].choice, cfg) or survivors
    scores = pd.concat([r.scores for r in results], ignore_index=True)
    scorers = [c for c in results[0].metrics if all(c in r.metrics for r in results)]
    return Backtest(
        folds=results,
        pooled=_metrics(scores, scorers, cfg.capacity.k),
        scores=scores,
        survivors=survivors,
    )


def _survivors(choice: Choice | None, cfg: TrainingConfig) -> list[str] | None:
    """The learners fitted after a fold (successive halving): the best booster learner of those
    it fitted and any other within `halving_margin` of it, and the gam and the blend when
    configured; None: all of them. A learner dropped by one fold is not fitted by the next,
    so the search narrows as the folds add evidence."""
    margin = cfg.learning.halving_margin
    if choice is None or margin is None or not choice.calibration_auc:
        return None
    aucs = {k: v for k, v in choice.calibration_auc.items() if k not in ("gam", "blend")}
    if not aucs:
        return None
    best = max(aucs.values())
    kept = [name for name, auc in aucs.items() if auc >= best - margin]
    return kept + [k for k in ("gam", "blend") if k in cfg.learning.candidates]


def random_split_auc(
    frame: pd.DataFrame,
    dates: Sequence[date],
    feature_set: FeatureSet,
    cfg: TrainingConfig,
    params: LightGBMParams,
) -> float:
    """ROC AUC of the same learner on a random 70/10/20 split of the same snapshots' accounts.

    The split ignores time (each account's snapshots stay on one side, so overlapping label
    windows of neighbouring months cannot leak): well above the time-split AUC, it says the
    features see the future or the world drifts faster than the model is retrained.
    """
    rows = rows_of(frame, dates).reset_index(drop=True)
    accounts = rows["account_id"].unique()
    draw = np.random.default_rng(cfg.seed).random(len(accounts))
    part = rows["account_id"].map(dict(zip(accounts, draw, strict=True))).to_numpy()
    keep = cfg.backtest.random_split_rows / len(rows)
    if keep < 1:  # a sample of whole accounts, drawn apart from the split itself
        sample = np.random.default_rng(cfg.seed + 1).random(len(accounts)) < keep
        kept = rows["account_id"].map(dict(zip(accounts, sample, strict=True))).to_numpy()
        rows, part = rows[kept].reset_index(drop=True), part[kept]
    train, valid, test = rows[part < 0.7], rows[(part >= 0.7) & (part < 0.8)], rows[part >= 0.8]
    fix = "use a longer window"
    for name, part_rows in (("train", train), ("validation", valid), ("test", test)):
        require_both_outcomes(part_rows, f"random split: the {name} rows", fix)
    numeric, categories = schema(feature_set, rows)
    offset = offset_for(train, cfg)
    booster = fit_booster(train, valid, numeric, categories, params, cfg, offset)
    model = PropensityModel(booster, numeric, categories, cfg.horizon_days, offset=offset)
    return float(roc_auc_score(test["label"].to_numpy(), model.raw_proba(test)))
