"""The Online Retail mapping, and billed revenue (usage-based pricing) as the money table."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from expansion_scorer.config import LabelConfig
from expansion_scorer.data.loading import open_world
from expansion_scorer.data.online_retail import convert
from expansion_scorer.data.validation import validate
from expansion_scorer.features.snapshots import account_status, build_entities, labels
from tests.helpers import run_cli, write_tables

REAL = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "data"
    / "online-retail"
    / "online_retail.parquet"
)


def test_invoices_become_accounts_revenue_and_usage(tmp_path: Path) -> None:
    lines = pd.DataFrame(
        {
            "InvoiceNo": ["536365", "536365", "C536379", "536400", "536401"],
            "StockCode": ["85123A", "71053", "D", "22633", "22632"],
            "Description": ["HEART", "LANTERN", "Discount", "HAND WARMER", "HAND WARMER"],
            "Quantity": [6, 6, -1, 12, 3],
            "InvoiceDate": pd.to_datetime(
                [
                    "2010-12-01 08:26",
                    "2010-12-01 08:26",
                    "2010-12-01 09:41",
                    "2010-12-03 10:00",
                    "2010-12-03 11:00",
                ]
            ),
            "UnitPrice": [2.55, 3.39, 27.50, 1.85, 1.85],
            "CustomerID": [17850, 17850, 17850, 13047, None],
            "Country": ["United Kingdom"] * 4 + ["France"],
        }
    )
    source = tmp_path / "lines.parquet"
    lines.to_parquet(source)

    counts = convert(source, tmp_path / "data")

    assert counts == {"accounts": 2, "revenue": 2, "usage_events": 4}
    revenue = pd.read_parquet(tmp_path / "data" / "revenue.parquet")
    c17850 = revenue[revenue["account_id"] == "C17850"]["amount"].astype(float).tolist()
    assert c17850 == [pytest.approx(6 * 2.55 + 6 * 3.39 - 27.50)]
    events = pd.read_parquet(tmp_path / "data" / "usage_events.parquet")
    assert sorted(events["event"]) == ["order_line", "order_line", "order_line", "return_line"]
    accounts = pd.read_parquet(tmp_path / "data" / "accounts.parquet")
    assert accounts.set_index("account_id")["created_at"].astype(str).to_dict() == {
        "C13047": "2010-12-03",
        "C17850": "2010-12-01",
    }
    validate(open_world(tmp_path / "data"))


def _billed(tmp_path: Path) -> Path:
    accounts = pd.DataFrame(
        {"account_id": ["G", "F", "Q"], "account_name": ["Grows", "Flat", "Quiet"],
         "created_at": ["2024-01-01"] * 3}
    )  # fmt: skip
    revenue = pd.DataFrame(
        {
            "account_id": ["G", "G", "F", "F", "Q"],
            "date": ["2024-02-10", "2024-04-10", "2024-02-10", "2024-04-10", "2024-01-05"],
            "amount": [100.0, 130.0, 100.0, 110.0, 50.0],
        }
    )
    usage = pd.DataFrame(
        {"account_id": ["G"], "timestamp": ["2024-06-01 00:00:00"], "event": ["x"]}
    )
    return write_tables(
        tmp_path / "billed", {"accounts": accounts, "revenue": revenue, "usage_events": usage}
    )


def test_revenue_growth_is_the_label_and_the_run_rate_is_arr(tmp_path: Path) -> None:
    world = open_world(_billed(tmp_path))
    validate(world)
    build_entities(world.con, [date(2024, 3, 1)])

    eligible = world.con.execute("SELECT account_id, arr_before FROM entities").fetchall()
    got = labels(world.con, 60, LabelConfig(min_growth=0.2)).set_index("account_id")["label"]

    # run-rate: billed in the 90 days to the day before, annualised; Q billed 56 days earlier
    run_rate = {"F": 100 * 365 / 90, "G": 100 * 365 / 90, "Q": 50 * 365 / 90}
    assert {k: float(v) for k, v in eligible} == pytest.approx(run_rate)
    # G: 130 >= 1.2 x 100; F: 110 < 120; Q: nothing billed in the 60 days before
    assert got.to_dict() == {"F": 0, "G": 1, "Q": 0}
    status = account_status(world.con, date(2024, 6, 1)).set_index("account_id")
    assert status.loc["Q", "excluded_reason"] == "no revenue in the 90 days before the as-of date"


def test_subscriptions_and_revenue_together_are_ambiguous(
    tmp_path: Path, tiny_tables: dict[str, pd.DataFrame], capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_tables(tmp_path / "d", tiny_tables)
    pd.DataFrame({"account_id": ["A1"], "date": ["2024-01-01"], "amount": [1.0]}).to_csv(
        data / "revenue.csv", index=False
    )
    code, _, err = run_cli(["validate", str(data)], capsys)
    assert code == 2 and "both subscriptions and revenue are present" in err


@pytest.mark.skipif(
    not REAL.is_file(), reason="the shared Online Retail data is not beside the repo"
)
def test_recipe_on_real_customers_beats_rfm(
    tmp_path: Path, mlflow_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a sample of 800 real customers keeps the test quick; the README quotes the full run
    lines = pd.read_parquet(REAL)
    customers = lines["CustomerID"].dropna().drop_duplicates().sample(800, random_state=1)
    source = tmp_path / "sample.parquet"
    lines[lines["CustomerID"].isin(customers)].to_parquet(source)

    code, out, err = run_cli(
        ["online-retail", "--source", str(source), "--out", str(tmp_path / "r")], capsys
    )

    assert code == 0, err
    comparison = pd.read_csv(tmp_path / "r" / "comparison.csv")
    pooled = comparison[comparison["fold"] == "pooled"].set_index("scorer")
    assert pooled.loc["model", "rows"] == pooled.loc["RFM logistic regression", "rows"] > 500
    assert pooled.loc["model", "roc_auc"] > 0.6
    assert "RFM logistic regression" in out
    scores = pd.read_csv(tmp_path / "r" / "scores" / "scores.csv")
    assert len(scores) > 100 and scores["reason_1"].head(20).notna().all()


def test_metrics_on_billed_revenue_says_what_it_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        ["metrics", str(_billed(tmp_path)), "--out", str(tmp_path / "m")], capsys
    )
    assert code == 2 and "NRR is computed from subscriptions" in err
    assert not (tmp_path / "m").exists()
