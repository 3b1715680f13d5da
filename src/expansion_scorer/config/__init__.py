"""Strict, frozen configuration models, loaded once from YAML.

The editable YAML files live in the top-level `features/`, `training/` and `serving/` folders;
the package ships them (through `defaults/`) so an installed package runs on its own.
"""

from __future__ import annotations

from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from expansion_scorer.config.deliver import DeliverConfig
from expansion_scorer.errors import UserError
from expansion_scorer.text import check_template
from expansion_scorer.yamldoc import parse_yaml

M = TypeVar("M", bound=BaseModel)
ROW_COLUMNS = ("account_id", "account_name", "csm_owner", "as_of")
"""Besides the features, what every scored row holds for a template to read."""


class Engine(StrEnum):
    """Where the features (and, when scoring, the scores) are computed."""

    DUCKDB = "duckdb"
    SPARK = "spark"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UsageWindow(_Strict):
    """An aggregate of usage events dated in [as_of - offset - days, as_of - offset)."""

    days: int = Field(gt=0)
    offset: int = Field(default=0, ge=0)
    """How far before as_of the window ends: 90 reads the same window a quarter ago."""
    measure: Literal["sum", "count", "users", "events", "days", "user_days"] = "sum"
    """sum of quantity, count of rows, distinct users, distinct event names, distinct days with
    any use, distinct (user, day) pairs."""
    event: list[str] | None = None
    """Only these events count; absent, every event does."""
    stat: Literal["total", "slope"] = "total"
    """total: the measure over the whole window. slope: the least-squares slope of the measure's
    daily value (days without use count as 0) across the window, per week; for the measures that
    add up over days (sum, count, days, user_days)."""

    @field_validator("event", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _slope_needs_daily_values(self) -> UsageWindow:
        if self.stat == "slope":
            if self.measure in ("users", "events"):
                raise ValueError(
                    f"stat slope needs a measure with a daily value (sum, count, days or"
                    f" user_days), not {self.measure}"
                )
            if self.days < 2:
                raise ValueError("stat slope needs days of 2 or more")
        return self


class FeatureDef(_Strict):
    """One model input: a SQL expression over the per-(account, as_of) base aggregates.

    A feature with a `window` is that usage aggregate, available to every `sql` under the
    feature's name; its own `sql` may transform it and defaults to the name.
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    family: str
    description: str
    kind: Literal["numeric", "categorical"] = "numeric"
    window: UsageWindow | None = None
    sql: str = ""
    reason: str | Literal[False] | None = None
    """The sentence a CSM reads when this feature speaks for its family, over the scored row's
    features; `false`: the feature is context (it moves the score, never a reason)."""
    missing: str | None = None
    """What the reason says when the feature's own value is missing; default
    '<description>: not on record'."""

    @model_validator(mode="after")
    def _sql_or_window(self) -> FeatureDef:
        if not self.sql and self.window is None:
            raise ValueError("needs sql, or a window")
        if not self.sql:
            object.__setattr__(self, "sql", self.name)
        return self


AUTO: Literal["auto"] = "auto"
LEARNED: Literal["learned"] = "learned"


class FeatureSet(_Strict):
    plan_order: list[str] | Literal["auto"] = AUTO
    """Plans, lowest first. `auto` (the default): the plans the subscriptions hold, ordered by
    ARR per seat (plans without seats by ARR, after those with), read from the data."""
    affinity: dict[str, str] | Literal["learned"] = Field(default_factory=dict)
    """Event name -> the product whose need that event signals. `learned`: fitted on the
    training snapshots of each backtest fold (and of the final fit, then stored with the
    model): an event points to the product its share of use best ranks the non-owners who
    then bought it by (see `features.catalogue`)."""
    plan_limits: dict[str, dict[str, float]] = Field(default_factory=dict)
    """Plan -> event -> monthly quantity included in the plan."""
    events: list[str] | Literal["auto"] = AUTO
    """The event catalogue. Events outside it are counted by `expansion validate`; its size is
    the base column `catalogue_size`, for shares of the catalogue used. `auto` (the default):
    every event in the usage log; `catalogue_size` as of T counts the events any account used
    before T."""
    windows: dict[str, UsageWindow] = Field(default_factory=dict)
    """Usage aggregates that are not model inputs themselves, read by features' `sql`."""
    context: list[str] = Field(default_factory=lambda: ["calendar"])
    """Families that move the score and its points but are never told to a CSM (no reason, no
    motion, no trigger's why): what nobody can act on, such as the time of year."""
    features: list[FeatureDef]

    @model_validator(mode="after")
    def _unique_names(self) -> FeatureSet:
        names = [f.name for f in self.features]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"feature names must be unique; repeated: {', '.join(duplicated)}")
        clash = sorted(set(self.windows) & {f.name for f in self.features if f.window})
        if clash:
            raise ValueError(f"a window and a windowed feature share a name: {', '.join(clash)}")
        return self

    @model_validator(mode="after")
    def _templates_read_the_scored_row(self) -> FeatureSet:
        columns = self.row_columns
        for f in self.features:
            for key, source in (("reason", f.reason), ("missing", f.missing)):
                if isinstance(source, str):
                    problem = check_template(source, columns, f"feature {f.name}: {key}")
                    if problem:
                        raise ValueError(problem)
        return self

    @property
    def events_auto(self) -> bool:
        return self.events == AUTO

    @property
    def plan_order_auto(self) -> bool:
        return self.plan_order == AUTO

    @property
    def affinity_learned(self) -> bool:
        return self.affinity == LEARNED

    @property
    def catalogue_events(self) -> list[str]:
        """The events the definitions name as their catalogue; empty when it is `auto`."""
        return [] if isinstance(self.events, str) else self.events

    @property
    def affinity_pairs(self) -> dict[str, str]:
        """The event -> product pairs to compute; none while a learned affinity is unfitted."""
        return {} if isinstance(self.affinity, str) else self.affinity

    def with_catalogue(
        self, plan_order: list[str] | None = None, affinity: dict[str, str] | None = None
    ) -> FeatureSet:
        """These definitions with a resolved plan order and/or a fitted affinity, validated."""
        raw = self.model_dump()
        if plan_order is not None:
            raw["plan_order"] = plan_order
        if affinity is not None:
            raw["affinity"] = affinity
        return FeatureSet.model_validate(raw)

    @property
    def row_columns(self) -> set[str]:
        """What a template can read: the scored row's identity and every feature."""
        return {*ROW_COLUMNS, *(f.name for f in self.features)}

    @property
    def context_families(self) -> set[str]:
        """The families never told to a CSM: those listed in `context`, and any family whose
        every feature says `reason: false`."""
        silent = {
            fam
            for fam in {f.family for f in self.features}
            if all(f.reason is False for f in self.features if f.family == fam)
        }
        return set(self.context) | silent

    def speaks(self, feature: FeatureDef) -> bool:
        """Whether a feature may become a reason a CSM reads."""
        return feature.reason is not False and feature.family not in self.context_families

    @property
    def usage_windows(self) -> dict[str, UsageWindow]:
        """Every usage aggregate to compute, by the base column it becomes."""
        own = {f.name: f.window for f in self.features if f.window is not None}
        return {**self.windows, **own}


