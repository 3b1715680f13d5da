"""`expansion measure`: does working the list cause expansion that would not have happened anyway?

The weekly run holds out a random share of the accounts a CSM would work (`program.holdout`).
Once an assignment's horizon has closed in the data, its outcome is read from the ARR ledger:
whether the account expanded within the horizon from the day it was drawn, and by how much.
The intent-to-treat effect is the listed accounts' expansion rate (and ARR) minus the held-out
accounts', per cohort (the week an assignment was drawn) and pooled. An account sits in one
cohort a period but in several periods, so pooled intervals come from a bootstrap over accounts
(every row of a drawn account goes with it), not over rows. Where the data has a `touches`
table, compliance is the share of listed accounts touched within a week of being listed, and the
effect of a touch on those who comply is the intent-to-treat effect divided by the difference in
touch rates between the arms (a Wald, or complier average, estimate): touches outside the list
are not randomized, so only this ratio, not a comparison of touched and untouched accounts, is
causal.

Beside it: the effect adjusted for what was known at the draw (`program.statistics`), the
pooled effect's always-valid confidence sequence and its verdict, the control group's checks per
period (sample ratio, held-out accounts touched), and the plan: how small an effect the next
quarters can detect, and the holdout fraction that detects `program.detect` within two.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from expansion_scorer.config import FeatureSet, ServingConfig
from expansion_scorer.data.loading import open_world
from expansion_scorer.data.sources import DataSource
from expansion_scorer.errors import UserError
from expansion_scorer.features.frame import Labelling, label_frame
from expansion_scorer.features.ledger import EXPANSION_KINDS, build_movements
from expansion_scorer.features.revenue import quarter_table
from expansion_scorer.features.snapshots import data_span
from expansion_scorer.program import statistics as st
from expansion_scorer.program.holdout import COMPARED, HOLDOUT, LISTED, period_of
from expansion_scorer.program.outcomes import TOUCH_DAYS

MIN_PER_ARM = 20
"""Fewer accounts than this in either arm: the group is reported as too small to say."""
BOOTSTRAP = 1000
PROGRAM_COLUMNS = [
    "scope", "group", "n_listed", "n_holdout", "rate_listed", "rate_holdout", "effect",
    "effect_low", "effect_high", "adjusted_effect", "adjusted_low", "adjusted_high",
    "arr_listed", "arr_holdout", "arr_effect", "arr_effect_low", "arr_effect_high",
    "holdout_share", "sample_ratio_p", "holdout_touched", "reliable", "check", "note",
]  # fmt: skip
COVARIATES = ("score", "prior_expansions", "log_arr_before")
"""Known at the draw: the propensity score it was drawn with, the account's expansions in the
year before, and the log of its ARR the day before."""
ADJUSTED = "adjusted"
FIXED_HORIZON = "fixed-horizon"
"""The label of the bootstrap intervals: valid when read once, at a horizon fixed in advance."""


def covariates(rows: pd.DataFrame) -> np.ndarray:
    """The covariates of `COVARIATES` per row (NaN where the data does not say)."""

    def column(name: str) -> np.ndarray:
        if name not in rows:
            return np.full(len(rows), np.nan)
        return pd.to_numeric(rows[name], errors="coerce").to_numpy("float64")

    arr = column("arr_before")
    return np.column_stack(
        [column("score"), column("prior_expansions"), np.log1p(np.clip(arr, 0, None))]
    )


def _per_account(rows: pd.DataFrame, accounts: pd.Index, arm: str, column: str) -> np.ndarray:
    """Per account (in `accounts` order), the count and the sum of `column` in one arm."""
    part = rows[rows["arm"] == arm]
    codes = accounts.get_indexer(pd.Index(part["account_id"]))
    n = np.bincount(codes, minlength=len(accounts)).astype("float64")
    total = np.bincount(codes, weights=part[column].to_numpy("float64"), minlength=len(accounts))
    return np.vstack([n, total])


def _account_products(codes: np.ndarray, products: np.ndarray, n_accounts: int) -> np.ndarray:
    """Per account, the sum of each column of `products` over its rows: (accounts x m)."""
    return np.column_stack(
        [np.bincount(codes, weights=products[:, j], minlength=n_accounts)
         for j in range(products.shape[1])]
    )  # fmt: skip


Differences = dict[str, np.ndarray]
"""Per column, listed minus held-out mean: one value for the sample, or one per resample."""


@dataclass(frozen=True)
class Resamples:
    """Poisson(1) weights for every account of a table, one row per resample, drawn once and
    shared by each group's bootstrap: each group's is still a bootstrap over its own accounts,
    and a year of 100,000 accounts in some 430 groups draws 100 million weights, not 600."""

    accounts: pd.Index
    weights: np.ndarray
    """Resamples x accounts, uint8."""

    @classmethod
    def draw(cls, account_ids: pd.Series, seed: int = 0, reps: int = BOOTSTRAP) -> Resamples:
        accounts = pd.Index(account_ids.unique())
        rng = np.random.default_rng(seed)
        return cls(accounts, rng.poisson(1.0, size=(reps, len(accounts))).astype("uint8"))


def bootstrap(
    rows: pd.DataFrame,
    columns: list[str],
    statistics: dict[str, Callable[[Differences], np.ndarray]],
    seed: int = 0,
    reps: int = BOOTSTRAP,
    level: float = 0.95,
    adjust: tuple[str, ...] = (),
    normal: tuple[str, ...] = (),
    resamples: Resamples | None = None,
) -> dict[str, tuple[float, float, float]]:
    """Each statistic of the arms' mean differences, with an interval at `level` from a bootstrap
    that resamples accounts (Poisson weights, shared by every statistic), so that an account's
    rows move together. Each column of `adjust` also gets its covariate-adjusted difference
    (Lin 2013) under the key `<column>:adjusted`, from the same resamples.

    The interval is the resamples' percentiles, or for the statistics named in `normal` the
    estimate plus and minus the normal quantile times the resamples' standard deviation: for a
    statistic close to normal (a difference of rates), the standard deviation of 1,000
    resamples carries far less Monte Carlo error than their 2.5th and 97.5th percentiles, which
    moved the width of one seed's interval by 2 to 3% from one bootstrap seed to the next.
    With `resamples`, its weights for these accounts (`reps` of them) stand in for new draws."""
    accounts = pd.Index(rows["account_id"].unique())
    sums = {c: (_per_account(rows, accounts, LISTED, c), _per_account(rows, accounts, HOLDOUT, c))
            for c in columns}  # fmt: skip
    products: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    x = st.centred(covariates(rows)) if adjust else np.empty((len(rows), 0))
    for c in adjust:
        y = rows[c].to_numpy("float64")
        per_arm = []
        for arm in (LISTED, HOLDOUT):
            mine = (rows["arm"] == arm).to_numpy()
            codes = accounts.get_indexer(pd.Index(rows.loc[mine, "account_id"]))
            per_arm.append(
                _account_products(codes, st.design_products(x[mine], y[mine]), len(accounts))
            )
        products[c] = (per_arm[0], per_arm[1])

    def differences(w: np.ndarray | None) -> Differences:
        out = {}
        with np.errstate(divide="ignore", invalid="ignore"):
            for c, ((ln, ls), (hn, hs)) in sums.items():
                if w is None:
                    out[c] = np.array([ls.sum() / ln.sum() - hs.sum() / hn.sum()])
                else:
                    out[c] = (w @ ls) / (w @ ln) - (w @ hs) / (w @ hn)
            for c, (listed, held) in products.items():
                if w is None:
                    effect = st.lin_effect(listed.sum(axis=0), held.sum(axis=0), x.shape[1])
                    out[f"{c}:{ADJUSTED}"] = np.atleast_1d(effect)
                else:
                    out[f"{c}:{ADJUSTED}"] = st.lin_effect(w @ listed, w @ held, x.shape[1])
        return out

    def apply(d: Differences) -> dict[str, np.ndarray]:
        with np.errstate(divide="ignore", invalid="ignore"):
            return {name: f(d) for name, f in statistics.items()}

    rng = np.random.default_rng(seed)
    draws: dict[str, list[np.ndarray]] = {name: [] for name in statistics}
    shared = None if resamples is None else resamples.accounts.get_indexer(accounts)
    assert shared is None or (shared >= 0).all(), "resamples drawn for other accounts"
    for start in range(0, reps, 100):
        if resamples is None or shared is None:
            w = rng.poisson(1.0, size=(min(100, reps - start), len(accounts))).astype("float64")
        else:
            w = resamples.weights[start : start + 100][:, shared].astype("float64")
        for name, values in apply(differences(w)).items():
            draws[name].append(values)
    point = apply(differences(None))
    tail = (1 - level) / 2
    z = st.two_sided_z(level)
    out = {}
    for name in statistics:
        spread = np.concatenate(draws[name])
        spread = spread[np.isfinite(spread)]
        estimate = float(point[name][0])
        if len(spread) < 2:
            low, high = np.nan, np.nan
        elif name in normal:
            half = z * float(spread.std(ddof=1))
            low, high = estimate - half, estimate + half
        else:
            low, high = np.quantile(spread, [tail, 1 - tail])
        out[name] = (estimate, float(low), float(high))
    return out


def _row(
    scope: str,
    group: str,
    rows: pd.DataFrame,
    seed: int,
    level: float,
    resamples: Resamples | None = None,
) -> dict[str, Any]:
    listed, held = rows[rows["arm"] == LISTED], rows[rows["arm"] == HOLDOUT]
    row: dict[str, Any] = {"scope": scope, "group": group, "n_listed": len(listed),
                           "n_holdout": len(held)}  # fmt: skip
    if len(listed) < MIN_PER_ARM or len(held) < MIN_PER_ARM:
        row["note"] = (
            f"too few to say: {len(listed)} listed, {len(held)} held out"
            f" (needs {MIN_PER_ARM} in each)"
        )
        return row
    wanted: dict[str, Callable[[Differences], np.ndarray]] = {
        "expanded": lambda d: d["expanded"],
        "expansion_arr": lambda d: d["expansion_arr"],
        ADJUSTED: lambda d: d[f"expanded:{ADJUSTED}"],
    }
    effects = bootstrap(rows, ["expanded", "expansion_arr"], wanted, seed, level=level,
                        adjust=("expanded",), normal=("expanded", ADJUSTED),
                        resamples=resamples)  # fmt: skip
    rate, arr, adjusted = effects["expanded"], effects["expansion_arr"], effects[ADJUSTED]
    row.update(
        rate_listed=float(listed["expanded"].mean()),
        rate_holdout=float(held["expanded"].mean()),
        effect=rate[0], effect_low=rate[1], effect_high=rate[2],
        adjusted_effect=adjusted[0], adjusted_low=adjusted[1], adjusted_high=adjusted[2],
        arr_listed=float(listed["expansion_arr"].mean()),
        arr_holdout=float(held["expansion_arr"].mean()),
        arr_effect=arr[0], arr_effect_low=arr[1], arr_effect_high=arr[2],
        note="",
    )  # fmt: skip
    return row


def program_table(
    measured: pd.DataFrame,
    seed: int = 0,
    level: float = 0.95,
    checks: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Pooled, per cohort, and per band, motion and CSM where both arms are large enough; with
    `checks` (from `control_checks`), the period rows and the pooled row carry them."""
    rows = measured[measured["arm"].isin(COMPARED)]
    shared = Resamples.draw(rows["account_id"], seed)
    out = [_row("pooled", "all", rows, seed, level, shared)]
    for cohort, part in rows.groupby("assigned_on", sort=True):
        out.append(_row("cohort", str(cohort), part, seed, level, shared))
    for scope in ("period", "band", "motion", "csm_owner"):
        for key, part in rows.groupby(rows[scope].fillna("(none)").astype(str), sort=True):
            out.append(_row(scope, str(key), part, seed, level, shared))
    table = pd.DataFrame(out).reindex(columns=PROGRAM_COLUMNS)
    if checks is None or checks.empty:
        return table
    columns = ["holdout_share", "sample_ratio_p", "holdout_touched", "reliable", "check"]
    per_period = checks[["period", *columns]].rename(columns={"period": "group"})
    table = table.drop(columns=columns).merge(
        per_period.assign(scope="period"), on=["scope", "group"], how="left"
    )
    table[["reliable", "check"]] = table[["reliable", "check"]].astype(object)
    pooled = checks[checks["matured"] > 0]
    failed = pooled[~pooled["reliable"].astype(bool)]
    table.at[0, "reliable"] = failed.empty
    table.at[0, "check"] = (
        ""
        if failed.empty
        else f"includes {', '.join(failed['period'])}, whose control group failed its checks"
    )
    held = int(checks["held_out"].sum())
    total = int(checks["candidates"].sum())
    table.at[0, "holdout_share"] = held / total if total else np.nan
    table.at[0, "sample_ratio_p"] = st.sample_ratio_p(
        held, total, float(checks["expected_share"].iloc[0])
    )
    return table.reindex(columns=PROGRAM_COLUMNS)


