"""Helpers for tests: a tiny hand-written world, table writing, and running the CLI in-process."""

from __future__ import annotations

import importlib.util
import os
import shutil
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pandas as pd
import pytest

if TYPE_CHECKING:
    from expansion_scorer.data.synthetic import ProgramWorld

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


DATED_BY = {
    "accounts": "created_at",
    "subscriptions": "start_date",
    "usage_events": "timestamp",
    "support_tickets": "created_at",
    "nps_responses": "responded_at",
}


def rewrite_future(src: Path, dst: Path, as_of: str, mode: str) -> Path:
    """Copy a world, changing only rows dated on or after `as_of`.

    mode "drop": remove them, and forget end dates on or after as_of (still open then).
    mode "scramble": keep the past, and replace the future with different future rows.
    """
    cut = pd.Timestamp(as_of)
    dst.mkdir(parents=True, exist_ok=True)
    for name, col in DATED_BY.items():
        path = src / f"{name}.parquet"
        if not path.exists():
            continue
        frame = pd.read_parquet(path)
        when = pd.to_datetime(frame[col])
        past, future = frame[when < cut].copy(), frame[when >= cut].copy()
        if name == "subscriptions":
            ends = pd.to_datetime(past["end_date"])
            later = ends >= cut
            if mode == "drop":
                past["end_date"] = past["end_date"].where(~later, None)
            else:  # another future end date, or none
                shifted = (ends[later] + pd.Timedelta(days=45)).dt.date
                past.loc[later, "end_date"] = shifted.where(shifted.index % 2 == 0, None)
        if mode == "scramble" and len(future):
            future = future.sample(frac=1.0, replace=True, random_state=5)
            if name == "accounts":  # keep those accounts, and add more
                copies = future.copy()
                copies["account_id"] = [f"{a}-later{i}" for i, a in enumerate(copies["account_id"])]
                future = pd.concat([frame[when >= cut], copies], ignore_index=True)
            else:
                shift = pd.Timedelta(days=3)
                future[col] = (pd.to_datetime(future[col]) + shift).astype(frame[col].dtype)
            past = pd.concat([past, future], ignore_index=True)
        past.to_parquet(dst / f"{name}.parquet", index=False)
    return dst


HOSTILE_NAMES = (
    "<script>alert(1)</script>",
    '=HYPERLINK("http://x","y")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    '"><img src=x onerror=alert(2)>',
    "\t=1+1",
    "\r=1+1",
    "\n=1+1",
    "</td></tr><tr><td>",
    "a, b; c\r\nd",
)


def with_hostile_names(src: Path, dst: Path, every: bool = False) -> Path:
    """A copy of a world whose first accounts are named to inject script or spreadsheet formulas.

    With `every`, every account, CSM and segment name is hostile (cycling through the list).
    """
    shutil.copytree(src, dst)
    accounts = pd.read_parquet(dst / "accounts.parquet")
    if every:
        n = len(HOSTILE_NAMES)
        accounts["account_name"] = [HOSTILE_NAMES[i % n] for i in range(len(accounts))]
        for column, shift in (("csm_owner", 0), ("segment", 3)):
            values = accounts[column].dropna().unique()
            renamed = {v: f"{HOSTILE_NAMES[(i + shift) % n]} {i}" for i, v in enumerate(values)}
            accounts[column] = accounts[column].map(renamed)
    else:  # the oldest accounts, which every as-of date in the tests has
        oldest = accounts.sort_values(["created_at", "account_id"]).index[: len(HOSTILE_NAMES)]
        accounts.loc[oldest, "account_name"] = list(HOSTILE_NAMES)
    accounts.to_parquet(dst / "accounts.parquet", index=False)
    return dst


def unavailable(why: str) -> NoReturn:
    """Skip a test this machine lacks a part for; in CI, where `.ci/run` installs every part,
    fail instead, so a missing part never passes unseen."""
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


def spark_missing() -> str | None:
    """Why the Spark engine cannot run here (no pyspark, no Java), or None when it can."""
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (make install installs it)"
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        return "Java is missing (.ci/run installs openjdk-17-jre-headless as root)"
    return None


def postgres_missing() -> str | None:
    """Why no throwaway PostgreSQL server can start here, or None when one can."""
    from tests import pgserver

    if pgserver.binaries() is None:
        return "PostgreSQL is not installed (apt-get install postgresql); .ci/run installs it"
    return None


def new_store(empty_store: Path, directory: Path) -> str:
    """A new, empty SQLite MLflow store in `directory` (a copy of the session's `empty_store`
    fixture), and its tracking URI."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(empty_store, directory / "mlflow.db")
    return f"sqlite:///{directory / 'mlflow.db'}"


def history_table(out: Path, query: str) -> pd.DataFrame:
    """A query over the weekly runs' history under `out`, read-only."""
    import duckdb

    con = duckdb.connect(str(out / "history.duckdb"), read_only=True)
    try:
        return con.execute(query).df()
    finally:
        con.close()


def score_program(
    root: Path, world: ProgramWorld, weeks: list[str], config: Path, store: Path,
    compliance: float, seed: int,
) -> Path:  # fmt: skip
    """The real loop (`run_program`) over `weeks` of `world`, each week a weekly run through the
    CLI with `config`, scored by `store`'s champion, under `root`; returns the output root."""
    from expansion_scorer.cli import main
    from expansion_scorer.program.simulation import run_program
    from expansion_scorer.settings import load_feature_set

    out = root / "weekly"

    def score(as_of: date) -> None:
        args = ["score", str(world.out), "--as-of", str(as_of), "--out", str(out),
                "--per-csm", "--config", str(config)]  # fmt: skip
        assert main(args) == 0

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
        mp.chdir(root)
        dates = [date.fromisoformat(w) for w in weeks]
        run_program(world, dates, score, out, load_feature_set(), compliance=compliance, seed=seed)
    return out
