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
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from expansion_scorer.config import FeatureSet, ServingConfig
from expansion_scorer.data.loading import open_world
from expansion_scorer.data.sources import DataSource
from expansion_scorer.errors import UserError
from expansion_scorer.features.ledger import EXPANSION_KINDS, build_movements
from expansion_scorer.features.revenue import quarter_table
from expansion_scorer.features.snapshots import data_span
from expansion_scorer.outputs import bytes_writer, csv_writer, text_writer, write_outputs
from expansion_scorer.program.history import randomized_assignments
from expansion_scorer.program.holdout import COMPARED, HOLDOUT, LISTED, period_of
from expansion_scorer.program.outcomes import TOUCH_DAYS, outcomes

MIN_PER_ARM = 20
"""Fewer accounts than this in either arm: the group is reported as too small to say."""
BOOTSTRAP = 1000
PROGRAM_COLUMNS = [
    "scope", "group", "n_listed", "n_holdout", "rate_listed", "rate_holdout", "effect",
    "effect_low", "effect_high", "arr_listed", "arr_holdout", "arr_effect", "arr_effect_low",
    "arr_effect_high", "note",
]  # fmt: skip


def _per_account(rows: pd.DataFrame, accounts: pd.Index, arm: str, column: str) -> np.ndarray:
    """Per account (in `accounts` order), the count and the sum of `column` in one arm."""
    part = rows[rows["arm"] == arm]
    codes = accounts.get_indexer(pd.Index(part["account_id"]))
    n = np.bincount(codes, minlength=len(accounts)).astype("float64")
    total = np.bincount(codes, weights=part[column].to_numpy("float64"), minlength=len(accounts))
    return np.vstack([n, total])


Differences = dict[str, np.ndarray]
"""Per column, listed minus held-out mean: one value for the sample, or one per resample."""


def bootstrap(
    rows: pd.DataFrame,
    columns: list[str],
    statistics: dict[str, Callable[[Differences], np.ndarray]],
    seed: int = 0,
    reps: int = BOOTSTRAP,
) -> dict[str, tuple[float, float, float]]:
    """Each statistic of the arms' mean differences, with a 95% interval from a bootstrap that
    resamples accounts (Poisson weights, shared by every statistic), so that an account's rows
    move together."""
    accounts = pd.Index(rows["account_id"].unique())
    sums = {c: (_per_account(rows, accounts, LISTED, c), _per_account(rows, accounts, HOLDOUT, c))
            for c in columns}  # fmt: skip

    def differences(w: np.ndarray | None) -> Differences:
        out = {}
        with np.errstate(divide="ignore", invalid="ignore"):
            for c, ((ln, ls), (hn, hs)) in sums.items():
                if w is None:
                    out[c] = np.array([ls.sum() / ln.sum() - hs.sum() / hn.sum()])
                else:
                    out[c] = (w @ ls) / (w @ ln) - (w @ hs) / (w @ hn)
        return out

    def apply(d: Differences) -> dict[str, np.ndarray]:
        with np.errstate(divide="ignore", invalid="ignore"):
            return {name: f(d) for name, f in statistics.items()}

    rng = np.random.default_rng(seed)
    draws: dict[str, list[np.ndarray]] = {name: [] for name in statistics}
    for start in range(0, reps, 100):
        w = rng.poisson(1.0, size=(min(100, reps - start), len(accounts))).astype("float64")
        for name, values in apply(differences(w)).items():
            draws[name].append(values)
    point = apply(differences(None))
    out = {}
    for name in statistics:
        spread = np.concatenate(draws[name])
        spread = spread[np.isfinite(spread)]
        low, high = np.quantile(spread, [0.025, 0.975]) if len(spread) else (np.nan, np.nan)
        out[name] = (float(point[name][0]), float(low), float(high))
    return out


def bootstrap_effects(
    rows: pd.DataFrame, columns: list[str], seed: int = 0, reps: int = BOOTSTRAP
) -> dict[str, tuple[float, float, float]]:
    """Listed minus holdout mean of each column, with its 95% interval."""

    def mean_difference(column: str) -> Callable[[Differences], np.ndarray]:
        return lambda d: d[column]

    return bootstrap(rows, columns, {c: mean_difference(c) for c in columns}, seed, reps)


