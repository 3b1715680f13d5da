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
    daily AS (
        SELECT u.account_id, CAST(u.timestamp AS DATE) AS day, u.user_id, u.event,
               sum(u.quantity) AS q
        FROM usage_events u
        WHERE u.account_id IN (SELECT account_id FROM entities)
          AND u.timestamp >= (SELECT min(as_of) FROM entities) - {WINDOW_DAYS}
          AND u.timestamp < (SELECT max(as_of) FROM entities)
        GROUP BY ALL
    ),
    usage_window AS (
        SELECT e.account_id, e.as_of, d.day, d.user_id, d.event, d.q
        FROM entities e JOIN daily d ON d.account_id = e.account_id
         AND d.day >= e.as_of - {WINDOW_DAYS} AND d.day < e.as_of
    ),
    usage AS (
        SELECT account_id, as_of,
            count(DISTINCT user_id) FILTER (WHERE day >= as_of - 28) AS active_users_28d,
            count(DISTINCT user_id) FILTER (WHERE day >= as_of - 56 AND day < as_of - 28)
                AS active_users_prev_28d,
            count(DISTINCT user_id) FILTER (WHERE day >= as_of - 118 AND day < as_of - 90)
                AS active_users_28d_90d_ago,
            coalesce(sum(q) FILTER (WHERE day >= as_of - 28), 0) AS events_28d,
            coalesce(sum(q) FILTER (WHERE day >= as_of - 56 AND day < as_of - 28), 0)
                AS events_prev_28d,
            coalesce(sum(q) FILTER (WHERE day >= as_of - 28 AND event = 'invite_user'), 0)
                AS invites_28d
        FROM usage_window GROUP BY ALL
    ),
    event_28d AS (
        SELECT account_id, as_of, event,
               coalesce(sum(q) FILTER (WHERE day >= as_of - 28), 0) AS q,
               coalesce(sum(q) FILTER (WHERE day < as_of - 28), 0) AS q_prev
        FROM usage_window WHERE day >= as_of - 56 GROUP BY ALL
    ),
    fit AS (
        SELECT x.account_id, x.as_of, sum(x.q) AS unowned_fit_events_28d,
               first(fit.product ORDER BY x.q DESC, x.event) AS top_unowned_fit,
               first(x.event ORDER BY x.q DESC, x.event) AS top_unowned_fit_event,
               sum(x.q_prev) AS unowned_fit_events_prev_28d
        FROM event_28d x JOIN {_affinity_values(features)} ON fit.event = x.event
        WHERE NOT EXISTS (SELECT 1 FROM owned o WHERE o.account_id = x.account_id
                          AND o.as_of = x.as_of AND o.product = fit.product)
        GROUP BY ALL
    ),
    limits AS (
        SELECT x.account_id, x.as_of, max(x.q * 30.0 / 28 / lim.monthly) AS plan_limit_use
        FROM event_28d x JOIN sub_now n USING (account_id, as_of)
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
    LEFT JOIN usage u ON u.account_id = e.account_id AND u.as_of = e.as_of
    LEFT JOIN fit f ON f.account_id = e.account_id AND f.as_of = e.as_of
    LEFT JOIN limits l ON l.account_id = e.account_id AND l.as_of = e.as_of
    LEFT JOIN past_expansions p ON p.account_id = e.account_id AND p.as_of = e.as_of
    LEFT JOIN billed b ON b.account_id = e.account_id AND b.as_of = e.as_of
    LEFT JOIN tickets t ON t.account_id = e.account_id AND t.as_of = e.as_of
    LEFT JOIN nps ON nps.account_id = e.account_id AND nps.as_of = e.as_of
    """


def build_features(
    con: duckdb.DuckDBPyConnection, features: FeatureSet, has_tickets: bool, has_nps: bool
) -> pd.DataFrame:
    """One row per entity: account_id, as_of, then every defined feature, in definition order."""
    exprs = ",\n".join(
        f'CAST(({f.sql}) AS {"VARCHAR" if f.kind == "categorical" else "DOUBLE"}) AS "{f.name}"'
        for f in features.features
    )
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