class LightGBMParams(_Strict):
    n_estimators: int = 1000
    """The most boosting rounds; early stopping on the calibration months picks fewer."""
    learning_rate: float = 0.03
    num_leaves: int = 15
    min_child_samples: int = 50
    subsample: float = 0.8
    subsample_freq: int = 1
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0


class BacktestMinimum(_Strict):
    """The smallest backtest training shrinks to when the history cannot hold the configured one.

    One fold of one test month is the default floor: at a 90-day horizon a year of month starts
    holds a training month, an embargo, a calibration month, an embargo and one test month, and
    no more. The embargo (one horizon) is never shortened.
    """

    folds: int = Field(default=1, ge=1)
    test_months: int = Field(default=1, ge=1)
    calibration_months: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _a_month_per_fold(self) -> BacktestMinimum:
        if self.test_months < self.folds:
            raise ValueError(
                f"test_months ({self.test_months}) must be at least folds ({self.folds})"
            )
        return self


class BacktestConfig(_Strict):
    """Rolling-origin folds over the latest `test_months`, each fitted only on its past."""

    folds: int = Field(default=3, ge=1)
    calibration_months: int = Field(default=3, ge=1)
    """Snapshot months before each fold's embargo that fit early stopping and the calibrator."""
    minimum: BacktestMinimum | None = BacktestMinimum()
    """A history too short for folds, test_months and calibration_months shrinks them (folds
    first, then test months, then calibration months) down to this; null: refuse instead."""
    arrangement: Literal["crossfit", "later_months"] = "crossfit"
    """How each layout finds the rows its learner choice, blend shares, calibrator and early
    stopping come from. crossfit: the model is fitted on every month whose label has closed, and
    those decisions come from out-of-fold predictions inside them (`crossfit_blocks` blocks of
    consecutive months, each predicted by models fitted on the others with one horizon purged on
    either side). later_months: fitted on the older months and decided on the latest
    `calibration_months`, behind a one-horizon embargo that the fit never sees."""
    crossfit_blocks: int = Field(default=3, ge=2)
    calibration: list[Literal["none", "platt", "isotonic"]] = Field(
        default=["none", "platt", "isotonic"], min_length=1
    )
    """Calibrations compared by log loss on the out-of-fold predictions, each block of months
    scored by a calibrator fitted on the others (later_months: the calibration months, five
    folds of accounts); the best is kept, and none always competes: a calibrator that does not beat
    the raw probability is never applied. A single name means that one against none."""
    isotonic_min_positives: int = Field(default=200, ge=1)
    """Isotonic regression competes only when the predictions it learns from hold this many
    expansions: on fewer it learns steps of noise."""
    random_split_alarm: float = Field(default=0.05, ge=0)
    """A random-split AUC this far above the time-split AUC is reported as leakage or drift."""
    random_split_rows: int = Field(default=300_000, ge=1_000)
    """The random-split check fits on a sample of accounts holding about this many snapshots:
    an alarm needs an AUC, not the best model, and a full-size fit would double the cost."""

    @field_validator("calibration", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        methods = [value] if isinstance(value, str) else value
        if isinstance(methods, list) and "none" not in methods:
            methods = ["none", *methods]  # a calibrator has to beat the raw probability
        return methods


class CapacityConfig(_Strict):
    """How many accounts CSMs can work per week: k for lift and recall at capacity."""

    accounts_per_csm_per_week: int = Field(default=20, ge=1)
    csms: int = Field(default=5, ge=1)

    @property
    def k(self) -> int:
        return self.accounts_per_csm_per_week * self.csms


class BaselineConfig(_Strict):
    """The rules a CS team would use without a model, over features of the feature set."""

    utilisation_feature: str = "seat_utilisation"
    utilisation_at_least: float = 0.9
    growth_feature: str = "active_users_change_28d"
    growth_at_least: float = 0.2
    recency_feature: str = "days_since_expansion"
    recency_days: float = 180


class TuningConfig(_Strict):
    trials: int = Field(default=0, ge=0)
    """Optuna trials over the LightGBM parameters on the time folds; 0 keeps `lightgbm`."""
    early_stopping_rounds: int = Field(default=50, ge=1)


class GateConfig(_Strict):
    """When `expansion promote` lets a challenger replace the champion."""

    folds: int = Field(default=2, ge=1)
    """The latest backtest folds both models are refitted and compared on."""
    lift_margin: float = Field(default=0.05, ge=0)
    """The challenger's lift at capacity must exceed the champion's by this much."""
    ece_tolerance: float = Field(default=0.02, ge=0)
    """Calibration is no worse when the challenger's ECE is at most the champion's plus this."""


class LabelConfig(_Strict):
    """What counts as the expansion the model predicts."""

    motion: Literal["any", "seats", "plan", "cross_sell"] = "any"
    product: str | None = None
    """With motion cross_sell: only a cross-sell of this product counts."""
    min_expansion_arr: float = Field(default=0.0, ge=0)
    min_expansion_pct: float = Field(default=0.0, ge=0)
    """Expansion ARR in the window as a fraction of the ARR the day before the window."""
    min_growth: float = Field(default=0.2, ge=0)
    """Usage-based pricing (a `revenue` table): revenue in [T, T+h) must reach (1 + min_growth)
    x revenue in [T-h, T)."""

    @model_validator(mode="after")
    def _product_needs_cross_sell(self) -> LabelConfig:
        if self.product is not None and self.motion != "cross_sell":
            raise ValueError("product applies only to motion cross_sell")
        return self


UPLIFT_LEARNERS = ("t", "x", "dr", "average")
"""The names of `training.uplift_learners.LEARNERS` (a test keeps the two the same)."""


class UpliftConfig(_Strict):
    """`target: uplift`: what a touch changes, learnt from the weekly run's randomized holdout.

    The T-learner's arms (one LightGBM for the listed, the intent to treat, one for the held-out
    accounts) give the chances and the reasons; the uplift is the `learner`'s. Small data, so
    the trees are small and fixed in number (no early stopping: there is no third set of
    cohorts to stop on).
    """

    registered_model: str = "expansion-uplift"
    learner: str = "auto"
    """The learner (`training/uplift_learners.py`): t, x, dr or average (of the three), or auto:
    the candidate whose capacity lists are worth most on inner folds of the training cohorts,
    by the doubly robust estimate (never on the test cohorts)."""
    candidates: tuple[str, ...] = ("t", "x", "dr", "average")
    """What `learner: auto` chooses among, in order of preference on a tie."""
    inner_folds: int = Field(default=3, ge=2)
    """Blocks of whole training cohorts `learner: auto` holds out in turn."""
    folds: int = Field(default=2, ge=1)
    """Backtest folds over the latest `test_cohorts` matured cohorts; each trains only on
    cohorts whose horizon closes on or before its first test cohort."""
    test_cohorts: int = Field(default=4, ge=1)
    min_cohorts: int = Field(default=2, ge=2)
    """Fewer matured randomized cohorts than this: `target: uplift` refuses."""
    min_per_arm: int = Field(default=30, ge=1)
    """Each fold's training and test cohorts, and the final fit, need this many listed and
    this many held-out assignments."""
    accounts_per_csm: int = Field(default=10, ge=1)
    """k of uplift at capacity, per CSM and cohort. The randomized accounts of a CSM's cohort
    are at most their capacity list and their triggers, so k is below the weekly capacity:
    which part of the list is worth the time."""
    lightgbm: LightGBMParams = LightGBMParams(
        n_estimators=150,
        learning_rate=0.03,
        num_leaves=4,
        min_child_samples=40,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        reg_lambda=5.0,
    )
    """Each arm's booster; n_estimators is the number of rounds."""

    @model_validator(mode="after")
    def _known_learners(self) -> UpliftConfig:
        known = ", ".join(UPLIFT_LEARNERS)
        if self.learner not in (*UPLIFT_LEARNERS, "auto"):
            raise ValueError(f"unknown uplift learner {self.learner!r}; use one of {known} or auto")
        for name in self.candidates:
            if name not in UPLIFT_LEARNERS:
                raise ValueError(f"unknown uplift learner {name!r} in candidates; use {known}")
        if not self.candidates or len(set(self.candidates)) < len(self.candidates):
            raise ValueError(f"candidates must name each learner once, from {known}")
        return self

    @model_validator(mode="after")
    def _a_cohort_per_fold(self) -> UpliftConfig:
        if self.test_cohorts < self.folds:
            raise ValueError(
                f"test_cohorts ({self.test_cohorts}) must be at least folds ({self.folds})"
            )
        return self


class Strength(_Strict):
    """How hard a regularised learner is held back: few leaves, each of many rows."""

    leaves: int = Field(ge=2)
    rows_per_leaf: float = Field(gt=0, le=1)
    """A leaf holds at least this share of the positives the booster learns from (and
    `lightgbm.min_child_samples`, whichever is larger)."""
    learning_rate: float | None = Field(default=None, gt=0, le=1)
    """The step of these boosters; null: `lightgbm.learning_rate`. A tree of few leaves learns
    less a round, so at the full booster's step it takes several times its rounds to stop."""

    @property
    def name(self) -> str:
        return f"{self.leaves}/{self.rows_per_leaf:.0%}"


BOOSTER_LEARNERS = ("single", "regularised", "motions")


class GamConfig(_Strict):
    """The spline logistic model: knots per numeric feature and the L2 penalties tried."""

    knots: int = Field(default=5, ge=1, le=20)
    l2: list[float] = Field(default=[10.0, 3.0, 1.0, 0.3, 0.1, 0.03, 0.01, 0.001], min_length=1)
    """Penalties on the standardised spline weights, the one with the lowest log loss on the
    held-out predictions kept."""
    max_rows: int = Field(default=200_000, ge=1_000)
    """The GAM fits on a sample of this many rows at most."""

    @field_validator("l2")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if any(v <= 0 for v in value):
            raise ValueError(f"l2 {value} must all be above 0")
        return value


class LearningConfig(_Strict):
    """Learners the trainer fits on every layout; the one with the best ROC AUC on that
    layout's held-out predictions (out-of-fold, or its calibration months) is kept, never on a
    test fold's.

    - `single`: one booster on the label, with `lightgbm` as configured;
    - `regularised`: one booster with fewer, larger leaves, at each of `strengths`: few noisy
      labels are learnt better by a simpler model, and leaf sizes scale with the positives;
    - `motions`: one regularised booster per expansion motion (seats, plan, cross-sell) on that
      motion's label, at each of `strengths`, combined as the chance of any: 1 - the product of
      (1 - p). Only for the label `motion: any` over a seat ledger; a motion with fewer than
      `min_positives` expansions on a layout's training or calibration snapshots is left out;
    - `gam`: a spline logistic model (`gam`), exact and additive in its explanation;
    - `blend`: the best booster, the next best booster learner and the gam averaged in
      log-odds, their shares chosen on the same held-out predictions (and scored on halves they
      were not chosen on).
    """

    candidates: list[Literal["single", "regularised", "motions", "gam", "blend"]] = Field(
        default=["single", "regularised", "motions", "gam", "blend"], min_length=1
    )
    strengths: list[Strength] = Field(
        default=[Strength(leaves=3, rows_per_leaf=0.3, learning_rate=0.06)], min_length=1
    )
    """Each `regularised` and `motions` booster is tried at every strength. One by default: a
    second at 7 leaves of 10% of the positives cost a third of `train`'s time at 3,000 accounts
    and added to the pooled test ROC AUC on two data sets of thirteen, 0.0005 and 0.0007
    (docs/benchmarks.md)."""
    min_positives: int = Field(default=30, ge=1)
    halving_margin: float | None = Field(default=0.005, ge=0)
    """After the first backtest fold, a learner whose ROC AUC there trails the best by more
    than this is not fitted again (successive halving); null: every learner on every layout."""
    simpler_confidence: float | None = Field(default=None, gt=0, lt=1)
    """With a value (0.95, say), a more flexible learner is kept only when its lead in held-out
    ROC AUC over a simpler one holds month by month at this confidence (a paired t-test over
    the held-out months); else the simpler one is kept (the gam, then boosters by leaves, then
    the blend). null (the default): the best on held-out ROC AUC. Off by default: measured on
    six data sets it helped one and cost three (docs/benchmarks.md, short histories)."""
    simpler_below_months: int | None = Field(default=12, ge=2)
    """`simpler_confidence` applies to a layout whose held-out predictions span fewer months
    than this (a short history); with more the best is kept. null: every layout."""
    gam: GamConfig = GamConfig()

    @field_validator("strengths")
    @classmethod
    def _distinct_strengths(cls, value: list[Strength]) -> list[Strength]:
        names = [s.name for s in value]
        if len(set(names)) != len(names):
            raise ValueError(f"strengths name {names}: each leaves and rows_per_leaf once")
        return value

    @field_validator("candidates")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"candidates {value} name a learner twice")
        if "blend" in value and ("gam" not in value or not set(BOOSTER_LEARNERS) & set(value)):
            raise ValueError(
                "blend mixes the best booster with the gam: list gam and at least one of"
                " single, regularised or motions beside it"
            )
        return value

    def learners(self) -> list[tuple[str, str, Strength | None]]:
        """(name, kind, strength) of every booster learner tried, in order: e.g. `motions
        3/30%` (the gam and the blend are one learner each, named as they are)."""
        out: list[tuple[str, str, Strength | None]] = []
        for kind in self.candidates:
            if kind == "single":
                out.append((kind, kind, None))
            elif kind in BOOSTER_LEARNERS:
                out.extend((f"{kind} {s.name}", kind, s) for s in self.strengths)
        return out


