"""Benchmark: the feature pipeline against the same features written plainly in pandas.

The pandas side is what a notebook would do: load the tables whole, then for each snapshot date
filter the rows before it and group by account. It computes the usage, seat, subscription,
support and sentiment aggregates behind the feature definitions (the expansion history comes
from the DuckDB ledger on both sides, as it is not a per-snapshot computation), and the script
checks that both sides agree on every one of those columns before it reports the times.

    .venv/bin/python bench/features_pandas.py [--accounts 1200] [--months 24] [--snapshots 52]
        [--out DIR] [--smoke]
"""

from __future__ import annotations

from expansion_scorer.cli import share_cores_politely

share_cores_politely()  # before LightGBM loads: idle OpenMP threads sleep

import argparse
import statistics
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from expansion_scorer.config import FeatureSet, UsageWindow
from expansion_scorer.data.loading import open_world
from expansion_scorer.data.synthetic import generate_world
from expansion_scorer.features.catalogue import resolve_plans
from expansion_scorer.features.frame import feature_frame
from expansion_scorer.features.ledger import movements_sql
from expansion_scorer.settings import load_feature_set

import _args

AFFINITY = {"export_report": "Analytics", "schedule_task": "Automation", "api_call": "Integrations"}
PLAN_CAP = {"starter": 10, "team": 50, "business": 250}


def definitions(world_dir: Path) -> FeatureSet:
    """The shipped definitions with the catalogue both sides compute with: the world's plans by
    price, and the synthetic world's event -> product pairs named (a learned affinity is fitted
    at training, not by the feature pipeline, so unfitted it would compute no pairs)."""
    features = resolve_plans(open_world(world_dir), load_feature_set())
    return features.with_catalogue(affinity=AFFINITY) if features.affinity_learned else features


def duckdb_side(world_dir: Path, fs: FeatureSet, dates: list[date]) -> pd.DataFrame:
    return feature_frame(open_world(world_dir), fs, dates).features


def _window(events: pd.DataFrame, t: pd.Timestamp, w: UsageWindow) -> pd.Series:
    """One usage window per account, the way a notebook would: filter, then group."""
    end = t - pd.Timedelta(days=w.offset)
    seen = events[(events["day"] >= end - pd.Timedelta(days=w.days)) & (events["day"] < end)]
    if w.event is not None:
        seen = seen[seen["event"].isin(w.event)]
    if w.stat == "slope":  # a straight line through the daily values, per week
        if w.measure == "user_days":
            seen = seen.drop_duplicates(["account_id", "user_id", "day"])
        daily = seen.groupby(["account_id", "day"])["quantity" if w.measure == "sum" else "day"]
        value = daily.sum() if w.measure == "sum" else daily.size()
        if w.measure == "days":
            value = value.clip(upper=1)
        x = (value.index.get_level_values("day") - end).days + (w.days + 1) / 2
        centred = (value * x).groupby(level="account_id").sum()
        return 7 * centred / (w.days * (w.days**2 - 1) / 12)
    by = seen.groupby("account_id")
    if w.measure == "sum":
        return by["quantity"].sum()
    if w.measure == "count":
        return by.size()
    if w.measure == "users":
        return by["user_id"].nunique()
    if w.measure == "events":
        return by["event"].nunique()
    if w.measure == "days":
        return by["day"].nunique()
    return seen.drop_duplicates(["account_id", "user_id", "day"]).groupby("account_id").size()


def _ratio(a: pd.Series, b: pd.Series, minus: float = 0.0) -> np.ndarray:
    return np.where(b > 0, a / b.where(b > 0) - minus, np.nan)


