"""Point-in-time features for every row of the `entities` table, computed by DuckDB.

Each base aggregate reads only rows dated strictly before the entity's `as_of`, and an end
date on or after `as_of` reads as open: the rules of the table specs (`data.contract`). The
base aggregates (`base_sql`) are one DuckDB text that the Spark engine transpiles; the usage
windows (`prepare_usage`) are DuckDB's own. The feature definitions in `features/features.yaml`
are SQL expressions over these aggregates.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from expansion_scorer.config import FeatureSet, UsageWindow
from expansion_scorer.data.contract import TABLES, held_on
from expansion_scorer.data.loading import sql_str
from expansion_scorer.errors import UserError
from expansion_scorer.features.ledger import plan_rank_values
from expansion_scorer.features.snapshots import as_dates


def _affinity_values(features: FeatureSet) -> str:
    pairs = features.affinity_pairs
    if not pairs:
        return "(SELECT NULL::VARCHAR AS event, NULL::VARCHAR AS product WHERE false) AS fit"
    rows = ", ".join(f"({sql_str(e)}, {sql_str(p)})" for e, p in pairs.items())
    return f"(VALUES {rows}) AS fit(event, product)"


def _limit_values(features: FeatureSet) -> str:
    rows = [
        f"({sql_str(plan)}, {sql_str(event)}, {float(limit)})"
        for plan, limits in features.plan_limits.items()
        for event, limit in limits.items()
    ]
    if not rows:
        return (
            "(SELECT NULL::VARCHAR AS plan, NULL::VARCHAR AS event, 1.0 AS monthly"
            " WHERE false) AS lim"
        )
    return f"(VALUES {', '.join(rows)}) AS lim(plan, event, monthly)"


def _known(table: str, alias: str, as_of: str = "e.as_of") -> str:
    """The rows of `table` (as `alias`) known before `as_of`, by the table spec's rule."""
    spec = TABLES[table]
    return spec.known_before(f"{alias}.{spec.dated_by}", as_of)


