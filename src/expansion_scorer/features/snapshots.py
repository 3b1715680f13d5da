"""The (account, as_of) entity frame: who is eligible when, and what happened next.

Eligible at T: created before T, with ARR > 0 on T-1. The label for (account, T) is 1 when the
ledger holds an expansion dated in [T, T + horizon).
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pandas as pd

ARR_ON = """(
    SELECT coalesce(sum(s.arr), 0) FROM subscriptions s
    WHERE s.account_id = a.account_id AND s.start_date <= {day}
      AND (s.end_date IS NULL OR s.end_date > {day})
)"""


def as_dates(frame: pd.DataFrame, column: str = "as_of") -> pd.DataFrame:
    """`as_of` as `datetime.date` values, the one representation the package compares."""
    frame[column] = pd.to_datetime(frame[column]).dt.date
    return frame


def month_starts(first: date, last: date) -> list[date]:
    """First days of months in [first, last], starting at the first month start >= first."""
    current = date(first.year, first.month, 1)
    if current < first:
        current = _next_month(current)
    out = []
    while current <= last:
        out.append(current)
        current = _next_month(current)
    return out


def _next_month(d: date) -> date:
    return date(d.year + d.month // 12, d.month % 12 + 1, 1)


def data_span(con: duckdb.DuckDBPyConnection) -> tuple[date, date]:
    """When both revenue and usage are observed, and the exclusive end of what the data holds.

    Imports often carry subscriptions from years before usage tracking began; snapshots before
    the first usage would teach the model that old accounts have no usage.
    """
    row = con.execute(
        """
        SELECT greatest((SELECT min(start_date) FROM subscriptions),
                        (SELECT min(CAST(timestamp AS DATE)) FROM usage_events)),
               greatest((SELECT max(CAST(timestamp AS DATE)) FROM usage_events),
                        (SELECT max(start_date) FROM subscriptions)) + 1
        """
    ).fetchone()
    assert row is not None and row[0] is not None
    return row[0], row[1]


def training_dates(
    con: duckdb.DuckDBPyConnection, horizon_days: int, min_history_days: int, until: date | None
) -> list[date]:
    """Month starts whose label window closes on or before the end of the observed data."""
    first, end = data_span(con)
    if until is not None:
        end = min(end, until)
    return month_starts(
        first + timedelta(days=min_history_days), end - timedelta(days=horizon_days)
    )


def build_entities(con: duckdb.DuckDBPyConnection, dates: list[date]) -> None:
    """Temp table `entities(account_id, as_of)` of the accounts eligible at each date."""
    con.execute("CREATE OR REPLACE TEMP TABLE snapshot_dates (as_of DATE)")
    con.executemany("INSERT INTO snapshot_dates VALUES (?)", [(d,) for d in dates])
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE entities AS
        SELECT a.account_id, d.as_of
        FROM accounts a JOIN snapshot_dates d ON a.created_at < d.as_of
        WHERE {ARR_ON.format(day="d.as_of - 1")} > 0
        ORDER BY d.as_of, a.account_id
        """
    )


def labels(con: duckdb.DuckDBPyConnection, horizon_days: int) -> pd.DataFrame:
    """Label of every entity: an expansion in [as_of, as_of + horizon), with its ARR."""
    frame = con.execute(
        f"""
        SELECT e.account_id, e.as_of,
               CAST(count(x.day) > 0 AS INTEGER) AS label,
               coalesce(sum(x.expansion_arr), 0) AS expansion_arr
        FROM entities e LEFT JOIN expansions x
          ON x.account_id = e.account_id AND x.day >= e.as_of
         AND x.day < e.as_of + {int(horizon_days)}
        GROUP BY ALL
        ORDER BY e.as_of, e.account_id
        """
    ).df()
    return as_dates(frame)


def account_status(con: duckdb.DuckDBPyConnection, as_of: date) -> pd.DataFrame:
    """Every account with whether it can be scored as of `as_of`, and why not when it cannot."""
    return con.execute(
        f"""
        SELECT a.account_id, a.account_name, a.csm_owner,
            CASE
              WHEN a.created_at >= DATE '{as_of}' THEN 'created on or after the as-of date'
              WHEN {ARR_ON.format(day=f"DATE '{as_of}' - 1")} > 0 THEN NULL
              WHEN EXISTS (SELECT 1 FROM subscriptions s WHERE s.account_id = a.account_id
                           AND s.start_date < DATE '{as_of}')
                THEN 'no ARR on the day before the as-of date (churned or paused)'
              ELSE 'no subscription yet'
            END AS excluded_reason
        FROM accounts a
        ORDER BY a.account_id
        """
    ).df()
