"""The (account, as_of) entity frame: who is eligible when, and what happened next.

Eligible at T: created before T, with ARR > 0 on T-1. The label for (account, T) is 1 when the
ledger holds an expansion dated in [T, T + horizon).

With a `revenue` table instead of `subscriptions` (usage-based pricing), ARR is the run-rate:
revenue billed in the `RUN_RATE_DAYS` days to T-1, annualised; and an account expands when its
revenue in [T, T + h) reaches (1 + min_growth) x its revenue in [T - h, T).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import duckdb
import pandas as pd

from expansion_scorer.config import LabelConfig
from expansion_scorer.data.contract import held_on
from expansion_scorer.data.loading import AnyWorld, is_consumption, sql_str
from expansion_scorer.features.ledger import EXPANSION_KINDS


@dataclass(frozen=True)
class Labelling:
    """What a label is: an expansion within `horizon_days` of the as-of date, as `label` says."""

    horizon_days: int
    label: LabelConfig | None = None
    motions: bool = False
    """Also one label per expansion motion (`snapshots.motion_label`), when the label is any
    expansion of a seat ledger: the `motions` learner fits on them."""


RUN_RATE_DAYS = 90

_CONTRACT_ARR = f"""(
    SELECT coalesce(sum(s.arr), 0) FROM subscriptions s
    WHERE s.account_id = a.account_id AND {held_on("s", "{day}")}
)"""
_RUN_RATE = f"""(
    SELECT coalesce(sum(r.amount), 0) * 365.0 / {RUN_RATE_DAYS} FROM revenue r
    WHERE r.account_id = a.account_id AND r.date <= {{day}} AND r.date > {{day}} - {RUN_RATE_DAYS}
)"""


def arr_on(con: duckdb.DuckDBPyConnection, day: str) -> str:
    """SQL for the ARR of account `a` on `day`: contracts, or the billed run-rate."""
    return (_RUN_RATE if is_consumption(con) else _CONTRACT_ARR).format(day=day)


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


def data_span(world: AnyWorld) -> tuple[date, date]:
    """When both revenue and usage are observed, and the exclusive end of what the data holds.

    Imports often carry subscriptions from years before usage tracking began; snapshots before
    the first usage would teach the model that old accounts have no usage.
    """
    (row,) = world.rows(
        """
        SELECT greatest(coalesce((SELECT min(start_date) FROM subscriptions),
                                 (SELECT min(date) FROM revenue)),
                        (SELECT min(CAST(timestamp AS DATE)) FROM usage_events)),
               greatest((SELECT max(CAST(timestamp AS DATE)) FROM usage_events),
                        (SELECT max(start_date) FROM subscriptions),
                        (SELECT max(date) FROM revenue)) + 1
        """
    )
    assert row[0] is not None
    return row[0], row[1]


def training_dates(
    world: AnyWorld, horizon_days: int, min_history_days: int, until: date | None
) -> list[date]:
    """Month starts whose label window closes on or before the end of the observed data."""
    first, end = data_span(world)
    if until is not None:
        end = min(end, until)
    return month_starts(
        first + timedelta(days=min_history_days), end - timedelta(days=horizon_days)
    )


def status_sql(consumption: bool) -> str:
    """Per account and date of `snapshot_dates`: `arr_before` (ARR on the day before, from
    contracts or the billed run-rate, as `arr_on`) and `excluded_reason`, NULL when eligible.

    The one text of eligibility, in DuckDB's dialect; the Spark engine transpiles it. Joins
    rather than correlated subqueries, which Spark plans poorly.
    """
    day = "d.as_of - 1"
    if consumption:
        money = f"""
            SELECT d.as_of, r.account_id, sum(r.amount) * 365.0 / {RUN_RATE_DAYS} AS arr
            FROM snapshot_dates d
            JOIN revenue r ON r.date <= {day} AND r.date > {day} - {RUN_RATE_DAYS}
            GROUP BY d.as_of, r.account_id"""
    else:
        money = f"""
            SELECT d.as_of, s.account_id, sum(s.arr) AS arr FROM snapshot_dates d
            JOIN subscriptions s ON {held_on("s", day)}
            GROUP BY d.as_of, s.account_id"""
    return f"""
        WITH money AS ({money}),
        contracted AS (
            SELECT DISTINCT d.as_of, s.account_id FROM snapshot_dates d
            JOIN subscriptions s ON s.start_date < d.as_of
        ),
        billed AS (
            SELECT DISTINCT d.as_of, r.account_id FROM snapshot_dates d
            JOIN revenue r ON r.date < d.as_of
        )
        SELECT a.account_id, a.crm_id, a.account_name, a.csm_owner, d.as_of,
            m.arr AS arr_before,
            CASE
              WHEN a.created_at >= d.as_of THEN 'created on or after the as-of date'
              WHEN m.arr > 0 THEN NULL
              WHEN c.account_id IS NOT NULL
                THEN 'no ARR on the day before the as-of date (churned or paused)'
              WHEN b.account_id IS NOT NULL
                THEN 'no revenue in the {RUN_RATE_DAYS} days before the as-of date'
              ELSE 'no subscription or revenue yet'
            END AS excluded_reason
        FROM accounts a CROSS JOIN snapshot_dates d
        LEFT JOIN money m ON m.account_id = a.account_id AND m.as_of = d.as_of
        LEFT JOIN contracted c ON c.account_id = a.account_id AND c.as_of = d.as_of
        LEFT JOIN billed b ON b.account_id = a.account_id AND b.as_of = d.as_of
    """


ENTITIES = """
    SELECT account_id, as_of, arr_before FROM account_status
    WHERE excluded_reason IS NULL
    ORDER BY as_of, account_id