class TrainingConfig(_Strict):
    target: Literal["propensity", "uplift"] = "propensity"
    """propensity: the chance to expand; uplift: what a CSM's touch changes in it, from the
    randomized holdout of the weekly runs (`expansion train --program OUT`)."""
    horizon_days: int = Field(default=90, ge=7, le=730)
    min_history_days: int = Field(default=90, ge=0)
    """Snapshots start this long after the first subscription in the data."""
    test_months: int = Field(default=6, ge=1)
    """The latest snapshot months are tested on, in `backtest.folds` consecutive folds; each
    fold trains on snapshots whose label window closes before the fold starts."""
    label: LabelConfig = LabelConfig()
    seed: int = 7
    experiment: str = "expansion-scorer"
    registered_model: str = "expansion-propensity"
    lightgbm: LightGBMParams = LightGBMParams()
    learning: LearningConfig = LearningConfig()
    backtest: BacktestConfig = BacktestConfig()
    capacity: CapacityConfig = CapacityConfig()
    baselines: BaselineConfig = BaselineConfig()
    tuning: TuningConfig = TuningConfig()
    gate: GateConfig = GateConfig()
    size_model: bool = True
    """Also fit the size of an expansion given that it happens (expected ARR = score x size)."""
    uplift: UpliftConfig = UpliftConfig()
    season_feature: str | None = "month_of_year"
    """The booster starts from each value's base log-odds in its training rows (an offset), so
    early stopping and calibration on a few months of one season keep the seasons apart; the
    offset is part of the feature's explanation. null: no offset."""

    def check_against(self, features: FeatureSet) -> None:
        """`problem_with`, raised: for callers that build their configs in code."""
        problem = self.problem_with(features)
        if problem:
            raise UserError(problem)

    def problem_with(self, features: FeatureSet) -> str | None:
        """Why these settings cannot train on `features` (a baseline or the season offset
        reads a feature that is not there), or None."""
        names = {f.name for f in features.features}
        for key in ("utilisation_feature", "growth_feature", "recency_feature"):
            value = getattr(self.baselines, key)
            if value not in names:
                return (
                    f"training config: baselines.{key} names {value!r}, which is not a feature;"
                    " use a name from the feature definitions"
                )
        numeric = {f.name for f in features.features if f.kind == "numeric"}
        if self.season_feature is not None and self.season_feature not in numeric:
            return (
                f"training config: season_feature names {self.season_feature!r}, which is not a"
                " numeric feature; name one (month_of_year) or set it to null"
            )
        return None


