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
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from expansion_scorer.config import FeatureSet
from expansion_scorer.data.synthetic import ProgramWorld
from expansion_scorer.program.history import HISTORY_FILE, read_assignments
from expansion_scorer.program.holdout import BACKFILL, COMPARED, LISTED, draws
from expansion_scorer.program.outcomes import outcomes

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