def base_sql(features: FeatureSet, has_tickets: bool, has_nps: bool) -> str:
    """The base aggregates of every entity, in DuckDB's dialect; the Spark engine transpiles
    this same text (`features.spark`).

    Besides the contract tables it reads `entities`, `expansions`, `movements` and three
    relations each engine computes its own way: `usage_agg` (every usage window per entity),
    `event_agg` (per entity and tracked event, the quantity in the last 28 days and the 28
    before) and `catalogue_sizes`. Every join reads rows dated strictly before the entity's
    as_of, and an end date on or after as_of reads as open (`TableSpec.as_known`).
    """
    now, ago = held_on("s", "s.as_of - 1"), held_on("s", "s.as_of - 91")
    year_ago = held_on("s", "s.as_of - 366")
    subs = TABLES["subscriptions"]
    tickets = (
        f"""
        SELECT e.account_id, e.as_of, count(*) AS tickets_90d,
               count(*) FILTER (WHERE lower(t.priority) = 'urgent') AS urgent_tickets_90d,
               count(*) FILTER (WHERE lower(t.priority) = 'urgent' AND t.created_at >= e.as_of - 30)
                   AS urgent_tickets_30d
        FROM entities e JOIN support_tickets t ON t.account_id = e.account_id
         AND t.created_at >= e.as_of - 90 AND {_known("support_tickets", "t")}
        GROUP BY e.account_id, e.as_of
        """
        if has_tickets
        else "SELECT NULL::VARCHAR AS account_id, NULL::DATE AS as_of,"
        " 0 AS tickets_90d, 0 AS urgent_tickets_90d, 0 AS urgent_tickets_30d WHERE false"
    )
    nps = (
        f"""
        SELECT n.account_id, n.as_of,
            -- the latest answer and the one before; on a tie of times, the lowest score first
            max(n.score) FILTER (WHERE n.latest = 1) AS nps_last,
            max(n.score) FILTER (WHERE n.latest = 2) AS nps_prev
        FROM (
            SELECT e.account_id, e.as_of, n.score, row_number() OVER (
                PARTITION BY e.account_id, e.as_of ORDER BY n.responded_at DESC, n.score
            ) AS latest
            FROM entities e JOIN nps_responses n ON n.account_id = e.account_id
             AND {_known("nps_responses", "n")}
        ) n
        GROUP BY n.account_id, n.as_of
        """
        if has_nps
        else "SELECT NULL::VARCHAR AS account_id, NULL::DATE AS as_of, NULL::DOUBLE AS nps_last,"
        " NULL::DOUBLE AS nps_prev WHERE false"
    )
    windowed = "".join(f'coalesce(u."{name}", 0) AS "{name}", ' for name in features.usage_windows)
    anniversary = "n.first_start + INTERVAL (year(e.as_of) - year(n.first_start) + {k}) YEAR"
    return f"""
    WITH subs AS (
        SELECT e.account_id, e.as_of, s.product, s.plan, s.seats, s.arr, s.start_date,
               {subs.as_known("end_date", "s.end_date", "e.as_of")} AS end_date
        FROM entities e JOIN subscriptions s
          ON s.account_id = e.account_id AND {_known("subscriptions", "s")}
    ),
    sub_now AS (
        SELECT s.account_id, s.as_of,
            coalesce(sum(s.arr) FILTER (WHERE {now}), 0) AS arr_now,
            sum(s.arr) FILTER (WHERE {ago}) AS arr_90d_ago,
            coalesce(sum(s.seats) FILTER (WHERE {now}), 0) AS seats,
            sum(s.seats) FILTER (WHERE {ago}) AS seats_90d_ago,
            sum(s.arr) FILTER (WHERE {year_ago}) AS arr_365d_ago,
            count(DISTINCT CASE WHEN {now} THEN s.product END) AS products_owned,
            list_sort(list(DISTINCT s.product) FILTER (WHERE {now})) AS owned_products,
            max(r.rank) FILTER (WHERE {now}) AS plan_rank,
            arg_max(s.plan, r.rank) FILTER (WHERE {now} AND r.rank IS NOT NULL) AS plan,
            min(s.start_date) AS first_start
        FROM subs s LEFT JOIN {plan_rank_values(features)} ON r.plan = s.plan
        GROUP BY s.account_id, s.as_of
    ),
    owned AS (
        SELECT DISTINCT s.account_id, s.as_of, s.product FROM subs s WHERE {now}
    ),
    unowned AS (
        SELECT x.account_id, x.as_of, x.event, x.q, x.q_prev, fit.product, row_number() OVER (
            PARTITION BY x.account_id, x.as_of ORDER BY x.q DESC, x.event
        ) AS top
        FROM event_agg x JOIN {_affinity_values(features)} ON fit.event = x.event
        WHERE NOT EXISTS (SELECT 1 FROM owned o WHERE o.account_id = x.account_id
                          AND o.as_of = x.as_of AND o.product = fit.product)
    ),
    fit AS (
        SELECT x.account_id, x.as_of, sum(x.q) AS unowned_fit_events_28d,
            max(x.product) FILTER (WHERE x.top = 1) AS top_unowned_fit,
            max(x.event) FILTER (WHERE x.top = 1) AS top_unowned_fit_event,
            sum(x.q_prev) AS unowned_fit_events_prev_28d
        FROM unowned x
        GROUP BY x.account_id, x.as_of
    ),
    limits AS (
        SELECT x.account_id, x.as_of, max(x.q * 30.0 / 28 / lim.monthly) AS plan_limit_use
        FROM event_agg x JOIN sub_now n ON n.account_id = x.account_id AND n.as_of = x.as_of
        JOIN {_limit_values(features)} ON lim.plan = n.plan AND lim.event = x.event
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
            count(DISTINCT CASE WHEN r.date >= e.as_of - 90 THEN r.date END) AS billing_days_90d,
            count(DISTINCT r.date) AS billing_days_365d,
            max(r.date) AS last_billing
        FROM entities e JOIN revenue r ON r.account_id = e.account_id
         AND r.date >= e.as_of - 365 AND {_known("revenue", "r")}
        GROUP BY e.account_id, e.as_of
    ),
    tickets AS ({tickets}),
    nps AS ({nps})
    SELECT e.account_id, e.as_of,
        -- contracts give ARR; with usage-based pricing (a revenue table) it is the run-rate.
        -- A decimal divided is a DOUBLE in DuckDB, not in Spark: the casts say it for both.
        coalesce(CAST(n.arr_now AS DOUBLE), CAST(b.revenue_90d * 365.0 AS DOUBLE) / 90, 0)
            AS arr_now,
        coalesce(CAST(n.arr_90d_ago AS DOUBLE), CAST(b.revenue_prev_90d * 365.0 AS DOUBLE) / 90)
            AS arr_90d_ago,
        CAST(n.arr_365d_ago AS DOUBLE) AS arr_365d_ago,
        n.seats, n.seats_90d_ago, n.products_owned, n.owned_products, n.plan,
        coalesce(b.billing_days_90d, 0) AS billing_days_90d,
        coalesce(b.billing_days_365d, 0) AS billing_days_365d,
        date_diff('day', b.last_billing, e.as_of) AS days_since_billing,
        {windowed}
        {catalogue_size(features)} AS catalogue_size,
        coalesce(f.unowned_fit_events_28d, 0) AS unowned_fit_events_28d,
        f.top_unowned_fit, f.top_unowned_fit_event,
        coalesce(f.unowned_fit_events_prev_28d, 0) AS unowned_fit_events_prev_28d,
        coalesce(l.plan_limit_use, 0) AS plan_limit_use,
        date_diff('day', a.created_at, e.as_of) AS tenure_days,
        date_diff('day', e.as_of, CASE
            WHEN {anniversary.format(k=0)} >= e.as_of THEN {anniversary.format(k=0)}
            ELSE {anniversary.format(k=1)}
        END) AS days_to_renewal,
        coalesce(p.expansions_365d, 0) AS expansions_365d,
        coalesce(c.contractions_365d, 0) AS contractions_365d,
        date_diff('day', p.last_expansion, e.as_of) AS days_since_expansion,
        coalesce(t.tickets_90d, 0) AS tickets_90d,
        coalesce(t.urgent_tickets_90d, 0) AS urgent_tickets_90d,
        coalesce(t.urgent_tickets_30d, 0) AS urgent_tickets_30d,
        nps.nps_last, nps.nps_prev,
        a.employee_count, a.industry, a.segment, a.country
    FROM entities e
    JOIN accounts a ON a.account_id = e.account_id
    LEFT JOIN sub_now n ON n.account_id = e.account_id AND n.as_of = e.as_of
    LEFT JOIN usage_agg u ON u.account_id = e.account_id AND u.as_of = e.as_of
    LEFT JOIN fit f ON f.account_id = e.account_id AND f.as_of = e.as_of
    LEFT JOIN limits l ON l.account_id = e.account_id AND l.as_of = e.as_of
    LEFT JOIN past_expansions p ON p.account_id = e.account_id AND p.as_of = e.as_of
    LEFT JOIN contractions c ON c.account_id = e.account_id AND c.as_of = e.as_of
    LEFT JOIN billed b ON b.account_id = e.account_id AND b.as_of = e.as_of
    LEFT JOIN tickets t ON t.account_id = e.account_id AND t.as_of = e.as_of
    LEFT JOIN nps ON nps.account_id = e.account_id AND nps.as_of = e.as_of
    LEFT JOIN catalogue_sizes cat ON cat.as_of = e.as_of
    """