def pandas_side(
    world_dir: Path, fs: FeatureSet, dates: list[date], movements: pd.DataFrame
) -> pd.DataFrame:
    """Plain pandas, one snapshot date at a time: every feature of the definitions, by hand."""
    accounts = pd.read_parquet(world_dir / "accounts.parquet")
    subs = pd.read_parquet(world_dir / "subscriptions.parquet")
    events = pd.read_parquet(world_dir / "usage_events.parquet")
    tickets = pd.read_parquet(world_dir / "support_tickets.parquet")
    nps = pd.read_parquet(world_dir / "nps_responses.parquet")
    for frame, col in ((accounts, "created_at"), (subs, "start_date"), (subs, "end_date")):
        frame[col] = pd.to_datetime(frame[col])
    events["day"] = pd.to_datetime(events["timestamp"]).dt.normalize()
    tickets["created_at"] = pd.to_datetime(tickets["created_at"])
    nps["responded_at"] = pd.to_datetime(nps["responded_at"])
    movements["day"] = pd.to_datetime(movements["day"])
    rank = {plan: i for i, plan in enumerate(fs.plan_order)}
    subs["rank"] = subs["plan"].map(rank)
    affinity = fs.affinity_pairs
    tracked = sorted({*affinity, *(e for lim in fs.plan_limits.values() for e in lim)})
    first_used = events.groupby("event")["day"].min()  # the catalogue, with `events: auto`
    limits = pd.DataFrame(
        [(p, e, m) for p, lim in fs.plan_limits.items() for e, m in lim.items()],
        columns=["plan", "event", "monthly"],
    )
    day = pd.Timedelta(days=1)
    out = []
    for as_of in dates:
        t = pd.Timestamp(as_of)

        def open_on(d: pd.Timestamp) -> pd.DataFrame:
            return subs[
                (subs["start_date"] <= d) & (subs["end_date"].isna() | (subs["end_date"] > d))
            ]

        live = open_on(t - day)
        arr = live.groupby("account_id")["arr"].sum()
        eligible = accounts[(accounts["created_at"] < t)].set_index("account_id")
        eligible = eligible[eligible.index.isin(arr[arr > 0].index)]
        idx = eligible.index
        b = pd.DataFrame(index=idx)  # the base columns
        b["arr_now"] = arr
        b["arr_90d_ago"] = open_on(t - 91 * day).groupby("account_id")["arr"].sum()
        b["arr_365d_ago"] = open_on(t - 366 * day).groupby("account_id")["arr"].sum()
        b["seats"] = live.groupby("account_id")["seats"].sum().reindex(idx).fillna(0)
        b["seats_90d_ago"] = open_on(t - 91 * day).groupby("account_id")["seats"].sum()
        b["products_owned"] = live.groupby("account_id")["product"].nunique()
        top_plan = live.dropna(subset=["rank"]).sort_values("rank").groupby("account_id").last()
        b["plan"] = top_plan["plan"]
        for name, w in fs.usage_windows.items():
            b[name] = _window(events, t, w).reindex(idx).fillna(0)
        # per tracked event: 28 days and the 28 before; kept where the 56 days saw any use
        recent = events[(events["day"] >= t - 56 * day) & (events["day"] < t)
                        & events["event"].isin(tracked)]  # fmt: skip
        recent = recent.assign(last=recent["day"] >= t - 28 * day)
        per = (
            recent.groupby(["account_id", "event", "last"])["quantity"].sum().unstack(fill_value=0)
        )
        per = per.reindex(columns=[False, True], fill_value=0)
        per.columns = ["q_prev", "q"]
        per = per[per["q"] + per["q_prev"] > 0].reset_index()
        fit = per[per["event"].isin(list(affinity))].assign(
            product=lambda f: f["event"].map(affinity)
        )
        owned = set(zip(live["account_id"], live["product"], strict=True))
        unowned = [
            (a, p) not in owned for a, p in zip(fit["account_id"], fit["product"], strict=True)
        ]
        fit = fit[np.array(unowned, dtype=bool)]  # an empty list would select no columns
        fit_sum = fit.groupby("account_id")[["q", "q_prev"]].sum()
        b["unowned_fit_events_28d"] = fit_sum["q"].reindex(idx).fillna(0)
        b["unowned_fit_events_prev_28d"] = fit_sum["q_prev"].reindex(idx).fillna(0)
        top = fit.sort_values(["q", "event"], ascending=[False, True]).groupby("account_id").first()
        b["top_unowned_fit"] = top["product"]
        b["top_unowned_fit_event"] = top["event"]
        use = per.merge(b["plan"].reset_index(), on="account_id").merge(
            limits, on=["plan", "event"]
        )
        use["share"] = use["q"] * 30.0 / 28 / use["monthly"]
        b["plan_limit_use"] = use.groupby("account_id")["share"].max().reindex(idx).fillna(0)
        first_start = subs[subs["start_date"] < t].groupby("account_id")["start_date"].min()
        first_start = first_start.reindex(idx)
        years = t.year - first_start.dt.year
        this_year = pd.Series(
            [s + pd.DateOffset(years=int(y)) for s, y in zip(first_start, years, strict=True)],
            index=idx,
        )
        next_year = pd.Series(
            [s + pd.DateOffset(years=int(y) + 1) for s, y in zip(first_start, years, strict=True)],
            index=idx,
        )
        renewal = this_year.where(this_year >= t, next_year)
        past = movements[movements["day"] < t]
        grown = past[past["kind"].isin(["seats", "plan", "cross_sell"]) & (past["arr_delta"] > 0)]
        grown_days = grown.drop_duplicates(["account_id", "day"])
        shrunk = past[(past["kind"] == "contraction") & (past["day"] >= t - 365 * day)]
        past90 = tickets[(tickets["created_at"] >= t - 90 * day) & (tickets["created_at"] < t)]
        urgent = past90[past90["priority"].str.lower() == "urgent"]
        answered = nps[nps["responded_at"] < t].sort_values(
            ["account_id", "responded_at", "score"], ascending=[True, False, True]
        )
        ranked = answered.groupby("account_id")["score"]

        f = pd.DataFrame(index=idx)
        f["as_of"] = as_of
        f["arr_now"] = b["arr_now"]
        f["arr_growth_90d"] = _ratio(b["arr_now"], b["arr_90d_ago"], 1)
        f["arr_growth_365d"] = _ratio(b["arr_now"], b["arr_365d_ago"], 1)
        f["seats"] = b["seats"]
        f["active_users_28d"] = b["active_users_28d"]
        f["active_users_7d"] = b["active_users_7d"]
        f["active_users_90d"] = b["active_users_90d"]
        f["seat_utilisation_90d"] = _ratio(b["active_users_90d"], b["seats"])
        f["invites_per_seat_90d"] = _ratio(b["invites_90d"], b["seats"])
        f["users_beyond_seats"] = (b["active_users_28d"] - b["seats"]).clip(lower=0)
        f["seat_utilisation"] = _ratio(b["active_users_28d"], b["seats"])
        f["seat_utilisation_90d_ago"] = _ratio(b["active_users_28d_90d_ago"], b["seats_90d_ago"])
        f["active_users_change_28d"] = _ratio(b["active_users_28d"], b["active_users_prev_28d"], 1)
        f["events_per_user_28d"] = _ratio(b["events_28d"], b["active_users_28d"])
        catalogue = (first_used < t).sum() if fs.events_auto else len(fs.catalogue_events)
        f["catalogue_share_28d"] = b["events_used_28d"] / catalogue if catalogue else np.nan
        f["key_feature_adoption_28d"] = _ratio(b["key_feature_users_28d"], b["active_users_28d"])
        f["active_days_per_user_28d"] = _ratio(b["user_days_28d"], b["active_users_28d"])
        f["events_change_28d"] = _ratio(b["events_28d"], b["events_prev_28d"], 1)
        f["active_users_trend_13w"] = _ratio(b["daily_users_slope_13w"], b["user_days_13w"] / 91)
        f["events_trend_13w"] = _ratio(b["events_slope_13w"], b["events_13w"] / 91)
        f["invites_28d"] = b["invites_28d"]
        f["invites_per_seat_28d"] = _ratio(b["invites_28d"], b["seats"])
        f["active_users_change_90d"] = _ratio(
            b["active_users_28d"], b["active_users_28d_90d_ago"], 1
        )
        f["plan_seat_fill"] = b["seats"] / b["plan"].map(PLAN_CAP)
        for feature, product, rows in (
            ("analytics_need_90d", "Analytics", "export_rows_90d"),
            ("automation_need_90d", "Automation", "schedule_rows_90d"),
            ("integrations_need_90d", "Integrations", "api_rows_90d"),
        ):
            has = live[live["product"] == product]["account_id"].unique()
            rate = _ratio(b[rows], b["user_days_90d"])
            f[feature] = np.where(idx.isin(has), np.nan, rate)
        f["unowned_fit_per_user_28d"] = _ratio(b["unowned_fit_events_28d"], b["active_users_28d"])
        f["plan"] = b["plan"]
        f["plan_limit_use"] = b["plan_limit_use"]
        f["products_owned"] = b["products_owned"]
        f["unowned_fit_events_28d"] = b["unowned_fit_events_28d"]
        f["unowned_fit_change_28d"] = _ratio(
            b["unowned_fit_events_28d"], b["unowned_fit_events_prev_28d"], 1
        )
        f["top_unowned_fit"] = b["top_unowned_fit"]
        f["top_unowned_fit_event"] = b["top_unowned_fit_event"]
        f["tenure_days"] = (t - eligible["created_at"]).dt.days
        f["days_to_renewal"] = (renewal - t).dt.days
        f["expansions_365d"] = (
            grown_days[grown_days["day"] >= t - 365 * day].groupby("account_id").size()
        ).reindex(idx).fillna(0)  # fmt: skip
        f["days_since_expansion"] = (t - grown.groupby("account_id")["day"].max()).dt.days
        f["contractions_365d"] = (
            shrunk.groupby("account_id")["day"].nunique().reindex(idx).fillna(0)
        )
        f["tickets_90d"] = past90.groupby("account_id").size().reindex(idx).fillna(0)
        f["urgent_tickets_90d"] = urgent.groupby("account_id").size().reindex(idx).fillna(0)
        f["urgent_tickets_30d"] = (
            urgent[urgent["created_at"] >= t - 30 * day].groupby("account_id").size()
        ).reindex(idx).fillna(0)  # fmt: skip
        f["nps_last"] = ranked.nth(0).set_axis(answered.loc[ranked.nth(0).index, "account_id"])
        second = ranked.nth(1)
        f["nps_change"] = f["nps_last"] - second.set_axis(answered.loc[second.index, "account_id"])
        f["employee_count"] = eligible["employee_count"]
        f["industry"] = eligible["industry"]
        f["segment"] = eligible["segment"]
        f["month_of_year"] = t.month
        out.append(f.reset_index())
    return pd.concat(out, ignore_index=True).sort_values(["as_of", "account_id"])


