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
the program (`expanded_without`), with it (`expanded_with`), and so the realised effect of the
program on the accounts the holdout drew from (`effect`, in {-1, 0, 1}); and the world's true
chances behind those draws, with a touch and without this assignment's (`p_touched`,
`p_untouched`, the latter kept from the replay before it is deleted) and the true expected
effect of a touch (`true_effect`), which ranks and scores targeting without coin flips.
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
WORLD_TRUTH = "truth.parquet"
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
    chances = true_chances(compared, world.out / WORLD_TRUTH, flipped.out / WORLD_TRUTH)
    shutil.rmtree(flipped.out)
    truth = seen[[*keys, "period", "arm", "expanded"]].merge(
        other[[*keys, "expanded"]].rename(columns={"expanded": "other"}), on=keys
    )
    listed = (truth["arm"] == LISTED).to_numpy()
    truth["expanded_with"] = np.where(listed, truth["expanded"], truth["other"])
    truth["expanded_without"] = np.where(listed, truth["other"], truth["expanded"])
    truth = truth.drop(columns=["expanded", "other"])
    truth["effect"] = truth["expanded_with"] - truth["expanded_without"]
    day = pd.to_datetime(truth["assigned_on"]).dt.date
    chances["assigned_on"] = pd.to_datetime(chances["assigned_on"]).dt.date
    truth = (
        truth.assign(day=day, account_id=truth["account_id"].astype(str))
        .merge(chances.rename(columns={"assigned_on": "day"}), on=["account_id", "day"], how="left")
        .drop(columns="day")
    )
    truth["true_effect"] = truth["true_effect"].fillna(0.0)
    truth.to_parquet(world.out / TRUTH_FILE, index=False)
    return truth


def true_chances(compared: pd.DataFrame, seen: Path, flipped: Path) -> pd.DataFrame:
    """Per compared assignment, the world's true chance to expand within the horizon from the
    first month start after the draw (a touch changes the months after its own) with a touch
    just before it (`p_touched`) and without this assignment's touch (`p_untouched`), and their
    difference, the true expected effect of a touch (`true_effect`).

    `p_touched` is the world's own. Without the touch: a held-out account was not touched in
    the world as it happened, so its `p_expand` there; a listed account was not touched in the
    flipped replay, so its `p_expand` there (in the world as it happened, a touched listed
    account's `p_expand` already holds the touch). An account the world has no row for at that
    month (it had no ARR the day before) cannot be changed by a touch: its effect is 0 and both
    chances are left empty.
    """
    keys = ["account_id", "assigned_on"]
    cols = ["account_id", "as_of", "p_expand", "p_touched"]
    day = pd.to_datetime(compared["assigned_on"])
    month = (day.dt.to_period("M") + 1).dt.to_timestamp().dt.date  # type: ignore[operator]
    rows = compared[keys].assign(as_of=month.to_numpy(), arm=compared["arm"].to_numpy())
    rows["account_id"] = rows["account_id"].astype(str)
    found = []
    for path, suffix in ((seen, ""), (flipped, "_flipped")):
        t = pd.read_parquet(path, columns=cols)
        t["account_id"] = t["account_id"].astype(str)
        t["as_of"] = pd.to_datetime(t["as_of"]).dt.date
        found.append(t.rename(columns={"p_expand": f"p_expand{suffix}",
                                       "p_touched": f"p_touched{suffix}"}))  # fmt: skip
    joined = rows.merge(found[0], on=["account_id", "as_of"], how="left").merge(
        found[1], on=["account_id", "as_of"], how="left"
    )
    listed = (joined["arm"] == LISTED).to_numpy()
    out = joined[keys].copy()
    out["p_touched"] = joined["p_touched"].to_numpy()
    out["p_untouched"] = np.where(listed, joined["p_expand_flipped"], joined["p_expand"])
    out["true_effect"] = (out["p_touched"] - out["p_untouched"]).fillna(0.0)
    return out
