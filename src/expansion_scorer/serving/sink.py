"""`expansion score --to postgresql://...`: the week's list into a table, all or nothing.

One row per (account_id, as_of), the table's unique key. A run copies its rows (binary COPY)
into a temporary table and, in the same transaction, deletes the week's rows and inserts its
own, so a re-run of a week replaces the week (accounts no longer scored drop out) and a run that
fails anywhere leaves the table as it was. `check` runs before any data is read: a database
that cannot be reached, or a table that cannot take the rows, stops the run before the
expensive work.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pandas as pd
import pyarrow as pa

from expansion_scorer.data.database import (
    Database,
    DatabaseError,
    connect,
    parse_url,
    query_error,
)
from expansion_scorer.errors import UserError

TABLE = "expansion_scores"
KEY = ("account_id", "as_of")
LOCK_TIMEOUT_S = 120
STAGE = "expansion_scores_stage"
"""The temporary table a run copies its rows into; it lives only in the run's session."""
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")

_ARROW: dict[str, pa.DataType] = {
    "text": pa.string(),
    "integer": pa.int32(),
    "double precision": pa.float64(),
    "date": pa.date32(),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
}
_ACCEPTS: dict[str, set[str]] = {
    "text": {"text", "character varying"},
    "integer": {"integer", "bigint"},
    "double precision": {"double precision", "numeric"},
    "date": {"date"},
    "timestamp with time zone": {"timestamp with time zone", "timestamp without time zone"},
}
"""The column types an existing table may have for each type this module writes."""
_PG = {arrow: pg for pg, arrow in _ARROW.items()}


def columns(reasons: int) -> dict[str, str]:
    """The table's columns and their PostgreSQL types: the scores.parquet columns, the CRM id
    and when the run started."""
    return {
        "as_of": "date",
        "account_id": "text",
        "crm_id": "text",
        "account_name": "text",
        "csm_owner": "text",
        "rank": "integer",
        "score": "double precision",
        "expected_expansion_arr": "double precision",
        "band": "text",
        "arm": "text",
        "readiness": "text",
        "readiness_reason": "text",
        "motion": "text",
        **{f"reason_{i + 1}": "text" for i in range(reasons)},
        "reason_against": "text",
        "talking_points": "text",
        "model_version": "text",
        "scored_at": "timestamp with time zone",
    }


NOT_NULL = frozenset({"as_of", "account_id", "rank", "score", "band", "model_version"})


@dataclass(frozen=True)
class Sink:
    """Where the scores go: a database and a table in it (`schema.table` or a bare name)."""

    database: Database
    schema: str | None
    table: str

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}" if self.schema else self.table

    @property
    def quoted(self) -> str:
        return ".".join(_ident(p) for p in (self.schema, self.table) if p)

    def describe(self) -> dict[str, str]:
        """For the manifest: the redacted URL and the table."""
        return {"database": self.database.display, "table": self.name}


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def open_sink(url: str, table: str | None = None) -> Sink:
    """Parse `--to` and `--to-table` (`[schema.]table`, default `expansion_scores`); no I/O."""
    database = parse_url(url)
    given = table or TABLE
    parts = given.split(".")
    if len(parts) > 2 or not all(_NAME.fullmatch(p) for p in parts):
        raise UserError(
            f"--to-table {given!r}: use a table name or schema.table of letters, digits and"
            " underscores, such as expansion_scores or crm_sync.expansion_scores"
        )
    schema, name = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    return Sink(database, schema, name)


def _fail(sink: Sink, what: str) -> DatabaseError:
    return DatabaseError(f"table {sink.name} at {sink.database.display}: {what}")


def check(sink: Sink, reasons: int) -> None:
    """Before scoring: the server answers, and the table takes the rows or can be created.

    Every problem is one line naming the table and what to do; nothing is created or changed.
    """
    import adbc_driver_manager

    wanted = columns(reasons)
    conn = connect(sink.database)
    try:
        with conn.cursor() as cur:
            try:
                cur.execute("SELECT current_schema(), current_user")
                row = cur.fetchone()
                schema = sink.schema or (row[0] if row else None)
                user = row[1] if row else ""
                if schema is None:
                    raise _fail(sink, "no schema is current; name one: --to-table schema.table")
                cur.execute(
                    "SELECT has_schema_privilege(n.oid, 'CREATE'),"
                    " has_schema_privilege(n.oid, 'USAGE')"
                    " FROM pg_namespace n WHERE n.nspname = $1",
                    parameters=(schema,),
                )
                privilege = cur.fetchone()
                if privilege is None:
                    raise _fail(sink, f"schema {schema} does not exist; create it or name another")
                cur.execute(
                    "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
                    " a.atthasdef FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0"
                    " AND NOT a.attisdropped",
                    parameters=(schema, sink.table),
                )
                present = {r[0]: (r[1], r[2], r[3]) for r in cur.fetchall()}
                if not present:
                    if not privilege[0]:
                        raise _fail(
                            sink,
                            f"absent, and user {user} may not create tables in schema {schema}:"
                            f" GRANT CREATE ON SCHEMA {schema} TO {user}, or create the table"
                            " as the README's sink section shows",
                        )
                    return
                _check_shape(sink, present, wanted)
                needed = ("INSERT", "DELETE", "SELECT")
                cur.execute(
                    "SELECT " + ", ".join(f"has_table_privilege($1, '{p}')" for p in needed),
                    parameters=(f"{_ident(schema)}.{_ident(sink.table)}",),
                )
                granted = cur.fetchone() or (False,) * len(needed)
                lacking = [p for p, ok in zip(needed, granted, strict=True) if not ok]
                if lacking:
                    raise _fail(
                        sink,
                        f"user {user} lacks {', '.join(lacking)} on it: GRANT"
                        f" {', '.join(lacking)} ON {schema}.{sink.table} TO {user}",
                    )
                if not _has_key(cur, schema, sink.table):
                    raise _fail(
                        sink,
                        "it has no unique key on (account_id, as_of), which keeps one row per"
                        " account and week:"
                        f" ALTER TABLE {schema}.{sink.table} ADD UNIQUE (account_id, as_of)",
                    )
            except adbc_driver_manager.Error as exc:
                raise query_error(sink.database, f"checking table {sink.name}", exc) from None
        conn.rollback()
    finally:
        conn.close()


