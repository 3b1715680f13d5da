"""The Spark engine's features: the data contract read into Spark, and the same features.

Everything is DuckDB text transpiled with sqlglot, so each rule has one source for both
engines: the typed reader (`data.loading.typed_view`), eligibility (`snapshots.status_sql`), the
ledger, the base aggregates (`build.base_sql`) and every feature's `sql:`. Only the usage windows
are Spark's own (`usage_sql`): range joins of daily totals to the entities, which Spark
distributes well, where DuckDB uses running totals and ASOF joins.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from expansion_scorer.config import FeatureSet, LabelConfig, UsageWindow
from expansion_scorer.data.contract import TABLES
from expansion_scorer.data.loading import (
    Tables,
    TableSource,
    check_tables,
    sql_str,
    typed_view,
)
from expansion_scorer.data.sources import DataSource, Sources, is_uri
from expansion_scorer.errors import ContractError, UserError
from expansion_scorer.features.build import (
    CATALOGUE_SIZES,
    base_sql,
    event_filter,
    slope_scale,
    tracked_events,
    window_span,
)
from expansion_scorer.features.ledger import EXPANSION_KINDS, movements_sql
from expansion_scorer.features.snapshots import (
    ENTITIES,
    STATUS_COLUMNS,
    as_dates,
    finish_labels,
    labels_sql,
    status_sql,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from sqlglot import exp

    from expansion_scorer.features.snapshots import Labelling


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
class SparkWorld(Tables):
    """The contract tables as temp views of a session: `raw_<table>` as written, `<table>`
    typed and cut off; `rows` and `frame` run DuckDB SQL over them, transpiled."""

    spark: SparkSession
    tables: dict[str, TableSource]
    locations: dict[str, str]
    """Each table's file, as Hadoop names it (`hdfs://...`, `file:/...`)."""
    cutoff: date | None
    warnings: list[str] = field(default_factory=list)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of a DuckDB query over the session's views, run by Spark."""
        return [tuple(row) for row in self.spark.sql(transpile(sql, "a query")).collect()]

    def frame(self, sql: str) -> pd.DataFrame:
        """A DuckDB query over the session's views, run by Spark and collected."""
        return self.spark.sql(transpile(sql, "a query")).toPandas()

    def sha256(self, table: str) -> str:
        """The content hash of a table's file, streamed through Hadoop on the driver (the
        same digest as `World.sha256` of the same bytes)."""
        jvm = _jvm(self.spark)
        path = jvm.org.apache.hadoop.fs.Path(self.locations[table])
        fs = path.getFileSystem(self.spark._jsc.hadoopConfiguration())
        digest = jvm.java.security.MessageDigest.getInstance("SHA-256")
        stream = jvm.java.security.DigestInputStream(fs.open(path), digest)
        sink = jvm.java.io.OutputStream.nullOutputStream()
        jvm.org.apache.hadoop.io.IOUtils.copyBytes(stream, sink, 1 << 20, True)
        return bytes(digest.digest()).hex()


def open_spark_world(data: DataSource, cutoff: date | None = None) -> SparkWorld:
    """The contract files of a folder, a local path or any URI Hadoop reads (`hdfs://`,
    `s3a://`, `file://`), read into the active (or a local) session."""
    if isinstance(data, Sources):
        raise UserError(
            "--engine spark reads contract files only; with --sources, use --engine duckdb"
        )
    return read_world(spark_session(), data, cutoff=cutoff)


def _jvm(spark: SparkSession) -> Any:
    """The session's JVM, for Hadoop's FileSystem (a live session always has one)."""
    jvm = spark._jvm
    assert jvm is not None
    return jvm


def _hadoop_error(exc: Exception) -> str:
    """The first line of a JVM failure, without Py4J's frame."""
    java = getattr(exc, "java_exception", None)
    text = str(java.toString()) if java is not None else str(exc)
    return text.strip().splitlines()[0][:200]