def catalogue_size(features: FeatureSet) -> str:
    """The base column `catalogue_size`: the listed catalogue's size, or with `events: auto`
    the events any account used before as_of (temp table `catalogue_sizes`)."""
    return "coalesce(cat.n, 0)" if features.events_auto else str(len(features.catalogue_events))


CATALOGUE_SIZES = """
    SELECT d.as_of, count(f.event) AS n
    FROM (SELECT DISTINCT as_of FROM entities) d
    LEFT JOIN (SELECT event, min(timestamp) AS first_used FROM usage_events GROUP BY event) f
      ON f.first_used < d.as_of
    GROUP BY d.as_of
"""
"""Per snapshot date, the events of the usage log first used before it (both engines)."""


def _boundaries(name: str, offsets: list[int]) -> str:
    """Temp table of (account_id, as_of, k, b = as_of - k): the window edges to look up."""
    values = ", ".join(f"({k})" for k in offsets)
    return (
        f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT e.account_id, e.as_of, o.k,"
        f" e.as_of - o.k AS b FROM entities e CROSS JOIN (VALUES {values}) AS o(k)"
    )


def event_filter(events: list[str] | None, column: str = "u.event") -> str:
    """The predicate a window's event filter puts on its event column (both engines)."""
    if events is None:
        return "true"
    return f"{column} IN ({', '.join(sql_str(e) for e in events)})"


