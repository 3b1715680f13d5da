"""The report's cards and details show what a call changes where the uplift ranking placed the
account, and the report says which ranking built the week's lists."""

from __future__ import annotations

import pandas as pd

from expansion_scorer.serving.report import render_report


def _week(placed_by: list[str]) -> pd.DataFrame:
    n = len(placed_by)
    return pd.DataFrame(
        {
            "rank": range(1, n + 1),
            "account_id": [f"A{i}" for i in range(n)],
            "account_name": [f"Account {i}" for i in range(n)],
            "csm_owner": "Ana",
            "score": 0.6,
            "band": "hot",
            "readiness": "ready",
            "readiness_reason": "",
            "motion": "Add seats",
            "reason_1": [f"score reason of A{i}" for i in range(n)],
            "reason_against": "",
            "talking_points": [[] for _ in range(n)],
            "uplift_reason_1": [f"a call matters to A{i} (+4 pts)" for i in range(n)],
            "uplift_reason_against": [f"a call is early for A{i} (-1 pt)" for i in range(n)],
            "placed_by": placed_by,
        }
    )


def test_uplift_reasons_show_where_uplift_drafted_or_ranked_the_account() -> None:
    # Given a week whose list the uplift and score rankings drafted in turns, every account fired
    scores = _week(["uplift", "score", "uplift"])
    triggers = scores[["rank", "account_id", "account_name", "csm_owner", "score"]].assign(
        act_this_week=True, trigger="entered hot", why="up 10 pts", rules=""
    )
    meta = {"as_of": "2024-07-01", "model": "m v1", "horizon_days": 90, "capacity": 3,
            "bands": {"hot": 0.5, "watch": 0.0}, "previous_run": "", "held_out": 0,
            "program": {}, "holdout_period": "",
            "lists": "drafted in turns from the uplift and the score ranking"}  # fmt: skip
    excluded = pd.DataFrame(columns=["account_id", "account_name", "excluded_reason"])

    # When the report is rendered
    html = render_report(scores, pd.DataFrame(), excluded, meta, triggers)

    # Then the accounts uplift drafted show what a call changes, on their card and in their
    # details; the one the score drafted shows its score reasons only
    for account, shown in (("A0", True), ("A1", False), ("A2", True)):
        assert html.count(f"a call matters to {account} (+4 pts)") == (2 if shown else 0)
        assert html.count(f"a call is early for {account} (-1 pt)") == (2 if shown else 0)
        assert html.count(f"score reason of {account}") == 3  # card, top reason, details
    assert html.count("What a call changes") == 4
    assert "This week's lists</strong>: drafted in turns from the uplift and the score" in html

    # And a week without uplift columns or placements says nothing of uplift
    plain = scores.drop(columns=["uplift_reason_1", "uplift_reason_against", "placed_by"])
    html = render_report(plain, pd.DataFrame(), excluded, {**meta, "lists": ""}, triggers)
    assert "What a call changes" not in html and "This week's lists" not in html