def _row(scope: str, group: str, rows: pd.DataFrame, seed: int) -> dict[str, Any]:
    listed, held = rows[rows["arm"] == LISTED], rows[rows["arm"] == HOLDOUT]
    row: dict[str, Any] = {"scope": scope, "group": group, "n_listed": len(listed),
                           "n_holdout": len(held)}  # fmt: skip
    if len(listed) < MIN_PER_ARM or len(held) < MIN_PER_ARM:
        row["note"] = (
            f"too few to say: {len(listed)} listed, {len(held)} held out"
            f" (needs {MIN_PER_ARM} in each)"
        )
        return row
    effects = bootstrap_effects(rows, ["expanded", "expansion_arr"], seed)
    rate, arr = effects["expanded"], effects["expansion_arr"]
    row.update(
        rate_listed=float(listed["expanded"].mean()),
        rate_holdout=float(held["expanded"].mean()),
        effect=rate[0], effect_low=rate[1], effect_high=rate[2],
        arr_listed=float(listed["expansion_arr"].mean()),
        arr_holdout=float(held["expansion_arr"].mean()),
        arr_effect=arr[0], arr_effect_low=arr[1], arr_effect_high=arr[2],
        note="",
    )  # fmt: skip
    return row


def program_table(measured: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Pooled, per cohort, and per band, motion and CSM where both arms are large enough."""
    rows = measured[measured["arm"].isin(COMPARED)]
    out = [_row("pooled", "all", rows, seed)]
    for cohort, part in rows.groupby("assigned_on", sort=True):
        out.append(_row("cohort", str(cohort), part, seed))
    for scope in ("period", "band", "motion", "csm_owner"):
        for key, part in rows.groupby(rows[scope].fillna("(none)").astype(str), sort=True):
            out.append(_row(scope, str(key), part, seed))
    return pd.DataFrame(out).reindex(columns=PROGRAM_COLUMNS)


def compliance(measured: pd.DataFrame, seed: int = 0) -> dict[str, Any]:
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
    point, low, high = bootstrap(rows, ["expanded", "touched"], complier, seed)["complier"]
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


@dataclass(frozen=True)
class MeasureResult:
    table: pd.DataFrame
    summary: dict[str, Any]
    files: list[Path]


def measure_job(
    data_dir: DataSource, out_root: Path, feature_set: FeatureSet, serving: ServingConfig
) -> MeasureResult:
    """Measure the program from the weekly history under `out_root`; write `measure/`."""
    history, randomized = randomized_assignments(
        out_root,
        "run `expansion score` into this folder every week with a holdout first",
        "score weekly with holdout.fraction above 0 (serving config) to build a control group",
    )
    measured, end, book_arr = outcomes(data_dir, feature_set, randomized)
    if measured.empty:
        first = min(pd.to_datetime(randomized["assigned_on"]).dt.date)
        raise UserError(
            f"{history}: no assignment's horizon has closed in the data yet (the data ends"
            f" {end}, the first cohort was drawn {first}); measure again later"
        )
    table = program_table(measured)
    pooled = table.iloc[0]
    n_listed = int(pooled["n_listed"])
    incremental = [float(pooled[c]) * n_listed for c in ("arr_effect", "arr_effect_low",
                                                          "arr_effect_high")]  # fmt: skip
    summary: dict[str, Any] = {
        "data_end": str(end),
        "cohorts_matured": int((table["scope"] == "cohort").sum()),
        "cohorts_pending": int(randomized["assigned_on"].nunique())
        - int((table["scope"] == "cohort").sum()),
        "holdout": serving.holdout.model_dump(mode="json"),
        "pooled": {k: (None if pd.isna(v) else v) for k, v in pooled.to_dict().items()},
        "incremental_expansion_arr": incremental[0] if pooled["note"] == "" else None,
        "incremental_expansion_arr_interval": incremental[1:] if pooled["note"] == "" else None,
        "book_arr_at_start": book_arr,
        "nrr_points": (100 * incremental[0] / book_arr)
        if book_arr and pooled["note"] == ""
        else None,
        "nrr_points_interval": [100 * v / book_arr for v in incremental[1:]]
        if book_arr and pooled["note"] == ""
        else None,
        "compliance": compliance(measured),
        "interval": f"95%, bootstrap over accounts ({BOOTSTRAP} resamples)",
        "health": health(data_dir, feature_set, history, measured, table, serving),
    }
    writers = {
        "program.csv": csv_writer(table),
        "program.json": text_writer(json.dumps(summary, indent=2, default=str) + "\n"),
        "program.png": bytes_writer(program_chart(table)),
    }
    files = write_outputs(Path(out_root) / "measure", writers)
    return MeasureResult(table=table, summary=summary, files=files)