class MotionDef(_Strict):
    label: str
    families: list[str] = Field(min_length=1)
    talking_points: list[str] = Field(default_factory=list)


class ReadinessRule(_Strict):
    name: str
    feature: str
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    value: float
    says: str


class TriggerConfig(_Strict):
    """When the weekly run tells a CSM to act on an account now."""

    top_band: str = "hot"
    """Entering this band (or its CSM's capacity list) fires an `entered` trigger."""
    score_rise: float = Field(default=0.10, gt=0, le=1)
    """A score this much higher than at the previous run fires a `rise` trigger."""
    cooldown_weeks: int = Field(default=4, ge=0)
    """An account that fired is quiet this many weeks, unless its score rises by `score_rise`
    again since it fired."""
    families: int = Field(default=3, ge=1, le=10)
    """Reason families named in a trigger's `why`."""
    rules: list[ReadinessRule] = Field(default_factory=list)
    """`feature op value` conditions that fire a `rule` trigger while they hold."""


class MonitorConfig(_Strict):
    """`expansion monitor` and the weekly drift warning: when to recommend retraining."""

    psi_warn: float = Field(default=0.1, gt=0)
    psi_retrain: float = Field(default=0.25, gt=0)
    bins: int = Field(default=10, ge=2, le=50)
    lift_ratio_retrain: float = Field(default=0.7, gt=0, le=1)
    """Retrain when realised lift at capacity falls below this share of the backtest's."""
    skip_families: list[str] = Field(default_factory=lambda: ["calendar"])
    """Feature families left out of drift: a week holds one month, so the calendar always
    'drifts' from a year of training months."""


