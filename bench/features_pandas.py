"""Benchmark: the feature pipeline against the same features written plainly in pandas.

The pandas side is what a notebook would do: load the tables whole, then for each snapshot date
filter the rows before it and group by account. It computes the usage, seat, subscription,
support and sentiment aggregates behind the feature definitions (the expansion history comes
from the DuckDB ledger on both sides, as it is not a per-snapshot computation), and the script
checks that both sides agree on every one of those columns before it reports the times.

    .venv/bin/python bench/features_pandas.py [--accounts 1200] [--months 24] [--snapshots 52]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from expansion_scorer.config import load_feature_set
from expansion_scorer.data.loading import open_world
from expansion_scorer.data.synthetic import generate_world
from expansion_scorer.features.build import build_features
from expansion_scorer.features.ledger import build_expansions
from expansion_scorer.features.snapshots import build_entities

OUT = Path(__file__).parent / "out" / "features_pandas"
COMPARED = [
    "arr_now", "seats", "active_users_28d", "seat_utilisation", "active_users_change_28d",
    "events_per_user_28d", "events_change_28d", "invites_28d", "products_owned",
    "unowned_fit_events_28d", "tickets_90d", "urgent_tickets_90d", "urgent_tickets_30d",
    "nps_last", "tenure_days",
]  # fmt: skip


def duckdb_side(world_dir: Path, dates: list[date]) -> pd.DataFrame:
    world = open_world(world_dir)
    build_entities(world.con, dates)
    build_expansions(world.con, load_feature_set())
    return build_features(world.con, load_feature_set(), True, True)


def pandas_side(world_dir: Path, dates: list[date]) -> pd.DataFrame:
    """Plain pandas, one snapshot date at a time."""
    accounts = pd.read_parquet(world_dir / "accounts.parquet")
    subs = pd.read_parquet(world_dir / "subscriptions.parquet")
    events = pd.read_parquet(world_dir / "usage_events.parquet")
    tickets = pd.read_parquet(world_dir / "support_tickets.parquet")
    nps = pd.read_parquet(world_dir / "nps_responses.parquet")
    affinity = load_feature_set().affinity
    for frame, col in ((accounts, "created_at"), (subs, "start_date"), (subs, "end_date")):
        frame[col] = pd.to_datetime(frame[col])
    events["day"] = pd.to_datetime(events["timestamp"]).dt.normalize()
    tickets["created_at"] = pd.to_datetime(tickets["created_at"])
    nps["responded_at"] = pd.to_datetime(nps["responded_at"])
    out = []
    for as_of in dates:
        t = pd.Timestamp(as_of)
        day_before = t - pd.Timedelta(days=1)
        live = subs[(subs["start_date"] <= day_before)
                    & (subs["end_date"].isna() | (subs["end_date"] > day_before))]  # fmt: skip
        arr = live.groupby("account_id")["arr"].sum()
        eligible = accounts[(accounts["created_at"] < t)].set_index("account_id")
        eligible = eligible[eligible.index.isin(arr[arr > 0].index)]
        snap = pd.DataFrame(index=eligible.index)
        snap["as_of"] = as_of
        snap["arr_now"] = arr
        snap["seats"] = live.groupby("account_id")["seats"].sum().reindex(snap.index).fillna(0)
        snap["products_owned"] = live.groupby("account_id")["product"].nunique()
        recent = events[(events["day"] >= t - pd.Timedelta(days=56)) & (events["day"] < t)]
        last28 = recent[recent["day"] >= t - pd.Timedelta(days=28)]
        prev28 = recent[recent["day"] < t - pd.Timedelta(days=28)]
        users = last28.groupby("account_id")["user_id"].nunique()
        users_prev = prev28.groupby("account_id")["user_id"].nunique()
        snap["active_users_28d"] = users.reindex(snap.index).fillna(0)
        ev = last28.groupby("account_id")["quantity"].sum().reindex(snap.index).fillna(0)
        ev_prev = prev28.groupby("account_id")["quantity"].sum().reindex(snap.index).fillna(0)
        seats = snap["seats"]
        snap["seat_utilisation"] = np.where(seats > 0, snap["active_users_28d"] / seats, np.nan)
        up = users_prev.reindex(snap.index).fillna(0)
        snap["active_users_change_28d"] = np.where(
            up > 0, snap["active_users_28d"] / up - 1, np.nan
        )
        snap["events_per_user_28d"] = np.where(snap["active_users_28d"] > 0,
                                               ev / snap["active_users_28d"], np.nan)  # fmt: skip
        snap["events_change_28d"] = np.where(ev_prev > 0, ev / ev_prev - 1, np.nan)
        invites = last28[last28["event"] == "invite_user"].groupby("account_id")["quantity"].sum()
        snap["invites_28d"] = invites.reindex(snap.index).fillna(0)
        fit = last28[last28["event"].isin(list(affinity))].copy()
        fit["product"] = fit["event"].map(affinity)
        owned = set(zip(live["account_id"], live["product"], strict=True))
        fit = fit[
            [(a, p) not in owned for a, p in zip(fit["account_id"], fit["product"], strict=True)]
        ]
        snap["unowned_fit_events_28d"] = (
            fit.groupby("account_id")["quantity"].sum().reindex(snap.index).fillna(0)
        )
        past90 = tickets[(tickets["created_at"] >= t - pd.Timedelta(days=90))
                         & (tickets["created_at"] < t)]  # fmt: skip
        urgent = past90[past90["priority"].str.lower() == "urgent"]
        snap["tickets_90d"] = past90.groupby("account_id").size().reindex(snap.index).fillna(0)
        snap["urgent_tickets_90d"] = (
            urgent.groupby("account_id").size().reindex(snap.index).fillna(0)
        )
        urgent30 = urgent[urgent["created_at"] >= t - pd.Timedelta(days=30)]
        snap["urgent_tickets_30d"] = (
            urgent30.groupby("account_id").size().reindex(snap.index).fillna(0)
        )
        answered = nps[nps["responded_at"] < t].sort_values(["responded_at", "score"])
        snap["nps_last"] = answered.groupby("account_id")["score"].last()
        snap["tenure_days"] = (t - eligible["created_at"]).dt.days
        out.append(snap.reset_index())
    return pd.concat(out, ignore_index=True).sort_values(["as_of", "account_id"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=1200)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--snapshots", type=int, default=52)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    world_dir = OUT / f"world-{args.accounts}-{args.months}"
    if not (world_dir / "truth.parquet").exists():
        generate_world(world_dir, n_accounts=args.accounts, seed=3, months=args.months)
    events = len(pd.read_parquet(world_dir / "usage_events.parquet", columns=["event"]))
    # weekly snapshots (Mondays) ending a quarter before the data does, as in features_scale
    last = date(2023, 1, 1) + timedelta(days=30 * args.months - 90)
    last -= timedelta(days=last.weekday())
    dates = [last - timedelta(weeks=i) for i in range(args.snapshots)][::-1]

    times: dict[str, list[float]] = {"duckdb": [], "pandas": []}
    frames = {}
    for _ in range(args.repeats):
        for name, side in (("duckdb", duckdb_side), ("pandas", pandas_side)):
            started = time.perf_counter()
            frames[name] = side(world_dir, dates)
            times[name].append(time.perf_counter() - started)

    ours = frames["duckdb"].set_index(["as_of", "account_id"])[COMPARED].astype("float64")
    theirs = frames["pandas"].set_index(["as_of", "account_id"])[COMPARED].astype("float64")
    theirs = theirs.reindex(ours.index)
    pd.testing.assert_frame_equal(ours, theirs, check_exact=False, rtol=1e-9, check_names=False)

    d, p = statistics.median(times["duckdb"]), statistics.median(times["pandas"])
    print(f"{events:,} usage events, {args.accounts:,} accounts, {len(dates)} weekly snapshots,"
          f" {len(ours):,} rows; {len(COMPARED)} feature columns agree to 1e-9")  # fmt: skip
    n_all = frames["duckdb"].shape[1] - 2
    print(f"  DuckDB feature pipeline, all {n_all} features: {d:.1f} s (median of {args.repeats})")
    print(f"  plain pandas, the compared columns only:  {p:.1f} s")
    print(f"  ratio: {p / d:.1f}x in DuckDB's favour (target 10x)")


if __name__ == "__main__":
    main()
