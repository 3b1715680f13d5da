"""Team-draft interleaving on hand-made rankings: who drafts what, in which order, and the coin."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from expansion_scorer.config import ServingConfig
from expansion_scorer.program.interleave import (
    NOT_DRAFTED,
    choose,
    coin,
    interleaved_owners,
    team_draft,
    week_order,
)
from expansion_scorer.program.measure import difference_sequence

AS_OF = date(2024, 7, 1)


def _book() -> tuple[pd.Series, dict[str, np.ndarray]]:
    """Two CSMs of six accounts each (rows 0-5 Ana's, 6-11 Bo's); `a` ranks by row, `b` in
    reverse, with one account (row 2, row 8) both put near the top."""
    owners = pd.Series(["Ana"] * 6 + ["Bo"] * 6)
    a = np.arange(12)
    b = np.array([2, 5, 4, 3, 1, 0, 8, 11, 10, 9, 7, 6])
    return owners, {"a": a, "b": b}


def test_each_list_is_drafted_in_turns_each_ranking_taking_its_best_account_left() -> None:
    owners, orders = _book()

    draft = team_draft(owners, orders, "a", 4, {"Ana", "Bo"}, first="a")

    # Ana: a takes 0, b takes 2 (its best), a takes 1, b takes 5
    ana = {int(r): (int(draft.slot[r]), draft.drafted_by[r]) for r in range(6)
           if draft.slot[r] != NOT_DRAFTED}  # fmt: skip
    assert ana == {0: (0, "a"), 2: (1, "b"), 1: (2, "a"), 5: (3, "b")}
    # each list is split evenly, and nobody is drafted twice or beyond capacity
    for csm in ("Ana", "Bo"):
        mine = (owners == csm).to_numpy()
        assert (draft.slot[mine] != NOT_DRAFTED).sum() == 4
        assert list(pd.Series(draft.drafted_by[mine]).value_counts()) == [2, 2]
    assert draft.interleaved == ["Ana", "Bo"]


def test_the_coins_winner_picks_first_and_an_account_both_want_goes_to_it() -> None:
    owners, orders = _book()
    orders = {"a": orders["a"], "b": np.r_[0, orders["b"][orders["b"] != 0]]}  # both want 0

    for first, second in (("a", "b"), ("b", "a")):
        draft = team_draft(owners, orders, "a", 3, {"Ana", "Bo"}, first=first)
        assert draft.drafted_by[0] == first and draft.slot[0] == 0
        # the first picker takes the odd place
        assert list(draft.drafted_by[:6][draft.slot[:6] != NOT_DRAFTED]).count(first) == 2
        assert second in set(draft.drafted_by[:6])


def test_a_list_not_interleaved_is_its_rankings_top_and_credits_nobody() -> None:
    owners, orders = _book()

    draft = team_draft(owners, orders, "b", 3, {"Ana"}, first="a")

    bo = np.flatnonzero((owners == "Bo").to_numpy())
    listed = bo[draft.slot[bo] != NOT_DRAFTED]
    assert list(listed[np.argsort(draft.slot[listed])]) == [8, 11, 10]  # b's top three of Bo
    assert all(by is None for by in draft.drafted_by[bo])
    assert draft.interleaved == ["Ana"]


def test_the_weeks_order_heads_each_book_with_its_list_in_draft_order() -> None:
    owners, orders = _book()
    draft = team_draft(owners, orders, "a", 3, {"Ana", "Bo"}, first="b")

    order = week_order(draft.slot)

    ordered = owners.to_numpy()[order]
    for csm in ("Ana", "Bo"):
        rows = order[ordered == csm]
        assert list(draft.slot[rows[:3]]) == [0, 1, 2]
        assert (draft.slot[rows[3:]] == NOT_DRAFTED).all()
        rest = rows[3:]
        assert list(rest) == sorted(rest)  # the rest of the book in the order given
    assert sorted(order) == list(range(12))


def test_the_coin_is_fair_fixed_by_the_week_and_the_salt() -> None:
    weeks = [AS_OF + timedelta(weeks=i) for i in range(400)]
    flips = np.array([coin("s", w) < 0.5 for w in weeks])
    assert 0.42 < flips.mean() < 0.58
    assert coin("s", AS_OF) == coin("s", AS_OF) and coin("s", AS_OF) != coin("t", AS_OF)


def test_a_share_of_csms_is_interleaved_drawn_afresh_each_week() -> None:
    owners = pd.Series([f"CSM {i}" for i in range(400)])
    this = interleaved_owners(owners, 0.25, "s", AS_OF)
    later = interleaved_owners(owners, 0.25, "s", AS_OF + timedelta(weeks=1))
    assert 0.18 < len(this) / 400 < 0.32 and this != later
    assert interleaved_owners(owners, 1.0, "s", AS_OF) == set(owners)
    assert interleaved_owners(owners, 0.0, "s", AS_OF) == set()


@pytest.mark.parametrize(
    ("measured", "ranked_by", "share", "says"),
    [
        ({}, "uplift", 1.0, "has not compared them yet"),
        ({"compare": {"rankings": ["score", "uplift"], "better": None}}, "uplift", 1.0,
         "cannot tell them apart yet"),
        ({"compare": {"rankings": ["uplift", "score"], "better": "score"}, "data_end":
          "2024-09-01"}, "score", 0.3, "showed it better than uplift"),
        ({"compare": {"rankings": ["uplift", "expected_arr"], "better": "uplift"}}, "uplift",
         1.0, "has not compared them yet"),
    ],
)  # fmt: skip
def test_auto_interleaves_until_measure_shows_one_better_then_ranks_by_it(
    measured: dict[str, object], ranked_by: str, share: float, says: str
) -> None:
    serving = ServingConfig(rank_by="auto", compare=["uplift", "score"], interleave_share=0.3)

    choice = choose(serving, measured)

    assert (choice.ranked_by, choice.share) == (ranked_by, share)
    assert says in choice.why
    assert choose(ServingConfig(), measured).share == 0
    interleave = ServingConfig(rank_by="interleave", compare=["score", "uplift"])
    assert choose(interleave, measured).share == 1


def _drafted(rng: np.random.Generator, effects: dict[str, float], cohorts: int) -> pd.DataFrame:
    """Interleaved assignments of `cohorts` weeks, six CSMs of twenty accounts a week, drafted
    by `a` and `b` in turns, half held out at random; a listed account drafted by a ranking
    expands with 0.3 plus that ranking's effect, a held-out one with 0.3."""
    n = cohorts * 6 * 20
    by = np.tile(["a", "b"], n // 2)
    listed = rng.random(n) < 0.5
    p = 0.3 + listed * np.array([effects[r] for r in by])
    return pd.DataFrame(
        {
            "account_id": [f"A{i}" for i in range(n)],
            "assigned_on": np.repeat(pd.date_range("2024-01-01", periods=cohorts, freq="7D"), 120),
            "csm_owner": np.tile(np.repeat([f"CSM {c}" for c in range(6)], 20), cohorts),
            "drafted_by": by,
            "arm": np.where(listed, "listed", "holdout"),
            "expanded": (rng.random(n) < p).astype(int),
            "score": rng.random(n),
        }
    )


def test_the_differences_sequence_covers_an_equal_pair_and_finds_a_better_one() -> None:
    rng = np.random.default_rng(0)
    # equal rankings: the 95% sequence at its last look covers zero in about 95 of 100 books
    covered = [
        (lambda s: s["low"] <= 0 <= s["high"])(
            difference_sequence(_drafted(rng, {"a": 0.1, "b": 0.1}, 8), "a", 0.5, 0.95, 120)
        )
        for _ in range(100)
    ]
    assert sum(covered) >= 90
    # a ranking whose drafted accounts gain 20 points more is shown better, with its estimate
    found = difference_sequence(_drafted(rng, {"a": 0.3, "b": 0.1}, 30), "a", 0.5, 0.95, 120)
    assert 0 < found["low"] < 0.2 < found["high"] and found["lists"] == 180
    assert abs(found["estimate"] - 0.2) < 0.08