def _check_shape(
    sink: Sink, present: dict[str, tuple[str, bool, bool]], wanted: dict[str, str]
) -> None:
    missing = [c for c in wanted if c not in present]
    if missing:
        add = ", ".join(f"ADD COLUMN {c} {wanted[c]}" for c in missing)
        raise _fail(
            sink,
            f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}:"
            f" ALTER TABLE {sink.name} {add}, or write to another --to-table",
        )
    mistyped = [
        f"{c} is {present[c][0]}, not {t}"
        for c, t in wanted.items()
        if present[c][0].split("(")[0] not in _ACCEPTS[t]
    ]
    if mistyped:
        raise _fail(sink, f"{'; '.join(mistyped)}: alter those columns or use another --to-table")
    blocking = [c for c, (_, notnull, default) in present.items()
                if c not in wanted and notnull and not default]  # fmt: skip
    if blocking:
        raise _fail(
            sink,
            f"column {', '.join(blocking)} is NOT NULL without a default and the scorer does not"
            " fill it: give it a default or drop NOT NULL",
        )


def _has_key(cur: Any, schema: str, table: str) -> bool:
    """Whether a unique index (no partial one) covers exactly (account_id, as_of)."""
    cur.execute(
        "SELECT array_agg(a.attname::text ORDER BY a.attname::text)"
        " FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey)"
        " WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique AND i.indpred IS NULL"
        " GROUP BY i.indexrelid",
        parameters=(schema, table),
    )
    keys = [tuple(r[0]) for r in cur.fetchall()]
    return tuple(sorted(KEY)) in keys


def rows(
    table: pd.DataFrame, crm_ids: pd.Series | None, scored_at: datetime, reasons: int
) -> pa.Table:
    """The flat score list (`scores.parquet`'s columns) as the sink's Arrow table."""
    wanted = columns(reasons)
    frame = table.copy()
    frame["as_of"] = pd.to_datetime(frame["as_of"]).dt.date
    if "crm_id" not in frame:
        frame["crm_id"] = None if crm_ids is None else crm_ids.to_numpy()
    frame["scored_at"] = pd.Timestamp(scored_at)
    frame = frame[list(wanted)]
    for name, kind in wanted.items():
        if kind == "text":
            frame[name] = frame[name].astype("string")
    schema = pa.schema(
        [pa.field(n, _ARROW[k], nullable=n not in NOT_NULL) for n, k in wanted.items()]
    )
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


TASK_COLUMNS: dict[str, str] = {
    "task_key": "text", "as_of": "date", "account_id": "text", "crm_id": "text",
    "account_name": "text", "owner": "text", "owner_email": "text", "subject": "text",
    "body": "text", "due_date": "date", "priority": "text", "motion": "text",
    "score": "double precision", "status": "text", "updated_at": "timestamp with time zone",
}  # fmt: skip
TASK_STAGE = "expansion_tasks_stage"


def task_rows(tasks: pd.DataFrame, at: datetime) -> pa.Table:
    """The week's CRM tasks (`tasks.parquet`) as the tasks table's Arrow rows."""
    frame = tasks.assign(updated_at=pd.Timestamp(at))
    for name, kind in TASK_COLUMNS.items():
        if kind == "text":
            frame[name] = frame[name].astype("string")
        elif kind == "date":
            frame[name] = pd.to_datetime(frame[name]).dt.date
    schema = pa.schema([pa.field(n, _ARROW[k], nullable=n != "task_key")
                        for n, k in TASK_COLUMNS.items()])  # fmt: skip
    return pa.Table.from_pandas(frame[list(TASK_COLUMNS)], schema=schema, preserve_index=False)


@dataclass(frozen=True)
class Tasks:
    """The week's tasks and the table (beside the scores' table) they are upserted into."""

    table: str
    rows: pa.Table