ADDITIVE = {
    # measure -> its per-(account, day) value; a window's total is a difference of running sums
    "sum": "coalesce(sum(u.quantity) FILTER (WHERE {f}), 0)",
    "count": "count(*) FILTER (WHERE {f})",
    "days": "CAST(count(*) FILTER (WHERE {f}) > 0 AS INTEGER)",
    "user_days": "count(DISTINCT u.user_id) FILTER (WHERE {f})",
}
DISTINCT_KEY = {"users": "u.user_id", "events": "u.event"}
FIT_OFFSETS = (0, 28, 56)  # the affinity and plan-limit aggregates: 28 days and the 28 before
ORIGIN = "DATE '2000-01-01'"  # day numbers for slopes count from here


def window_span(features: FeatureSet) -> int:
    """The longest look-back of any usage aggregate, in days."""
    spans = [w.offset + w.days for w in features.usage_windows.values()]
    return max([max(FIT_OFFSETS), *spans])


def slope_scale(days: int) -> tuple[int, int]:
    """Weekly least-squares slope over a window of `days` daily values v_d, d in [b - days, b):
    (2 * sum(v_d * (d - b)) + (days + 1) * sum(v_d)) * num / den. The bracket is an exact
    integer (twice the centred first moment), so both engines agree to the last bit."""
    return 42, days * (days * days - 1)  # 7 days x 12 / (2 x days(days^2 - 1))


def _additive_windows(con: duckdb.DuckDBPyConnection, span: str, windows: dict) -> list[str]:
    """Running sums per (account, day) for every additive window, looked up at its two edges.

    A slope window also keeps the running first moment sum(v_d * d), d in days since ORIGIN,
    so its centred moment is a difference of two lookups as well.
    """
    columns: dict[tuple[str, tuple[str, ...] | None], str] = {}
    moments: set[str] = set()
    for w in windows.values():
        key = (w.measure, tuple(w.event) if w.event else None)
        columns.setdefault(key, f"m{len(columns)}")
        if w.stat == "slope":
            moments.add(columns[key])
    daily = ", ".join(
        f"{ADDITIVE[measure].format(f=event_filter(list(ev) if ev else None))} AS {col}"
        for (measure, ev), col in columns.items()
    )
    running = ", ".join(
        [f"sum({col}) OVER w AS {col}" for col in columns.values()]
        + [f"sum({col} * (day - {ORIGIN})) OVER w AS {col}_t" for col in sorted(moments)]
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE usage_cum AS
        SELECT account_id, day, {running or "0 AS m"}
        FROM (
            SELECT u.account_id, CAST(u.timestamp AS DATE) AS day{", " + daily if daily else ""}
            FROM usage_events u WHERE {span}
            GROUP BY ALL
        )
        WINDOW w AS (PARTITION BY account_id ORDER BY day ROWS UNBOUNDED PRECEDING)
        """
    )
    looked = ", ".join(
        [f"coalesce(c.{col}, 0) AS {col}" for col in columns.values()]
        + [f"coalesce(c.{col}_t, 0) AS {col}_t" for col in sorted(moments)]
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE usage_sums AS
        SELECT g.account_id, g.as_of, g.k{", " + looked if looked else ""}
        FROM usage_edges g ASOF LEFT JOIN usage_cum c
          ON c.account_id = g.account_id AND g.b > c.day
        """
    )

    def within(col: str, w: UsageWindow) -> str:
        return (
            f"(max({col}) FILTER (WHERE k = {w.offset})"
            f" - max({col}) FILTER (WHERE k = {w.offset + w.days}))"
        )

    out = []
    for name, w in windows.items():
        col = columns[(w.measure, tuple(w.event) if w.event else None)]
        if w.stat == "total":
            out.append(f'{within(col, w)} AS "{name}"')
            continue
        num, den = slope_scale(w.days)
        end = f"(as_of - {ORIGIN} - {w.offset})"  # the window's end b, in days since ORIGIN
        centred = f"2 * ({within(col + '_t', w)} - {end} * {within(col, w)})"
        total = f"{w.days + 1} * {within(col, w)}"
        out.append(f'CAST({centred} + {total} AS DOUBLE) * {num} / {den} AS "{name}"')
    return out


