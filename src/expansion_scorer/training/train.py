"""Fitting the delivered model on one time layout: plain functions over frames.

A layout names the snapshot dates a model is fitted on and, in a backtest fold, the dates it is
tested on. The choices made on the way (the learner, the blend's shares, early stopping and the
calibration) come from held-out predictions: by default out-of-fold predictions inside the
training dates (`crossfit_blocks`), each block predicted by models fitted on the other dates with
one horizon purged on either side of it, and the delivered model is then fitted on all of them;
or (`later_months`) the latest calibration dates, which follow the training dates by at least
one horizon so no label window is shared.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from expansion_scorer.config import (
    FeatureSet,
    LightGBMParams,
    Strength,
    TrainingConfig,
)
from expansion_scorer.errors import UserError
from expansion_scorer.features.ledger import EXPANSION_KINDS
from expansion_scorer.features.snapshots import motion_label
from expansion_scorer.model.calibration import Calibrator
from expansion_scorer.model.gam import SplineLogit
from expansion_scorer.model.parts import Head, Offset, prepare, season_offset, sigmoid
from expansion_scorer.model.propensity import Choice, PropensityModel
from expansion_scorer.training.calibration import choose_calibration
from expansion_scorer.training.metrics import ranked_auc
from expansion_scorer.training.selection import complexity, simplest_within

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
    """Empty when the layout cross-fits inside `fit_dates`."""
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


def lgb_params(params: LightGBMParams, seed: int, threads: int = 0) -> dict[str, Any]:
    return {
        "objective": "binary",
        "verbosity": -1,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": threads,
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

    def binned(rows: pd.DataFrame, reference: lgb.Dataset | None = None) -> lgb.Dataset:
        return lgb.Dataset(
            prepare(rows, numeric, categories),
            label=rows[label].to_numpy(),
            init_score=None if offset is None else offset.of(rows),
            reference=reference,
            params=DATASET_PARAMS,
            free_raw_data=False,
        ).construct()

    train_set = binned(fit)
    valid_set = binned(valid, reference=train_set)
    return train_set, valid_set


def train_early_stopped(
    params: LightGBMParams,
    train_set: lgb.Dataset,
    valid_set: lgb.Dataset,
    cfg: TrainingConfig,
    threads: int = 0,
) -> lgb.Booster:
    """LightGBM up to `params.n_estimators` rounds, stopped early on `valid_set`'s log loss."""
    return lgb.train(
        lgb_params(params, cfg.seed, threads),
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
    threads: int = 0,
) -> lgb.Booster:
    """LightGBM on `fit`'s `label`, stopped early on `valid`, cut to its best iteration."""
    train_set, valid_set = datasets(fit, valid, numeric, categories, offset, label)
    return kept_trees(train_early_stopped(params, train_set, valid_set, cfg, threads))


def kept_trees(booster: lgb.Booster) -> lgb.Booster:
    """A booster holding only the trees early stopping kept: SHAP and predict then agree
    without arguments."""
    best = booster.best_iteration or booster.current_iteration()
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


def fit_rounds(
    train_set: lgb.Dataset,
    params: LightGBMParams,
    cfg: TrainingConfig,
    rounds: int,
    threads: int = 0,
) -> lgb.Booster:
    """LightGBM on a binned set for a fixed number of rounds (found on held-out blocks)."""
    return lgb.train(
        lgb_params(params, cfg.seed, threads), train_set, num_boost_round=max(rounds, 1)
    )


def regularised(params: LightGBMParams, strength: Strength, positives: int) -> LightGBMParams:
    """Fewer, larger leaves: `strength.leaves` of at least `rows_per_leaf` x the positives, at
    the strength's step where it has one."""
    rows = max(params.min_child_samples, int(np.ceil(strength.rows_per_leaf * positives)))
    leaves = min(params.num_leaves, strength.leaves)
    step = strength.learning_rate or params.learning_rate
    return params.model_copy(
        update={"num_leaves": leaves, "min_child_samples": rows, "learning_rate": step}
    )