class HoldoutConfig(_Strict):
    """A randomized control group for the expansion program (`expansion measure` reads it).

    Among the accounts that would be on a CSM's capacity list, or that fired a trigger, a
    reproducible share is held out for the period: scored and kept in the history, but on no
    list, trigger or report a CSM sees.
    """

    fraction: float = Field(default=0.1, ge=0, le=0.5)
    """The share held out; 0 turns the holdout off."""
    period: Literal["quarter", "month"] = "quarter"
    """An account keeps its arm for the period; the next period draws again."""
    salt: str = Field(default="expansion-holdout", min_length=1)
    """Part of the draw: another salt draws another control group."""
    backfill: bool = True
    """Fill the places held-out accounts free with the CSM's next accounts (arm `backfill`,
    outside the comparison); false: the CSM's list is shorter instead."""


class ProgramConfig(_Strict):
    """What the expansion program aims at each quarter, for `expansion measure`'s health table,
    and how the program is measured: the effect worth detecting, the intervals' level and the
    control group's contamination limit."""

    target_expansion_arr: float | None = Field(default=None, ge=0)
    """Expansion ARR a quarter (seats, plan and cross-sell movements of continuing accounts)."""
    target_nrr: float | None = Field(default=None, gt=0)
    """The quarter's NRR, in percent of its starting ARR."""
    detect: float = Field(default=0.03, gt=0, lt=1)
    """The effect on the expansion rate worth detecting (0.03: three points): `expansion measure
    --plan` gives the holdout fraction that detects it within two quarters."""
    confidence: float = Field(default=0.95, gt=0, lt=1)
    """The level of the measurement's intervals, fixed-horizon and always-valid."""
    detect_difference: float = Field(default=0.03, gt=0, lt=1)
    """With rank_by interleave or auto: the difference between the two rankings' effects per
    account they drafted worth detecting; `expansion measure --plan` says how long it takes."""
    max_holdout_touched: float = Field(default=0.1, ge=0, le=1)
    """A period whose held-out accounts were touched while held out (within their horizon, in
    their period) more often than this has a broken control group: its estimate is marked
    unreliable."""


