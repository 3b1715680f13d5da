"""An expansion program run on a simulated world, with the truth to check measurement by.

`run_program` is the real loop, a week at a time: the scorer runs (with its holdout), CSMs touch
the accounts they were shown (listed and backfilled), each with probability `compliance`, on one
of the five days after the account was first assigned, and the world (`ProgramWorld`) advances
to the next week with those touches, which change what its accounts do from the next month on
(`data.synthetic._touch_effect`: more for accounts that have seen value, less for those short of
seats anyway, negative when it comes too early). Held-out accounts are never touched, but whether
they would have been, and when, is drawn the same way.

The truth is known per account because the world keeps each account's draws apart: the same
world replayed with the held-out accounts touched as they would have been, and the listed ones
left alone, gives every compared account's outcome in the arm it was not in.
`program_truth.parquet` holds, per randomized assignment, whether the account expands without
the program (`expanded_without`), with it (`expanded_with`), and so the true intent-to-treat
effect of the program on the accounts the holdout drew from.

`respond` is the earlier, after-the-fact response (expansions added to a finished world); it goes
once its last users move to `run_program`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from expansion_scorer.config import FeatureSet
from expansion_scorer.data.synthetic import ProgramWorld
from expansion_scorer.serving.history import HISTORY_FILE, read_assignments
from expansion_scorer.serving.holdout import BACKFILL, COMPARED, LISTED, draws
from expansion_scorer.serving.measure import outcomes

TRUTH_FILE = "program_truth.parquet"
TOUCH_DAYS = 5


def _would_touch(assigned: pd.DataFrame, compliance: float, seed: int) -> pd.DataFrame:
    """Whether and when each assignment's CSM would touch the account: drawn from the seed, the
    period and the account, so the same in every replay and whatever the arm."""
    ids = assigned["account_id"].astype(str)
    touched = np.zeros(len(assigned), dtype=bool)
    day = np.zeros(len(assigned), dtype=np.int64)
    for period in assigned["period"].unique():
        rows = (assigned["period"] == period).to_numpy()
        touched[rows] = draws(ids[rows], f"touch-{seed}", str(period)) < compliance
        day[rows] = np.floor(draws(ids[rows], f"day-{seed}", str(period)) * TOUCH_DAYS)
    when = pd.to_datetime(assigned["assigned_on"]) + pd.to_timedelta(day, unit="D")
    return pd.DataFrame(
        {
            "account_id": ids.to_numpy(),
            "touched_at": (when + pd.Timedelta(hours=10)).to_numpy(),
            "csm": assigned["csm_owner"].to_numpy(),
            "motion": assigned["motion"].to_numpy(),
            "channel": "call",
            "arm": assigned["arm"].to_numpy(),
        }
    )[touched]


def run_program(
    world: ProgramWorld,
    weeks: Sequence[date],
    score: Callable[[date], None],
    out_root: Path,
    feature_set: FeatureSet,
    compliance: float = 0.7,
    seed: int = 0,
) -> pd.DataFrame:
    """Score each week (`score(as_of)` writes into `out_root`), touch, advance the world; then
    run it to its end and write and return the truth per randomized assignment."""
    history = Path(out_root) / HISTORY_FILE
    touches = None
    would_be = []
    for week in weeks:
        world.advance(week, touches)
        score(week)
        new = read_assignments(history)
        new = new[pd.to_datetime(new["assigned_on"]).dt.date == week]
        new = new[new["arm"].isin([*COMPARED, BACKFILL])]
        drawn = _would_touch(new.reset_index(drop=True), compliance, seed)
        shown = drawn["arm"].isin([LISTED, BACKFILL])
        touches = drawn[shown].drop(columns="arm")
        would_be.append(drawn[~shown].drop(columns="arm"))
    world.advance(world.end, touches)

    compared = read_assignments(history)
    compared = compared[compared["arm"].isin(COMPARED)].reset_index(drop=True)
    flipped = world.replay(Path(world.out).with_name(world.out.name + "-flipped"),
                           pd.concat(would_be, ignore_index=True))  # fmt: skip
    keys = ["account_id", "assigned_on"]
    seen, _, _ = outcomes(world.out, feature_set, compared)
    other, _, _ = outcomes(flipped.out, feature_set, compared)
    shutil.rmtree(flipped.out)
    truth = seen[[*keys, "period", "arm", "expanded"]].merge(
        other[[*keys, "expanded"]].rename(columns={"expanded": "other"}), on=keys
    )
    listed = (truth["arm"] == LISTED).to_numpy()
    truth["expanded_with"] = np.where(listed, truth["expanded"], truth["other"])
    truth["expanded_without"] = np.where(listed, truth["other"], truth["expanded"])
    truth = truth.drop(columns=["expanded", "other"])
    truth["effect"] = truth["expanded_with"] - truth["expanded_without"]
    truth.to_parquet(world.out / TRUTH_FILE, index=False)
    return truth


def _utilisation(history: Path) -> pd.DataFrame:
    con = duckdb.connect(str(history), read_only=True)
    try:
        return con.execute(
            "SELECT as_of AS assigned_on, account_id, value AS utilisation FROM features"
            " WHERE feature = 'seat_utilisation'"
        ).df()
    finally:
        con.close()


def respond(
    world_dir: Path,
    out_root: Path,
    dst: Path,
    feature_set: FeatureSet,
    compliance: float = 0.7,
    effect: float = 0.5,
    value_seen: float = 0.7,
    seed: int = 0,
) -> pd.DataFrame:
    """Copy `world_dir` to `dst` with the program's touches and the expansions they cause; write
    and return the truth per randomized assignment."""
    history = Path(out_root) / HISTORY_FILE
    assigned = read_assignments(history)
    assigned = assigned[assigned["arm"].isin([*COMPARED, BACKFILL])].reset_index(drop=True)
    assigned["assigned_on"] = pd.to_datetime(assigned["assigned_on"]).dt.date
    use = _utilisation(history)
    use["assigned_on"] = pd.to_datetime(use["assigned_on"]).dt.date
    assigned = assigned.merge(use, on=["assigned_on", "account_id"], how="left")

    rng = np.random.default_rng([seed, 0x70726F67])  # its own stream: "prog"
    n = len(assigned)
    would_touch = rng.random(n) < compliance
    touch_day = rng.integers(0, 5, n)
    seen = assigned["utilisation"].fillna(0).to_numpy() >= value_seen
    responds = rng.random(n) < np.where(seen, effect, effect / 5)
    lag = rng.random(n)
    shown = assigned["arm"].isin([LISTED, BACKFILL]).to_numpy()
    touched = would_touch & shown

    shutil.copytree(world_dir, dst)
    touches = pd.DataFrame(
        {
            "account_id": assigned.loc[touched, "account_id"].to_numpy(),
            "touched_at": [
                pd.Timestamp(d + timedelta(days=int(k))) + pd.Timedelta(hours=10)
                for d, k in zip(
                    assigned.loc[touched, "assigned_on"], touch_day[touched], strict=True
                )
            ],
            "csm": assigned.loc[touched, "csm_owner"].to_numpy(),
            "motion": assigned.loc[touched, "motion"].to_numpy(),
            "channel": "call",
        }
    )
    touches.to_parquet(dst / "touches.parquet", index=False)

    subs = pd.read_parquet(dst / "subscriptions.parquet")
    grown = touched & responds
    added = []
    for i in np.flatnonzero(grown):
        row = assigned.iloc[i]
        start = row["assigned_on"] + timedelta(days=int(touch_day[i]) + 1)
        day = start + timedelta(days=int(lag[i] * max(1, int(row["horizon_days"]) // 2 - 6)))
        added.append(_more_seats(subs, str(row["account_id"]), day))
    extra = pd.DataFrame([a for a in added if a is not None])
    if len(extra):
        subs = pd.concat([subs, extra.astype(subs.dtypes.to_dict())], ignore_index=True)
    subs.to_parquet(dst / "subscriptions.parquet", index=False)

    compared = assigned[assigned["arm"].isin(COMPARED)]
    without, _, _ = outcomes(Path(world_dir), feature_set, compared)
    keys = ["account_id", "assigned_on"]
    truth = compared[[*keys, "period", "arm"]].merge(
        without[[*keys, "expanded"]].rename(columns={"expanded": "expanded_without"}),
        on=keys,
        how="inner",
    )
    index = compared.reset_index()[[*keys, "index"]]
    truth = truth.merge(index, on=keys)
    caused = would_touch & responds
    truth["expanded_with"] = truth["expanded_without"].to_numpy() | caused[truth["index"]]
    truth["effect"] = truth["expanded_with"].astype(int) - truth["expanded_without"]
    truth = truth.drop(columns="index")
    truth.to_parquet(dst / TRUTH_FILE, index=False)
    return truth


def _more_seats(subs: pd.DataFrame, account: str, day: date) -> dict[str, object] | None:
    """A subscription row adding a tenth of the seats (at least one) of the account's largest
    product held on `day`, priced per seat as that product, ending when it ends."""
    start = pd.to_datetime(subs["start_date"]).dt.date
    end = pd.to_datetime(subs["end_date"]).dt.date
    held = subs[
        (subs["account_id"] == account)
        & (start <= day)
        & (end.isna() | (end > day))
        & (subs["seats"].fillna(0) > 0)
    ]
    if held.empty:
        return None
    top = held.sort_values("arr", ascending=False).iloc[0]
    seats = max(1.0, round(float(top["seats"]) * 0.1))
    return {
        **{str(k): v for k, v in top.to_dict().items()},
        "seats": seats,
        "arr": float(top["arr"]) / float(top["seats"]) * seats,
        "start_date": pd.Timestamp(day),
        "end_date": top["end_date"],
    }
