"""`expansion score --to postgresql://...` against a real PostgreSQL server: one row per account
and week, a re-run replaces the week, a failure leaves the table as it was, and bad targets stop
the run in one line before anything is scored or written, with no password anywhere."""

from __future__ import annotations

import contextlib
import io
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import quote

import mlflow
import pandas as pd
import pytest

from expansion_scorer.cli import main
from expansion_scorer.data.database import DatabaseError, read_select
from expansion_scorer.data.loading import open_world
from expansion_scorer.errors import UserError
from expansion_scorer.jobs.score import _crm_ids, _to_database
from expansion_scorer.serving import sink as sinks
from tests import pgserver
from tests.helpers import run_cli

WEEK = "2024-09-01"
EARLIER = "2024-08-25"
SECRETS = (pgserver.PASSWORD, quote(pgserver.PASSWORD, safe=""), quote(pgserver.PASSWORD))


def _table(url: str, where: str = "") -> pd.DataFrame:
    frame = read_select(url, f"SELECT * FROM expansion_scores {where} ORDER BY as_of, account_id")
    return frame.to_pandas()


def _stale(accounts: pd.Series, as_of: str) -> pd.DataFrame:
    """A list as an earlier run of the week might have left it: every account, other values."""
    n = len(accounts)
    return pd.DataFrame(
        {
            "rank": range(1, n + 1), "account_id": accounts.to_numpy(), "account_name": "old",
            "csm_owner": None, "score": -1.0, "expected_expansion_arr": None, "band": "stale",
            "arm": "none", "readiness": "ready", "readiness_reason": "", "motion": "",
            "reason_1": "", "reason_2": "", "reason_3": "", "reason_against": "",
            "talking_points": "", "model_version": "old v0", "as_of": date.fromisoformat(as_of),
        }
    )  # fmt: skip


@pytest.fixture(scope="module")
def weekly(
    small_world_dir: Path,
    trained_store: Path,
    postgres: pgserver.Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, object]]:
    """Given a table holding a stale run of the week (every account, score -1) and a row of an
    earlier week, when the week is scored once with --to (the password in the URL), then ..."""
    root = tmp_path_factory.mktemp("sink")
    postgres.psql(f"CREATE DATABASE sink_weekly OWNER {pgserver.USER};", database="postgres")
    url = postgres.url(database="sink_weekly")
    sink = sinks.open_sink(url)
    accounts = pd.read_parquet(small_world_dir / "accounts.parquet")["account_id"]
    now = datetime(2024, 9, 1, tzinfo=UTC)
    sinks.write(sink, sinks.rows(_stale(accounts, WEEK), None, now, 3), date.fromisoformat(WEEK))
    sinks.write(sink, sinks.rows(_stale(accounts[:5], EARLIER), None, now, 3), date(2024, 8, 25))
    out = root / "out"
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{trained_store / 'mlflow.db'}")
        mp.chdir(root)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(
                ["score", str(small_world_dir), "--as-of", WEEK, "--out", str(out), "--to", url]
            )
    assert code == 0, stderr.getvalue()
    yield {
        "url": url, "out": out, "stdout": stdout.getvalue(), "accounts": accounts,
        "world": small_world_dir,
    }  # fmt: skip


def test_the_week_is_one_row_per_scored_account_with_the_lists_values(
    weekly: dict[str, object],
) -> None:
    url, out = str(weekly["url"]), Path(str(weekly["out"]))
    scores = pd.read_parquet(out / "scores.parquet").sort_values("account_id")
    week = _table(url, f"WHERE as_of = DATE '{WEEK}'")

    # the control group is in scores.parquet but never synced to where CSMs work
    assert (scores["arm"] == "holdout").any() and not (week["arm"] == "holdout").any()
    scores = scores[scores["arm"] != "holdout"]
    assert len(week) == len(scores) > 0
    assert week["account_id"].tolist() == scores["account_id"].tolist()
    for column in ("rank", "score", "band", "arm", "motion", "reason_1", "readiness"):
        assert week[column].tolist() == scores[column].tolist(), column
    assert week["model_version"].unique().tolist() == ["expansion-propensity v1"]
    assert week["crm_id"].isna().all()  # the world's accounts carry no CRM id
    assert week["scored_at"].notna().all() and (week["band"] != "stale").all()


def test_a_rerun_of_the_week_replaces_it_and_keeps_other_weeks(weekly: dict[str, object]) -> None:
    url = str(weekly["url"])
    accounts = weekly["accounts"]
    assert isinstance(accounts, pd.Series)
    table = _table(url)
    scored = (table["as_of"].astype(str) == WEEK).sum()
    earlier = table[table["as_of"].astype(str) == EARLIER]

    # the stale rows of accounts that are not scored this week are gone, not left at -1
    assert (table.loc[table["as_of"].astype(str) == WEEK, "score"] >= 0).all()
    assert len(earlier) == 5 and (earlier["score"] == -1).all()  # another week: untouched
    assert (
        f"{scored:,} rows as of {WEEK} (0 new, {scored:,} replaced;"
        f" {len(accounts) - scored:,} of accounts no longer scored removed)"
    ) in str(weekly["stdout"])