def _upsert_tasks(cur: Any, sink: Sink, tasks: Tasks, as_of: date) -> None:
    """Upsert by `task_key` (stable per account, week and motion), in the caller's transaction;
    the week's tasks this run no longer makes are deleted, so the table is the week's truth
    for the reverse-ETL sync."""
    target = ".".join(_ident(p) for p in (sink.schema, tasks.table) if p)
    definition = ", ".join(f"{_ident(c)} {k}" for c, k in TASK_COLUMNS.items())
    cur.execute(f"CREATE TABLE IF NOT EXISTS {target} ({definition}, PRIMARY KEY (task_key))")
    cur.execute(f"LOCK TABLE {target} IN SHARE ROW EXCLUSIVE MODE")
    cur.adbc_ingest(TASK_STAGE, tasks.rows, mode="create", temporary=True)
    cur.execute(
        f"DELETE FROM {target} t WHERE t.as_of = $1"
        f" AND NOT EXISTS (SELECT 1 FROM {TASK_STAGE} s WHERE s.task_key = t.task_key)",
        parameters=(as_of,),
    )
    listed = ", ".join(_ident(c) for c in TASK_COLUMNS)
    updates = ", ".join(f"{_ident(c)} = EXCLUDED.{_ident(c)}" for c in TASK_COLUMNS
                        if c != "task_key")  # fmt: skip
    cur.execute(
        f"INSERT INTO {target} ({listed}) SELECT {listed} FROM {TASK_STAGE}"
        f" ON CONFLICT (task_key) DO UPDATE SET {updates}"
    )


@dataclass(frozen=True)
class Written:
    rows: int
    replaced: int
    """Of `rows`, those whose (account_id, as_of) the table held before; the rest are new."""
    removed: int
    """Rows of the same week whose accounts this run no longer lists, deleted."""


def write(sink: Sink, data: pa.Table, as_of: date, tasks: Tasks | None = None) -> Written:
    """Replace the week `as_of` in the table with `data`, in one transaction.

    The table is created if absent, inside the same transaction. The week's rows are deleted
    and the new ones inserted rather than updated in place by INSERT ... ON CONFLICT DO UPDATE:
    readers see the same thing after the commit, no UPDATE privilege is needed, and it was no
    slower (a 1,000,000-row re-run: 42.7 s against 46.0 s as updates; README, bench/pg_sink.py).
    A failure anywhere rolls everything back: the table is as it was, or still absent. With
    `tasks`, the week's CRM tasks are upserted in the same transaction (`_upsert_tasks`).
    """
    import adbc_driver_manager

    cols = list(data.column_names)
    kinds = {f.name: _PG[f.type] for f in data.schema}
    target = sink.quoted
    listed = ", ".join(_ident(c) for c in cols)
    conn = connect(sink.database)
    step = "creating the table"
    try:
        with conn.cursor() as cur:
            try:
                definition = ", ".join(
                    f"{_ident(c)} {kinds[c]}{' NOT NULL' if c in NOT_NULL else ''}" for c in cols
                )
                # The key leads with the week, so deleting a week reads only its own rows and a
                # new week's rows land at the right edge of the index.
                cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {target} ({definition},"
                    " PRIMARY KEY (as_of, account_id))"
                )
                # One writer at a time; readers (a reverse-ETL sync) are not blocked and see the
                # previous state until the commit. A session holding the table longer than the
                # timeout ends the run in one line instead of a wait without end.
                cur.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_S}s'")
                step = "waiting for the table's lock"
                cur.execute(f"LOCK TABLE {target} IN SHARE ROW EXCLUSIVE MODE")
                step = "copying the rows"
                cur.adbc_ingest(STAGE, data, mode="create", temporary=True)
                step = "replacing the week"
                cur.execute(
                    f"WITH gone AS (DELETE FROM {target} WHERE as_of = $1 RETURNING account_id)"
                    f" SELECT count(*), count(s.account_id) FROM gone"
                    f" LEFT JOIN {STAGE} s USING (account_id)",
                    parameters=(as_of,),
                )
                deleted, replaced = (int(v) for v in cur.fetchone() or (0, 0))
                cur.execute(
                    f"INSERT INTO {target} ({listed}) SELECT {listed} FROM {STAGE}"
                    " ORDER BY account_id"
                )
                if tasks is not None:
                    step = f"upserting the tasks into {tasks.table}"
                    _upsert_tasks(cur, sink, tasks, as_of)
                step = "committing"
                conn.commit()
            except adbc_driver_manager.Error as exc:
                _rollback(conn)
                raise query_error(
                    sink.database, f"writing table {sink.name} ({step}; rolled back)", exc
                ) from None
    finally:
        conn.close()
    return Written(data.num_rows, replaced, deleted - replaced)


def _rollback(conn: Any) -> None:
    """Roll back what can be; a dead connection has rolled back on the server already."""
    import adbc_driver_manager

    with contextlib.suppress(adbc_driver_manager.Error):
        conn.rollback()
