"""Helpers for tests: a tiny hand-written world, table writing, and running the CLI in-process."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

TINY = {
    "accounts": pd.DataFrame(
        {
            "account_id": ["A1", "A2", "A3"],
            "account_name": ['Acme, "North"', "Zürich Labs", '=HYPERLINK("http://x","y")'],
            "created_at": ["2024-01-01", "2024-01-15", "2024-02-01"],
            "csm_owner": ["Ana", "Bo", None],
        }
    ),
    "subscriptions": pd.DataFrame(
        {
            "account_id": ["A1", "A1", "A2", "A3"],
            "product": ["Core", "Core", "Core", "Core"],
            "plan": ["team", "team", "starter", "team"],
            "seats": [10, 15, 5, 8],
            "arr": [6000.0, 9000.0, 2000.0, 4000.0],
            "start_date": ["2024-01-01", "2024-05-10", "2024-01-15", "2024-02-01"],
            "end_date": ["2024-05-10", None, None, "2024-06-01"],
        }
    ),
    "usage_events": pd.DataFrame(
        {
            "account_id": ["A1", "A1", "A2", "F9"],
            "user_id": ["u1", "u2", "u3", "x"],
            "timestamp": [
                "2024-03-01 10:00:00",
                "2024-04-01 09:30:00",
                "2024-03-02 12:00:00",
                "2024-03-03 08:00:00",
            ],
            "event": ["login", "export_report", "login", "login"],
            "quantity": [3, 1, 2, 1],
        }
    ),
}


def write_tables(directory: Path, tables: dict[str, pd.DataFrame], fmt: str = "csv") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        if fmt == "csv":
            frame.to_csv(directory / f"{name}.csv", index=False)
        else:
            frame.to_parquet(directory / f"{name}.parquet", index=False)
    return directory


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from expansion_scorer.cli import main

    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