def control_checks(
    randomized: pd.DataFrame, measured: pd.DataFrame, fraction: float, max_touched: float
) -> pd.DataFrame:
    """Per period, whether the control group is still a fair comparison: the held-out share of
    every candidate drawn in the period against the configured fraction (a sample-ratio test,
    failed below p = `SRM_P`), and, where the data has touches, the share of matured held-out
    assignments touched while held out, within their horizon and their period (failed above
    `max_touched`); a touch after the next period drew the account again is not counted."""
    rows = []
    for period, part in randomized.groupby("period", sort=True):
        n, held = len(part), int((part["arm"] == HOLDOUT).sum())
        p = st.sample_ratio_p(held, n, fraction)
        mine = measured[measured["period"] == period] if len(measured) else measured
        matured_held = mine[mine["arm"] == HOLDOUT] if len(mine) else mine
        touched = (
            float(matured_held["touched_while_drawn"].mean())
            if "touched_while_drawn" in matured_held and len(matured_held)
            else np.nan
        )
        failures = []
        if p < st.SRM_P:
            failures.append(
                f"{held:,} of {n:,} candidates held out ({held / n:.1%}) where {fraction:.0%}"
                f" were to be (sample ratio p = {p:.1g}): a draw bug, accounts dropped from the"
                " data, a filter applied to one arm, or a configured fraction that is not the"
                " one the draw used"
            )
        if touched > max_touched:
            failures.append(
                f"{touched:.0%} of held-out accounts were touched while held out (more than"
                f" {max_touched:.0%}): the control group was worked"
            )
        rows.append(
            {
                "period": str(period),
                "candidates": n,
                "held_out": held,
                "matured": len(mine),
                "holdout_share": held / n if n else np.nan,
                "expected_share": fraction,
                "sample_ratio_p": p,
                "holdout_touched": touched,
                "reliable": not failures,
                "check": "; ".join(failures),
            }
        )
    return pd.DataFrame(rows)


