"""The holdout's arms on a hand-made ranked list: who is drawn, who backfills, what CSMs see."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from expansion_scorer.config import HoldoutConfig
from expansion_scorer.program.holdout import (
    ASSIGNMENT_COLUMNS,
    assign_arms,
    draws,
    period_end,
    period_of,
)

AS_OF = date(2024, 7, 1)


def _ranked(n: int = 40, owners: tuple[str, ...] = ("Ana", "Bo")) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": [f"A{i:03d}" for i in range(n)],
            "csm_owner": [owners[i % len(owners)] for i in range(n)],
            "rank": np.arange(1, n + 1),
            "score": np.linspace(0.9, 0.1, n),
            "band": "warm",
            "motion": "Add seats",
            "model_version": "m v1",
        }
    )


def test_candidates_are_drawn_and_held_out_places_are_backfilled() -> None:
    ranked = _ranked()
    cfg = HoldoutConfig(fraction=0.3, salt="s")
    fired = np.zeros(len(ranked), dtype=bool)
    fired[30] = True  # beyond capacity, but a trigger makes it a candidate

    arms = assign_arms(ranked, fired, pd.DataFrame(columns=ASSIGNMENT_COLUMNS), AS_OF, cfg, 5, 90)

    candidates = (ranked.groupby("csm_owner").cumcount() < 5).to_numpy() | fired
    u = draws(ranked["account_id"], "s", period_of(AS_OF, "quarter"))
    expected = np.where(candidates, np.where(u < 0.3, "holdout", "listed"), None)
    drawn = arms.arm[candidates]
    assert (drawn == expected[candidates]).all()
    # each CSM still sees five accounts, none held out; the extra ones are backfill
    for owner in ("Ana", "Bo"):
        mine = (ranked["csm_owner"] == owner).to_numpy()
        assert arms.on_list[mine].sum() == 5
    assert not (arms.on_list & (arms.arm == "holdout")).any()
    assert set(arms.arm[arms.on_list & ~candidates]) <= {"backfill"}
    assert (arms.arm[arms.on_list & ~candidates] == "backfill").sum() == (drawn == "holdout").sum()
    assert set(arms.new["arm"]) <= {"listed", "holdout", "backfill"}
    assert len(arms.new) == candidates.sum() + (arms.arm == "backfill").sum()


def test_a_recorded_arm_holds_for_the_period_and_nothing_is_drawn_twice() -> None:
    ranked = _ranked()
    cfg = HoldoutConfig(fraction=0.3, salt="s")
    none = np.zeros(len(ranked), dtype=bool)
    first = assign_arms(ranked, none, pd.DataFrame(columns=ASSIGNMENT_COLUMNS), AS_OF, cfg, 5, 90)

    # a week later the ranking has reversed, with another salt: the recorded arms win
    later = ranked.iloc[::-1].reset_index(drop=True).assign(rank=np.arange(1, 41))
    other = HoldoutConfig(fraction=0.3, salt="other")
    again = assign_arms(later, none, first.new, date(2024, 7, 8), other, 5, 90)

    recorded = first.new.set_index("account_id")["arm"]
    held = set(recorded[recorded == "holdout"].index)
    for account, arm, shown in zip(later["account_id"], again.arm, again.on_list, strict=True):
        if account in held:
            assert arm == "holdout" and not shown
    assert not set(again.new["account_id"]) & set(first.new["account_id"])


def test_no_backfill_shortens_the_list_and_fraction_zero_turns_it_off() -> None:
    ranked = _ranked()
    none = np.zeros(len(ranked), dtype=bool)
    empty = pd.DataFrame(columns=ASSIGNMENT_COLUMNS)
    short = assign_arms(ranked, none, empty, AS_OF, HoldoutConfig(fraction=0.3, backfill=False),
                        5, 90)  # fmt: skip
    held = (short.arm == "holdout").sum()
    assert held > 0 and short.on_list.sum() == 10 - held and "backfill" not in set(short.arm)

    off = assign_arms(ranked, none, empty, AS_OF, HoldoutConfig(fraction=0), 5, 90)
    assert off.on_list.sum() == 10 and off.new.empty
    assert set(off.arm) == {"listed", "none"}


def test_a_period_ends_the_day_its_next_one_begins() -> None:
    for day, period in ((date(2024, 12, 30), "quarter"), (date(2024, 11, 5), "month"),
                        (date(2024, 4, 1), "quarter")):  # fmt: skip
        end = period_end(period_of(day, period))
        assert period_of(end, period) != period_of(day, period)
        assert period_of(end - timedelta(days=1), period) == period_of(day, period)
