"""The uplift model: what a CSM's touch changes in an account's chance to expand.

Learnt from the weekly run's randomized holdout: among the accounts a CSM would have worked, a
random share was held out, so within those candidates listed and held-out accounts differ only
by chance and by the program. A T-learner fits one LightGBM per arm (listed, the intent to
treat, and held out) on the point-in-time features of each assignment and its outcome (expanded
within the horizon); the uplift is the difference of the two probabilities. Backfilled accounts
and accounts below capacity were not drawn and stay out, as they do in `expansion measure`.

Why a T-learner written here rather than causalml or scikit-uplift: it is a few lines over the
LightGBM the project already pins, each arm's booster is explained by the same exact TreeSHAP
(the difference of the two SHAP vectors adds up to the difference of the log-odds, so the
reasons machinery carries over), and it pickles as a plain MLflow pyfunc. The X-, DR- and
averaged learners, and how one is chosen, are in `uplift_learners.py`; whichever ranks, the
T-learner's arms give the chances and the reasons.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from expansion_scorer.config import FeatureSet, TrainingConfig
from expansion_scorer.errors import UserError
from expansion_scorer.model.uplift import UpliftModel  # noqa: F401 (old registered models)
from expansion_scorer.program.holdout import HOLDOUT, LISTED
from expansion_scorer.text import span
from expansion_scorer.training.metrics import incremental_at_capacity, qini_coefficient
from expansion_scorer.training.uplift_learners import OUTCOME, fit_learned, with_dr_scores

UPLIFT = "uplift"
PROPENSITY = "propensity"
"""The score the history holds for the assignment: the ranking the uplift model must beat."""
ORACLE = "oracle"
"""The simulator's true effect of the program on the assignment, when the data has it."""


@dataclass(frozen=True)
class CohortFold:
    """Assignment cohorts to train on and to test on; every training outcome window closes on
    or before the first test cohort."""

    index: int
    """1-based; 0 for the final fit, which has no test cohorts."""
    train: tuple[date, ...]
    test: tuple[date, ...] = ()

    @property
    def name(self) -> str:
        return f"fold {self.index}" if self.index else "final fit"


def plan_cohort_folds(
    cohorts: Sequence[date], horizon_days: int, cfg: TrainingConfig
) -> tuple[list[CohortFold], CohortFold]:
    """Folds over the latest `uplift.test_cohorts` cohorts, and the final fit on every cohort.

    A fold trains on the cohorts whose outcome window [drawn, drawn + horizon) closes on or
    before its first test cohort, so no training outcome overlaps a test one.
    """
    up = cfg.uplift
    cohorts = sorted(set(cohorts))
    found = f"{len(cohorts)} matured randomized cohorts ({span(cohorts)})"
    fix = (
        "score weekly with a holdout for longer (more cohorts, a horizon apart), or train"
        " with target: propensity"
    )
    if len(cohorts) < up.min_cohorts or len(cohorts) <= up.test_cohorts:
        raise UserError(
            f"target: uplift found {found}; it needs at least"
            f" {max(up.min_cohorts, up.test_cohorts + 1)} (uplift.min_cohorts {up.min_cohorts},"
            f" uplift.test_cohorts {up.test_cohorts} to test on and one before them); {fix}"
        )
    blocks = np.array_split(np.array(cohorts[-up.test_cohorts :], dtype=object), up.folds)
    folds = []
    for i, block in enumerate(blocks):
        first = block[0]
        train = tuple(d for d in cohorts if d + timedelta(days=horizon_days) <= first)
        if not train:
            raise UserError(
                f"target: uplift found {found}; fold {i + 1} tests on {span(list(block))} and"
                f" no cohort's {horizon_days}-day outcome window closes before {first}; {fix}"
            )
        folds.append(CohortFold(i + 1, train, tuple(block)))
    return folds, CohortFold(0, tuple(cohorts))


def _rows(frame: pd.DataFrame, cohorts: Sequence[date]) -> pd.DataFrame:
    return frame[frame["assigned_on"].isin(set(cohorts))]