def _pseudo_outcomes(rows: pd.DataFrame, fraction: float) -> np.ndarray:
    """Per row of `rows` (compared assignments in the order they were drawn), its augmented
    inverse-probability-weighted outcome: each cohort's predictions come from each arm's fit on
    the covariates of the earlier cohorts only (the first's, from the propensity score it was
    drawn with), made before its outcomes."""
    y = rows["expanded"].to_numpy("float64")
    treated = (rows["arm"] == LISTED).to_numpy()
    x = st.centred(covariates(rows))
    z = np.column_stack([np.ones(len(rows)), x])
    starts, ends = _cohorts(rows)
    phi = np.empty(len(rows))
    prior = np.clip(np.nan_to_num(covariates(rows)[:, 0]), 0, 1)
    for a, b in zip(starts, ends, strict=True):
        before_listed, before_held = treated[:a], ~treated[:a]
        if before_listed.sum() > x.shape[1] and before_held.sum() > x.shape[1]:
            b1, b0 = st.arm_fits(x[:a], y[:a], treated[:a])
            m1, m0 = np.clip(z[a:b] @ b1, 0, 1), np.clip(z[a:b] @ b0, 0, 1)
        else:  # no earlier cohort to fit: the score the account was drawn with predicts it
            m1 = m0 = prior[a:b]
        phi[a:b] = st.pseudo_outcomes(y[a:b], treated[a:b], 1 - fraction, m1, m0)
    return phi


