"""The Spark engine's features: the data contract read into Spark, and the same features.

`read_world` registers one temp view per table, typed per the contract and cut off at a date
exactly as `data.loading.open_world` does for DuckDB. `base_sql` computes the per-(account,
as_of) base aggregates of `features.build` in Spark SQL: window sums become range joins of daily
totals to the entities, which Spark distributes well, where DuckDB uses running totals and ASOF
joins. The ledger and every feature's `sql:` are DuckDB text transpiled with sqlglot, so a feature
definition has one source for both engines.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from expansion_scorer.config import FeatureSet, UsageWindow
from expansion_scorer.data.contract import TABLES, Kind, TableSpec
from expansion_scorer.data.loading import locate_tables, sql_str
from expansion_scorer.errors import UserError
from expansion_scorer.features.build import (
    CATALOGUE_SIZES,
    catalogue_size,
    event_filter,
    slope_scale,
    tracked_events,
    window_span,
)
from expansion_scorer.features.ledger import EXPANSION_KINDS, PRICE_ORDER, movements_sql
from expansion_scorer.features.snapshots import RUN_RATE_DAYS, as_dates

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

SPARK_TYPES: dict[Kind, str] = {
    "str": "STRING",
    "date": "DATE",
    # Naive, like DuckDB's TIMESTAMP: no session time zone shifts an event across midnight.
    "timestamp": "TIMESTAMP_NTZ",
    "number": "DOUBLE",
    "money": "DECIMAL(18, 4)",
}


def spark_session() -> SparkSession:
    """The active session (spark-submit's, or a test's), else a local one on every core.

    Stops with one line when pyspark or Java is missing, instead of a Py4J traceback.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise UserError(
            "--engine spark needs pyspark; install it with pip install 'expansion-scorer[spark]'"
        ) from None
    active = SparkSession.getActiveSession()
    if active is None:
        java_home = os.environ.get("JAVA_HOME")
        if not (java_home and Path(java_home, "bin", "java").exists()) and not shutil.which("java"):
            raise UserError(
                "--engine spark needs Java 17 or later; install openjdk-17-jre-headless"
                " (Debian/Ubuntu) or set JAVA_HOME"
            )
        # The UDF's workers run this interpreter, which has the model's packages.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        active = (
            SparkSession.builder.appName("expansion-scorer")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
        active.sparkContext.setLogLevel("ERROR")
    # Runtime settings every run relies on, whoever built the session.
    active.conf.set("spark.sql.session.timeZone", "UTC")
    active.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    return active


@dataclass(frozen=True)
class SparkWorld:
    spark: SparkSession
    files: dict[str, Path]
    cutoff: date | None

    def has(self, table: str) -> bool:
        return table in self.files

    @property
    def consumption(self) -> bool:
        return "revenue" in self.files


def _typed_select(spec: TableSpec, present: list[str], cutoff: date | None) -> str:
    """The Spark twin of `loading.typed_select`: same casts, defaults and cut-off of end dates."""
    exprs = []
    for col in spec.columns:
        spark_type = SPARK_TYPES[col.kind]
        if col.name in present:
            quoted = f"`{col.name}`"
            expr = (
                f"CAST({quoted} AS STRING)"
                if col.kind == "str"
                else f"try_cast({quoted} AS {spark_type})"
            )
        else:
            expr = f"CAST(NULL AS {spark_type})"
        if spec.name == "usage_events" and col.name == "quantity":
            expr = f"coalesce({expr}, 1D)"
        if cutoff is not None and spec.name == "subscriptions" and col.name == "end_date":
            expr = f"CASE WHEN {expr} < DATE '{cutoff}' THEN {expr} END"
        exprs.append(f"{expr} AS `{col.name}`")
    return ", ".join(exprs)


def read_world(spark: SparkSession, data_dir: Path, cutoff: date | None = None) -> SparkWorld:
    """Temp views `<table>` for every contract table, typed and cut off; absent ones empty."""
    files = locate_tables(Path(data_dir))
    for name, spec in TABLES.items():
        if name not in files:
            spark.sql(
                f"SELECT {_typed_select(spec, [], None)} FROM (SELECT 1) WHERE false"
            ).createOrReplaceTempView(name)
            continue
        path = str(files[name].resolve())
        if path.endswith(".csv"):
            # Every cell as text, as DuckDB's all_varchar read: the casts below type them.
            raw = spark.read.csv(path, header=True, escape='"', multiLine=True)
        else:
            raw = spark.read.parquet(path)
        raw.createOrReplaceTempView(f"raw_{name}")
        where = ""
        if cutoff is not None:
            kind = spec.column(spec.dated_by).kind
            where = f" WHERE try_cast(`{spec.dated_by}` AS {SPARK_TYPES[kind]}) < DATE '{cutoff}'"
        spark.sql(
            f"SELECT {_typed_select(spec, list(raw.columns), cutoff)} FROM raw_{name}{where}"
        ).createOrReplaceTempView(name)
    return SparkWorld(spark=spark, files=files, cutoff=cutoff)


