"""Uplift learners, how one is chosen, and what a ranking at capacity is worth.

Every learner estimates the same thing, the effect of listing an account on its chance to
expand within the horizon, from the randomized arms (listed, the intent to treat, and held out):

- `t`: one LightGBM classifier per arm; the effect is the difference (the model of `uplift.py`).
- `x`: the X-learner. Each arm's classifier imputes the other arm's outcome for the accounts
  of this one (listed: y - mu0(x), held out: mu1(x) - y); a regressor per arm learns those
  imputed effects, and the two are weighed by the randomization share e (the share listed,
  known by design): e * tau_held(x) + (1 - e) * tau_listed(x), so the arm with more accounts
  speaks for the other's imputations.
- `dr`: the DR-learner. The doubly robust pseudo-outcome mu1 - mu0 + T (y - mu1) / e -
  (1 - T) (y - mu0) / (1 - e), its outcome models cross-fitted on two halves of the rows, is
  regressed on the features.
- `average`: the mean of the three effects (the same units, so no rescaling).

A new learner is one subclass of `Learner` with a `name`, registered in `LEARNERS`, and that
name in the training config's `uplift.learner`.

`uplift.learner: auto` chooses among `uplift.candidates` on inner folds of the training cohorts
only (blocks of whole cohorts; the test cohorts are never seen): each candidate is fitted on the
other cohorts and scored by the doubly robust estimate of what the capacity policy it implies
(the `accounts_per_csm` best of each CSM's cohort) is worth on the held cohorts. Inner blocks
are not a horizon apart as the outer folds are: the choice compares learners on the same rows,
and nothing of it reaches the outer test cohorts.

The value of a ranking at capacity is sum over the accounts it takes of the doubly robust
score of each account's effect; with a known randomization share its expectation is the true
expected effect of listing them whatever the outcome models, and the outcome models only narrow
it. Its interval is a bootstrap over accounts (an account drawn several times carries all its
assignments).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import lightgbm as lgb
import numpy as np
import pandas as pd

from expansion_scorer.config import FeatureSet, LightGBMParams, TrainingConfig
from expansion_scorer.model.parts import prepare
from expansion_scorer.model.uplift import LearnedUpliftModel, UpliftModel
from expansion_scorer.program.holdout import LISTED
from expansion_scorer.training.metrics import top_k_weights
from expansion_scorer.training.train import DATASET_PARAMS, lgb_params, schema

OUTCOME = "expanded"
"""Whether the account expanded within the horizon from the day it was drawn."""
AUTO = "auto"
RANDOM = "random"
PROPENSITY_X_EFFECT = "propensity_x_effect"
"""The propensity score times the average effect measured on the training cohorts."""


def _classifier(x: pd.DataFrame, y: np.ndarray, params: LightGBMParams, seed: int) -> lgb.Booster:
    data = lgb.Dataset(x, label=y, params=DATASET_PARAMS)
    return lgb.train(lgb_params(params, seed), data, num_boost_round=params.n_estimators)


def _regressor(
    x: pd.DataFrame, target: np.ndarray, params: LightGBMParams, seed: int
) -> lgb.Booster:
    data = lgb.Dataset(x, label=target, params=DATASET_PARAMS)
    settings = {**lgb_params(params, seed), "objective": "regression"}
    return lgb.train(settings, data, num_boost_round=params.n_estimators)


def _predict(booster: lgb.Booster, x: pd.DataFrame) -> np.ndarray:
    return np.asarray(booster.predict(x), dtype="float64")


class Learner(ABC):
    """An estimator of the effect of listing an account, fitted on both randomized arms."""

    name: ClassVar[str]

    @abstractmethod
    def fit(
        self, x: pd.DataFrame, treated: np.ndarray, y: np.ndarray, share: float,
        params: LightGBMParams, seed: int,
    ) -> Learner:  # fmt: skip
        """Learn from the matrix `x`, the arm (True: listed), the outcome and the listed share."""

    @abstractmethod
    def terms(self) -> list[tuple[float, lgb.Booster]]:
        """The fitted effect as a weighted sum of boosters' predictions: what is delivered."""

    def effect(self, x: pd.DataFrame) -> np.ndarray:
        """The estimated effect of listing each row's account, in probability."""
        return np.sum([w * _predict(b, x) for w, b in self.terms()], axis=0)