def test_writing_the_same_week_again_changes_values_not_the_count(
    weekly: dict[str, object],
) -> None:
    url, out = str(weekly["url"]), Path(str(weekly["out"]))
    sink = sinks.open_sink(url)
    scores = pd.read_parquet(out / "scores.parquet")
    scores = scores[scores["arm"] != "holdout"]  # the table's rows: the control group stays out
    before = _table(url)
    moved = scores.assign(score=scores["score"] / 2, band="moved")

    written = sinks.write(sink, sinks.rows(moved, None, datetime.now(UTC), 3), date(2024, 9, 1))
    after = _table(url)

    assert written.rows == written.replaced == len(scores) and written.removed == 0
    assert len(after) == len(before)
    week = after[after["as_of"].astype(str) == WEEK].set_index("account_id")
    expected = moved.set_index("account_id")["score"]
    assert (week["band"] == "moved").all()
    assert week["score"].sort_index().tolist() == expected.sort_index().tolist()
    # put the scored week back for the other tests
    sinks.write(sink, sinks.rows(scores, None, datetime.now(UTC), 3), date(2024, 9, 1))


def test_a_write_that_fails_midway_leaves_the_table_as_it_was(
    weekly: dict[str, object], postgres: pgserver.Server
) -> None:
    """Given a constraint that a real row in the middle of the list breaks, the write fails on
    the server after other rows went in, and the table holds exactly what it held before."""
    url, out = str(weekly["url"]), Path(str(weekly["out"]))
    sink = sinks.open_sink(url)
    scores = pd.read_parquet(out / "scores.parquet")
    victim = scores["account_id"].sort_values().iloc[len(scores) // 2]
    world = open_world(Path(str(weekly["world"])))
    postgres.psql(
        "ALTER TABLE expansion_scores ADD CONSTRAINT no_victim"
        f" CHECK (account_id <> '{victim}' OR band = 'stale') NOT VALID;",
        database="sink_weekly",
    )
    before = _table(url)
    try:
        with pytest.raises(DatabaseError) as info:
            sinks.write(
                sink,
                sinks.rows(scores.assign(score=0.5), None, datetime.now(UTC), 3),
                date(2024, 9, 1),
            )
        # what the score job says when this happens after the files are published
        with pytest.raises(UserError, match=r"rolled back.*the table is as it was, the files in"):
            _to_database(sink, scores, date(2024, 9, 1), 3, world, datetime.now(UTC), out)
        after = _table(url)
    finally:
        postgres.psql(
            "ALTER TABLE expansion_scores DROP CONSTRAINT no_victim;", database="sink_weekly"
        )

    message = str(info.value)
    assert "writing table expansion_scores (replacing the week; rolled back)" in message
    assert 'violates check constraint "no_victim"' in message and "\n" not in message
    pd.testing.assert_frame_equal(after, before)


def test_a_connection_killed_in_the_middle_of_the_insert_leaves_the_table_as_it_was(
    weekly: dict[str, object], postgres: pgserver.Server
) -> None:
    """Given a trigger that holds the insert at the middle row (rows go in by account id, so
    half are in), when the writer's connection is terminated there, then the table holds what
    it held before."""
    url, out = str(weekly["url"]), Path(str(weekly["out"]))
    scores = pd.read_parquet(out / "scores.parquet")
    victim = scores["account_id"].sort_values().iloc[len(scores) // 2]
    postgres.psql(
        "CREATE FUNCTION hold() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        f" IF NEW.account_id = '{victim}' THEN PERFORM pg_sleep(60); END IF; RETURN NEW; END $$;"
        " CREATE TRIGGER hold BEFORE INSERT ON expansion_scores"
        " FOR EACH ROW EXECUTE FUNCTION hold();",
        database="sink_weekly",
    )
    before = _table(url)
    failed: list[BaseException] = []

    def write() -> None:
        try:
            data = sinks.rows(scores.assign(band="killed"), None, datetime.now(UTC), 3)
            sinks.write(sinks.open_sink(url), data, date(2024, 9, 1))
        except BaseException as exc:  # handed to the test thread
            failed.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        held = ""
        for _ in range(200):  # up to 20 s for the insert to reach the row
            held = postgres.psql(
                "SELECT pid FROM pg_stat_activity WHERE datname = 'sink_weekly'"
                " AND application_name = 'expansion-scorer' AND wait_event = 'PgSleep';",
                database="postgres",
            ).strip()
            if held:
                break
            time.sleep(0.1)
        assert held, "the insert never reached the held row"
        postgres.psql(f"SELECT pg_terminate_backend({held});", database="postgres")
        writer.join(30)
    finally:
        postgres.psql("DROP TRIGGER hold ON expansion_scores; DROP FUNCTION hold();",
                      database="sink_weekly")  # fmt: skip
    assert not writer.is_alive()
    assert len(failed) == 1 and isinstance(failed[0], DatabaseError), failed
    assert "rolled back" in str(failed[0])
    pd.testing.assert_frame_equal(_table(url), before)


def test_the_manifest_and_console_name_the_database_without_the_password(
    weekly: dict[str, object], trained_store: Path
) -> None:
    out = Path(str(weekly["out"]))
    manifest = (out / "manifest.json").read_text(encoding="utf-8")
    assert f'"database": "postgresql://{pgserver.USER}@127.0.0.1:' in manifest
    for secret in SECRETS:
        assert secret not in manifest and secret not in str(weekly["stdout"])


def _never_written(err: str, out: Path) -> None:
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for secret in SECRETS:
        assert secret not in err
    assert not out.exists()  # checked before anything was scored or written


def test_an_unreachable_database_or_a_wrong_password_stops_before_scoring(
    small_world_dir: Path,
    champion: Path,
    postgres: pgserver.Server,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    base = ["score", str(small_world_dir), "--as-of", WEEK, "--out", str(out), "--to"]
    port = pgserver.free_port()
    unreachable = (
        f"postgresql://{pgserver.USER}:{quote(pgserver.PASSWORD, safe='')}@127.0.0.1:{port}/crm"
    )
    wrong = postgres.url(password=pgserver.PASSWORD[::-1] + pgserver.PASSWORD)

    code, stdout, err = run_cli([*base, unreachable], capsys)
    assert code == 2 and stdout == ""
    assert f"cannot reach PostgreSQL at 127.0.0.1:{port}" in err
    _never_written(err, out)

    code, stdout, err = run_cli([*base, wrong], capsys)
    assert code == 2 and stdout == ""
    assert f"authentication failed for user {pgserver.USER} at 127.0.0.1:{postgres.port}" in err
    _never_written(err, out)
    assert pgserver.PASSWORD[::-1] not in err

    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    logged = [str(v) for r in runs for v in (*r.data.params.values(), *r.data.tags.values())]
    assert logged and not any(s in v for s in SECRETS for v in logged)


def test_a_table_that_cannot_take_the_rows_stops_before_scoring(
    small_world_dir: Path,
    champion: Path,
    postgres: pgserver.Server,
    pg_database: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    postgres.psql(
        "CREATE SCHEMA crm_sync; CREATE TABLE crm_sync.scores (account_id text, as_of date,"
        f" score double precision); ALTER SCHEMA crm_sync OWNER TO {pgserver.USER};"
        f" ALTER TABLE crm_sync.scores OWNER TO {pgserver.USER};",
        database=pg_database,
    )
    out = tmp_path / "out"
    base = ["score", str(small_world_dir), "--as-of", WEEK, "--out", str(out)]
    url = postgres.url(database=pg_database)

    code, _, err = run_cli([*base, "--to", url, "--to-table", "crm_sync.scores"], capsys)
    assert code == 2 and "table crm_sync.scores at postgresql://scorer@" in err
    assert "missing columns crm_id, account_name" in err and "ALTER TABLE crm_sync.scores" in err
    _never_written(err, out)

    code, _, err = run_cli([*base, "--to", url, "--to-table", "a.b.c"], capsys)
    assert code == 2 and "--to-table 'a.b.c'" in err
    code, _, err = run_cli([*base, "--to-table", "scores"], capsys)
    assert code == 2 and "add --to URL" in err
    assert not out.exists()


def test_a_user_who_may_only_read_the_table_is_told_what_to_grant(
    weekly: dict[str, object], postgres: pgserver.Server
) -> None:
    postgres.psql(
        f"CREATE ROLE reader LOGIN PASSWORD '{pgserver.PASSWORD}';"
        " GRANT SELECT ON expansion_scores TO reader;",
        database="sink_weekly",
    )
    url = str(weekly["url"]).replace(f"//{pgserver.USER}:", "//reader:")

    with pytest.raises(DatabaseError) as info:
        sinks.check(sinks.open_sink(url), 3)
    assert "user reader lacks INSERT, DELETE on it: GRANT INSERT, DELETE ON" in str(info.value)
    with pytest.raises(DatabaseError, match="user reader may not create tables in schema public"):
        sinks.check(sinks.open_sink(url, "public.new_scores"), 3)


def test_the_crm_id_comes_from_the_accounts_table_when_it_has_one(
    small_world_dir: Path, tmp_path: Path
) -> None:
    world = tmp_path / "world"
    shutil.copytree(small_world_dir, world)
    accounts = pd.read_parquet(world / "accounts.parquet")
    accounts["crm_id"] = "0015g0000" + accounts["account_id"]
    accounts.to_parquet(world / "accounts.parquet", index=False)

    ids = _crm_ids(open_world(world), accounts["account_id"].iloc[::-1].reset_index(drop=True))
    assert ids is not None
    assert ids.tolist() == ("0015g0000" + accounts["account_id"]).iloc[::-1].tolist()
    assert _crm_ids(open_world(small_world_dir), accounts["account_id"]) is None