def transpile(sql: str, what: str) -> str:
    """DuckDB SQL as Spark SQL; `what` names the text in the one-line error."""
    import sqlglot
    from sqlglot.errors import ParseError

    try:
        return sqlglot.transpile(sql, read="duckdb", write="spark")[0]
    except ParseError as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"{what}: its sql does not parse ({first}); fix it") from None


def _materialize(frame: DataFrame, view: str) -> None:
    """Compute a stage once and register it: later queries scan its rows instead of repeating
    its plan in every CTE that reads it, which on small data costs more than the data."""
    frame.localCheckpoint(eager=True).createOrReplaceTempView(view)


def _dates_view(spark: SparkSession, dates: list[date]) -> None:
    rows = ", ".join(f"(DATE '{d}')" for d in dates) or "(CAST(NULL AS DATE))"
    spark.sql(
        f"SELECT * FROM VALUES {rows} AS d(as_of) WHERE as_of IS NOT NULL"
    ).createOrReplaceTempView("snapshot_dates")


def _status_sql(consumption: bool) -> str:
    """Per account and snapshot date, NULL when eligible, else why not, as `account_status`.

    ARR on the day before is the contracts' or the billed run-rate, as `snapshots.arr_on`;
    joins rather than correlated subqueries, which Spark plans poorly.
    """
    day = "d.as_of - 1"
    if consumption:
        money = f"""
            SELECT d.as_of, r.account_id, sum(r.amount) AS arr FROM snapshot_dates d
            JOIN revenue r ON r.date <= {day} AND r.date > {day} - {RUN_RATE_DAYS}
            GROUP BY d.as_of, r.account_id"""
    else:
        money = f"""
            SELECT d.as_of, s.account_id, sum(s.arr) AS arr FROM snapshot_dates d
            JOIN subscriptions s ON s.start_date <= {day}
             AND (s.end_date IS NULL OR s.end_date > {day})
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


def build_entities(world: SparkWorld, dates: list[date]) -> None:
    """Temp view `entities(account_id, as_of)`: the accounts eligible at each date, computed
    once."""
    _dates_view(world.spark, dates)
    status = world.spark.sql(_status_sql(world.consumption))
    status.createOrReplaceTempView("account_status")
    entities = world.spark.sql(
        "SELECT account_id, as_of FROM account_status WHERE excluded_reason IS NULL"
    )
    _materialize(entities, "entities")


def account_status(world: SparkWorld, as_of: date) -> pd.DataFrame:
    """Every account with why it cannot be scored as of `as_of` (NULL when it can)."""
    _dates_view(world.spark, [as_of])
    frame = (
        world.spark.sql(_status_sql(world.consumption))
        .select("account_id", "crm_id", "account_name", "csm_owner", "excluded_reason")
        .toPandas()
    )
    return frame.sort_values("account_id", kind="stable").reset_index(drop=True)


def build_expansions(world: SparkWorld, features: FeatureSet) -> None:
    """Temp view `expansions(account_id, day)`: days with an expansion, from the ledger's SQL."""
    movements = world.spark.sql(transpile(movements_sql(features), "the ARR ledger"))
    movements.createOrReplaceTempView("movements")
    kinds = ", ".join(sql_str(k) for k in EXPANSION_KINDS)
    world.spark.sql(
        f"SELECT DISTINCT account_id, day FROM movements WHERE kind IN ({kinds}) AND arr_delta > 0"
    ).cache().createOrReplaceTempView("expansions")


def _values(rows: list[tuple[object, ...]], names: tuple[str, ...], types: tuple[str, ...]) -> str:
    """An inline table; an empty one keeps its column types."""
    if not rows:
        nulls = ", ".join(f"CAST(NULL AS {t})" for t in types)
        return f"(SELECT * FROM VALUES ({nulls}) AS v({', '.join(names)}) WHERE false)"

    def lit(value: object) -> str:
        return sql_str(value) if isinstance(value, str) else repr(value)

    body = ", ".join("(" + ", ".join(lit(v) for v in row) + ")" for row in rows)
    return f"(SELECT * FROM VALUES {body} AS v({', '.join(names)}))"