def _params_for(
    params: LightGBMParams, strength: Strength | None, rows: pd.DataFrame, label: str
) -> LightGBMParams:
    """A booster learner's parameters on these rows: as configured, or regularised to their
    positives of `label`."""
    return params if strength is None else regularised(params, strength, int(rows[label].sum()))


def purged_blocks(
    dates: Sequence[date], horizon_days: int, blocks: int
) -> list[tuple[tuple[date, ...], tuple[date, ...]]]:
    """(training dates, held-out dates) per block of consecutive dates: a date trains for a
    block only when its label window and the block's do not overlap (one horizon purged on
    either side). Blocks left with no training date are dropped."""
    dates = sorted(set(dates))
    h = timedelta(days=horizon_days)
    out = []
    for block in np.array_split(np.array(dates, dtype=object), min(blocks, len(dates))):
        first, last = block[0], block[-1]
        train = tuple(d for d in dates if d + h <= first or d >= last + h)
        if train:
            out.append((train, tuple(block)))
    return out


@dataclass(frozen=True)
class _Part:
    """Rows a candidate is fitted on and the held-out rows it predicts (and stops early on)."""

    fit: pd.DataFrame
    held: pd.DataFrame
    offset: Offset | None
    """The season offset of the label, learnt from `fit`."""


@dataclass
class _Candidate:
    """One learner's held-out log-odds (in the order of the held-out rows) and how its final
    model is made. A booster's final fit on every training row is made when the model is first
    asked for: only the learner kept and the best booster (the blend's part) need one."""

    held_logit: np.ndarray
    make: Callable[[], PropensityModel]
    seconds: float = 0.0
    """Seconds spent fitting the learner on this layout, its final fit included once made."""

    @cached_property
    def model(self) -> PropensityModel:
        started = time.perf_counter()
        made = self.make()
        self.seconds += time.perf_counter() - started
        return made


@dataclass
class _Search:
    """What a layout's learners are fitted and decided on."""

    rows: pd.DataFrame
    """Every training row; the delivered model is fitted on these."""
    parts: list[_Part]
    numeric: list[str]
    categories: dict[str, list[str]]
    refit: bool
    """Cross-fitted: the final models are refitted on `rows`; else the parts' own models."""

    binned: dict[int, tuple[lgb.Dataset, lgb.Dataset]] = field(default_factory=dict)
    """Part number -> its training and held-out rows binned once for every learner and head,
    which copy the bins and set their own label (`_relabelled`)."""

    def bins(self, at: int) -> tuple[lgb.Dataset, lgb.Dataset]:
        """Part `at`'s training and held-out rows binned: made on the first call, before any
        head is fitted in parallel."""
        if at not in self.binned:
            fit = _binned(self.parts[at].fit, self)
            self.binned[at] = (fit, _binned(self.parts[at].held, self, fit))
        return self.binned[at]

    @cached_property
    def every_bins(self) -> lgb.Dataset:
        """Every training row binned once, for the final fits."""
        return _binned(self.rows, self)

    @cached_property
    def held(self) -> pd.DataFrame:
        return pd.concat([p.held for p in self.parts])

    @cached_property
    def y(self) -> np.ndarray:
        return self.held["label"].to_numpy()

    @cached_property
    def held_block(self) -> np.ndarray:
        """Each held-out row's part (its block of months when cross-fitted)."""
        return np.repeat(np.arange(len(self.parts)), [len(p.held) for p in self.parts])

    @cached_property
    def held_shift(self) -> np.ndarray | None:
        """Each held-out row's season offset, from the part that predicts it (None without)."""
        if all(p.offset is None for p in self.parts):
            return None
        return np.concatenate(
            [np.zeros(len(p.held)) if p.offset is None else p.offset.of(p.held) for p in self.parts]
        )


def _binned(
    rows: pd.DataFrame, search: _Search, reference: lgb.Dataset | None = None
) -> lgb.Dataset:
    return lgb.Dataset(
        prepare(rows, search.numeric, search.categories),
        label=rows["label"].to_numpy(),  # each copy sets its own; a subset needs one to copy
        reference=reference,
        params=DATASET_PARAMS,
        free_raw_data=True,  # copies need the bins, not the frame
    ).construct()