def locate_files(spark: SparkSession, location: str | Path) -> dict[str, str]:
    """`loading.locate_tables` through Hadoop's FileSystem: `<table>.parquet` or `<table>.csv`
    (not both) in the folder, every mandatory table and one source of money; the same lines."""
    from py4j.protocol import Py4JError

    where = str(location) if is_uri(str(location)) else Path(location).resolve().as_uri()
    shown = str(location)
    jvm = _jvm(spark)
    try:
        root = jvm.org.apache.hadoop.fs.Path(where)
        fs = root.getFileSystem(spark._jsc.hadoopConfiguration())
        if not fs.getFileStatus(root).isDirectory():
            raise ContractError(f"{shown}: not a directory; pass the folder holding the tables")
        found: dict[str, str] = {}
        for spec in TABLES.values():
            candidates = [jvm.org.apache.hadoop.fs.Path(root, f"{spec.name}.{ext}")
                          for ext in ("parquet", "csv")]  # fmt: skip
            present = [p for p in candidates if fs.isFile(p)]
            if len(present) == 2:
                raise ContractError(
                    f"{spec.name}: both {present[0].getName()} and {present[1].getName()} exist"
                    f" in {shown}; keep one"
                )
            if present:
                found[spec.name] = str(fs.makeQualified(present[0]).toString())
    except Py4JError as exc:
        if "FileNotFoundException" in _hadoop_error(exc):
            raise ContractError(
                f"{shown}: not a directory; pass the folder holding the tables"
            ) from None
        raise UserError(
            f"{shown}: cannot be listed ({_hadoop_error(exc)}); check the URI and that this"
            " machine can reach it"
        ) from None
    check_tables(set(found), shown)
    return found


def read_world(spark: SparkSession, location: str | Path, cutoff: date | None = None) -> SparkWorld:
    """Temp views `raw_<table>` (as written) and `<table>` (typed and cut off) for every
    contract table; absent ones empty."""
    from pyspark.errors import PySparkException

    files = locate_files(spark, location)
    tables: dict[str, TableSource] = {}
    for name, spec in TABLES.items():
        present = None
        if name in files:
            uri = files[name]
            label = uri.rsplit("/", 1)[-1]
            try:
                if uri.endswith(".csv"):
                    # Every cell as text, as DuckDB's all_varchar read: the casts type them.
                    raw = spark.read.csv(uri, header=True, escape='"', multiLine=True)
                else:
                    raw = spark.read.parquet(uri)
            except PySparkException as exc:
                first = str(exc).strip().splitlines()[0][:200]
                raise ContractError(
                    f"{label}: cannot be read ({first}); re-export the file"
                ) from None
            raw.createOrReplaceTempView(f"raw_{name}")
            present = list(raw.columns)
            tables[name] = TableSource(label, ())
        query = transpile(typed_view(spec, present, cutoff), f"the reader of {name}")
        spark.sql(query).createOrReplaceTempView(name)
    return SparkWorld(spark=spark, tables=tables, locations=files, cutoff=cutoff)


def _row_numbers(node: exp.Expression) -> exp.Expression:
    """DuckDB's `row_number() OVER ()`, rows numbered as scanned (validation's "row N", 1-based
    as in the file), as Spark's `row_number() OVER (ORDER BY monotonically_increasing_id())`:
    Spark needs an order, and the ids grow in scan order of a file's splits."""
    from sqlglot import exp

    if (
        isinstance(node, exp.Window)
        and isinstance(node.this, exp.RowNumber)
        and not node.args.get("partition_by")
        and not node.args.get("order")
    ):
        ids = exp.Anonymous(this="monotonically_increasing_id", expressions=[])
        numbered = node.copy()
        numbered.set("order", exp.Order(expressions=[exp.Ordered(this=ids)]))
        return numbered
    return node


def _add_years(node: exp.Expression) -> exp.Expression:
    """DuckDB's `d + INTERVAL (n) YEAR` as Spark's `add_months(d, 12 * (n))`: Spark takes no
    expression inside an interval. Both keep a 29 February on the 28th in other years."""
    from sqlglot import exp

    if (
        isinstance(node, exp.Add)
        and isinstance(node.expression, exp.Interval)
        and node.expression.unit is not None
        and node.expression.unit.name.upper() == "YEAR"
        and not isinstance(node.expression.this, exp.Literal)
    ):
        months = exp.Mul(this=exp.Literal.number(12), expression=node.expression.this.copy())
        return exp.Anonymous(this="add_months", expressions=[node.this.copy(), months])
    return node


def transpile(sql: str, what: str) -> str:
    """DuckDB SQL as Spark SQL; `what` names the text in the one-line error."""
    import sqlglot
    from sqlglot.errors import ParseError

    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except ParseError as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"{what}: its sql does not parse ({first}); fix it") from None
    return tree.transform(_add_years).transform(_row_numbers).sql(dialect="spark")


def _materialize(frame: DataFrame, view: str) -> None:
    """Compute a stage once and register it: later queries scan its rows instead of repeating
    its plan in every CTE that reads it, which on small data costs more than the data."""
    frame.localCheckpoint(eager=True).createOrReplaceTempView(view)


