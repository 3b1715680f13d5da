"""Expansion events derived from `subscriptions`: the single source of labels.

An expansion on day d: the account had ARR on d-1, and on d some product gained seats, moved to
a higher plan, or started while absent the day before, with the ARR of those products rising.
A price-only change at renewal (same product, plan and seats) is not an expansion.
"""

from __future__ import annotations

import duckdb

from expansion_scorer.config import FeatureSet
from expansion_scorer.data.loading import sql_str


def plan_rank_values(features: FeatureSet) -> str:
    rows = ", ".join(f"({sql_str(p)}, {i})" for i, p in enumerate(features.plan_order))
    return f"(VALUES {rows}) AS r(plan, rank)"


# A row is held on day d-1 (before) or on day d (after); end_date is exclusive.
BEFORE = "s.start_date < c.day AND coalesce(s.end_date >= c.day, true)"
AFTER = "s.start_date <= c.day AND coalesce(s.end_date > c.day, true)"


def build_expansions(con: duckdb.DuckDBPyConnection, features: FeatureSet) -> None:
    """Create temp table `expansions(account_id, day, expansion_arr)` from view `subscriptions`."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE expansions AS
        WITH subs AS (
            SELECT s.account_id, s.product, s.arr, s.start_date, s.end_date,
                   coalesce(s.seats, 0) AS seats, r.rank AS plan_rank
            FROM subscriptions s LEFT JOIN {plan_rank_values(features)} ON r.plan = s.plan
        ),
        change_days AS (
            SELECT DISTINCT account_id, start_date AS day FROM subs
            UNION
            SELECT DISTINCT account_id, end_date FROM subs WHERE end_date IS NOT NULL
        ),
        product_state AS (
            SELECT c.account_id, c.day, s.product,
                bool_or({BEFORE}) AS had,
                bool_or({AFTER}) AS has,
                sum(s.arr) FILTER (WHERE {BEFORE}) AS arr_before,
                sum(s.arr) FILTER (WHERE {AFTER}) AS arr_after,
                sum(s.seats) FILTER (WHERE {BEFORE}) AS seats_before,
                sum(s.seats) FILTER (WHERE {AFTER}) AS seats_after,
                max(s.plan_rank) FILTER (WHERE {BEFORE}) AS plan_before,
                max(s.plan_rank) FILTER (WHERE {AFTER}) AS plan_after
            FROM change_days c JOIN subs s ON s.account_id = c.account_id
            GROUP BY ALL
        ),
        per_day AS (
            SELECT account_id, day,
                sum(coalesce(arr_before, 0)) AS arr_before,
                sum(CASE WHEN has AND (NOT had OR seats_after > seats_before
                                       OR plan_after > plan_before)
                         THEN coalesce(arr_after, 0) - coalesce(arr_before, 0) END)
                    AS expansion_arr
            FROM product_state
            GROUP BY ALL
        )
        SELECT account_id, day, expansion_arr
        FROM per_day
        WHERE arr_before > 0 AND expansion_arr > 0
        ORDER BY account_id, day
        """
    )