def _relabelled(
    binned: lgb.Dataset, rows: pd.DataFrame, label: str, offset: Offset | None
) -> lgb.Dataset:
    """A copy of `binned` (LightGBM's subset of every row: no bins found again) learning
    `rows`' `label` from `offset`: each head its own, as heads are fitted side by side."""
    copy = binned.subset(list(range(binned.num_data()))).construct()
    copy.set_label(rows[label].to_numpy())
    if offset is not None:
        copy.set_init_score(offset.of(rows))
    return copy


def _in_parallel(jobs: list[Callable[[int], Head]]) -> tuple[Head, ...]:
    """The heads of a learner, fitted side by side where cores allow (LightGBM lets go of the
    GIL), the cores shared among them; in order.

    A job only trains, every job with the same number of threads: its datasets are made before
    (in this thread). LightGBM keeps the thread count in one process-wide setting that every
    call given `num_threads` sets (a dataset made without it sets the machine's cores), and
    sizes per-thread buffers by it in one place and loops over threads by it in another, so a
    dataset made in one job while another trains with one thread can index past a buffer. The
    likely cause of the segfaults seen in lib_lightgbm on 3,000-account trainings (three, all
    at one instruction, a loop over per-thread bin iterators)."""
    cores = os.cpu_count() or 1
    if len(jobs) < 2 or cores < 2:
        return tuple(job(0) for job in jobs)
    workers = min(len(jobs), cores)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return tuple(pool.map(lambda job: job(max(1, cores // workers)), jobs))


def _heads(
    kind: str,
    strength: Strength | None,
    motions: list[str],
    at: int,
    search: _Search,
    params: LightGBMParams,
    cfg: TrainingConfig,
) -> tuple[Head, ...]:
    """A booster learner's heads on part `at`, stopped early on its held-out rows."""
    wanted = [("any", "label")] if kind != "motions" else [(m, motion_label(m)) for m in motions]
    part = search.parts[at]
    fit_bins, held_bins = search.bins(at)

    def head(name: str, label: str) -> Callable[[int], Head]:
        own = _params_for(params, strength, part.fit, label)
        offset = offset_for(part.fit, cfg, label)
        fit_set = _relabelled(fit_bins, part.fit, label, offset)
        held_set = _relabelled(held_bins, part.held, label, offset)

        def fitted(threads: int) -> Head:
            booster = train_early_stopped(own, fit_set, held_set, cfg, threads)
            return Head(name, kept_trees(booster), offset)

        return fitted

    return _in_parallel([head(name, label) for name, label in wanted])


def _refit(
    kind: str,
    strength: Strength | None,
    parts_heads: list[tuple[Head, ...]],
    search: _Search,
    params: LightGBMParams,
    cfg: TrainingConfig,
) -> tuple[Head, ...]:
    """The heads refitted on every training row, each for the mean rounds its parts kept."""

    every = search.every_bins

    def head(i: int, first: Head) -> Callable[[int], Head]:
        label = "label" if first.name == "any" else motion_label(first.name)
        rounds = round(float(np.mean([h[i].booster.current_iteration() for h in parts_heads])))
        own = _params_for(params, strength, search.rows, label)
        offset = offset_for(search.rows, cfg, label)
        relabelled = _relabelled(every, search.rows, label, offset)

        def fitted(threads: int) -> Head:
            return Head(first.name, fit_rounds(relabelled, own, cfg, rounds, threads), offset)

        return fitted

    return _in_parallel([head(i, first) for i, first in enumerate(parts_heads[0])])


def _model(
    search: _Search, cfg: TrainingConfig, heads: tuple[Head, ...] = (), offset: Offset | None = None
) -> PropensityModel:
    model = PropensityModel(
        booster=heads[0].booster if heads else None,
        numeric=search.numeric,
        categories=search.categories,
        horizon_days=cfg.horizon_days,
        offset=offset,
    )
    if len(heads) > 1 or (heads and heads[0].name != "any"):
        model.motions = heads
    return model


def _booster_candidate(
    kind: str,
    strength: Strength | None,
    motions: list[str],
    search: _Search,
    params: LightGBMParams,
    cfg: TrainingConfig,
    latest: tuple[Head, ...] | None = None,
) -> _Candidate:
    """A booster learner on every part (`latest`: its heads on the last part, already fitted),
    and its final model."""
    parts_heads = [
        latest
        if latest is not None and i == len(search.parts) - 1
        else _heads(kind, strength, motions, i, search, params, cfg)
        for i in range(len(search.parts))
    ]
    held = []
    for part, heads in zip(search.parts, parts_heads, strict=True):
        own = _model(search, cfg, heads, part.offset)
        held.append(own.logit(part.held, own.shift(part.held)))

    def final() -> PropensityModel:
        if not search.refit:
            return _model(search, cfg, parts_heads[0], search.parts[0].offset)
        heads = _refit(kind, strength, parts_heads, search, params, cfg)
        return _model(search, cfg, heads, offset_for(search.rows, cfg))

    return _Candidate(np.concatenate(held), final)


def _gam_candidate(search: _Search, cfg: TrainingConfig) -> _Candidate:
    """The gam fitted on every part along its penalty grid; the penalty with the lowest log loss
    on the held-out rows is kept, and the final gam refitted with it on every training row."""
    g = cfg.learning.gam
    paths: list[dict[float, np.ndarray]] = []
    shifts = []
    last = None
    for part in search.parts:
        offset = part.offset
        last = SplineLogit(search.numeric, search.categories, g.knots, 0.0, g.max_rows, cfg.seed)
        shifts.append(np.zeros(len(part.held)) if offset is None else offset.of(part.held))
        paths.append(
            last.path(
                part.fit, part.fit["label"].to_numpy(),
                None if offset is None else offset.of(part.fit), g.l2, part.held, shifts[-1],
            )
        )  # fmt: skip
    y, shift = search.y, np.concatenate(shifts)

    def held(l2: float) -> np.ndarray:
        return np.concatenate([p[l2] for p in paths]) + shift

    def loss(l2: float) -> float:
        z = held(l2)
        return float(np.mean(np.logaddexp(0.0, z) - y * z))

    best = min((l2 for l2 in paths[0] if all(l2 in p for p in paths)), key=loss)
    offset = offset_for(search.rows if search.refit else search.parts[0].fit, cfg)
    final = _model(search, cfg, (), offset)
    if search.refit:
        final.gam = SplineLogit(
            search.numeric, search.categories, g.knots, best, g.max_rows, cfg.seed
        ).fit(
            search.rows,
            search.rows["label"].to_numpy(),
            None if offset is None else offset.of(search.rows),
        )
    else:
        assert last is not None
        last.l2 = best
        final.gam = last.fit(
            search.parts[0].fit,
            search.parts[0].fit["label"].to_numpy(),
            None if offset is None else offset.of(search.parts[0].fit),
        )
    final.weight = 0.0
    return _Candidate(held(best), lambda: final)


def blend_weights(parts: int) -> list[tuple[float, float]]:
    """The (booster, partner) shares of the log-odds a blend tries, in tenths, the gam having
    the rest; without a partner, its share stays 0. Ordered so that a tie keeps the smaller
    partner's share, then the smaller booster's."""
    tenths = range(11) if parts == 3 else range(1)
    return [(b / 10, p / 10) for p in tenths for b in range(11 - p)]


def _best_weights(
    held: tuple[np.ndarray, ...], y: np.ndarray, weights: list[tuple[float, float]]
) -> tuple[float, float]:
    """The shares with the best ROC AUC of the blended log-odds (ties: the first)."""
    aucs = [ranked_auc(y, _mixed(held, w)) for w in weights]
    return weights[int(np.argmax(aucs))]


def _mixed(held: tuple[np.ndarray, ...], w: tuple[float, float]) -> np.ndarray:
    """Log-odds of (gam, booster[, partner]) blended at shares `w` = (booster, partner)."""
    mixed = (1 - w[0] - w[1]) * held[0] + w[0] * held[1]
    return mixed + w[1] * held[2] if len(held) == 3 else mixed


def _blend(
    search: _Search, booster: _Candidate, gam: _Candidate, partner: _Candidate | None = None
) -> tuple[_Candidate, float]:
    """The blend of the best booster, the next best booster learner (`partner`, when there is
    one) and the gam in log-odds, its shares chosen on all held-out rows, and its ROC AUC scored
    where the shares were not chosen: each half of the accounts with the other half's shares.

    Two boosters of different leaves (or one head per motion) err in different places, and the
    gam, additive, in others again: the shares say how much of each the held-out rows trust."""
    held = search.held
    y = search.y
    logits = tuple(c.held_logit for c in (gam, booster, partner) if c is not None)
    grid = blend_weights(len(logits))
    half = (pd.util.hash_array(held["account_id"].astype(str).to_numpy()) % 2).astype(bool)
    crossed = np.empty(len(y))
    for side in (half, ~half):
        other = ~side
        if 0 < y[other].sum() < other.sum():
            w = _best_weights(tuple(h[other] for h in logits), y[other], grid)
        else:
            w = (0.5, 0.0)
        crossed[side] = _mixed(tuple(h[side] for h in logits), w)
    weight, partner_weight = _best_weights(logits, y, grid)
    final = booster.model
    blended = PropensityModel(
        booster=final.booster,
        numeric=final.numeric,
        categories=final.categories,
        horizon_days=final.horizon_days,
        offset=final.offset,
    )
    blended.motions = final.motions
    blended.gam = gam.model.gam
    blended.weight = weight
    if partner is not None and partner_weight > 0:
        blended.partner = partner.model  # its final fit, made now
        blended.partner_weight = partner_weight
    mixed = _mixed(logits, (weight, partner_weight))
    return _Candidate(mixed, lambda: blended), float(roc_auc_score(y, crossed))


def _motions_to_fit(rows: pd.DataFrame, cfg: TrainingConfig) -> str | list[str]:
    """The motions the `motions` learner fits on these rows, or why it cannot."""
    if cfg.label.motion != "any" or cfg.label.product is not None:
        return f"the label is one motion ({cfg.label.motion}), not any expansion"
    if any(motion_label(m) not in rows.columns for m in EXPANSION_KINDS):
        return "the data has no expansion motions (a revenue ledger)"
    least = cfg.learning.min_positives
    kept = [m for m in EXPANSION_KINDS if int(rows[motion_label(m)].sum()) >= least]
    if not kept:
        return f"no motion has {least} expansions in the training snapshots"
    return kept


def _search(
    frame: pd.DataFrame, layout: Layout, feature_set: FeatureSet, cfg: TrainingConfig
) -> _Search:
    """The rows a layout fits on and the parts its decisions are made on; checked first."""
    fit_rows = rows_of(frame, layout.fit_dates)
    fix = "use more history, fewer folds or test_months, or a longer horizon"
    require_both_outcomes(fit_rows, f"{layout.name}: the training snapshots", fix)
    if layout.calib_dates:
        calib_rows = rows_of(frame, layout.calib_dates)
        require_both_outcomes(calib_rows, f"{layout.name}: the calibration snapshots", fix)
        numeric, categories = schema(feature_set, pd.concat([fit_rows, calib_rows]))
        part = _Part(fit_rows, calib_rows, offset_for(fit_rows, cfg))
        return _Search(fit_rows, [part], numeric, categories, refit=False)
    parts = []
    for train, held in purged_blocks(
        layout.fit_dates, cfg.horizon_days, cfg.backtest.crossfit_blocks
    ):
        fit_part = rows_of(frame, train)
        part = _Part(fit_part, rows_of(frame, held), offset_for(fit_part, cfg))
        outcomes = [int(p["label"].sum()) for p in (part.fit, part.held)]
        if all(0 < n < len(p) for n, p in zip(outcomes, (part.fit, part.held), strict=True)):
            parts.append(part)
    if not parts:
        raise UserError(
            f"{layout.name}: no block of its {len(layout.fit_dates)} training months"
            f" ({layout.fit_dates[0]}..{layout.fit_dates[-1]}) has training months one"
            f" {cfg.horizon_days}-day horizon away with both outcomes to be predicted from;"
            f" {fix}"
        )
    numeric, categories = schema(feature_set, fit_rows)
    return _Search(fit_rows, parts, numeric, categories, refit=True)


@dataclass(frozen=True)
class Fitted:
    """A layout's delivered model, and the best of each kind of learner it tried (calibrated
    the same way), for the backtest to score beside it."""

    model: PropensityModel
    kinds: dict[str, PropensityModel]
    """booster (the best booster learner), gam and blend, when tried."""


def _calibrate(
    model: PropensityModel, held_logit: np.ndarray, search: _Search, cfg: TrainingConfig
) -> tuple[str, dict[str, float]]:
    """Fit the calibration that wins on the held-out predictions, if any does, onto `model`."""
    raw = sigmoid(held_logit)
    y = search.y
    methods: list[str] = list(cfg.backtest.calibration)
    if "isotonic" in methods and int(y.sum()) < cfg.backtest.isotonic_min_positives:
        methods.remove("isotonic")
    groups = search.held["account_id"].astype(str).to_numpy()
    method, losses = choose_calibration(
        raw, y, search.held_shift, methods, groups, cfg.seed, search.held_block
    )
    model.calibrator = (
        None if method == "none" else Calibrator(method).fit(raw, y, search.held_shift)  # type: ignore[arg-type]
    )
    return method, losses


def fit_all(
    frame: pd.DataFrame,
    layout: Layout,
    feature_set: FeatureSet,
    cfg: TrainingConfig,
    params: LightGBMParams | None = None,
    only: Collection[str] | None = None,
) -> Fitted:
    """Every configured learner (or those in `only`) on one layout; the one with the best ROC
    AUC on the held-out predictions is kept (its `choice`), with the calibration that wins
    there, and the size model."""
    params = params or cfg.lightgbm
    search = _search(frame, layout, feature_set, cfg)
    y = search.y
    wanted = set(cfg.learning.candidates if only is None else only)
    scored: dict[str, float] = {}
    skipped: dict[str, str] = {}
    motions: tuple[str, ...] = ()
    boosters: dict[str, _Candidate] = {}
    seconds: dict[str, float] = {}
    tried: list[tuple[str, str, Strength | None, list[str]]] = []
    for learner, kind, strength in cfg.learning.learners():
        if learner not in wanted and kind not in wanted:
            continue
        fitted_motions: list[str] = []
        if kind == "motions":
            found = _motions_to_fit(search.rows, cfg)
            if isinstance(found, str):
                skipped[kind] = found
                continue
            fitted_motions = found
            motions = tuple(found)
        tried.append((learner, kind, strength, fitted_motions))
    latest: dict[str, tuple[Head, ...]] = {}
    margin = cfg.learning.halving_margin
    if only is None and margin is not None and len(search.parts) > 1 and len(tried) > 1:
        # successive halving: every booster learner on the latest block first, and only those
        # within the margin of the best there on the other blocks
        last = search.parts[-1]
        first_look: dict[str, float] = {}
        for learner, kind, strength, fitted_motions in tried:
            started = time.perf_counter()
            latest[learner] = heads = _heads(
                kind, strength, fitted_motions, len(search.parts) - 1, search, params, cfg
            )
            seconds[learner] = time.perf_counter() - started
            own = _model(search, cfg, heads, last.offset)
            first_look[learner] = float(
                roc_auc_score(last.held["label"], own.logit(last.held, own.shift(last.held)))
            )
        best = max(first_look.values())
        for learner, auc in first_look.items():
            if auc < best - margin:
                skipped[learner] = (
                    f"trailed the best booster by {best - auc:.3f} ROC AUC on the latest block"
                )
        tried = [t for t in tried if t[0] not in skipped]
    for learner, kind, strength, fitted_motions in tried:
        started = time.perf_counter()
        boosters[learner] = _booster_candidate(
            kind, strength, fitted_motions, search, params, cfg, latest.get(learner)
        )
        seconds[learner] = seconds.get(learner, 0.0) + time.perf_counter() - started
        scored[learner] = float(roc_auc_score(y, boosters[learner].held_logit))
    candidates: dict[str, _Candidate] = dict(boosters)
    kinds: dict[str, _Candidate] = {}
    best_booster = max(boosters, key=lambda k: scored[k]) if boosters else None
    if best_booster is not None:
        kinds["booster"] = boosters[best_booster]
    if "gam" in wanted and "gam" in cfg.learning.candidates:
        started = time.perf_counter()
        candidates["gam"] = kinds["gam"] = _gam_candidate(search, cfg)
        seconds["gam"] = time.perf_counter() - started
        scored["gam"] = float(roc_auc_score(y, candidates["gam"].held_logit))
    blend_weight = None
    blend_parts: dict[str, float] = {}
    if "blend" in wanted and "blend" in cfg.learning.candidates:
        if best_booster is None or "gam" not in candidates:
            skipped["blend"] = "needs a booster learner and the gam"
        else:
            runner_up = max(
                (k for k in boosters if k != best_booster), key=lambda k: scored[k], default=None
            )
            partner = None if runner_up is None else boosters[runner_up]
            blended, scored["blend"] = _blend(
                search, boosters[best_booster], candidates["gam"], partner
            )
            candidates["blend"] = kinds["blend"] = blended
            mix = blended.model
            blend_weight = mix.weight
            blend_parts = {best_booster: mix.weight}
            if runner_up is not None:
                blend_parts[runner_up] = mix.partner_weight
            blend_parts["gam"] = round(1 - mix.weight - mix.partner_weight, 10)
    if not candidates:
        raise UserError(
            f"{layout.name}: no learner in learning.candidates applies ("
            + "; ".join(f"{k}: {v}" for k, v in skipped.items())
            + "); add single to learning.candidates"
        )
    rank = complexity(
        [(name, kind, None if st is None else st.leaves) for name, kind, st, _ in tried],
        params.num_leaves,
    )
    picked = simplest_within(
        {k: c.held_logit for k, c in candidates.items()},
        {k: scored[k] for k in candidates},
        y,
        search.held["as_of"].to_numpy(),
        rank,
        cfg.learning.simpler_confidence,
        cfg.learning.simpler_below_months,
    )
    learner = picked.learner
    kept = candidates[learner]
    method, losses = _calibrate(kept.model, kept.held_logit, search, cfg)
    for candidate in kinds.values():
        if candidate is not kept:
            _calibrate(candidate.model, candidate.held_logit, search, cfg)
    size = (
        fit_size(search.rows if search.refit else pd.concat([search.rows, search.held]),
                 search.numeric, search.categories, cfg)
        if cfg.size_model and "expansion_arr" in frame.columns
        else None
    )  # fmt: skip
    for candidate in kinds.values():
        candidate.model.size_booster = size
    kept.model.size_booster = size
    for name, candidate in boosters.items():
        seconds[name] += candidate.seconds  # the final fit, where one was made
    kept.model.choice = Choice(
        learner,
        scored,
        skipped,
        motions,
        arrangement="crossfit" if search.refit else "later_months",
        held_rows=len(y),
        blend_weight=blend_weight,
        blend_parts=blend_parts,
        calibration=method,
        calibration_loss=losses,
        seconds=seconds,
        preferred=picked.reason,
    )
    return Fitted(kept.model, {k: c.model for k, c in kinds.items()})


def fit(
    frame: pd.DataFrame,
    layout: Layout,
    feature_set: FeatureSet,
    cfg: TrainingConfig,
    params: LightGBMParams | None = None,
    only: Collection[str] | None = None,
) -> PropensityModel:
    """The delivered model for one layout (`fit_all`'s kept model)."""
    return fit_all(frame, layout, feature_set, cfg, params, only).model