def _distinct_windows(con: duckdb.DuckDBPyConnection, span: str, windows: dict) -> list[str]:
    """Distinct users or events in each window, without pairing every key with every entity.

    A key (a user, say) seen on day x is in the window [b - d, b) of every edge b in (x, x + d].
    Over a key's days, those intervals merge into islands (s, e + d] wherever consecutive days
    are at most d apart, so the keys in the window ending at b number #{s < b} - #{e + d < b}:
    two running counts per account, each looked up strictly before b.
    """
    groups: dict[tuple[str, tuple[str, ...] | None, int], list[str]] = {}
    for name, w in windows.items():
        groups.setdefault((w.measure, tuple(w.event) if w.event else None, w.days), []).append(name)
    key_sets: dict[tuple[str, tuple[str, ...] | None], str] = {}
    out = []
    for g, ((measure, ev, days), names) in enumerate(groups.items()):
        keys = key_sets.get((measure, ev))
        if keys is None:
            keys = key_sets[(measure, ev)] = f"key_days_{len(key_sets)}"
            con.execute(
                f"""
                CREATE OR REPLACE TEMP TABLE {keys} AS
                SELECT DISTINCT u.account_id, {DISTINCT_KEY[measure]} AS key,
                       CAST(u.timestamp AS DATE) AS day
                FROM usage_events u
                WHERE {span} AND {event_filter(list(ev) if ev else None)}
                  AND {DISTINCT_KEY[measure]} IS NOT NULL
                """
            )
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE islands_{g} AS
            WITH gaps AS (
                SELECT account_id, day,
                    day - lag(day) OVER w AS gap_before,
                    lead(day) OVER w - day AS gap_after
                FROM {keys}
                WINDOW w AS (PARTITION BY account_id, key ORDER BY day)
            ),
            marks AS (
                SELECT account_id, day, 1 AS starts, 0 AS ends FROM gaps
                WHERE gap_before IS NULL OR gap_before > {days}
                UNION ALL
                SELECT account_id, day + {days}, 0, 1 FROM gaps
                WHERE gap_after IS NULL OR gap_after > {days}
            )
            SELECT account_id, day, sum(sum(starts)) OVER w AS cs, sum(sum(ends)) OVER w AS ce
            FROM marks GROUP BY account_id, day
            WINDOW w AS (PARTITION BY account_id ORDER BY day ROWS UNBOUNDED PRECEDING)
            """
        )
        offsets = sorted({windows[n].offset for n in names})
        con.execute(_boundaries(f"island_edges_{g}", offsets))
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE island_counts_{g} AS
            SELECT g.account_id, g.as_of, g.k, coalesce(c.cs - c.ce, 0) AS n
            FROM island_edges_{g} g ASOF LEFT JOIN islands_{g} c
              ON c.account_id = g.account_id AND g.b > c.day
            """
        )
        picks = ", ".join(
            f'max(n) FILTER (WHERE k = {windows[name].offset}) AS "{name}"' for name in names
        )
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE island_agg_{g} AS
            SELECT account_id, as_of, {picks} FROM island_counts_{g} GROUP BY ALL
            """
        )
        out.append(f"island_agg_{g}")
    return out


def prepare_usage(con: duckdb.DuckDBPyConnection, features: FeatureSet) -> None:
    """Temp tables `usage_agg` (every usage window) and `event_agg`, without a range join.

    A window [a, b) of an additive measure is cum(b) - cum(a), where cum(x) is the running
    total of the last day strictly before x (an ASOF join); distinct counts use the islands of
    `_distinct_windows`. Every lookup is strictly before its edge, and every edge is at or before
    as_of. Cost grows with rows plus entities x edges, not with rows x snapshots.
    """
    span = f"""
        u.account_id IN (SELECT account_id FROM entities)
        AND u.timestamp >= (SELECT min(as_of) FROM entities) - {window_span(features)}
        AND u.timestamp < (SELECT max(as_of) FROM entities)
    """
    windows = features.usage_windows
    additive = {n: w for n, w in windows.items() if w.measure in ADDITIVE}
    distinct = {n: w for n, w in windows.items() if w.measure in DISTINCT_KEY}
    edges = sorted(
        {*FIT_OFFSETS, *(k for w in additive.values() for k in (w.offset, w.offset + w.days))}
    )
    con.execute(_boundaries("usage_edges", edges))
    sums = _additive_windows(con, span, additive)
    tables = _distinct_windows(con, span, distinct)
    joins = "".join(f" LEFT JOIN {t} USING (account_id, as_of)" for t in tables)
    picked = [f'"{n}"' for n in distinct]
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE usage_agg AS
        WITH sums AS (
            SELECT account_id, as_of{"".join(", " + x for x in sums)}
            FROM usage_sums GROUP BY account_id, as_of
        )
        SELECT s.*{"".join(", " + x for x in picked)} FROM sums s{joins}
        """
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE catalogue_sizes AS {CATALOGUE_SIZES}")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE event_cum AS
        SELECT account_id, event, day, sum(q) OVER w AS cq, sum(n) OVER w AS cn
        FROM (
            SELECT u.account_id, u.event, CAST(u.timestamp AS DATE) AS day, sum(u.quantity) AS q,
                count(*) AS n
            FROM usage_events u WHERE {span} AND {tracked_events(features)}
            GROUP BY ALL
        )
        WINDOW w AS (PARTITION BY account_id, event ORDER BY day ROWS UNBOUNDED PRECEDING)
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE event_agg AS
        WITH edges AS (
            SELECT g.account_id, g.as_of, g.k, g.b, t.event
            FROM usage_edges g JOIN (SELECT DISTINCT account_id, event FROM event_cum) t
              ON t.account_id = g.account_id
            WHERE g.k IN {FIT_OFFSETS}
        ),
        looked AS (
            SELECT g.account_id, g.as_of, g.k, g.event, coalesce(c.cq, 0) AS cq,
                coalesce(c.cn, 0) AS cn
            FROM edges g ASOF LEFT JOIN event_cum c
              ON c.account_id = g.account_id AND c.event = g.event AND g.b > c.day
        )
        SELECT account_id, as_of, event,
            max(cq) FILTER (WHERE k = 0) - max(cq) FILTER (WHERE k = 28) AS q,
            max(cq) FILTER (WHERE k = 28) - max(cq) FILTER (WHERE k = 56) AS q_prev,
            max(cn) FILTER (WHERE k = 0) - max(cn) FILTER (WHERE k = 28) AS n
        FROM looked GROUP BY ALL
        HAVING max(cq) FILTER (WHERE k = 0) - max(cq) FILTER (WHERE k = 56) > 0
        """
    )


def tracked_events(features: FeatureSet, column: str = "u.event") -> str:
    """The events whose per-event 28-day totals are kept (`event_agg`): those the affinity and
    the plan limits name, or every event while the affinity is to be learned from them."""
    if features.affinity_learned:
        return "true"
    tracked = sorted(
        {*features.affinity_pairs, *(e for lim in features.plan_limits.values() for e in lim)}
    )
    return f"{column} IN ({', '.join(sql_str(e) for e in tracked) or 'NULL'})"


def _bind(con: duckdb.DuckDBPyConnection, features: FeatureSet, base: str, where: str = "") -> None:
    """Plan every feature's SQL over `base` without running it; the first that fails stops.
    All in one query first (one plan of `base`, a tenth of the time), then one by one only
    when that fails, to name the feature."""
    exprs = ", ".join(f'({f.sql}) AS "{i}"' for i, f in enumerate(features.features))
    try:
        con.execute(f"SELECT {exprs} FROM {base} LIMIT 0")
        return
    except duckdb.Error:
        pass
    for f in features.features:
        try:
            con.execute(f"SELECT {f.sql} FROM {base} LIMIT 0")
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0]
            raise UserError(
                f"{where}feature {f.name}: its sql does not run ({first}); fix it"
            ) from None


def check_definitions(features: FeatureSet, where: str) -> None:
    """Bind every feature's SQL against empty contract tables: an unknown column or table, or
    an event outside the catalogue, fails here, at load, naming the definition."""
    from expansion_scorer.data.loading import typed_select
    from expansion_scorer.features.ledger import build_expansions
    from expansion_scorer.features.snapshots import build_entities

    key = features.model_dump_json()
    if key in _CHECKED:
        return
    if features.catalogue_events:
        for name, window in features.usage_windows.items():
            unknown = sorted(set(window.event or ()) - set(features.catalogue_events))
            if unknown:
                raise UserError(
                    f"config {where}: window {name} counts events outside the catalogue"
                    f" ({', '.join(unknown)}); add them to `events` or fix the name"
                )
    con = duckdb.connect()
    try:
        con.execute("CREATE TEMP TABLE world_info AS SELECT false AS consumption")
        for name, spec in TABLES.items():
            con.execute(f"CREATE VIEW {name} AS SELECT {typed_select(spec, [], None)} WHERE false")
        build_entities(con, [])
        build_expansions(con, features)
        prepare_usage(con, features)
        _bind(con, features, f"({base_sql(features, True, True)})", f"config {where}: ")
    finally:
        con.close()
    _CHECKED.add(key)


_CHECKED: set[str] = set()  # definitions already bound, so loading them again costs nothing


def build_features(
    con: duckdb.DuckDBPyConnection, features: FeatureSet, has_tickets: bool, has_nps: bool
) -> pd.DataFrame:
    """One row per entity: account_id, as_of, then every defined feature, in definition order."""
    prepare_usage(con, features)
    return evaluate_features(con, features, has_tickets, has_nps)


def evaluate_features(
    con: duckdb.DuckDBPyConnection, features: FeatureSet, has_tickets: bool, has_nps: bool
) -> pd.DataFrame:
    """`build_features` over usage aggregates already prepared (`prepare_usage`): what a fitted
    affinity changes is computed again from them, without reading the usage log again."""
    exprs = ",\n".join(
        f'CAST(({f.sql}) AS {"VARCHAR" if f.kind == "categorical" else "DOUBLE"}) AS "{f.name}"'
        for f in features.features
    )
    base = f"({base_sql(features, has_tickets, has_nps)})"
    try:
        frame = con.execute(
            f"SELECT account_id, as_of, {exprs} FROM {base} ORDER BY as_of, account_id"
        ).df()
    except duckdb.Error:
        _bind(con, features, base)  # name the feature whose SQL fails, when one does
        raise
    return as_dates(frame)
