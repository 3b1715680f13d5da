"""NRR and GRR from the ledger, checked by hand on a small book of accounts."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import run_cli, write_tables

D = date.fromisoformat


def _book(tmp_path: Path) -> Path:
    accounts = pd.DataFrame(
        {
            "account_id": ["A", "B", "C"],
            "account_name": ["Alpha", "Beta", "Gamma"],
            "created_at": ["2023-12-01", "2023-12-01", "2024-01-05"],
            "segment": ["SMB", "Enterprise", "SMB"],
        }
    )
    subscriptions = pd.DataFrame(
        [
            ("A", "Core", "team", 10, 1000.0, D("2023-12-01"), D("2024-01-10")),
            ("A", "Core", "team", 15, 1500.0, D("2024-01-10"), None),  # +500 seats
            ("B", "Core", "team", 20, 2000.0, D("2023-12-01"), D("2024-01-20")),
            ("B", "Core", "team", 18, 1800.0, D("2024-01-20"), D("2024-02-15")),  # -200, churn
            ("C", "Core", "team", 10, 1000.0, D("2024-01-05"), None),  # new: outside the cohort
        ],
        columns=["account_id", "product", "plan", "seats", "arr", "start_date", "end_date"],
    )
    usage = pd.DataFrame(
        {"account_id": ["A"], "timestamp": ["2024-03-31 12:00:00"], "event": ["login"]}
    )
    return write_tables(
        tmp_path / "book",
        {"accounts": accounts, "subscriptions": subscriptions, "usage_events": usage},
    )


def test_nrr_matches_the_hand_computed_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["metrics", str(_book(tmp_path)), "--out", str(tmp_path / "m")], capsys)

    assert code == 0, err
    table = pd.read_csv(tmp_path / "m" / "nrr.csv").set_index("month")
    jan, feb, mar = table.loc["2024-01-01"], table.loc["2024-02-01"], table.loc["2024-03-01"]
    # January: cohort A 1,000 + B 2,000; A +500 seats, B -200
    assert (jan.starting_arr, jan.expansion_arr, jan.contraction_arr) == (3000, 500, 200)
    assert jan.nrr == pytest.approx(110.0) and jan.grr == pytest.approx(2800 / 3000 * 100)
    # February: cohort A 1,500 + B 1,800 + C 1,000; B churns 1,800
    assert (feb.starting_arr, feb.churned_arr) == (4300, 1800)
    assert feb.nrr == pytest.approx(2500 / 4300 * 100, abs=1e-3)
    assert mar.nrr == pytest.approx(100.0)
    assert (tmp_path / "m" / "nrr.png").read_bytes()[:4] == b"\x89PNG"


def test_nrr_by_segment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m"
    code, _, err = run_cli(
        ["metrics", str(_book(tmp_path)), "--by", "segment", "--out", str(out)], capsys
    )
    assert code == 0, err
    table = pd.read_csv(out / "nrr_by_segment.csv")
    jan = table[table["month"] == "2024-01-01"].set_index("segment")
    assert jan.loc["SMB", "nrr"] == pytest.approx(150.0)
    assert jan.loc["Enterprise", "nrr"] == pytest.approx(90.0)


def test_unknown_grouping_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["metrics", str(_book(tmp_path)), "--by", "plan"], capsys)
    assert code == 2 and "--by plan: not a grouping column" in err