class TLearner(Learner):
    name = "t"

    def fit(self, x, treated, y, share, params, seed):
        self.listed_ = _classifier(x[treated], y[treated], params, seed)
        self.holdout_ = _classifier(x[~treated], y[~treated], params, seed)
        return self

    def arms(self, x: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return _predict(self.listed_, x), _predict(self.holdout_, x)

    def terms(self) -> list[tuple[float, lgb.Booster]]:
        return [(1.0, self.listed_), (-1.0, self.holdout_)]


class XLearner(Learner):
    name = "x"

    def fit(self, x, treated, y, share, params, seed):
        arms = TLearner().fit(x, treated, y, share, params, seed)
        listed, held = arms.arms(x)
        imputed = np.where(treated, y - held, listed - y)
        self.tau_listed_ = _regressor(x[treated], imputed[treated], params, seed)
        self.tau_held_ = _regressor(x[~treated], imputed[~treated], params, seed)
        self.share_ = float(share)
        return self

    def terms(self) -> list[tuple[float, lgb.Booster]]:
        return [(self.share_, self.tau_held_), (1.0 - self.share_, self.tau_listed_)]


def dr_scores(
    y: np.ndarray, treated: np.ndarray, listed: np.ndarray, held: np.ndarray, share: float
) -> np.ndarray:
    """Per row, the doubly robust score of its effect: unbiased for the effect of listing it
    whatever `listed` and `held` (the outcome models) are, as long as the arm was drawn with
    chance `share`."""
    y = np.asarray(y, dtype="float64")
    t = np.asarray(treated, dtype=bool)
    return listed - held + np.where(t, (y - listed) / share, -(y - held) / (1.0 - share))


class DRLearner(Learner):
    name = "dr"
    splits: ClassVar[int] = 2

    def fit(self, x, treated, y, share, params, seed):
        rng = np.random.default_rng(seed)
        part = rng.permutation(len(x)) % self.splits
        listed, held = np.zeros(len(x)), np.zeros(len(x))
        for s in range(self.splits):
            fit_on, out = part != s, part == s
            arms = TLearner().fit(x[fit_on], treated[fit_on], y[fit_on], share, params, seed)
            listed[out], held[out] = arms.arms(x[out])
        phi = dr_scores(y, treated, listed, held, share)
        self.tau_ = _regressor(x, phi, params, seed)
        return self

    def terms(self) -> list[tuple[float, lgb.Booster]]:
        return [(1.0, self.tau_)]


class AverageLearner(Learner):
    name = "average"
    parts: ClassVar[tuple[type[Learner], ...]] = (TLearner, XLearner, DRLearner)

    def fit(self, x, treated, y, share, params, seed):
        self.learners_ = [p().fit(x, treated, y, share, params, seed) for p in self.parts]
        return self

    def terms(self) -> list[tuple[float, lgb.Booster]]:
        n = len(self.learners_)
        return [(w / n, b) for learner in self.learners_ for w, b in learner.terms()]


LEARNERS: dict[str, type[Learner]] = {
    cls.name: cls for cls in (TLearner, XLearner, DRLearner, AverageLearner)
}


def _arrays(rows: pd.DataFrame, numeric: list[str], categories: dict[str, list[str]]) -> tuple[
    pd.DataFrame, np.ndarray, np.ndarray, float
]:  # fmt: skip
    x = prepare(rows, numeric, categories)
    treated = (rows["arm"] == LISTED).to_numpy()
    y = rows[OUTCOME].to_numpy(dtype="float64")
    return x, treated, y, float(treated.mean())


def _groups(rows: pd.DataFrame) -> np.ndarray:
    return (
        rows["assigned_on"].astype(str) + "\x1f" + rows["csm_owner"].fillna("").astype(str)
    ).to_numpy()


def _fittable(treated: np.ndarray, y: np.ndarray, need: int) -> bool:
    """Both arms hold `need` rows and both outcomes."""
    for arm in (treated, ~treated):
        if arm.sum() < need or y[arm].min() == y[arm].max():
            return False
    return True


@dataclass(frozen=True)
class Choice:
    """Which learner the inner cohort folds chose, and each candidate's estimated value."""

    learner: str
    values: dict[str, float] = field(default_factory=dict)
    """Summed over the inner folds: the doubly robust value of each candidate's capacity list."""
    inner_folds: int = 0
    given: bool = True
    """The config named the learner (False: `auto` chose it, or fell back to the first
    candidate when no inner fold could be fitted)."""


def choose_learner(
    rows: pd.DataFrame,
    numeric: list[str],
    categories: dict[str, list[str]],
    cfg: TrainingConfig,
) -> Choice:
    """`uplift.learner`, or with `auto` the candidate whose capacity lists the inner cohort
    folds of `rows` value highest (ties: the first in `uplift.candidates`)."""
    up = cfg.uplift
    if up.learner != AUTO:
        return Choice(up.learner)
    cohorts = sorted(rows["assigned_on"].unique())
    blocks = np.array_split(np.array(cohorts, dtype=object), min(up.inner_folds, len(cohorts)))
    values = dict.fromkeys(up.candidates, 0.0)
    used = 0
    x, treated, y, share = _arrays(rows, numeric, categories)
    for block in blocks:
        held = rows["assigned_on"].isin(set(block)).to_numpy()
        if not _fittable(treated[~held], y[~held], 1) or len(set(treated[held])) < 2:
            continue  # a block the other cohorts cannot be fitted without, or with one arm
        used += 1
        fit_x, fit_t, fit_y = x[~held], treated[~held], y[~held]
        test_x = x[held]
        nuisance = TLearner().fit(fit_x, fit_t, fit_y, share, up.lightgbm, cfg.seed)
        on_list, off_list = nuisance.arms(test_x)
        phi = dr_scores(y[held], treated[held], on_list, off_list, share)
        groups = _groups(rows[held])
        for name in up.candidates:
            if name == TLearner.name:
                learner: Learner = nuisance
            else:
                learner = LEARNERS[name]().fit(fit_x, fit_t, fit_y, share, up.lightgbm, cfg.seed)
            w = top_k_weights(learner.effect(test_x), groups, up.accounts_per_csm)
            values[name] += float((w * phi).sum())
    if not used:
        return Choice(up.candidates[0], {}, 0, given=False)
    best = max(up.candidates, key=lambda name: (values[name], -up.candidates.index(name)))
    return Choice(best, values, used, given=False)


def fit_learned(
    rows: pd.DataFrame, feature_set: FeatureSet, cfg: TrainingConfig
) -> tuple[UpliftModel, Choice]:
    """The T-learner's arms on `rows` and, when the learner (given or chosen) is another, that
    learner too, delivered together."""
    numeric, categories = schema(feature_set, rows)
    x, treated, y, share = _arrays(rows, numeric, categories)
    params, seed = cfg.uplift.lightgbm, cfg.seed
    choice = choose_learner(rows, numeric, categories, cfg)
    t = TLearner().fit(x, treated, y, share, params, seed)
    base = UpliftModel(t.listed_, t.holdout_, numeric, categories,
                       int(rows["horizon_days"].max()))  # fmt: skip
    if choice.learner == TLearner.name:
        return base, choice
    learner = LEARNERS[choice.learner]().fit(x, treated, y, share, params, seed)
    return LearnedUpliftModel(base, choice.learner, learner.terms()), choice


# --- What a ranking at capacity is worth -------------------------------------------------


@dataclass(frozen=True)
class PolicyValue:
    """The doubly robust estimate of the expansions a ranking's capacity lists add, with a 95%
    bootstrap interval over accounts."""

    estimate: float
    low: float
    high: float

    def says(self) -> str:
        return f"{self.estimate:+.1f} [{self.low:+.1f}, {self.high:+.1f}]"


def capacity_weights(scores: pd.DataFrame, ranking: str, k: int) -> np.ndarray:
    """Per row, its place on its CSM's cohort's capacity list by `ranking` (a column, or
    `random`: every row the same share of the k places)."""
    groups = _groups(scores)
    if ranking == RANDOM:
        size = pd.Series(groups).map(pd.Series(groups).value_counts()).to_numpy(dtype="float64")
        return np.minimum(k, size) / size
    return top_k_weights(scores[ranking].to_numpy(dtype="float64"), groups, k)


def policy_values(
    scores: pd.DataFrame,
    rankings: Sequence[str],
    k: int,
    dr: str = "dr_score",
    draws: int = 2000,
    seed: int = 0,
    pairs: Sequence[tuple[str, str]] = (),
) -> dict[str, PolicyValue]:
    """Per ranking, and per pair (a, b) as `a - b`, the doubly robust value at capacity of the
    rows in `scores` (which hold the `dr` score per row) and its 95% bootstrap interval; the
    same draws of accounts for every ranking, so a difference's interval is paired."""
    phi = scores[dr].to_numpy(dtype="float64")
    accounts, index = np.unique(scores["account_id"].astype(str).to_numpy(), return_inverse=True)
    per = {name: np.bincount(index, capacity_weights(scores, name, k) * phi,
                             minlength=len(accounts)) for name in rankings}  # fmt: skip
    for a, b in pairs:
        per[f"{a} - {b}"] = per[a] - per[b]
    counts = np.random.default_rng(seed).multinomial(
        len(accounts), np.full(len(accounts), 1.0 / len(accounts)), size=draws
    )
    out = {}
    for name, v in per.items():
        boot = counts @ v
        low, high = np.quantile(boot, [0.025, 0.975])
        out[name] = PolicyValue(float(v.sum()), float(low), float(high))
    return out


def with_dr_scores(
    scores: pd.DataFrame, model: UpliftModel, test: pd.DataFrame, train: pd.DataFrame
) -> pd.DataFrame:
    """The test `scores` with each row's doubly robust score (outcome models: the T-learner
    arms fitted on the training cohorts, the share: the training cohorts' listed share) and the
    propensity times the average effect the training cohorts measured (listed minus held out)."""
    treated = (train["arm"] == LISTED).to_numpy()
    y = train[OUTCOME].to_numpy(dtype="float64")
    share = float(treated.mean())
    effect = float(y[treated].mean() - y[~treated].mean())
    listed, held = model.arms(test)
    out = scores.copy()
    out["dr_score"] = dr_scores(
        test[OUTCOME].to_numpy(), (test["arm"] == LISTED).to_numpy(), listed, held, share
    )
    out[PROPENSITY_X_EFFECT] = out["propensity"].to_numpy(dtype="float64") * effect
    return out