def build_usage(world: SparkWorld, features: FeatureSet) -> None:
    """Temp view `usage(account_id, day, event, user_id, q, n)`, computed once: the events
    within reach of an entity's longest window, summed (q) and counted (n) per day. Every usage
    aggregate reads it."""
    usage = world.spark.sql(
        f"""
        SELECT u.account_id, CAST(u.timestamp AS DATE) AS day, u.event, u.user_id,
               sum(u.quantity) AS q, count(*) AS n
        FROM usage_events u LEFT SEMI JOIN (SELECT DISTINCT account_id FROM entities) x
          ON x.account_id = u.account_id
        WHERE CAST(u.timestamp AS DATE) >= (SELECT min(as_of) FROM entities)
              - {window_span(features)}
          AND CAST(u.timestamp AS DATE) < (SELECT max(as_of) FROM entities)
        GROUP BY 1, 2, 3, 4
        """
    )
    _materialize(usage, "usage")


def _window_sql(name: str, w: UsageWindow) -> str:
    """One usage window as a conditional aggregate over the entity's joined usage days."""
    inside = f"d.day >= e.as_of - {w.offset + w.days} AND d.day < e.as_of - {w.offset}"
    if w.event is not None:
        inside += f" AND {event_filter(w.event, 'd.event')}"
    value = {
        "sum": f"sum(CASE WHEN {inside} THEN d.q END)",
        "count": f"sum(CASE WHEN {inside} THEN d.n END)",
        "users": f"count(DISTINCT CASE WHEN {inside} THEN d.user_id END)",
        "events": f"count(DISTINCT CASE WHEN {inside} THEN d.event END)",
        "days": f"count(DISTINCT CASE WHEN {inside} THEN d.day END)",
        "user_days": f"count(DISTINCT CASE WHEN {inside} AND d.user_id IS NOT NULL"
        " THEN concat(d.user_id, '|', CAST(d.day AS STRING)) END)",
    }[w.measure]
    return f"CAST({value} AS DOUBLE) AS `{name}`"


def _slope_sql(windows: dict[str, UsageWindow], span: int) -> str:
    """CTEs `slope_daily` (each slope window's daily value per account and day) and `slopes`
    (the weekly least-squares slope of each over its window), as `features.build` defines it."""
    if not windows:
        return ""
    daily = []
    for name, w in windows.items():
        keep = event_filter(w.event, "event")
        daily.append(
            {
                "sum": f"sum(CASE WHEN {keep} THEN q ELSE 0 END)",
                "count": f"sum(CASE WHEN {keep} THEN n ELSE 0 END)",
                "days": f"max(CASE WHEN {keep} THEN 1 ELSE 0 END)",
                "user_days": f"count(DISTINCT CASE WHEN {keep} THEN user_id END)",
            }[w.measure]
            + f" AS `{name}`"
        )
    slopes = []
    for name, w in windows.items():
        num, den = slope_scale(w.days)
        inside = f"x.day >= e.as_of - {w.offset + w.days} AND x.day < e.as_of - {w.offset}"
        weight = f"(2 * (datediff(x.day, e.as_of) + {w.offset}) + {w.days + 1})"
        slopes.append(
            f"CAST(coalesce(sum(CASE WHEN {inside} THEN x.`{name}` * {weight} END), 0)"
            f" AS DOUBLE) * {num} / {den} AS `{name}`"
        )
    return f"""
    slope_daily AS (
        SELECT account_id, day, {", ".join(daily)} FROM usage GROUP BY account_id, day
    ),
    slopes AS (
        SELECT e.account_id, e.as_of, {", ".join(slopes)}
        FROM entities e JOIN slope_daily x ON x.account_id = e.account_id
         AND x.day >= e.as_of - {span} AND x.day < e.as_of
        GROUP BY e.account_id, e.as_of
    ),"""