def _dates_view(spark: SparkSession, dates: list[date]) -> None:
    rows = ", ".join(f"(DATE '{d}')" for d in dates) or "(CAST(NULL AS DATE))"
    spark.sql(
        f"SELECT * FROM VALUES {rows} AS d(as_of) WHERE as_of IS NOT NULL"
    ).createOrReplaceTempView("snapshot_dates")


def build_entities(world: SparkWorld, dates: list[date]) -> None:
    """Temp views `account_status` (every account at each date) and `entities(account_id,
    as_of, arr_before)`, the eligible ones, computed once."""
    _dates_view(world.spark, dates)
    status = world.spark.sql(transpile(status_sql(world.consumption), "eligibility"))
    status.createOrReplaceTempView("account_status")
    _materialize(world.spark.sql(transpile(ENTITIES, "the entities")), "entities")


def build_expansions(world: SparkWorld, features: FeatureSet) -> None:
    """Temp view `expansions(account_id, day)`: days with an expansion, from the ledger's SQL."""
    movements = world.spark.sql(transpile(movements_sql(features), "the ARR ledger"))
    movements.createOrReplaceTempView("movements")
    kinds = ", ".join(sql_str(k) for k in EXPANSION_KINDS)
    world.spark.sql(
        f"SELECT DISTINCT account_id, day FROM movements WHERE kind IN ({kinds}) AND arr_delta > 0"
    ).cache().createOrReplaceTempView("expansions")


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


def _distinct(value: str) -> str:
    """How many distinct non-null `value`s, as `count(DISTINCT value)` counts them. Spark runs a
    query with several distinct counts by copying every input row once per count (its Expand
    step); a set per group is one pass, and on the usage windows twice as fast."""
    return f"size(collect_set({value}))"