def _cohorts(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The first row of each cohort (rows in the order they were drawn) and one past its last."""
    cohorts = pd.to_datetime(rows["assigned_on"]).dt.date.to_numpy()
    starts = np.flatnonzero(np.r_[True, cohorts[1:] != cohorts[:-1]])
    return starts, np.r_[starts[1:], len(rows)]


def _sequence(
    values: np.ndarray, rows: pd.DataFrame, level: float, planned: float
) -> dict[str, Any]:
    """The confidence sequence of the mean of `values` (one per row of `rows`, in the order
    drawn), looked at once per matured cohort; with no value, no look and nothing to say."""
    if not len(values):
        nan = float("nan")
        return {"level": level, "estimate": nan, "low": nan, "high": nan, "planned_n": planned,
                "looks": []}  # fmt: skip
    _, ends = _cohorts(rows)
    cohorts = pd.to_datetime(rows["assigned_on"]).dt.date.to_numpy()
    estimate, low, high = st.confidence_sequence(
        ends.astype("float64"), np.cumsum(values)[ends - 1], np.cumsum(values**2)[ends - 1],
        1 - level, planned,
    )  # fmt: skip
    looks = [
        {"cohort": str(cohorts[e - 1]), "n": int(e), "estimate": float(m), "low": float(lo),
         "high": float(hi)}
        for e, m, lo, hi in zip(ends, estimate, low, high, strict=True)
    ]  # fmt: skip
    return {
        "level": level,
        "estimate": float(estimate[-1]),
        "low": float(low[-1]),
        "high": float(high[-1]),
        "planned_n": planned,
        "looks": looks,
    }


def always_valid(
    measured: pd.DataFrame, fraction: float, level: float, planned: float
) -> dict[str, Any]:
    """The pooled effect's confidence sequence, looked at once per matured cohort in the order
    they were drawn: each cohort's pseudo-outcomes use each arm's fit on the covariates from the
    earlier cohorts only (the first, the propensity score it was drawn with), predictions made
    before its outcomes, so the sequence stays valid at every look."""
    rows = measured[measured["arm"].isin(COMPARED)].sort_values("assigned_on", kind="stable")
    found = _sequence(_pseudo_outcomes(rows, fraction), rows, level, planned)
    return {
        "level": level,
        "method": "asymptotic confidence sequence (Waudby-Smith et al. 2023) of augmented"
        " inverse-probability-weighted outcomes, valid at every look",
        "estimate": found["estimate"],
        "low": found["low"],
        "high": found["high"],
        "verdict": st.verdict(found["low"], found["high"]),
        "planned_n": planned,
        "looks": found["looks"],
    }


def difference_sequence(
    drafted: pd.DataFrame, first: str, fraction: float, level: float, planned: float
) -> dict[str, Any]:
    """The always-valid confidence sequence of the difference between two rankings' effects
    per drafted account, `first` minus the other, from the compared assignments they drafted.

    Each CSM's list of a week (a cohort and CSM) is drafted by both; with q the share of its
    drafted assignments the first ranking drafted, fixed by the draft before any outcome, each
    assignment's pseudo-outcome (as `always_valid`'s) is weighted by 1/q if the first drafted
    it and -1/(1-q) if the other did, so the weighted terms of a list average to the difference
    of its two rankings' mean effects, and their running mean to the lists' difference weighted
    by their size; the same confidence sequence as the pooled effect's is then valid at every
    look. A list that only one ranking drafted into (a CSM with one drafted account) says
    nothing of the difference and is left out."""
    rows = drafted.sort_values(["assigned_on", "csm_owner"], kind="stable").reset_index(drop=True)
    mine = (rows["drafted_by"] == first).to_numpy()
    lists = rows.groupby(["assigned_on", rows["csm_owner"].fillna("")], sort=False)
    share = lists["drafted_by"].transform(lambda d: (d == first).mean()).to_numpy("float64")
    both = (share > 0) & (share < 1)
    phi = _pseudo_outcomes(rows, fraction)
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(mine, 1 / share, -1 / (1 - share))
    kept = rows[both].reset_index(drop=True)  # none when no list was drafted by both
    return {**_sequence((phi * weight)[both], kept, level, planned), "lists": int(lists.ngroups)}


def compliance(measured: pd.DataFrame, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Touch rates per arm and the effect of a touch on compliers (ITT / difference in rates)."""
    if "touched" not in measured:
        return {"touches": False}
    rows = measured[measured["arm"].isin(COMPARED)].assign(
        touched=lambda f: f["touched"].astype("float64")
    )
    listed, held = rows[rows["arm"] == LISTED], rows[rows["arm"] == HOLDOUT]
    out: dict[str, Any] = {
        "touches": True,
        "window_days": TOUCH_DAYS,
        "listed_touched": float(listed["touched"].mean()) if len(listed) else None,
        "holdout_touched": float(held["touched"].mean()) if len(held) else None,
        "note": "touches outside the list are not randomized; only the complier estimate is causal",
    }
    if len(listed) < MIN_PER_ARM or len(held) < MIN_PER_ARM:
        return out
    complier = {"complier": lambda d: d["expanded"] / d["touched"]}
    point, low, high = bootstrap(rows, ["expanded", "touched"], complier, seed, level=level)[
        "complier"
    ]
    out.update(complier_effect=point, complier_effect_low=low, complier_effect_high=high)
    return out