def base_sql(features: FeatureSet) -> str:
    """Spark SQL of `features.build.base_sql`'s columns, same names, types and semantics.

    Every join reads rows dated strictly before the entity's as_of: a usage window [a, b) keeps
    days with a <= day < b <= as_of, and a subscription ending on or after as_of reads as open.
    """
    open_on = "s.start_date <= {d} AND (s.end_date IS NULL OR s.end_date > {d})"
    now, ago = open_on.format(d="s.as_of - 1"), open_on.format(d="s.as_of - 91")
    year_ago = open_on.format(d="s.as_of - 366")
    ranks = (
        transpile(PRICE_ORDER.removesuffix(" AS r"), "plan_order: auto")
        if isinstance(features.plan_order, str)
        else _values(
            [(p, i) for i, p in enumerate(features.plan_order)], ("plan", "rank"), ("STRING", "INT")
        )
    )
    fit = _values(list(features.affinity_pairs.items()), ("event", "product"), ("STRING", "STRING"))
    # A limit like 5000.0 is a decimal literal in both dialects, so the division matches DuckDB.
    limits = _values(
        [
            (plan, event, float(limit))
            for plan, per_event in features.plan_limits.items()
            for event, limit in per_event.items()
        ],
        ("plan", "event", "monthly"),
        ("STRING", "STRING", "DECIMAL(18, 1)"),
    )
    totals = {n: w for n, w in features.usage_windows.items() if w.stat == "total"}
    slopes = {n: w for n, w in features.usage_windows.items() if w.stat == "slope"}
    windowed = [_window_sql(name, w) for name, w in totals.items()]
    anniversary = "add_months(n.first_start, 12 * (year(e.as_of) - year(n.first_start) + {k}))"
    return f"""
    WITH windows AS (
        SELECT e.account_id, e.as_of{"".join(", " + w for w in windowed)}
        FROM entities e JOIN usage d ON d.account_id = e.account_id
         AND d.day >= e.as_of - {window_span(features)} AND d.day < e.as_of
        GROUP BY e.account_id, e.as_of
    ),{_slope_sql(slopes, window_span(features))}
    event_daily AS (
        SELECT account_id, event, day, sum(q) AS q
        FROM usage WHERE {tracked_events(features, "event")}
        GROUP BY account_id, event, day
    ),
    event_agg AS (
        SELECT e.account_id, e.as_of, x.event,
            coalesce(sum(x.q) FILTER (WHERE x.day >= e.as_of - 28), 0) AS q,
            coalesce(sum(x.q) FILTER (WHERE x.day < e.as_of - 28), 0) AS q_prev
        FROM entities e JOIN event_daily x ON x.account_id = e.account_id
         AND x.day >= e.as_of - 56 AND x.day < e.as_of
        GROUP BY e.account_id, e.as_of, x.event
        HAVING sum(x.q) > 0
    ),
    subs AS (
        SELECT e.account_id, e.as_of, s.product, s.plan, s.seats, s.arr, s.start_date,
               CASE WHEN s.end_date < e.as_of THEN s.end_date END AS end_date
        FROM entities e JOIN subscriptions s
          ON s.account_id = e.account_id AND s.start_date < e.as_of
    ),
    sub_now AS (
        SELECT s.account_id, s.as_of,
            coalesce(sum(s.arr) FILTER (WHERE {now}), 0) AS arr_now,
            sum(s.arr) FILTER (WHERE {ago}) AS arr_90d_ago,
            coalesce(sum(s.seats) FILTER (WHERE {now}), 0) AS seats,
            sum(s.seats) FILTER (WHERE {ago}) AS seats_90d_ago,
            sum(s.arr) FILTER (WHERE {year_ago}) AS arr_365d_ago,
            count(DISTINCT CASE WHEN {now} THEN s.product END) AS products_owned,
            array_sort(collect_set(CASE WHEN {now} THEN s.product END)) AS owned_products,
            max_by(s.plan, r.rank) FILTER (WHERE {now} AND r.rank IS NOT NULL) AS plan,
            min(s.start_date) AS first_start
        FROM subs s LEFT JOIN {ranks} r ON r.plan = s.plan
        GROUP BY s.account_id, s.as_of
    ),
    owned AS (
        SELECT DISTINCT s.account_id, s.as_of, s.product FROM subs s WHERE {now}
    ),
    fit AS (
        SELECT x.account_id, x.as_of, sum(x.q) AS unowned_fit_events_28d,
            min_by(f.product, named_struct('q', -x.q, 'event', x.event)) AS top_unowned_fit,
            min_by(x.event, named_struct('q', -x.q, 'event', x.event)) AS top_unowned_fit_event,
            sum(x.q_prev) AS unowned_fit_events_prev_28d
        FROM event_agg x JOIN {fit} f ON f.event = x.event
        LEFT ANTI JOIN owned o
          ON o.account_id = x.account_id AND o.as_of = x.as_of AND o.product = f.product
        GROUP BY x.account_id, x.as_of
    ),
    limits AS (
        SELECT x.account_id, x.as_of, max(x.q * 30.0 / 28 / l.monthly) AS plan_limit_use
        FROM event_agg x JOIN sub_now n ON n.account_id = x.account_id AND n.as_of = x.as_of
        JOIN {limits} l ON l.plan = n.plan AND l.event = x.event
        GROUP BY x.account_id, x.as_of
    ),
    past_expansions AS (
        SELECT e.account_id, e.as_of,
            count(*) FILTER (WHERE x.day >= e.as_of - 365) AS expansions_365d,
            max(x.day) AS last_expansion
        FROM entities e JOIN expansions x ON x.account_id = e.account_id AND x.day < e.as_of
        GROUP BY e.account_id, e.as_of
    ),
    contractions AS (
        SELECT e.account_id, e.as_of, count(DISTINCT m.day) AS contractions_365d
        FROM entities e JOIN movements m ON m.account_id = e.account_id
         AND m.kind = 'contraction' AND m.day >= e.as_of - 365 AND m.day < e.as_of
        GROUP BY e.account_id, e.as_of
    ),
    billed AS (
        SELECT e.account_id, e.as_of,
            coalesce(sum(r.amount) FILTER (WHERE r.date >= e.as_of - 90), 0) AS revenue_90d,
            sum(r.amount) FILTER (WHERE r.date >= e.as_of - 180 AND r.date < e.as_of - 90)
                AS revenue_prev_90d,
            count(DISTINCT CASE WHEN r.date >= e.as_of - 90 THEN r.date END)
                AS billing_days_90d,
            count(DISTINCT r.date) AS billing_days_365d,
            max(r.date) AS last_billing
        FROM entities e JOIN revenue r ON r.account_id = e.account_id
         AND r.date >= e.as_of - 365 AND r.date < e.as_of
        GROUP BY e.account_id, e.as_of
    ),
    tickets AS (
        SELECT e.account_id, e.as_of, count(*) AS tickets_90d,
            count(*) FILTER (WHERE lower(t.priority) = 'urgent') AS urgent_tickets_90d,
            count(*) FILTER (WHERE lower(t.priority) = 'urgent' AND t.day >= e.as_of - 30)
                AS urgent_tickets_30d
        FROM entities e
        JOIN (SELECT account_id, priority, CAST(created_at AS DATE) AS day
              FROM support_tickets) t
          ON t.account_id = e.account_id AND t.day >= e.as_of - 90 AND t.day < e.as_of
        GROUP BY e.account_id, e.as_of
    ),
    nps AS (
        SELECT n.account_id, n.as_of,
            -- the latest answer and the one before; on a tie of times, the lowest score first,
            -- as in DuckDB's ordered first() and list()
            max(n.score) FILTER (WHERE n.latest = 1) AS nps_last,
            max(n.score) FILTER (WHERE n.latest = 2) AS nps_prev
        FROM (
            SELECT e.account_id, e.as_of, n.score, row_number() OVER (
                PARTITION BY e.account_id, e.as_of ORDER BY n.responded_at DESC, n.score
            ) AS latest
            FROM entities e JOIN nps_responses n ON n.account_id = e.account_id
             AND n.responded_at < CAST(e.as_of AS TIMESTAMP_NTZ)
        ) n
        GROUP BY n.account_id, n.as_of
    )
    SELECT e.account_id, e.as_of,
        -- DuckDB turns a decimal divided into a DOUBLE; so does the explicit cast here
        coalesce(CAST(n.arr_now AS DOUBLE),
                 CAST(b.revenue_90d * 365.0 AS DOUBLE) / 90, 0D) AS arr_now,
        coalesce(CAST(n.arr_90d_ago AS DOUBLE),
                 CAST(b.revenue_prev_90d * 365.0 AS DOUBLE) / 90) AS arr_90d_ago,
        CAST(n.arr_365d_ago AS DOUBLE) AS arr_365d_ago,
        n.seats, n.seats_90d_ago, n.products_owned, n.owned_products, n.plan,
        coalesce(b.billing_days_90d, 0) AS billing_days_90d,
        coalesce(b.billing_days_365d, 0) AS billing_days_365d,
        datediff(e.as_of, b.last_billing) AS days_since_billing,
        {"".join(f"coalesce(u.`{name}`, 0) AS `{name}`, " for name in totals)}
        {"".join(f"coalesce(sl.`{name}`, 0D) AS `{name}`, " for name in slopes)}
        {catalogue_size(features)} AS catalogue_size,
        coalesce(f.unowned_fit_events_28d, 0D) AS unowned_fit_events_28d,
        f.top_unowned_fit, f.top_unowned_fit_event,
        coalesce(f.unowned_fit_events_prev_28d, 0D) AS unowned_fit_events_prev_28d,
        coalesce(l.plan_limit_use, 0D) AS plan_limit_use,
        datediff(e.as_of, a.created_at) AS tenure_days,
        datediff(CASE
            WHEN {anniversary.format(k=0)} >= e.as_of THEN {anniversary.format(k=0)}
            ELSE {anniversary.format(k=1)}
        END, e.as_of) AS days_to_renewal,
        coalesce(p.expansions_365d, 0) AS expansions_365d,
        coalesce(c.contractions_365d, 0) AS contractions_365d,
        datediff(e.as_of, p.last_expansion) AS days_since_expansion,
        coalesce(t.tickets_90d, 0) AS tickets_90d,
        coalesce(t.urgent_tickets_90d, 0) AS urgent_tickets_90d,
        coalesce(t.urgent_tickets_30d, 0) AS urgent_tickets_30d,
        nps.nps_last, nps.nps_prev,
        a.employee_count, a.industry, a.segment, a.country
    FROM entities e
    JOIN accounts a ON a.account_id = e.account_id
    LEFT JOIN sub_now n ON n.account_id = e.account_id AND n.as_of = e.as_of
    LEFT JOIN windows u ON u.account_id = e.account_id AND u.as_of = e.as_of
    {"LEFT JOIN slopes sl ON sl.account_id = e.account_id AND sl.as_of = e.as_of" if slopes else ""}
    LEFT JOIN contractions c ON c.account_id = e.account_id AND c.as_of = e.as_of
    LEFT JOIN fit f ON f.account_id = e.account_id AND f.as_of = e.as_of
    LEFT JOIN limits l ON l.account_id = e.account_id AND l.as_of = e.as_of
    LEFT JOIN past_expansions p ON p.account_id = e.account_id AND p.as_of = e.as_of
    LEFT JOIN billed b ON b.account_id = e.account_id AND b.as_of = e.as_of
    LEFT JOIN tickets t ON t.account_id = e.account_id AND t.as_of = e.as_of
    LEFT JOIN nps ON nps.account_id = e.account_id AND nps.as_of = e.as_of
    LEFT JOIN ({CATALOGUE_SIZES}) cat ON cat.as_of = e.as_of
    """