def _window_sql(name: str, w: UsageWindow) -> str:
    """One usage window as a conditional aggregate over the entity's joined usage days."""
    inside = f"d.day >= e.as_of - {w.offset + w.days} AND d.day < e.as_of - {w.offset}"
    if w.event is not None:
        inside += f" AND {event_filter(w.event, 'd.event')}"
    value = {
        "sum": f"sum(CASE WHEN {inside} THEN d.q END)",
        "count": f"sum(CASE WHEN {inside} THEN d.n END)",
        "users": _distinct(f"CASE WHEN {inside} THEN d.user_id END"),
        "events": _distinct(f"CASE WHEN {inside} THEN d.event END"),
        "days": _distinct(f"CASE WHEN {inside} THEN d.day END"),
        "user_days": _distinct(
            f"CASE WHEN {inside} AND d.user_id IS NOT NULL"
            " THEN concat(d.user_id, '|', CAST(d.day AS STRING)) END"
        ),
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
                "user_days": _distinct(f"CASE WHEN {keep} THEN user_id END"),
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


def usage_sql(features: FeatureSet) -> str:
    """The query of `usage_agg`: every usage window of every entity, as `build.base_sql`
    reads it, by range joins over the daily `usage` (DuckDB's are ASOF joins)."""
    totals = {n: w for n, w in features.usage_windows.items() if w.stat == "total"}
    slopes = {n: w for n, w in features.usage_windows.items() if w.stat == "slope"}
    windowed = [_window_sql(name, w) for name, w in totals.items()]
    picked = [f"u.`{n}`" for n in totals] + [f"sl.`{n}`" for n in slopes]
    return f"""
    WITH windows AS (
        SELECT e.account_id, e.as_of{"".join(", " + w for w in windowed)}
        FROM entities e JOIN usage d ON d.account_id = e.account_id
         AND d.day >= e.as_of - {window_span(features)} AND d.day < e.as_of
        GROUP BY e.account_id, e.as_of
    ),{_slope_sql(slopes, window_span(features))}
    entity_keys AS (SELECT account_id, as_of FROM entities)
    SELECT e.account_id, e.as_of{"".join(", " + c for c in picked)}
    FROM entity_keys e
    LEFT JOIN windows u ON u.account_id = e.account_id AND u.as_of = e.as_of
    {"LEFT JOIN slopes sl ON sl.account_id = e.account_id AND sl.as_of = e.as_of" if slopes else ""}
    """


def event_agg_sql(features: FeatureSet) -> str:
    """The query of `event_agg`: per entity and tracked event, the quantity in the 28 days
    before as_of (`q`) and in the 28 before those (`q_prev`), and the events in the first (`n`)."""
    return f"""
    WITH event_daily AS (
        SELECT account_id, event, day, sum(q) AS q, sum(n) AS n
        FROM usage WHERE {tracked_events(features, "event")}
        GROUP BY account_id, event, day
    )
    SELECT e.account_id, e.as_of, x.event,
        coalesce(sum(x.q) FILTER (WHERE x.day >= e.as_of - 28), 0) AS q,
        coalesce(sum(x.q) FILTER (WHERE x.day < e.as_of - 28), 0) AS q_prev,
        coalesce(sum(x.n) FILTER (WHERE x.day >= e.as_of - 28), 0) AS n
    FROM entities e JOIN event_daily x ON x.account_id = e.account_id
     AND x.day >= e.as_of - 56 AND x.day < e.as_of
    GROUP BY e.account_id, e.as_of, x.event
    HAVING sum(x.q) > 0
    """


def build_features(world: SparkWorld, features: FeatureSet, usage_ready: bool = False) -> DataFrame:
    """A Spark frame of account_id, as_of and every defined feature, in definition order.

    Needs the `entities` and `expansions` views. Each feature's DuckDB `sql:` is transpiled and
    cast as `build.build_features` casts it: DOUBLE, or STRING for a categorical.
    """
    from pyspark.errors import PySparkException

    spark = world.spark
    if not usage_ready:  # else other definitions over the usage views already made
        build_usage(world, features)
        # computed once: other definitions (a fold's fitted affinity) read them again
        _materialize(spark.sql(usage_sql(features)), "usage_agg")
        _materialize(spark.sql(event_agg_sql(features)), "event_agg")
        spark.sql(CATALOGUE_SIZES).createOrReplaceTempView("catalogue_sizes")
    base = base_sql(features, world.has("support_tickets"), world.has("nps_responses"))
    spark.sql(transpile(base, "the base aggregates")).createOrReplaceTempView("feature_base")
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


def feature_relation(
    world: SparkWorld, features: FeatureSet, dates: list[date]
) -> tuple[DataFrame, pd.DataFrame]:
    """The Spark frame of every eligible account's features at each date, and the collected
    status of every account (as `snapshots.statuses`); the views it reads stay registered."""
    build_entities(world, dates)
    build_expansions(world, features)
    frame = build_features(world, features)
    status = world.spark.sql(
        f"SELECT account_id, as_of, {', '.join(STATUS_COLUMNS[1:])} FROM account_status"
    ).toPandas()
    status = as_dates(status).sort_values(["as_of", "account_id"], kind="stable")
    return frame, status.reset_index(drop=True)


def feature_frame(
    world: SparkWorld, features: FeatureSet, dates: list[date], labelling: Labelling | None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """`frame.feature_frame` on Spark: the features, every account's status and (given
    `labelling`) the labels, computed there, then collected."""
    relation, status = feature_relation(world, features, dates)
    labels = None if labelling is None else _labels(world, labelling)
    return _collect(relation), status, labels


def label_frame(
    world: SparkWorld, features: FeatureSet, dates: list[date], labelling: Labelling
) -> pd.DataFrame:
    """`frame.label_frame` on Spark: the labels alone of every account eligible at each date."""
    build_entities(world, dates)
    build_expansions(world, features)
    return _labels(world, labelling)


def _labels(world: SparkWorld, labelling: Labelling) -> pd.DataFrame:
    """The labels of the `entities` view, from DuckDB's label query transpiled."""
    label = labelling.label or LabelConfig()
    query = labels_sql(world.consumption, labelling.horizon_days, label, labelling.motions)
    rows = world.spark.sql(transpile(query, "the labels")).toPandas()
    labels = finish_labels(
        rows, world.consumption, labelling.horizon_days, label, labelling.motions
    )
    return labels.sort_values(["as_of", "account_id"], kind="stable").reset_index(drop=True)


def evaluate_features(world: SparkWorld, features: FeatureSet) -> pd.DataFrame:
    """`build.evaluate_features` on Spark: other definitions (a fitted affinity) over the
    entities and usage views of the last `feature_frame`, collected."""
    return _collect(build_features(world, features, usage_ready=True))


def _collect(frame: DataFrame) -> pd.DataFrame:
    """`to_pandas`, with a failure on the executors said in one line."""
    from pyspark.errors import PySparkException

    try:
        return to_pandas(frame)
    except PySparkException as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise UserError(f"Spark could not compute the features ({first})") from None


def to_pandas(frame: DataFrame) -> pd.DataFrame:
    """Collect a frame keyed by (account_id, as_of) in the DuckDB path's order."""
    out = frame.toPandas()
    out = as_dates(out).sort_values(["as_of", "account_id"], kind="stable")
    return out.reset_index(drop=True)
