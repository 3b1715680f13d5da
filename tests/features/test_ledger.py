"""The expansion ledger: what counts as expansion, and what does not."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from expansion_scorer.config import LabelConfig
from expansion_scorer.data.loading import open_world
from expansion_scorer.features.ledger import build_expansions, build_movements
from expansion_scorer.features.snapshots import build_entities, labels
from expansion_scorer.settings import load_feature_set
from tests.helpers import write_tables


def _expansions(tmp_path: Path, subs: list[tuple]) -> list[tuple[str, date, float]]:
    frame = pd.DataFrame(
        subs, columns=["account_id", "product", "plan", "seats", "arr", "start_date", "end_date"]
    )
    accounts = pd.DataFrame(
        {
            "account_id": sorted(frame["account_id"].unique()),
            "account_name": "x",
            "created_at": "2023-01-01",
        }
    )
    usage = pd.DataFrame(
        {"account_id": ["A"], "timestamp": ["2023-02-01 00:00:00"], "event": ["login"]}
    )
    data = write_tables(
        tmp_path,
        {"accounts": accounts, "subscriptions": frame, "usage_events": usage},
        fmt="parquet",
    )
    world = open_world(data)
    build_expansions(world.con, load_feature_set())
    rows = world.con.execute("SELECT account_id, day, expansion_arr FROM expansions").fetchall()
    return [(a, d, float(x)) for a, d, x in rows]


D = date.fromisoformat


def test_more_seats_plan_up_and_cross_sell_are_expansion(tmp_path: Path) -> None:
    subs = [
        # seats 10 -> 15 on 2023-03-10
        ("A", "Core", "team", 10, 6000.0, D("2023-01-01"), D("2023-03-10")),
        ("A", "Core", "team", 15, 9000.0, D("2023-03-10"), None),
        # plan starter -> business on 2023-04-05, same seats
        ("B", "Core", "starter", 5, 2000.0, D("2023-01-01"), D("2023-04-05")),
        ("B", "Core", "business", 5, 5000.0, D("2023-04-05"), None),
        # a new product for an account that already pays
        ("C", "Core", "team", 5, 3000.0, D("2023-01-01"), None),
        ("C", "Analytics", None, None, 1200.0, D("2023-05-20"), None),
    ]
    assert _expansions(tmp_path, subs) == [
        ("A", D("2023-03-10"), 3000.0),
        ("B", D("2023-04-05"), 3000.0),
        ("C", D("2023-05-20"), 1200.0),
    ]


def test_price_uplift_first_purchase_contraction_and_churn_are_not(tmp_path: Path) -> None:
    subs = [
        # renewal uplift: same product, plan and seats, higher price
        ("A", "Core", "team", 10, 6000.0, D("2023-01-01"), D("2024-01-01")),
        ("A", "Core", "team", 10, 6300.0, D("2024-01-01"), None),
        # the first purchase is new business, not expansion
        ("B", "Core", "team", 10, 6000.0, D("2023-06-01"), None),
        # contraction, then churn
        ("C", "Core", "team", 10, 6000.0, D("2023-01-01"), D("2023-07-01")),
        ("C", "Core", "team", 6, 3600.0, D("2023-07-01"), D("2023-09-01")),
        # reactivation after a gap is not expansion either: no ARR the day before
        ("D", "Core", "team", 5, 3000.0, D("2023-01-01"), D("2023-03-01")),
        ("D", "Core", "team", 8, 4800.0, D("2023-05-01"), None),
    ]
    assert _expansions(tmp_path, subs) == []


def _movements(tmp_path: Path, subs: list[tuple]) -> list[tuple[str, date, str, str, float]]:
    _expansions(tmp_path, subs)
    world = open_world(tmp_path)
    build_movements(world.con, load_feature_set())
    rows = world.con.execute(
        "SELECT account_id, day, product, kind, arr_delta FROM movements"
    ).fetchall()
    return [(a, d, p, k, float(x)) for a, d, p, k, x in rows]


def test_every_arr_movement_is_named(tmp_path: Path) -> None:
    subs = [
        ("A", "Core", "team", 10, 6000.0, D("2023-01-01"), D("2023-03-10")),
        ("A", "Core", "team", 15, 9000.0, D("2023-03-10"), D("2024-01-01")),
        ("A", "Core", "team", 15, 9450.0, D("2024-01-01"), D("2024-03-01")),
        ("A", "Core", "team", 12, 7560.0, D("2024-03-01"), None),
        ("A", "Analytics", None, None, 1200.0, D("2023-05-20"), D("2023-09-01")),
        ("B", "Core", "team", 5, 3000.0, D("2023-01-01"), D("2023-03-01")),
        ("B", "Core", "business", 5, 5000.0, D("2023-05-01"), None),
    ]
    assert _movements(tmp_path, subs) == [
        ("A", D("2023-01-01"), "Core", "new", 6000.0),
        ("A", D("2023-03-10"), "Core", "seats", 3000.0),
        ("A", D("2023-05-20"), "Analytics", "cross_sell", 1200.0),
        ("A", D("2023-09-01"), "Analytics", "contraction", -1200.0),
        ("A", D("2024-01-01"), "Core", "price", 450.0),
        ("A", D("2024-03-01"), "Core", "contraction", -1890.0),
        ("B", D("2023-01-01"), "Core", "new", 3000.0),
        ("B", D("2023-03-01"), "Core", "churn", -3000.0),
        ("B", D("2023-05-01"), "Core", "reactivation", 5000.0),
    ]


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        (LabelConfig(), {"A": 1, "B": 1, "C": 1}),
        (LabelConfig(motion="seats"), {"A": 1, "B": 0, "C": 0}),
        (LabelConfig(motion="plan"), {"A": 0, "B": 1, "C": 0}),
        (LabelConfig(motion="cross_sell", product="Analytics"), {"A": 0, "B": 0, "C": 1}),
        (LabelConfig(motion="cross_sell", product="Automation"), {"A": 0, "B": 0, "C": 0}),
        (LabelConfig(min_expansion_arr=2000), {"A": 1, "B": 1, "C": 0}),
        (LabelConfig(min_expansion_pct=0.55), {"A": 0, "B": 1, "C": 0}),
    ],
)
def test_labels_per_motion_and_minimum(
    tmp_path: Path, label: LabelConfig, expected: dict[str, int]
) -> None:
    subs = [
        ("A", "Core", "team", 10, 6000.0, D("2023-01-01"), D("2023-03-10")),
        ("A", "Core", "team", 15, 9000.0, D("2023-03-10"), None),  # +50% seats
        ("B", "Core", "starter", 5, 2000.0, D("2023-01-01"), D("2023-04-05")),
        ("B", "Core", "business", 5, 5000.0, D("2023-04-05"), None),  # +150% plan
        ("C", "Core", "team", 5, 3000.0, D("2023-01-01"), None),
        ("C", "Analytics", None, None, 1200.0, D("2023-05-20"), None),  # +40% cross-sell
    ]
    _expansions(tmp_path, subs)
    world = open_world(tmp_path)
    build_entities(world.con, [date(2023, 3, 1)])
    build_movements(world.con, load_feature_set())
    got = labels(world.con, 90, label).set_index("account_id")["label"].to_dict()
    assert got == expected