"""
"""The eligible (account, as_of) pairs of `account_status`, for both engines."""

STATUS_COLUMNS = ["account_id", "crm_id", "account_name", "csm_owner", "excluded_reason"]


def _snapshot_dates(con: duckdb.DuckDBPyConnection, dates: list[date]) -> None:
    con.execute("CREATE OR REPLACE TEMP TABLE snapshot_dates (as_of DATE)")
    if dates:
        con.executemany("INSERT INTO snapshot_dates VALUES (?)", [(d,) for d in dates])


def build_entities(
    con: duckdb.DuckDBPyConnection, dates: list[date], pairs: pd.DataFrame | None = None
) -> None:
    """Temp tables `account_status` (every account at each date) and `entities(account_id,
    as_of, arr_before)` of the accounts eligible at each date; given `pairs` (account_id,
    as_of), only those of them that are eligible then, the few snapshots a measurement needs."""
    if pairs is not None:
        pairs = pairs[["account_id", "as_of"]].drop_duplicates()
        dates = sorted(set(pd.to_datetime(pairs["as_of"]).dt.date))
    _snapshot_dates(con, dates)
    con.execute(f"CREATE OR REPLACE TEMP TABLE account_status AS {status_sql(is_consumption(con))}")
    if pairs is None:
        con.execute(f"CREATE OR REPLACE TEMP TABLE entities AS {ENTITIES}")
        return
    con.execute("SELECT 1").fetchall()  # finish any open result: DuckDB refuses to register
    con.register("wanted_pairs", pairs)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE entities AS
        SELECT * FROM ({ENTITIES}) e
        WHERE EXISTS (SELECT 1 FROM wanted_pairs w WHERE w.account_id = e.account_id
                      AND CAST(w.as_of AS DATE) = e.as_of)
        ORDER BY as_of, account_id
        """
    )
    con.unregister("wanted_pairs")


def book_arr(con: duckdb.DuckDBPyConnection, as_of: date) -> float:
    """The ARR of every account on the day before `as_of`."""
    arr = arr_on(con, f"DATE '{as_of}' - 1")
    row = con.execute(
        f"SELECT coalesce(sum(arr), 0) FROM (SELECT {arr} AS arr FROM accounts a"
        f" WHERE a.created_at < DATE '{as_of}')"
    ).fetchone()
    return float(row[0]) if row else 0.0


def motion_label(motion: str) -> str:
    """The column of one motion's own label, beside `label` (`Labelling.motions`)."""
    return f"label_{motion}"


def _per_motion(consumption: bool, label: LabelConfig, motions: bool) -> bool:
    return motions and not consumption and label.motion == "any" and label.product is None


