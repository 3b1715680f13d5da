"""Two rankings compared on the book itself: team-draft interleaving of each CSM's capacity list.

With `rank_by: interleave` each CSM's capacity list is drafted from the two rankings of
`compare` in turns (Radlinski, Kurup and Joachims 2008): the ranking with fewer picks on the
list picks next, its best account not drafted yet, and on a tie the ranking that won the week's
coin picks first. The coin is a fair one, drawn from a hash of the holdout's salt and the week,
so a re-run of the week drafts the same lists. Which ranking drafted each account is recorded
with its arm (`program.holdout`), so `expansion measure` can credit each ranking with the effect
of working the accounts it drafted, listed against held out: an account both rankings want goes
to whichever picks first, the same for each over the weeks, and the difference between the two
comes from where they disagree.

With `rank_by: auto` the lists are interleaved until `expansion measure` shows one ranking
better (its always-valid interval of the difference excludes zero); from then on the better
ranking orders the lists, and a share of CSMs (`interleave_share`, drawn afresh each week) is
still interleaved so that the evidence keeps coming.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from expansion_scorer.config import Ranking, ServingConfig
from expansion_scorer.program.holdout import draws

NOT_DRAFTED = -1


def coin(salt: str, as_of: date) -> float:
    """The week's fair coin, a uniform number in [0, 1) fixed by the salt and the week: below
    one half, the first ranking of `compare` picks first."""
    return float(draws(pd.Series([str(as_of)]), f"{salt}\x1finterleave", "coin")[0])


@dataclass(frozen=True)
class Choice:
    """How this week's lists are built."""

    ranked_by: Ranking
    """The ranking that orders every list that is not interleaved, and each book below its list."""
    share: float
    """The share of CSMs whose capacity list is interleaved: 1 with interleave, 0 with one
    ranking."""
    why: str
    """In words, for the report and the manifest."""


def choose(serving: ServingConfig, measured: dict[str, Any]) -> Choice:
    """This week's choice: one ranking (`rank_by` score, expected_arr or uplift), both in turns
    (`interleave`), or with `auto` the one the latest `expansion measure` (its `compare`
    summary, in `measured`) showed better, with `interleave_share` of the lists still
    interleaved."""
    rankings = serving.rankings
    if serving.rank_by not in ("interleave", "auto"):
        return Choice(rankings[0], 0.0, f"rank_by: {serving.rank_by}")
    a, b = rankings
    both = f"drafted in turns from the {a} and the {b} ranking"
    if serving.rank_by == "interleave":
        return Choice(a, 1.0, f"{both} (rank_by: interleave), to compare them")
    compared = measured.get("compare") if isinstance(measured, dict) else None
    better = compared.get("better") if isinstance(compared, dict) else None
    if not isinstance(compared, dict) or sorted(compared.get("rankings") or []) != sorted(rankings):
        return Choice(
            a, 1.0, f"{both} (rank_by: auto): expansion measure has not compared them yet"
        )
    if better not in rankings:
        return Choice(
            a, 1.0, f"{both} (rank_by: auto): expansion measure cannot tell them apart yet"
        )
    shown, other = (a, b) if better == a else (b, a)
    return Choice(
        shown,
        serving.interleave_share,
        f"ranked by {better} (rank_by: auto): expansion measure (data to"
        f" {measured.get('data_end', '?')}) showed it better than {other};"
        f" {serving.interleave_share:.0%} of lists still drafted in turns from both",
    )


@dataclass(frozen=True)
class Draft:
    """The week's capacity lists, per account in the order the caller gave."""

    slot: np.ndarray
    """The account's place on its CSM's capacity list (0 first), or NOT_DRAFTED."""
    drafted_by: np.ndarray
    """The ranking that drafted it onto an interleaved list; None elsewhere."""
    interleaved: list[str]
    """The CSMs whose list was interleaved."""


def team_draft(
    owners: pd.Series,
    orders: dict[str, np.ndarray],
    ranked_by: str,
    capacity: int,
    interleave: set[str],
    first: str,
) -> Draft:
    """Each CSM's capacity list: for the CSMs in `interleave`, drafted in turns from the two
    rankings of `orders` (row positions in each ranking's order), `first` picking first on a
    tie; for the others, `ranked_by`'s first `capacity` accounts."""
    owner = owners.to_numpy(dtype=object)
    slot = np.full(len(owner), NOT_DRAFTED, dtype=np.int64)
    drafted_by = np.full(len(owner), None, dtype=object)
    per_owner = {
        name: {k: order[i] for k, i in
               pd.Series(order).groupby(owner[order], sort=False).indices.items()}
        for name, order in orders.items()
    }  # fmt: skip
    names = [first, *(n for n in orders if n != first)]
    for csm in pd.unique(owner):
        if csm not in interleave:
            mine = per_owner[ranked_by][csm][:capacity]
            slot[mine] = np.arange(len(mine))
            continue
        lists = [per_owner[n][csm] for n in names]
        at = [0] * len(names)
        picks = [0] * len(names)
        for place in range(min(capacity, len(lists[0]))):
            team = min(range(len(names)), key=lambda t: (picks[t], t))  # fewer picks, then first
            candidates = lists[team]
            while at[team] < len(candidates) and slot[candidates[at[team]]] != NOT_DRAFTED:
                at[team] += 1
            if at[team] == len(candidates):  # pragma: no cover - both rank the same accounts
                break
            row = candidates[at[team]]
            slot[row] = place
            drafted_by[row] = names[team]
            picks[team] += 1
    return Draft(slot, drafted_by, sorted(str(o) for o in interleave if o in set(owner)))


def week_order(slot: np.ndarray) -> np.ndarray:
    """Row positions of the week's order: every capacity list first, place by place, then the
    rest in the order given (each CSM's list heads their book, in its own order)."""
    drafted = slot != NOT_DRAFTED
    key = np.where(drafted, slot, np.iinfo(np.int64).max)
    return np.lexsort((np.arange(len(slot)), key))


def interleaved_owners(owners: pd.Series, share: float, salt: str, as_of: date) -> set[str]:
    """The CSMs whose list is interleaved this week: all with a share of 1, none with 0, else a
    draw per CSM fixed by the salt and the week."""
    books = pd.Series(pd.unique(owners.to_numpy(dtype=object))).astype(str)
    if share >= 1:
        return set(books)
    if share <= 0:
        return set()
    u = draws(books, f"{salt}\x1finterleave", str(as_of))
    return set(books[u < share])