def build_features(world: SparkWorld, features: FeatureSet) -> DataFrame:
    """A Spark frame of account_id, as_of and every defined feature, in definition order.

    Needs the `entities` and `expansions` views. Each feature's DuckDB `sql:` is transpiled and
    cast as `build.build_features` casts it: DOUBLE, or STRING for a categorical.
    """
    from pyspark.errors import PySparkException

    spark = world.spark
    build_usage(world, features)
    spark.sql(base_sql(features)).createOrReplaceTempView("feature_base")
    exprs = {f.name: transpile(f.sql, f"feature {f.name}") for f in features.features}
    casts = [
        f"CAST(({exprs[f.name]}) AS {'STRING' if f.kind == 'categorical' else 'DOUBLE'})"
        f" AS `{f.name}`"
        for f in features.features
    ]
    query = f"SELECT account_id, as_of, {', '.join(casts)} FROM feature_base"
    try:
        return spark.sql(query)
    except PySparkException:
        pass
    for f in features.features:  # name the first feature that does not run
        try:
            spark.sql(f"SELECT {exprs[f.name]} FROM feature_base LIMIT 0")
        except PySparkException as exc:
            first = str(exc).strip().splitlines()[0]
            raise UserError(
                f"feature {f.name}: its sql does not run on Spark ({first}); fix it"
            ) from None
    return spark.sql(query)  # pragma: no cover - the query failed, yet no feature alone does


def to_pandas(frame: DataFrame) -> pd.DataFrame:
    """Collect a frame keyed by (account_id, as_of) in the DuckDB path's order."""
    out = frame.toPandas()
    out = as_dates(out).sort_values(["as_of", "account_id"], kind="stable")
    return out.reset_index(drop=True)