def labels_sql(
    consumption: bool, horizon_days: int, label: LabelConfig, motions: bool = False
) -> str:
    """The query behind `labels`, in DuckDB's dialect (the Spark engine transpiles it): per
    entity the expansion ARR in [as_of, as_of + horizon) and the ARR before, or with billed
    revenue the revenue in the horizon after and before as_of. With `motions` (and the label
    any expansion of a seat ledger), also each motion's own ARR. Needs `entities`,
    `movements`."""
    h = int(horizon_days)
    if consumption:
        return f"""
        SELECT e.account_id, e.as_of,
            coalesce(sum(r.amount) FILTER (WHERE r.date >= e.as_of), 0) AS after,
            coalesce(sum(r.amount) FILTER (WHERE r.date < e.as_of), 0) AS before
        FROM entities e LEFT JOIN revenue r ON r.account_id = e.account_id
         AND r.date >= e.as_of - {h} AND r.date < e.as_of + {h}
        GROUP BY e.account_id, e.as_of
        ORDER BY e.as_of, e.account_id
        """
    kinds = EXPANSION_KINDS if label.motion == "any" else (label.motion,)
    kind_list = ", ".join(f"'{k}'" for k in kinds)
    product = f" AND m.product = {sql_str(label.product)}" if label.product else ""
    own = "".join(
        f", coalesce(sum(m.arr_delta) FILTER (WHERE m.kind = '{k}'), 0) AS arr_{k}"
        for k in (EXPANSION_KINDS if _per_motion(consumption, label, motions) else ())
    )
    return f"""
        SELECT e.account_id, e.as_of,
               coalesce(sum(m.arr_delta), 0) AS expansion_arr,
               any_value(e.arr_before) AS arr_before{own}
        FROM entities e LEFT JOIN movements m
          ON m.account_id = e.account_id AND m.day >= e.as_of
         AND m.day < e.as_of + {h}
         AND m.kind IN ({kind_list}) AND m.arr_delta > 0{product}
        GROUP BY e.account_id, e.as_of
        ORDER BY e.as_of, e.account_id
        """


def finish_labels(
    frame: pd.DataFrame,
    consumption: bool,
    horizon_days: int,
    label: LabelConfig,
    motions: bool = False,
) -> pd.DataFrame:
    """From the rows of `labels_sql` to account_id, as_of, label and expansion_arr.

    With contracts, the expansion ARR must reach both the absolute minimum and the fraction
    of the ARR on as_of - 1; with billed revenue, the revenue after must be at least
    (1 + min_growth) x the revenue before, and the annualised growth at least the minimum.
    With `motions`, each motion's own label too, by the same minimums (`labels_sql`).
    """
    kinds = EXPANSION_KINDS if _per_motion(consumption, label, motions) else ()
    if consumption:
        after = frame["after"].astype("float64")
        before = frame["before"].astype("float64")
        growth = (after - before) * 365.0 / int(horizon_days)  # annualised, like ARR
        frame["label"] = (
            (before > 0)
            & (after >= (1 + label.min_growth) * before)
            & (growth >= label.min_expansion_arr)
        ).astype("int32")
        frame["expansion_arr"] = growth.where(frame["label"] == 1, 0.0)
    else:
        before = frame["arr_before"].astype("float64")

        def reached(amount: pd.Series) -> pd.Series:
            return (
                (amount > 0)
                & (amount >= label.min_expansion_arr)
                & (amount >= label.min_expansion_pct * before)
            ).astype("int32")

        amount = frame["expansion_arr"].astype("float64")
        frame["label"] = reached(amount)
        frame["expansion_arr"] = amount
        for k in kinds:
            frame[motion_label(k)] = reached(frame[f"arr_{k}"].astype("float64"))
    return as_dates(
        frame[["account_id", "as_of", "label", "expansion_arr", *map(motion_label, kinds)]]
    )


def labels(
    con: duckdb.DuckDBPyConnection,
    horizon_days: int,
    label: LabelConfig | None = None,
    motions: bool = False,
) -> pd.DataFrame:
    """Label of every entity: the chosen expansion in [as_of, as_of + horizon), and its ARR;
    with `motions`, also each motion's own label (`motion_label`, the same minimums).

    Needs temp table `movements` (ledger.build_movements).
    """
    label = label or LabelConfig()
    consumption = is_consumption(con)
    frame = con.execute(labels_sql(consumption, horizon_days, label, motions)).df()
    return finish_labels(frame, consumption, horizon_days, label, motions)


def statuses(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The temp table `account_status` of `build_entities`: every account at each date."""
    frame = con.execute(
        f"SELECT account_id, as_of, {', '.join(STATUS_COLUMNS[1:])} FROM account_status"
        " ORDER BY as_of, account_id"
    ).df()
    return as_dates(frame)


def account_status(con: duckdb.DuckDBPyConnection, as_of: date) -> pd.DataFrame:
    """Every account with whether it can be scored as of `as_of`, and why not when it cannot."""
    _snapshot_dates(con, [as_of])
    frame = con.execute(
        f"SELECT {', '.join(STATUS_COLUMNS)} FROM ({status_sql(is_consumption(con))})"
        " ORDER BY account_id"
    ).df()
    return frame