def check_arms(frame: pd.DataFrame, folds: Sequence[CohortFold], cfg: TrainingConfig) -> None:
    """Each fold's training and test rows, and the final fit's, hold `uplift.min_per_arm`
    listed and held-out assignments, and each arm it trains on holds both outcomes."""
    need = cfg.uplift.min_per_arm
    for fold in folds:
        for what, cohorts in (("training", fold.train), ("test", fold.test)):
            if not cohorts:
                continue
            rows = _rows(frame, cohorts)
            n = {arm: int((rows["arm"] == arm).sum()) for arm in (LISTED, HOLDOUT)}
            if min(n.values()) < need:
                raise UserError(
                    f"target: uplift: {fold.name}'s {what} cohorts ({span(cohorts)}) hold"
                    f" {n[LISTED]} listed and {n[HOLDOUT]} held-out assignments; each arm needs"
                    f" at least {need} (uplift.min_per_arm): score weekly with a larger"
                    " holdout.fraction or for longer, or train with target: propensity"
                )
            if what == "training":
                for arm in (LISTED, HOLDOUT):
                    y = rows.loc[rows["arm"] == arm, OUTCOME]
                    if y.min() == y.max():
                        outcome = "no expansion" if y.max() == 0 else "only expansions"
                        raise UserError(
                            f"target: uplift: {fold.name}'s training cohorts"
                            f" ({span(cohorts)}) hold {outcome} among the {len(y)} {arm}"
                            " assignments; score weekly with a holdout for longer"
                        )


def uplift_metrics(
    scores: pd.DataFrame, scorers: Sequence[str], k: int
) -> dict[str, dict[str, float]]:
    """Per scorer: the Qini coefficient, and what working the top k per CSM and cohort by it
    realises (incremental expansions, the uplift among them)."""
    y = scores[OUTCOME].to_numpy()
    treated = (scores["arm"] == LISTED).to_numpy()
    groups = (
        scores["assigned_on"].astype(str) + "\x1f" + scores["csm_owner"].fillna("").astype(str)
    ).to_numpy()
    out = {}
    for name in scorers:
        s = scores[name].to_numpy(dtype="float64")
        at = incremental_at_capacity(y, treated, s, groups, k)
        out[name] = {
            "qini": qini_coefficient(y, treated, s),
            "incremental_at_capacity": at["incremental"],
            "uplift_at_capacity": at["uplift"],
            "taken_at_capacity": at["taken"],
        }
    out["all"] = {
        "rows": float(len(scores)),
        "listed": float(treated.sum()),
        "holdout": float((~treated).sum()),
        "rate_listed": float(y[treated].mean()) if treated.any() else float("nan"),
        "rate_holdout": float(y[~treated].mean()) if (~treated).any() else float("nan"),
    }
    return out


@dataclass
class UpliftFold:
    fold: CohortFold
    scores: pd.DataFrame
    metrics: dict[str, dict[str, float]]
    choice: Any = None
    """The learner used (`uplift_learners.Choice`): given, or chosen on inner cohort folds."""


@dataclass
class UpliftBacktest:
    folds: list[UpliftFold]
    pooled: dict[str, dict[str, float]]
    scores: pd.DataFrame
    scorers: list[str]


def backtest_uplift(
    frame: pd.DataFrame,
    folds: Sequence[CohortFold],
    feature_set: FeatureSet,
    cfg: TrainingConfig,
) -> UpliftBacktest:
    """Fit each fold on its past cohorts; score its test cohorts by the uplift model, by the
    propensity the history holds and, when the data has it, by the true effect."""
    k = cfg.uplift.accounts_per_csm
    scorers = [UPLIFT, PROPENSITY, *([ORACLE] if ORACLE in frame.columns else [])]
    results = []
    for fold in folds:
        train = _rows(frame, fold.train)
        model, choice = fit_learned(train, feature_set, cfg)
        test = _rows(frame, fold.test)
        keep = ["account_id", "assigned_on", "csm_owner", "arm", OUTCOME, PROPENSITY]
        scores = test[[*keep, *scorers[2:]]].reset_index(drop=True)
        scores[UPLIFT] = model.uplift(test)
        scores = with_dr_scores(scores, model, test, train)
        results.append(UpliftFold(fold, scores, uplift_metrics(scores, scorers, k), choice))
    pooled_scores = pd.concat([r.scores for r in results], ignore_index=True)
    return UpliftBacktest(results, uplift_metrics(pooled_scores, scorers, k), pooled_scores,
                          scorers)  # fmt: skip


def table(bt: UpliftBacktest, k: int) -> str:
    """Per fold and pooled, each ranking's Qini and incremental expansions at capacity."""
    head = f"{'':28} {'rows':>5} {'listed':>6} {'held':>5}" + "".join(
        f" {'qini ' + s:>14} {'incr@k ' + s:>16}" for s in bt.scorers
    )
    lines = [head, f"(k = {k} per CSM and cohort; incr@k: incremental expansions realised)"]
    parts = [(f"{r.fold.name} {span(r.fold.test)}", r.metrics) for r in bt.folds]
    for name, m in [*parts, ("pooled", bt.pooled)]:
        a = m["all"]
        row = f"{name:28} {a['rows']:5.0f} {a['listed']:6.0f} {a['holdout']:5.0f}"
        for s in bt.scorers:
            row += f" {m[s]['qini']:14.4f} {m[s]['incremental_at_capacity']:16.2f}"
        lines.append(row)
    return "\n".join(lines)
