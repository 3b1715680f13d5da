"""The outbox's record of a week: a re-run replaces what it has not sent and keeps what it has;
only the newest week's unsent messages still go."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb

from expansion_scorer.program import outbox

W1, W2 = date(2025, 6, 2), date(2025, 6, 9)


def _stage(history: Path, week: date, recipients: list[str], body: bytes) -> None:
    staged = history.parent / "outbox.parquet"
    rows: list[dict[str, object]] = [
        {"channel": "email", "recipient": r, "address": f"{r}@example.com", "subject": "s",
         "digest": body.hex(), "payload": body}
        for r in recipients
    ]  # fmt: skip
    outbox.staged_rows(week, rows).to_parquet(staged, index=False)
    con = duckdb.connect(str(history))
    con.execute("BEGIN TRANSACTION")
    outbox.merge(con, staged)
    con.execute("COMMIT")
    con.close()


def _states(history: Path) -> dict[tuple[str, str], tuple[str, bytes]]:
    box = outbox.Outbox(history)
    try:
        rows = box.rows((outbox.PENDING, outbox.DELIVERED, outbox.SUPERSEDED, outbox.FAILED))
    finally:
        box.close()
    return {
        (str(r["week"])[:10], str(r["recipient"])): (str(r["status"]), bytes(r["payload"]))
        for r in rows.to_dict("records")
    }


def test_a_rerun_replaces_the_unsent_keeps_the_sent_and_drops_who_is_gone(tmp_path: Path) -> None:
    history = tmp_path / "history.duckdb"
    _stage(history, W1, ["ana", "bo", "cy"], b"first")
    box = outbox.Outbox(history)
    box.mark((W1, "email", "ana"), outbox.DELIVERED, "250 ok", tried=True)
    box.close()

    _stage(history, W1, ["ana", "bo"], b"second")  # the week re-run: cy has nothing now

    assert _states(history) == {
        ("2025-06-02", "ana"): ("delivered", b"first"),
        ("2025-06-02", "bo"): ("pending", b"second"),
    }


def test_a_newer_week_supersedes_what_an_older_one_never_sent(tmp_path: Path) -> None:
    history = tmp_path / "history.duckdb"
    _stage(history, W1, ["ana", "bo"], b"old")
    _stage(history, W2, ["ana"], b"new")
    _stage(history, W1, ["ana", "bo"], b"old again")  # an older week re-run later

    states = _states(history)
    assert states[("2025-06-02", "ana")][0] == "superseded"
    assert states[("2025-06-02", "bo")][0] == "pending"  # bo has no newer message
    assert states[("2025-06-09", "ana")] == ("pending", b"new")
