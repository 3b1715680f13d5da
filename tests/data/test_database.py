"""PostgreSQL by URL: URL forms, redaction, one-line connection errors, and `read_select` against a
real server started for the session."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import duckdb
import pyarrow.parquet as pq
import pytest

from expansion_scorer.data.database import (
    DatabaseError,
    display,
    parse_url,
    read_select,
    redact,
)
from expansion_scorer.errors import UserError
from tests import pgserver

SECRET = "s3cr@t:/pa ss"


def test_url_forms_take_the_password_from_the_url_the_environment_or_a_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SINK_PW", SECRET)
    literal = parse_url(f"postgresql://scorer:{quote(SECRET, safe='')}@db.example:6543/crm")
    from_env = parse_url("postgres://scorer:${SINK_PW}@db.example:6543/crm?sslmode=require")
    from_setting = parse_url(f"postgresql://scorer@db.example/crm?password={quote(SECRET)}")
    bare = parse_url("postgresql://scorer@db.example/crm")

    assert literal.password == from_env.password == from_setting.password == SECRET
    assert bare.password == ""
    assert (literal.user, literal.host, literal.port, literal.dbname) == (
        "scorer", "db.example", "6543", "crm",
    )  # fmt: skip
    assert from_env.display == "postgresql://scorer@db.example:6543/crm?sslmode=require"
    assert from_setting.display == "postgresql://scorer@db.example/crm"
    for db in (literal, from_env, from_setting):
        assert SECRET not in db.display and quote(SECRET, safe="") not in db.display
        assert SECRET not in repr(db)
        assert f":{quote(SECRET, safe='')}@" in db.uri  # libpq gets it, percent-encoded


def test_bad_urls_are_one_line_without_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_PW", raising=False)
    with pytest.raises(UserError, match=r"\$\{NOT_SET_PW\}, which is not set"):
        parse_url("postgresql://scorer:${NOT_SET_PW}@db/crm")
    encoded = quote(SECRET, safe="")
    with pytest.raises(UserError, match="is not a PostgreSQL URL") as info:
        parse_url(f"mysql://scorer:{encoded}@db/crm")
    assert encoded not in str(info.value) and "\n" not in str(info.value)
    assert display(f"mysql://scorer:{encoded}@db/crm") == "mysql://scorer@db/crm"
    assert display("postgresql://scorer:p@ss@db/crm") == "postgresql://scorer@db/crm"


def test_redact_removes_every_form_of_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "from-the-env")
    text = (
        f"postgresql://u:{quote(SECRET, safe='')}@h/db failed for {SECRET!r}; password=abc"
        " and from-the-env"
    )
    out = redact(text, SECRET)
    assert SECRET not in out and quote(SECRET, safe="") not in out
    assert "abc" not in out and "from-the-env" not in out
    assert "postgresql://u@h/db" in out


def test_connection_errors_say_what_failed_in_one_line(postgres: pgserver.Server) -> None:
    wrong = f"postgresql://{pgserver.USER}:{quote(SECRET, safe='')}@127.0.0.1:{postgres.port}/crm"
    cases = {
        wrong: f"authentication failed for user {pgserver.USER} at 127.0.0.1:{postgres.port}",
        postgres.url(database="no_such_db"): "database no_such_db does not exist",
        f"postgresql://scorer:{quote(SECRET, safe='')}@127.0.0.1:{pgserver.free_port()}/crm": (
            "cannot reach PostgreSQL at 127.0.0.1:"
        ),
    }
    for url, expected in cases.items():
        with pytest.raises(DatabaseError) as info:
            read_select(url, "SELECT 1")
        message = str(info.value)
        assert expected in message
        assert "\n" not in message
        for secret in (SECRET, quote(SECRET, safe=""), pgserver.PASSWORD):
            assert secret not in message


def test_read_select_round_trips_a_contract_table(
    world_dir: Path, postgres: pgserver.Server, pg_database: str, tmp_path: Path
) -> None:
    """Given a world's accounts loaded into PostgreSQL by psql, when they are read back by
    read_select, then every row and value is the file's, in types DuckDB reads."""
    accounts = pq.read_table(world_dir / "accounts.parquet")
    frame = accounts.to_pandas()
    body = frame.to_csv(index=False, na_rep="\\N")
    postgres.psql(
        "CREATE TABLE accounts (account_id text PRIMARY KEY, account_name text, created_at date,"
        " industry text, employee_count double precision, country text, segment text,"
        f" csm_owner text); ALTER TABLE accounts OWNER TO {pgserver.USER};\n"
        "COPY accounts FROM STDIN (FORMAT csv, HEADER true, NULL '\\N');\n" + body + "\\.\n",
        database=pg_database,
    )

    back = read_select(postgres.url(database=pg_database), "SELECT * FROM accounts")

    assert back.column_names == accounts.column_names
    key = "account_id"
    assert back.sort_by(key).to_pylist() == accounts.sort_by(key).to_pylist()
    con = duckdb.connect()
    con.register("back", back)
    seen = con.execute("SELECT count(*), min(created_at) FROM back").fetchone()
    assert seen == (len(frame), min(frame["created_at"]))


def test_read_select_is_read_only_and_reports_the_servers_reason(
    postgres: pgserver.Server, pg_database: str
) -> None:
    url = postgres.url(database=pg_database)
    with pytest.raises(DatabaseError, match="read-only transaction"):
        read_select(url, "CREATE TABLE sneaky (a int)")
    with pytest.raises(DatabaseError, match=r'the SELECT failed on .*: column "nope" does not'):
        read_select(url, "SELECT nope FROM pg_class")
    typed = read_select(url, "SELECT 1.50::numeric(8, 2) AS amount, now() AS at")
    assert typed.column("amount").to_pylist() == ["1.50"]  # numeric as text, cast by the loader
    assert str(typed.schema.field("at").type) == "timestamp[us, tz=UTC]"
