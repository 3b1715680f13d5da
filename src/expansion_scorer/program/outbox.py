"""The outbox: every message a week delivers, recorded in the history before it is sent.

A table of `history.duckdb`, keyed by (week, channel, recipient). A weekly run stages its
messages with the week's other rows, so they are recorded in the same transaction as the week
(`history.apply_stage` calls `merge`): a run killed before its week is published has recorded
none, one killed after has recorded all. Sending moves a row from `pending` to `delivered` or
`failed`; just before the step that cannot be taken back (the SMTP DATA, the webhook's POST) it
is `in_doubt`, so a process killed there leaves a row that is never sent again unasked, rather
than one that might go twice. A re-run of a week replaces what it has not sent and keeps what it
has; a newer week supersedes what an older one never got out to the same recipient.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pandas as pd

STAGED = "history/outbox.parquet"
PENDING, IN_DOUBT, DELIVERED, FAILED, SUPERSEDED = (
    "pending", "in_doubt", "delivered", "failed", "superseded",
)  # fmt: skip
SENDABLE = (PENDING, FAILED)
COLUMNS = """week DATE, channel VARCHAR, recipient VARCHAR, address VARCHAR, subject VARCHAR,
    digest VARCHAR, payload BLOB, status VARCHAR, attempts INTEGER, answer VARCHAR,
    updated_at TIMESTAMP"""
NAMES = [c.split()[0] for c in COLUMNS.split(",")]


def staged_rows(week: date, messages: list[dict[str, object]]) -> pd.DataFrame:
    """The week's messages as the stage holds them: each pending, never tried."""
    frame = pd.DataFrame(
        messages, columns=["channel", "recipient", "address", "subject", "digest", "payload"]
    )
    frame.insert(0, "week", week)
    frame["status"] = PENDING
    frame["attempts"] = 0
    frame["answer"] = ""
    frame["updated_at"] = pd.Timestamp(datetime.now(UTC).replace(tzinfo=None))
    return frame.astype({"attempts": "int32"})[NAMES]


def create(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE TABLE IF NOT EXISTS outbox ({COLUMNS})")


def merge(con: duckdb.DuckDBPyConnection, staged: Path) -> None:
    """The staged week into the outbox, inside the caller's transaction: what the week has
    not sent is replaced, what it has (or may have) sent is kept, and older weeks' unsent
    messages to the same recipients are superseded."""
    create(con)
    source = "read_parquet(?)"
    con.execute(
        f"DELETE FROM outbox WHERE status IN ('{PENDING}', '{FAILED}')"
        f" AND week IN (SELECT DISTINCT week FROM {source})",
        [str(staged)],
    )
    con.execute(
        f"""INSERT INTO outbox SELECT {", ".join(NAMES)} FROM {source} s
        WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.week = s.week
                          AND o.channel = s.channel AND o.recipient = s.recipient)""",
        [str(staged)],
    )
    con.execute(  # whichever week was staged: only the newest week's messages still go
        f"""UPDATE outbox SET status = '{SUPERSEDED}' WHERE status IN ('{PENDING}', '{FAILED}')
        AND EXISTS (SELECT 1 FROM outbox n WHERE n.channel = outbox.channel
                    AND n.recipient = outbox.recipient AND n.week > outbox.week)"""
    )


class Outbox:
    """The outbox of one history file, open for the length of a delivery run (the caller
    holds the output root's lock)."""

    def __init__(self, history: Path, read_only: bool = False) -> None:
        self.con = duckdb.connect(str(history), read_only=read_only)
        if not read_only:
            create(self.con)

    def exists(self) -> bool:
        """Whether the history holds an outbox (a week has recorded deliveries)."""
        found = self.con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'outbox'"
        ).fetchone()
        return bool(found and found[0])

    def close(self) -> None:
        self.con.close()

    def rows(self, statuses: tuple[str, ...], payload: bool = True) -> pd.DataFrame:
        """The messages in these states, oldest week first, then by channel and recipient."""
        wanted = [n for n in NAMES if payload or n != "payload"]
        marks = ", ".join("?" for _ in statuses)
        return self.con.execute(
            f"SELECT {', '.join(wanted)} FROM outbox WHERE status IN ({marks})"
            " ORDER BY week, channel, recipient",
            list(statuses),
        ).df()

    def summary(self) -> pd.DataFrame:
        """Per week, channel and state: how many messages, and the latest change."""
        return self.con.execute(
            "SELECT week, channel, status, count(*) AS messages, max(updated_at) AS updated_at"
            " FROM outbox GROUP BY ALL ORDER BY week, channel, status"
        ).df()

    def mark(
        self, key: tuple[date, str, str], status: str, answer: str, tried: bool = False
    ) -> None:
        """One message's new state, committed at once; `tried` counts an attempt."""
        week, channel, recipient = key
        self.con.execute(
            "UPDATE outbox SET status = ?, answer = ?, attempts = attempts + ?, updated_at = ?"
            " WHERE week = ? AND channel = ? AND recipient = ?",
            [status, answer[:500], int(tried), datetime.now(UTC).replace(tzinfo=None),
             week, channel, recipient],
        )  # fmt: skip