Ranking = Literal["score", "expected_arr", "uplift"]
RANKINGS: tuple[Ranking, ...] = ("score", "expected_arr", "uplift")
"""The rankings a list can be built by (`rank_by`), and the ones `compare` names."""


class ServingConfig(_Strict):
    reasons: int = Field(default=3, ge=1, le=10)
    accounts_per_csm: int = Field(default=20, ge=1)
    bands: dict[str, float] = Field(
        default_factory=lambda: {"hot": 0.5, "warm": 0.25, "watch": 0.0}
    )
    """Band name -> lowest score in the band, checked from the highest threshold down."""
    report_rows: int = Field(default=250, ge=1)
    """report.html shows each CSM's first this many accounts, and this many of those not
    scored; every account is in scores.csv and excluded.csv whatever the limit."""
    rank_by: Literal["score", "expected_arr", "uplift", "interleave", "auto"] = "score"
    """Order within a band: by score, by expected expansion ARR (score x predicted size), or by
    expected incremental ARR (the uplift model's uplift x predicted size). interleave: each
    CSM's capacity list drafted in turns from the two rankings of `compare`, so that `expansion
    measure` can tell which finds the accounts a call changes more; auto: interleave until
    `expansion measure` shows one better, then rank by it (interleaving `interleave_share`)."""
    compare: list[Ranking] | None = None
    """With rank_by interleave or auto: the two rankings compared, the first ordering the rest
    of the book (`[uplift, score]`)."""
    interleave_share: float = Field(default=0.2, ge=0, le=1)
    """With rank_by auto, once one ranking is shown better: the share of CSMs' lists (drawn
    afresh each week) still interleaved, so the evidence keeps coming."""
    uplift_model: str | None = None
    """With rank_by uplift: the uplift model loaded next to the propensity model; by default
    the champion of the name uplift training registers (`uplift.registered_model`)."""
    motions: dict[str, MotionDef] = Field(default_factory=dict)
    readiness: list[ReadinessRule] = Field(default_factory=list)
    triggers: TriggerConfig = TriggerConfig()
    monitor: MonitorConfig = MonitorConfig()
    holdout: HoldoutConfig = HoldoutConfig()
    program: ProgramConfig = ProgramConfig()
    deliver: DeliverConfig | None = None
    """Email digests, chat messages and CRM tasks from each published week; none by default."""

    @model_validator(mode="after")
    def _two_rankings(self) -> ServingConfig:
        interleaved = self.rank_by in ("interleave", "auto")
        if interleaved and (self.compare is None or len(self.compare) != 2):
            raise ValueError(
                f"rank_by: {self.rank_by} compares two rankings; set compare to two of"
                f" {', '.join(RANKINGS)} (compare: [uplift, score])"
            )
        if interleaved and self.holdout.fraction == 0:
            raise ValueError(
                f"rank_by: {self.rank_by} compares the rankings by the holdout, which is off;"
                " set holdout.fraction above 0"
            )
        if not interleaved and self.compare is not None:
            raise ValueError(
                f"compare is read with rank_by interleave or auto only, not {self.rank_by};"
                " drop compare or set rank_by: interleave"
            )
        if self.compare is not None and len(set(self.compare)) != len(self.compare):
            raise ValueError(
                f"compare names {self.compare[0]} twice; compare two different rankings"
                " (compare: [uplift, score])"
            )
        return self

    @property
    def rankings(self) -> tuple[Ranking, ...]:
        """The rankings a week's lists may be built from: `compare`, or `rank_by` alone."""
        if self.compare is not None:
            return tuple(self.compare)
        assert self.rank_by in RANKINGS
        return (self.rank_by,)

    @property
    def uses_uplift(self) -> bool:
        """Whether the week needs the uplift model: a ranking it may build lists from is uplift."""
        return "uplift" in self.rankings

    @property
    def uplift_uri(self) -> str:
        """The uplift model `rank_by: uplift` loads: `uplift_model`, or the champion of the name
        uplift training registers, so training and scoring read the name from one place."""
        from expansion_scorer.tracking import CHAMPION, alias_uri

        return self.uplift_model or alias_uri(UpliftConfig().registered_model, CHAMPION)

    def check_against(self, features: FeatureSet) -> None:
        """`problem_with`, raised: for callers that build their configs in code."""
        problem = self.problem_with(features)
        if problem:
            raise UserError(problem)

    def problem_with(self, features: FeatureSet) -> str | None:
        """Why this config cannot speak about `features` (a family, a feature or a template
        column that is not there, a band that does not exist), or None."""
        families = {f.family for f in features.features}
        names = {f.name for f in features.features}
        context = features.context_families
        for key, motion in self.motions.items():
            unknown = sorted(set(motion.families) - families)
            if unknown:
                return (
                    f"serving config: motion {key} names unknown families {', '.join(unknown)};"
                    f" known: {', '.join(sorted(families))}"
                )
            told = sorted(set(motion.families) & context)
            if told:
                return (
                    f"serving config: motion {key} names context families {', '.join(told)},"
                    " which are never told to a CSM; drop them from the motion"
                )
        templates = [
            *((f"motion {k}: label", m.label) for k, m in self.motions.items()),
            *(
                (f"motion {k}: talking point {i + 1}", t)
                for k, m in self.motions.items()
                for i, t in enumerate(m.talking_points)
            ),
            *((f"readiness rule {r.name}: says", r.says) for r in self.readiness),
            *((f"trigger rule {r.name}: says", r.says) for r in self.triggers.rules),
        ]
        for where, source in templates:
            problem = check_template(source, features.row_columns, where)
            if problem:
                return f"serving config: {problem}"
        for kind, rules in (("readiness", self.readiness), ("trigger", self.triggers.rules)):
            for rule in rules:
                if rule.feature not in names:
                    return (
                        f"serving config: {kind} rule {rule.name} reads unknown feature"
                        f" {rule.feature}; use a feature from the feature definitions"
                    )
        if self.triggers.top_band not in self.bands:
            return (
                f"serving config: triggers.top_band {self.triggers.top_band} is not a band;"
                f" use one of {', '.join(self.bands)}"
            )
        return None


