"""Every contract violation: one line naming table, column and row; exit code 2; no output."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import run_cli, write_tables


def _break(tables: dict[str, pd.DataFrame], case: str) -> dict[str, pd.DataFrame]:
    acc, subs, usage = tables["accounts"], tables["subscriptions"], tables["usage_events"]
    if case == "missing_file":
        del tables["subscriptions"]
    elif case == "missing_column":
        tables["accounts"] = acc.drop(columns=["created_at"])
    elif case == "bad_date":
        subs.loc[2, "start_date"] = "31/02/2024"
    elif case == "bad_timestamp":
        usage.loc[1, "timestamp"] = "yesterday"
    elif case == "duplicate_id":
        tables["accounts"] = pd.concat([acc, acc.iloc[[1]]], ignore_index=True)
    elif case == "negative_arr":
        subs.loc[1, "arr"] = -120.0
    elif case == "end_before_start":
        subs.loc[3, "end_date"] = "2024-01-01"
    elif case == "unknown_account":
        subs.loc[2, "account_id"] = "A404"
    elif case == "empty_table":
        tables["accounts"] = acc.iloc[0:0]
    elif case == "nps_out_of_range":
        tables["nps_responses"] = pd.DataFrame(
            {"account_id": ["A1"], "responded_at": ["2024-03-01"], "score": [11]}
        )
    return tables


CASES = {
    "missing_file": ["subscriptions", "missing"],
    "missing_column": ["accounts.csv", "created_at"],
    "bad_date": ["subscriptions.csv", "start_date", "row 3", "31/02/2024"],
    "bad_timestamp": ["usage_events.csv", "timestamp", "row 2", "yesterday"],
    "duplicate_id": ["accounts.csv", "account_id", "A2", "unique"],
    "negative_arr": ["subscriptions.csv", "arr", "row 2", "-120"],
    "end_before_start": ["subscriptions.csv", "end_date", "row 4"],
    "unknown_account": ["subscriptions.csv", "account_id", "A404"],
    "empty_table": ["accounts.csv", "empty"],
    "nps_out_of_range": ["nps_responses.csv", "score", "row 1"],
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("command", ["validate", "train", "score"])
def test_contract_violation_is_one_clear_line_and_writes_nothing(
    case: str,
    command: str,
    tiny_tables: dict[str, pd.DataFrame],
    tmp_path: Path,
    mlflow_store: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a data directory that breaks the contract in one way
    data = write_tables(tmp_path / "data", _break(tiny_tables, case))
    out = tmp_path / "out"
    args = {
        "validate": ["validate", str(data)],
        "train": ["train", str(data)],
        "score": ["score", str(data), "--as-of", "2024-06-01", "--out", str(out)],
    }[command]

    # When a command reads it
    code, _, stderr = run_cli(args, capsys)

    # Then it stops with exit code 2, one line naming the problem, and no output
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in stderr
    for fragment in CASES[case]:
        assert fragment in lines[0]
    assert not out.exists()
    assert not (mlflow_store / "store" / "artifacts").exists()


def test_valid_tiny_world_passes_and_warns_about_unknown_usage(
    tiny_tables: dict[str, pd.DataFrame], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_tables(tmp_path / "data", tiny_tables, fmt="parquet")

    code, stdout, stderr = run_cli(["validate", str(data)], capsys)

    assert code == 0, stderr
    assert "usage_events: 4 rows" in stdout
    assert "warning: usage_events.parquet: 1 rows of 1 accounts not in accounts" in stdout
    assert stdout.strip().endswith("valid")


def test_both_formats_of_one_table_is_ambiguous(
    tiny_tables: dict[str, pd.DataFrame], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_tables(tmp_path / "data", tiny_tables)
    tiny_tables["accounts"].to_parquet(data / "accounts.parquet")

    code, _, stderr = run_cli(["validate", str(data)], capsys)

    assert code == 2
    assert "accounts: both accounts.parquet and accounts.csv" in stderr


def test_bad_date_flag_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["score", str(tmp_path), "--as-of", "2024-13-01", "--out", "x"], capsys)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'2024-13-01' is not a date" in err[0]


def test_rows_dated_after_the_newest_usage_are_a_warning(
    tiny_tables: dict[str, pd.DataFrame], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny_tables["support_tickets"] = pd.DataFrame(
        {"account_id": ["A1", "A2"], "created_at": ["2024-03-15 10:00:00", "2030-01-01 00:00:00"]}
    )
    data = write_tables(tmp_path / "data", tiny_tables)

    code, stdout, _ = run_cli(["validate", str(data)], capsys)

    assert code == 0
    assert (
        "warning: support_tickets.csv: 1 rows dated after the newest usage event (2024-04-01)"
        in stdout
    )


def test_duckdb_memory_limit_comes_from_the_environment(
    small_world_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from expansion_scorer.data.loading import open_world

    monkeypatch.setenv("EXPANSION_DUCKDB_MEMORY", "1GB")
    limit = open_world(small_world_dir).con.execute("SELECT current_setting('memory_limit')")
    assert limit.fetchall()[0][0] in ("953.6 MiB", "1.0 GB", "1000.0 MB")

    monkeypatch.setenv("EXPANSION_DUCKDB_MEMORY", "lots")
    code, _, err = run_cli(["validate", str(small_world_dir)], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "EXPANSION_DUCKDB_MEMORY" in err


def test_validate_names_the_catalogue_and_every_definition_the_data_leaves_unread(
    small_world_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a world whose company names one event, one product and one plan differently
    import shutil

    data = tmp_path / "renamed"
    shutil.copytree(small_world_dir, data)
    usage = pd.read_parquet(data / "usage_events.parquet")
    usage["event"] = usage["event"].replace({"invite_user": "member_added"})
    usage.to_parquet(data / "usage_events.parquet", index=False)
    subs = pd.read_parquet(data / "subscriptions.parquet")
    subs["product"] = subs["product"].replace({"Analytics": "Insights"})
    subs["plan"] = subs["plan"].replace({"team": "pro"})
    subs.to_parquet(data / "subscriptions.parquet", index=False)

    # When it is validated with the shipped definitions
    code, out, err = run_cli(["validate", str(data)], capsys)

    # Then it is valid, says what it found, and names each definition that reads nothing
    assert code == 0, err
    assert "products (4): Automation, Core, Insights, Integrations" in out
    # plans come from the data, by price per seat: the renamed one takes its place
    assert "plans (4, by ARR per seat, lowest first): starter, pro, business, enterprise" in out
    assert "plan_order names" not in out and "not in plan_order" not in out
    assert "feature analytics_need_90d names Analytics, which the data never holds" in out
    assert "window invites_90d counts invite_user, which the usage log never holds" in out
    assert "feature invites_28d names invite_user" in out
    assert "affinity: learned from the training snapshots" in out  # nothing named to miss
    # and the shipped names the data does hold raise nothing
    assert "automation_need_90d" not in out and "schedule_rows_90d" not in out