def program_chart(table: pd.DataFrame) -> bytes:
    """PNG: the expansion rate of listed and held-out accounts per cohort, with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cohorts = table[(table["scope"] == "cohort") & table["effect"].notna()]
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=110)
    x = np.arange(len(cohorts))
    for arm, shift, colour in ((LISTED, -0.15, "#1f7a4d"), (HOLDOUT, 0.15, "#5b6472")):
        rate = cohorts[f"rate_{arm}"].to_numpy("float64")
        n = cohorts[f"n_{arm}"].to_numpy("float64")
        half = 1.96 * np.sqrt(rate * (1 - rate) / np.maximum(n, 1))
        ax.errorbar(x + shift, rate, yerr=half, fmt="o", color=colour, capsize=3, label=arm)
    ax.set_xticks(x, cohorts["group"].tolist(), rotation=45, ha="right")
    ax.set_ylabel("expanded within the horizon")
    ax.set_title("Listed against held-out accounts, by the week they were drawn (95% intervals)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def health(
    data_dir: DataSource,
    feature_set: FeatureSet,
    history: Path,
    measured: pd.DataFrame,
    table: pd.DataFrame,
    serving: ServingConfig,
) -> list[dict[str, Any]]:
    """Per quarter since the first weekly run: the target against NRR, GRR and expansion ARR from
    the ledger; trigger coverage (the share of expansions a list or trigger flagged within the
    horizon before they happened, and how many weeks ahead); follow-through (the share of
    listed accounts touched); and the measured lift of the quarter's cohorts."""
    world = open_world(data_dir)
    _, end = data_span(world)
    build_movements(world.con, feature_set)
    con = duckdb.connect(str(history), read_only=True)
    try:
        flags = con.execute(
            "SELECT DISTINCT as_of, account_id FROM scores WHERE on_list OR fired"
        ).df()
    finally:
        con.close()
    if flags.empty:
        return []
    horizon = int(measured["horizon_days"].max()) if len(measured) else 90
    first = min(pd.to_datetime(flags["as_of"]).dt.date)
    quarters = quarter_table(world.con, date(first.year, 3 * ((first.month - 1) // 3) + 1, 1), end)
    world.con.execute("SELECT 1").fetchall()  # finish any open result before registering
    world.con.register("flags", flags)
    covered = world.con.execute(
        f"""SELECT m.account_id, m.day, min(f.as_of) AS first_flag
        FROM movements m LEFT JOIN flags f ON f.account_id = m.account_id
         AND CAST(f.as_of AS DATE) <= m.day AND CAST(f.as_of AS DATE) > m.day - {horizon}
        WHERE m.kind IN {EXPANSION_KINDS} AND m.arr_delta > 0
          AND m.day >= DATE '{first}' AND m.day < DATE '{end}'
        GROUP BY ALL"""
    ).df()
    covered["quarter"] = [period_of(d, "quarter") for d in pd.to_datetime(covered["day"]).dt.date]
    ahead = (pd.to_datetime(covered["day"]) - pd.to_datetime(covered["first_flag"])).dt.days / 7
    covered["weeks_ahead"] = ahead
    target = serving.program
    out = []
    for q in sorted(set(quarters["quarter"]) | set(covered["quarter"])):
        row: dict[str, Any] = {"quarter": q, "target_expansion_arr": target.target_expansion_arr,
                               "target_nrr": target.target_nrr}  # fmt: skip
        money = quarters[quarters["quarter"] == q]
        if len(money):
            m = money.iloc[0]
            row.update(expansion_arr=float(m["expansion_arr"]), nrr=float(m["nrr"]),
                       grr=float(m["grr"]))  # fmt: skip
        mine = covered[covered["quarter"] == q]
        row["expansions"] = len(mine)
        row["flagged_share"] = float(mine["first_flag"].notna().mean()) if len(mine) else None
        weeks = mine["weeks_ahead"].dropna()
        row["median_weeks_ahead"] = float(weeks.median()) if len(weeks) else None
        listed = measured[(measured["period"] == q) & (measured["arm"] == LISTED)]
        row["follow_through"] = (
            float(listed["touched"].mean()) if "touched" in listed and len(listed) else None
        )
        lift = table[(table["scope"] == "period") & (table["group"] == q)]
        if len(lift) and not lift.iloc[0]["note"]:
            row.update(lift=float(lift.iloc[0]["effect"]),
                       lift_interval=[float(lift.iloc[0]["effect_low"]),
                                      float(lift.iloc[0]["effect_high"])])  # fmt: skip
        out.append(row)
    return out


def candidates_per_quarter(history: Path, period: str) -> tuple[float, int]:
    """The book's candidates a quarter (accounts drawn, or with the holdout off shown on a list or
    fired, once each per period) from the weekly runs in the history, and how many weekly runs
    it is read from. The latest period counts only when it is the only one: it may be young."""
    con = duckdb.connect(str(history), read_only=True)
    try:
        per = con.execute(
            f"""SELECT date_trunc('{period}', as_of) AS p, count(DISTINCT account_id) AS n,
                count(DISTINCT as_of) AS runs
            FROM scores WHERE arm IN ('{LISTED}', '{HOLDOUT}') OR fired
            GROUP BY ALL ORDER BY p"""
        ).df()
        runs = con.execute("SELECT count(DISTINCT as_of) FROM scores").fetchone()
    finally:
        con.close()
    if per.empty:
        return 0.0, int(runs[0]) if runs else 0
    counted = per if len(per) == 1 else per.iloc[:-1]
    scale = 3.0 if period == "month" else 1.0
    return float(counted["n"].mean()) * scale, int(runs[0]) if runs else 0


def base_rate(data_dir: DataSource, feature_set: FeatureSet, horizon: int) -> tuple[float, date]:
    """Before any cohort has matured: the expansion rate of every eligible account over the
    latest horizon that has closed in the data, and the date it starts."""
    world = open_world(data_dir)
    _, end = data_span(world)
    as_of = end - timedelta(days=horizon)
    labels = label_frame(world, feature_set, [as_of], Labelling(horizon))
    if labels.empty:
        raise UserError(
            f"{data_dir}: no account is eligible on {as_of}, one horizon ({horizon} days) before"
            " the data ends, to plan from; plan again once the data covers a full horizon"
        )
    return float(labels["label"].mean()), as_of


def plan(
    serving: ServingConfig,
    per_quarter: float,
    variance: float,
    source: str,
    matured: int,
    drafted: tuple[int, float] = (0, 1.0),
) -> dict[str, Any]:
    """The smallest effect detectable (80% power, 5% two-sided) after each of the next four
    quarters at the configured fraction, and the fraction that detects `program.detect` within
    two: from the candidates a quarter, the outcome's variance and the assignments matured.
    With two rankings compared, how long telling them apart takes (`compare_plan`), from the
    matured assignments they drafted and the share of candidates they draft (`drafted`)."""
    fraction, target = serving.holdout.fraction, serving.program.detect
    quarters = [
        {"quarter": q, "assignments": round(matured + q * per_quarter),
         "detectable": st.detectable(variance, matured + q * per_quarter, fraction)}
        for q in range(1, 5)
    ]  # fmt: skip
    needed = st.fraction_needed(variance, target, matured, fraction, 2 * per_quarter)
    if needed.already:
        says = f"the {matured:,} matured assignments already detect {target:.3f}"
    elif needed.fraction is None:
        says = (
            f"no fraction up to 0.5 detects {target:.3f} within two quarters of"
            f" {per_quarter:,.0f} candidates: wait longer or aim at a larger effect"
        )
    else:
        says = (
            f"holding out {needed.fraction:.0%} of new candidates detects {target:.3f} within"
            " two quarters"
        )
    compared: dict[str, Any] = {}
    if serving.compare is not None:
        n_drafted, share = drafted
        compared = compare_plan(variance, fraction, serving.program.detect_difference,
                                per_quarter * share, planned=per_quarter * share,
                                level=serving.program.confidence, matured=n_drafted)  # fmt: skip
        compared["rankings"] = list(serving.compare)
    return {
        **({"compare": compared} if compared else {}),
        "candidates_per_quarter": per_quarter,
        "candidates_per_week": per_quarter / 13,
        "fraction": fraction,
        "variance": variance,
        "variance_from": source,
        "matured": matured,
        "power": st.POWER,
        "alpha": st.PLAN_ALPHA,
        "quarters": quarters,
        "detect": target,
        "fraction_needed": needed.fraction,
        "already_detectable": needed.already,
        "says": says,
    }


def clean(value: Any) -> Any:
    """NaN and infinity as null, numpy scalars as Python ones: JSON that every reader parses."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def plan_from(
    measured: pd.DataFrame,
    data_dir: DataSource,
    feature_set: FeatureSet,
    horizon: int,
    serving: ServingConfig,
    per_quarter: float,
) -> dict[str, Any]:
    """The plan from what has matured (the adjusted variance where both arms are large enough),
    or from the data's base rate before anything has."""
    rows = measured[measured["arm"].isin(COMPARED)] if len(measured) else measured
    if len(rows):
        y = rows["expanded"].to_numpy("float64")
        treated = (rows["arm"] == LISTED).to_numpy()
        if min(treated.sum(), (~treated).sum()) >= MIN_PER_ARM:
            x = st.centred(covariates(rows))
            variance = st.residual_variance(x, y, treated)
            source = f"the {len(rows):,} matured assignments, adjusted for what the draw knew"
        else:
            variance, source = float(y.var()), f"the {len(rows):,} matured assignments"
        drafted = rows["drafted_by"].notna() if "drafted_by" in rows else pd.Series(False)
        share = float(drafted.mean()) if drafted.any() else 1.0
        return clean(
            plan(serving, per_quarter, variance, source, len(rows), (int(drafted.sum()), share))
        )
    rate, since = base_rate(data_dir, feature_set, horizon)
    source = f"the data's base rate {rate:.3f} (eligible accounts on {since}); nothing has matured"
    return clean(plan(serving, per_quarter, rate * (1 - rate), source, 0))


def _effect_draws(sums: list[np.ndarray], w: np.ndarray | None) -> np.ndarray:
    """Listed minus held-out expansion rate from each arm's per-account counts and sums
    (`_per_account`), for the sample (w None) or per row of Poisson weights `w`."""
    (ln, ls), (hn, hs) = sums
    with np.errstate(divide="ignore", invalid="ignore"):
        if w is None:
            return np.array([ls.sum() / ln.sum() - hs.sum() / hn.sum()])
        return (w @ ls) / (w @ ln) - (w @ hs) / (w @ hn)


def difference_bootstrap(
    a: pd.DataFrame, b: pd.DataFrame, seed: int = 0, reps: int = BOOTSTRAP, level: float = 0.95
) -> tuple[float, float, float]:
    """The difference of two sets' listed-minus-held-out effects (a minus b), with a normal
    interval at `level` from one bootstrap over the accounts of both: an account drafted by
    each ranking in different periods moves with all its rows."""
    accounts = pd.Index(pd.concat([a["account_id"], b["account_id"]]).unique())
    sa, sb = (
        [_per_account(rows, accounts, arm, "expanded") for arm in COMPARED] for rows in (a, b)
    )
    rng = np.random.default_rng(seed)
    spread = []
    for start in range(0, reps, 100):
        w = rng.poisson(1.0, size=(min(100, reps - start), len(accounts))).astype("float64")
        spread.append(_effect_draws(sa, w) - _effect_draws(sb, w))
    estimate = float((_effect_draws(sa, None) - _effect_draws(sb, None))[0])
    values = np.concatenate(spread)
    values = values[np.isfinite(values)]
    half = st.two_sided_z(level) * float(values.std(ddof=1)) if len(values) > 1 else np.nan
    return estimate, estimate - half, estimate + half


def compare_rankings(
    measured: pd.DataFrame,
    rankings: tuple[str, str],
    fraction: float,
    level: float,
    planned: float,
    seed: int = 0,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Which of two interleaved rankings drafts the accounts a call changes more: per ranking,
    the effect of working the accounts it drafted (listed minus held out among them, with the
    fixed-horizon bootstrap interval and its always-valid confidence sequence), and the
    difference of the two, first minus second, with both kinds of interval
    (`difference_bootstrap`, `difference_sequence`). A ranking is said to be better only when
    the always-valid interval excludes zero. Returns the summary and the rows for
    `program.csv` (scope `ranking`)."""
    rows = measured[measured["arm"].isin(COMPARED)]
    drafted = rows["drafted_by"] if "drafted_by" in rows else pd.Series(None, index=rows.index)
    parts = {name: rows[(drafted == name).to_numpy()] for name in rankings}
    a, b = rankings
    table = [_row("ranking", name, part, seed, level) for name, part in parts.items()]
    out: dict[str, Any] = {"rankings": list(rankings), "level": level, "better": None}
    small = [r for r in table if r.get("note")]
    per: dict[str, Any] = {}
    for r in table:
        name = str(r["group"])
        per[name] = {"n_listed": r["n_listed"], "n_holdout": r["n_holdout"],
                     "effect": r.get("effect"), "effect_low": r.get("effect_low"),
                     "effect_high": r.get("effect_high"), "note": r.get("note", "")}  # fmt: skip
    out["per_ranking"] = per
    if small:
        out["says"] = (
            "cannot tell yet which ranking drafts the accounts a call changes more: "
            + "; ".join(f"{r['group']}: {r['note']}" for r in small)
        )
        return out, pd.DataFrame(table).reindex(columns=PROGRAM_COLUMNS)
    for name, part in parts.items():
        sequence = always_valid(part, fraction, level, planned)
        per[name]["always_valid"] = {k: sequence[k] for k in ("level", "low", "high")}
    estimate, low, high = difference_bootstrap(parts[a], parts[b], seed, level=level)
    sequence = difference_sequence(pd.concat(parts.values()), a, fraction, level, planned)
    av_low, av_high = sequence["low"], sequence["high"]
    table.append(
        {"scope": "ranking", "group": f"{a} - {b}",
         "n_listed": per[a]["n_listed"] + per[b]["n_listed"],
         "n_holdout": per[a]["n_holdout"] + per[b]["n_holdout"],
         "effect": estimate, "effect_low": low, "effect_high": high, "note": ""}
    )  # fmt: skip
    interval = (
        f"{100 * estimate:+.1f} points per drafted account (always-valid {level:.0%}"
        f" {100 * av_low:+.1f} to {100 * av_high:+.1f})"
    )
    if av_low > 0 or av_high < 0:
        better, worse = (a, b) if av_low > 0 else (b, a)
        out["better"] = better
        out["says"] = (
            f"{better} is shown better than {worse}: a call on the accounts it drafts changes"
            f" more, {a} minus {b} {interval}"
        )
    else:
        out["says"] = (
            f"cannot tell yet which ranking drafts the accounts a call changes more: {a} minus"
            f" {b} {interval}"
        )
    out.update(
        difference=estimate,
        difference_low=low,
        difference_high=high,
        always_valid_low=av_low,
        always_valid_high=av_high,
        always_valid_looks=sequence["looks"],
        method="per ranking, listed minus held out among the accounts it drafted; the"
        " difference's fixed-horizon interval from one bootstrap over accounts, its always-valid"
        " one the confidence sequence of the pseudo-outcomes weighted within each CSM's list by"
        " the share each ranking drafted",
    )
    return out, pd.DataFrame(table).reindex(columns=PROGRAM_COLUMNS)


def compare_plan(
    variance: float,
    fraction: float,
    difference: float,
    per_quarter: float,
    planned: float,
    level: float = 0.95,
    matured: int = 0,
) -> dict[str, Any]:
    """How many randomized assignments drafted by the two rankings (half each) tell them apart
    by `difference` in the effect per drafted account, with 80% power: at a fixed horizon (read
    once), and read week after week on the always-valid interval `expansion measure` decides
    by; and how many weeks that is at `per_quarter` drafted candidates a quarter."""
    spread = variance / (fraction * (1 - fraction))  # a pseudo-outcome's variance
    fixed = 4 * spread * st.z_total() ** 2 / difference**2
    # always-valid: the sequence of the weighted terms, each about twice a pseudo-outcome
    n = np.unique(np.round(np.geomspace(50, 1e9, 4000)))
    _, low, _ = st.confidence_sequence(n, np.zeros_like(n), n * 4 * spread, 1 - level, planned)
    enough = -low + st.z_power() * np.sqrt(4 * spread / n) <= difference
    always = float(n[np.argmax(enough)]) if enough.any() else float("inf")
    per_week = per_quarter / 13

    def weeks(total: float) -> float | None:
        left = max(total - matured, 0.0)
        return None if per_week <= 0 or not np.isfinite(left) else left / per_week

    w = weeks(always)
    says = (
        f"telling the rankings apart by {100 * difference:.1f} points per drafted account takes"
        f" about {always:,.0f} randomized assignments drafted by them on the always-valid"
        f" interval ({fixed:,.0f} read once at a fixed horizon)"
    )
    if w is not None:
        says += f": about {w:,.0f} more weeks at this book's {per_week:,.0f} candidates a week"
    return {
        "difference": difference,
        "variance": variance,
        "fraction": fraction,
        "fixed_horizon_assignments": fixed,
        "always_valid_assignments": always,
        "matured": matured,
        "candidates_per_week": per_week,
        "weeks": w,
        "says": says,
    }