def _ledger(world_dir: Path, fs: FeatureSet) -> pd.DataFrame:
    world = open_world(world_dir)
    movements = movements_sql(fs)
    return world.con.execute(f"SELECT account_id, day, kind, arr_delta FROM ({movements})").df()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=1200)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--snapshots", type=int, default=52)
    parser.add_argument("--repeats", type=int, default=3)
    smoke = {"accounts": 40, "months": 12, "snapshots": 3, "repeats": 1}
    args = _args.parse(parser, "features_pandas", smoke)
    world_dir = args.out / f"world-{args.accounts}-{args.months}"
    if not (world_dir / "truth.parquet").exists():
        generate_world(world_dir, n_accounts=args.accounts, seed=3, months=args.months)
    events = len(pd.read_parquet(world_dir / "usage_events.parquet", columns=["event"]))
    # weekly snapshots (Mondays) ending a quarter before the data does, as in features_scale
    last = date(2023, 1, 1) + timedelta(days=30 * args.months - 90)
    last -= timedelta(days=last.weekday())
    dates = [last - timedelta(weeks=i) for i in range(args.snapshots)][::-1]

    # The movement ledger is shared: it is not a per-snapshot computation, so pandas gets it
    # ready made, outside its timing.
    fs = definitions(world_dir)
    movements = _ledger(world_dir, fs)
    sides = {
        "duckdb": lambda: duckdb_side(world_dir, fs, dates),
        "pandas": lambda: pandas_side(world_dir, fs, dates, movements.copy()),
    }
    times: dict[str, list[float]] = {"duckdb": [], "pandas": []}
    frames = {}
    for _ in range(args.repeats):
        for name, side in sides.items():
            started = time.perf_counter()
            frames[name] = side()
            times[name].append(time.perf_counter() - started)

    features = fs.features
    ours = frames["duckdb"].set_index(["as_of", "account_id"])
    theirs = frames["pandas"].set_index(["as_of", "account_id"]).reindex(ours.index)
    assert len(frames["pandas"]) == len(ours), "the two sides chose different accounts"
    for f in features:
        if f.kind == "categorical":
            a, b = ours[f.name].astype("string"), theirs[f.name].astype("string")
            assert a.fillna("<NA>").equals(b.fillna("<NA>")), f.name
        else:
            a, b = ours[f.name].astype("float64"), theirs[f.name].astype("float64")
            pd.testing.assert_series_equal(a, b, rtol=1e-9, check_names=False, obj=f.name)

    d, p = statistics.median(times["duckdb"]), statistics.median(times["pandas"])
    print(f"{events:,} usage events, {args.accounts:,} accounts, {len(dates)} weekly snapshots,"
          f" {len(ours):,} rows; all {len(features)} features agree (numbers to 1e-9)")  # fmt: skip
    print(
        f"  DuckDB feature pipeline: {d:.1f} s (median of {args.repeats}: {_show(times['duckdb'])})"
    )
    print(
        f"  plain pandas:            {p:.1f} s (median of {args.repeats}: {_show(times['pandas'])})"
    )
    print(f"  ratio: {p / d:.1f}x in DuckDB's favour (target 10x)")


def _show(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


if __name__ == "__main__":
    main()
