"""Point-in-time features for every row of the `entities` table, computed by DuckDB.

Each base aggregate reads only rows dated strictly before the entity's `as_of`; subscription
rows that end on or after `as_of` are treated as open. The feature definitions in
`features/features.yaml` are SQL expressions over these aggregates.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from expansion_scorer.config import FeatureSet
from expansion_scorer.data.loading import sql_str
from expansion_scorer.errors import UserError
from expansion_scorer.features.ledger import plan_rank_values
from expansion_scorer.features.snapshots import as_dates

WINDOW_DAYS = 120  # the longest look-back of any usage aggregate


def _affinity_values(features: FeatureSet) -> str:
    if not features.affinity:
        return "(SELECT NULL::VARCHAR AS event, NULL::VARCHAR AS product WHERE false) AS fit"
    rows = ", ".join(f"({sql_str(e)}, {sql_str(p)})" for e, p in features.affinity.items())
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


def base_sql(features: FeatureSet, has_tickets: bool, has_nps: bool) -> str:
    open_on = "s.start_date <= {d} AND (s.end_date IS NULL OR s.end_date > {d})"
    # An end_date on or after as_of is not yet known at as_of: the row reads as open.
    subs = """
        SELECT e.account_id, e.as_of, s.product, s.plan, s.seats, s.arr, s.start_date,
               CASE WHEN s.end_date < e.as_of THEN s.end_date END AS end_date
        FROM entities e JOIN subscriptions s
          ON s.account_id = e.account_id AND s.start_date < e.as_of
    """
    tickets = (
        """
        SELECT e.account_id, e.as_of, count(*) AS tickets_90d,
               count(*) FILTER (WHERE lower(t.priority) = 'urgent') AS urgent_tickets_90d,
               count(*) FILTER (WHERE lower(t.priority) = 'urgent' AND t.created_at >= e.as_of - 30)
                   AS urgent_tickets_30d
        FROM entities e JOIN support_tickets t ON t.account_id = e.account_id
         AND t.created_at >= e.as_of - 90 AND t.created_at < e.as_of
        GROUP BY ALL
        """
        if has_tickets
        else "SELECT NULL::VARCHAR AS account_id, NULL::DATE AS as_of,"
        " 0 AS tickets_90d, 0 AS urgent_tickets_90d, 0 AS urgent_tickets_30d WHERE false"
    )
    nps = (
        """
        SELECT e.account_id, e.as_of,
               first(n.score ORDER BY n.responded_at DESC, n.score) AS nps_last
        FROM entities e JOIN nps_responses n ON n.account_id = e.account_id
         AND n.responded_at < e.as_of
        GROUP BY ALL
        """
        if has_nps
        else "SELECT NULL::VARCHAR AS account_id, NULL::DATE AS as_of, NULL::DOUBLE AS nps_last"
        " WHERE false"
    )
    return f"""
    WITH subs AS ({subs}),
    sub_now AS (
        SELECT s.account_id, s.as_of,
            coalesce(sum(s.arr) FILTER (WHERE {open_on.format(d="s.as_of - 1")}), 0) AS arr_now,
            sum(s.arr) FILTER (WHERE {open_on.format(d="s.as_of - 91")}) AS arr_90d_ago,
            coalesce(sum(s.seats) FILTER (WHERE {open_on.format(d="s.as_of - 1")}), 0) AS seats,
            sum(s.seats) FILTER (WHERE {open_on.format(d="s.as_of - 91")}) AS seats_90d_ago,
            count(DISTINCT s.product) FILTER (WHERE {open_on.format(d="s.as_of - 1")})
                AS products_owned,
            max(r.rank) FILTER (WHERE {open_on.format(d="s.as_of - 1")}) AS plan_rank,
            arg_max(s.plan, r.rank) FILTER (WHERE {open_on.format(d="s.as_of - 1")}) AS plan,
            min(s.start_date) AS first_start
        FROM subs s LEFT JOIN {plan_rank_values(features)} ON r.plan = s.plan
        GROUP BY ALL
    ),
    owned AS (
        SELECT DISTINCT s.account_id, s.as_of, s.product FROM subs s
        WHERE {open_on.format(d="s.as_of - 1")}
    ),
    fit AS (
        SELECT x.account_id, x.as_of, sum(x.q) AS unowned_fit_events_28d,
               first(fit.product ORDER BY x.q DESC, x.event) AS top_unowned_fit,
               first(x.event ORDER BY x.q DESC, x.event) AS top_unowned_fit_event,
               sum(x.q_prev) AS unowned_fit_events_prev_28d
        FROM event_agg x JOIN {_affinity_values(features)} ON fit.event = x.event
        WHERE NOT EXISTS (SELECT 1 FROM owned o WHERE o.account_id = x.account_id
                          AND o.as_of = x.as_of AND o.product = fit.product)
        GROUP BY ALL
    ),
    limits AS (
        SELECT x.account_id, x.as_of, max(x.q * 30.0 / 28 / lim.monthly) AS plan_limit_use
        FROM event_agg x JOIN sub_now n USING (account_id, as_of)
        JOIN {_limit_values(features)} ON lim.plan = n.plan AND lim.event = x.event
        GROUP BY ALL
    ),
    past_expansions AS (
        SELECT e.account_id, e.as_of,
            count(*) FILTER (WHERE x.day >= e.as_of - 365) AS expansions_365d,
            max(x.day) AS last_expansion
        FROM entities e JOIN expansions x ON x.account_id = e.account_id AND x.day < e.as_of
        GROUP BY e.account_id, e.as_of
    ),
    billed AS (
        SELECT e.account_id, e.as_of,
            coalesce(sum(r.amount) FILTER (WHERE r.date >= e.as_of - 90), 0) AS revenue_90d,
            sum(r.amount) FILTER (WHERE r.date >= e.as_of - 180 AND r.date < e.as_of - 90)
                AS revenue_prev_90d,
            count(DISTINCT r.date) FILTER (WHERE r.date >= e.as_of - 90) AS billing_days_90d,
            count(DISTINCT r.date) AS billing_days_365d,
            max(r.date) AS last_billing
        FROM entities e JOIN revenue r ON r.account_id = e.account_id
         AND r.date >= e.as_of - 365 AND r.date < e.as_of
        GROUP BY e.account_id, e.as_of
    ),
    tickets AS ({tickets}),
    nps AS ({nps})
    SELECT e.account_id, e.as_of,
        -- contracts give ARR; with usage-based pricing (a revenue table) it is the run-rate
        coalesce(n.arr_now, b.revenue_90d * 365.0 / 90, 0) AS arr_now,
        coalesce(n.arr_90d_ago, b.revenue_prev_90d * 365.0 / 90) AS arr_90d_ago,
        n.seats, n.seats_90d_ago, n.products_owned, n.plan,
        coalesce(b.billing_days_90d, 0) AS billing_days_90d,
        coalesce(b.billing_days_365d, 0) AS billing_days_365d,
        e.as_of - b.last_billing AS days_since_billing,
        coalesce(u.active_users_28d, 0) AS active_users_28d,
        coalesce(u.active_users_prev_28d, 0) AS active_users_prev_28d,
        coalesce(u.active_users_28d_90d_ago, 0) AS active_users_28d_90d_ago,
        coalesce(u.events_28d, 0) AS events_28d,
        coalesce(u.events_prev_28d, 0) AS events_prev_28d,
        coalesce(u.invites_28d, 0) AS invites_28d,
        coalesce(f.unowned_fit_events_28d, 0) AS unowned_fit_events_28d,
        f.top_unowned_fit, f.top_unowned_fit_event,
        coalesce(f.unowned_fit_events_prev_28d, 0) AS unowned_fit_events_prev_28d,
        coalesce(l.plan_limit_use, 0) AS plan_limit_use,
        e.as_of - a.created_at AS tenure_days,
        date_diff('day', e.as_of, CASE
            WHEN n.first_start + to_years(year(e.as_of) - year(n.first_start)) >= e.as_of
            THEN n.first_start + to_years(year(e.as_of) - year(n.first_start))
            ELSE n.first_start + to_years(year(e.as_of) - year(n.first_start) + 1)
        END) AS days_to_renewal,
        coalesce(p.expansions_365d, 0) AS expansions_365d,
        e.as_of - p.last_expansion AS days_since_expansion,
        coalesce(t.tickets_90d, 0) AS tickets_90d,
        coalesce(t.urgent_tickets_90d, 0) AS urgent_tickets_90d,
        coalesce(t.urgent_tickets_30d, 0) AS urgent_tickets_30d,
        nps.nps_last,
        a.employee_count, a.industry, a.segment, a.country
    FROM entities e
    JOIN accounts a ON a.account_id = e.account_id
    LEFT JOIN sub_now n ON n.account_id = e.account_id AND n.as_of = e.as_of
    LEFT JOIN usage_agg u ON u.account_id = e.account_id AND u.as_of = e.as_of
    LEFT JOIN fit f ON f.account_id = e.account_id AND f.as_of = e.as_of
    LEFT JOIN limits l ON l.account_id = e.account_id AND l.as_of = e.as_of
    LEFT JOIN past_expansions p ON p.account_id = e.account_id AND p.as_of = e.as_of
    LEFT JOIN billed b ON b.account_id = e.account_id AND b.as_of = e.as_of
    LEFT JOIN tickets t ON t.account_id = e.account_id AND t.as_of = e.as_of
    LEFT JOIN nps ON nps.account_id = e.account_id AND nps.as_of = e.as_of
    """


def _boundaries(name: str, offsets: tuple[int, ...]) -> str:
    """Temp table of (account_id, as_of, k, b = as_of - k): the window edges to look up."""
    values = ", ".join(f"({k})" for k in offsets)
    return (
        f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT e.account_id, e.as_of, o.k,"
        f" e.as_of - o.k AS b FROM entities e CROSS JOIN (VALUES {values}) AS o(k)"
    )


def prepare_usage(con: duckdb.DuckDBPyConnection, features: FeatureSet) -> None:
    """Temp tables `usage_agg` and `event_agg`: windowed usage per entity, without a range join.

    A window [a, b) of an additive measure is cum(b) - cum(a), where cum(x) is the running
    total of the last day strictly before x (an ASOF join); a user was active in [a, b) when
    their last active day before b is on or after a. Every lookup is strictly before its edge,
    and every edge is at or before as_of. Cost grows with rows plus entities x users, not with
    rows x snapshots.
    """
    span = f"""
        u.account_id IN (SELECT account_id FROM entities)
        AND u.timestamp >= (SELECT min(as_of) FROM entities) - {WINDOW_DAYS}
        AND u.timestamp < (SELECT max(as_of) FROM entities)
    """
    tracked = sorted(
        {*features.affinity, *(e for lim in features.plan_limits.values() for e in lim)}
    )
    tracked_sql = ", ".join(sql_str(e) for e in tracked) or "NULL"
    # Three narrow aggregates straight from the events, instead of one wide one: the
    # (account, user, day) set is the only large one, and it carries no event or quantity.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE usage_cum AS
        SELECT account_id, day, sum(q) OVER w AS cq, sum(inv) OVER w AS cinv
        FROM (
            SELECT u.account_id, CAST(u.timestamp AS DATE) AS day, sum(u.quantity) AS q,
                   coalesce(sum(u.quantity) FILTER (WHERE u.event = 'invite_user'), 0) AS inv
            FROM usage_events u WHERE {span}
            GROUP BY ALL
        )
        WINDOW w AS (PARTITION BY account_id ORDER BY day ROWS UNBOUNDED PRECEDING)
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE event_cum AS
        SELECT account_id, event, day, sum(q) OVER w AS cq
        FROM (
            SELECT u.account_id, u.event, CAST(u.timestamp AS DATE) AS day, sum(u.quantity) AS q
            FROM usage_events u WHERE {span} AND u.event IN ({tracked_sql})
            GROUP BY ALL
        )
        WINDOW w AS (PARTITION BY account_id, event ORDER BY day ROWS UNBOUNDED PRECEDING)
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE user_days AS
        SELECT DISTINCT u.account_id, u.user_id, CAST(u.timestamp AS DATE) AS day
        FROM usage_events u WHERE {span} AND u.user_id IS NOT NULL
        """
    )
    con.execute(_boundaries("usage_edges", (0, 28, 56)))
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE usage_sums AS
        SELECT g.account_id, g.as_of, g.k, coalesce(c.cq, 0) AS cq, coalesce(c.cinv, 0) AS cinv
        FROM usage_edges g ASOF LEFT JOIN usage_cum c
          ON c.account_id = g.account_id AND g.b > c.day
        """
    )
    con.execute(_boundaries("user_edges", (0, 28, 90)))
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE user_last AS
        WITH pairs AS (
            SELECT g.account_id, g.as_of, g.k, g.b, x.user_id
            FROM user_edges g
            JOIN (SELECT DISTINCT account_id, user_id FROM user_days) x USING (account_id)
        )
        SELECT p.account_id, p.as_of, p.k, p.b, d.day AS last_day
        FROM pairs p ASOF JOIN user_days d
          ON d.account_id = p.account_id AND d.user_id = p.user_id AND p.b > d.day
        """
    )
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE usage_agg AS
        WITH sums AS (
            SELECT account_id, as_of,
                max(cq) FILTER (WHERE k = 0) - max(cq) FILTER (WHERE k = 28) AS events_28d,
                max(cq) FILTER (WHERE k = 28) - max(cq) FILTER (WHERE k = 56) AS events_prev_28d,
                max(cinv) FILTER (WHERE k = 0) - max(cinv) FILTER (WHERE k = 28) AS invites_28d
            FROM usage_sums GROUP BY account_id, as_of
        ),
        users AS (
            SELECT account_id, as_of,
                count(*) FILTER (WHERE k = 0 AND last_day >= b - 28) AS active_users_28d,
                count(*) FILTER (WHERE k = 28 AND last_day >= b - 28) AS active_users_prev_28d,
                count(*) FILTER (WHERE k = 90 AND last_day >= b - 28) AS active_users_28d_90d_ago
            FROM user_last GROUP BY account_id, as_of
        )
        SELECT s.account_id, s.as_of, s.events_28d, s.events_prev_28d, s.invites_28d,
               coalesce(u.active_users_28d, 0) AS active_users_28d,
               coalesce(u.active_users_prev_28d, 0) AS active_users_prev_28d,
               coalesce(u.active_users_28d_90d_ago, 0) AS active_users_28d_90d_ago
        FROM sums s LEFT JOIN users u USING (account_id, as_of)
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE event_agg AS
        WITH edges AS (
            SELECT g.account_id, g.as_of, g.k, g.b, t.event
            FROM usage_edges g CROSS JOIN (SELECT unnest([{tracked_sql}]) AS event) t
        ),
        looked AS (
            SELECT g.account_id, g.as_of, g.k, g.event, coalesce(c.cq, 0) AS cq
            FROM edges g ASOF LEFT JOIN event_cum c
              ON c.account_id = g.account_id AND c.event = g.event AND g.b > c.day
        )
        SELECT account_id, as_of, event,
            max(cq) FILTER (WHERE k = 0) - max(cq) FILTER (WHERE k = 28) AS q,
            max(cq) FILTER (WHERE k = 28) - max(cq) FILTER (WHERE k = 56) AS q_prev
        FROM looked GROUP BY ALL
        HAVING max(cq) FILTER (WHERE k = 0) - max(cq) FILTER (WHERE k = 56) > 0
        """
    )


def build_features(
    con: duckdb.DuckDBPyConnection, features: FeatureSet, has_tickets: bool, has_nps: bool
) -> pd.DataFrame:
    """One row per entity: account_id, as_of, then every defined feature, in definition order."""
    exprs = ",\n".join(
        f'CAST(({f.sql}) AS {"VARCHAR" if f.kind == "categorical" else "DOUBLE"}) AS "{f.name}"'
        for f in features.features
    )
    prepare_usage(con, features)
    base = f"({base_sql(features, has_tickets, has_nps)})"
    for f in features.features:
        try:
            con.execute(f"SELECT {f.sql} FROM {base} LIMIT 0")
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0]
            raise UserError(f"feature {f.name}: its sql does not run ({first}); fix it") from None
    frame = con.execute(
        f"SELECT account_id, as_of, {exprs} FROM {base} ORDER BY as_of, account_id"
    ).df()
    return as_dates(frame)