class Settings(_Strict):
    """What a command reads, validated together at start: the feature definitions and the
    training and/or serving configs, each checked against the features. A part a command does
    not read is None (`train` has no serving config, `monitor` no training config)."""

    features: FeatureSet
    training: TrainingConfig | None = None
    serving: ServingConfig | None = None

    @model_validator(mode="after")
    def _parts_agree(self) -> Settings:
        for part in (self.training, self.serving):
            problem = None if part is None else part.problem_with(self.features)
            if problem:
                raise ValueError(problem)
        return self

    @property
    def model_name(self) -> str:
        """The registered model training writes and scoring reads: the training config's
        `registered_model` (the built-in one's when no training config is read)."""
        return (self.training or TrainingConfig()).registered_model

    def champion(self) -> str:
        """The URI `score` loads without --model."""
        from expansion_scorer.tracking import CHAMPION, alias_uri

        return alias_uri(self.model_name, CHAMPION)


def _read_yaml(path: Path | None, default_name: str) -> object:
    if path is None:
        text = resources.files("expansion_scorer").joinpath("defaults", default_name).read_text()
        where = f"built-in {default_name}"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot read config {path}: {exc.strerror}") from None
        where = str(path)
    return parse_yaml(text, f"config {where}")


def _parse(model: type[M], raw: object, where: str) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        parts = [str(p) for p in first["loc"]]
        # name the feature, not its position: "features.7.window.days" -> "feature x: window.days"
        if (
            len(parts) >= 2
            and parts[0] == "features"
            and parts[1].isdigit()
            and isinstance(raw, dict)
        ):
            entries = raw.get("features") or []
            entry = entries[int(parts[1])] if int(parts[1]) < len(entries) else None
            name = entry.get("name") if isinstance(entry, dict) else None
            feature = f"feature {name or '#' + str(int(parts[1]) + 1)}"
            parts = [f"{feature}: {'.'.join(parts[2:])}" if parts[2:] else feature]
        loc = ".".join(parts) or "(top level)"
        msg = first["msg"].removeprefix("Value error, ")
        # a cross-field check names its feature or its fields
        if not parts and msg.startswith(("feature ", "rank_by: ", "compare ")):
            raise UserError(f"config {where}: {msg}") from None
        raise UserError(f"config {where}: {loc}: {msg}") from None


def override(model: M, updates: dict[str, object], where: str = "command line") -> M:
    """`model` with `updates` (dotted keys, 'tuning.trials') applied and validated again, as a
    config file is: an override is never a way around a field's limits."""
    raw = model.model_dump()
    for key, value in updates.items():
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return _parse(type(model), raw, where)


def load_config(model: type[M], path: Path | None, default: str) -> M:
    """The config at `path` (the shipped `default` file when None), read and validated."""
    return _parse(model, _read_yaml(path, default), str(path or default))


def load_training_config(path: Path | None = None) -> TrainingConfig:
    return load_config(TrainingConfig, path, "training.yaml")


def load_serving_config(path: Path | None = None) -> ServingConfig:
    return load_config(ServingConfig, path, "serving.yaml")
