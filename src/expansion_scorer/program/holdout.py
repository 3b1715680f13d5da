"""The randomized holdout: which of the accounts a CSM would work this week are a control group.

The candidates of a week are the accounts on their CSM's capacity list and those that fired a
trigger. Each candidate is drawn once per period, from a hash of the salt, the period and its
id, so the draw is reproducible, made before any outcome is known, and the same however often
a week is re-run. Its arm (`listed` or `holdout`) is recorded in the history the first week it is
a candidate and holds for the rest of the period; the next period draws again. Held-out accounts
are scored and kept in the history but shown on no list, trigger or report a CSM reads. The
places they free on a CSM's list go to the CSM's next accounts (`backfill`), which were not
randomized and so stay out of the comparison, like everything below capacity (`none`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from expansion_scorer.config import HoldoutConfig

UNASSIGNED = "Unassigned"
"""The book of the accounts with no CSM: its own capacity, its own section of the report."""
LISTED, HOLDOUT, BACKFILL, NONE = "listed", "holdout", "backfill", "none"
COMPARED = (LISTED, HOLDOUT)
"""The arms `expansion measure` compares: drawn from the same candidates, with the same chance."""
ASSIGNMENT_COLUMNS = [
    "period", "account_id", "arm", "assigned_on", "draw", "csm_owner", "rank", "score", "band",
    "motion", "model_version", "horizon_days", "drafted_by",
]  # fmt: skip


def period_of(day: date, period: str) -> str:
    """'2024Q3' for a quarter, '2024-07' for a month."""
    if period == "quarter":
        return f"{day.year}Q{(day.month - 1) // 3 + 1}"
    return f"{day.year}-{day.month:02d}"


def period_end(period: str) -> date:
    """The first day after a period named by `period_of`: '2024Q3' -> 2024-10-01."""
    if "Q" in period:
        year, quarter = period.split("Q")
        month = 3 * int(quarter) + 1
    else:
        year, m = period.split("-")
        month = int(m) + 1
    return date(int(year) + (month - 1) // 12, (month - 1) % 12 + 1, 1)


def draws(account_ids: pd.Series, salt: str, period: str) -> np.ndarray:
    """A uniform number in [0, 1) per account, fixed by salt, period and id."""
    out = np.empty(len(account_ids), dtype="float64")
    for i, account in enumerate(account_ids.astype(str)):
        digest = hashlib.sha256(f"{salt}\x1f{period}\x1f{account}".encode()).digest()
        out[i] = int.from_bytes(digest[:8], "big") / 2.0**64
    return out


@dataclass(frozen=True)
class Arms:
    arm: np.ndarray
    """This week's arm of each ranked account: listed, holdout, backfill or none."""
    on_list: np.ndarray
    """Whether each ranked account is on the list its CSM sees (held-out accounts never are)."""
    new: pd.DataFrame
    """Assignments made this week, to append to the history (ASSIGNMENT_COLUMNS)."""
    period: str


def owners_of(csm_owner: pd.Series) -> pd.Series:
    """Each account's CSM, the accounts with none as one book (`UNASSIGNED`)."""
    return csm_owner.fillna(UNASSIGNED).astype(str)


def within_capacity(owners: pd.Series, capacity: int) -> np.ndarray:
    """Whether each account (in rank order) is among its CSM's first `capacity`: the capacity
    list, the one rule every list of the program is cut by."""
    return np.asarray(owners.groupby(owners, sort=False).cumcount() < capacity)


def assign_arms(
    ranked: pd.DataFrame,
    fired: np.ndarray,
    recorded: pd.DataFrame,
    as_of: date,
    cfg: HoldoutConfig,
    capacity: int,
    horizon_days: int,
    drafted_by: np.ndarray | None = None,
) -> Arms:
    """Arms for a week's ranked accounts (in rank order: account_id, csm_owner, rank, score, band,
    motion, model_version), given which fired a trigger and the period's recorded arms. With
    interleaved lists, `drafted_by` (per account, the ranking that drafted it or None) is
    recorded with each new assignment."""
    period = period_of(as_of, cfg.period)
    owners = owners_of(ranked["csm_owner"])
    would_list = within_capacity(owners, capacity)
    if cfg.fraction == 0:
        arm = np.where(would_list, LISTED, NONE)
        return Arms(arm, would_list, pd.DataFrame(columns=ASSIGNMENT_COLUMNS), period)

    ids = ranked["account_id"].astype(str)
    known = ids.map(recorded.set_index("account_id")["arm"]) if len(recorded) else None
    period_arm = (
        known.to_numpy(dtype=object) if known is not None else np.full(len(ids), None, object)
    )
    candidate = would_list | np.asarray(fired, dtype=bool)
    u = draws(ids, cfg.salt, period)
    fresh = candidate & pd.isna(period_arm)
    period_arm = np.where(fresh, np.where(u < cfg.fraction, HOLDOUT, LISTED), period_arm)
    held = period_arm == HOLDOUT

    if cfg.backfill:  # the CSM's list is their first `capacity` accounts not held out
        on_list = np.zeros(len(ids), dtype=bool)
        on_list[~held] = within_capacity(owners[~held], capacity)
    else:
        on_list = would_list & ~held
    backfilled = on_list & ~candidate & pd.isna(period_arm)
    period_arm = np.where(backfilled, BACKFILL, period_arm)

    shown = on_list | (candidate & ~held)
    arm = np.where(held, HOLDOUT, np.where(shown, period_arm, NONE))
    arm = np.where(pd.isna(arm), NONE, arm).astype(object)
    new = ranked.loc[fresh | backfilled, ["account_id", "csm_owner", "rank", "score", "band",
                                          "motion", "model_version"]].copy()  # fmt: skip
    new.insert(0, "period", period)
    new.insert(2, "arm", period_arm[fresh | backfilled])
    new.insert(3, "assigned_on", as_of)
    new.insert(4, "draw", u[fresh | backfilled])
    new["horizon_days"] = horizon_days
    by = np.full(len(ids), None, object)
    if drafted_by is not None:  # recorded with the draw: a backfilled account was not drafted
        by[fresh] = np.asarray(drafted_by, object)[fresh]
    new["drafted_by"] = pd.array(by[fresh | backfilled], dtype="string")
    return Arms(arm, on_list, new[ASSIGNMENT_COLUMNS].reset_index(drop=True), period)
