"""The ARR movement ledger, derived from `subscriptions`: one source for labels and for NRR.

Per account, product and change day d (a start or end date), the ledger compares what the
account held on d-1 with what it holds on d and names the movement:

- `new` / `reactivation`: the account had no ARR on d-1 (never before / at some point before);
- `churn`: the account has no ARR on d;
- otherwise, per product: `cross_sell` (a product started), `seats` (more seats), `plan` (a
  higher plan), `contraction` (fewer seats, a lower plan, or a product dropped) and `price` (same
  product, plan and seats at a new price, such as a renewal uplift).

An expansion is a `seats`, `plan` or `cross_sell` movement: a price-only uplift is not.
"""

from __future__ import annotations

import duckdb

from expansion_scorer.config import FeatureSet
from expansion_scorer.data.loading import AnyWorld, sql_str

EXPANSION_KINDS = ("seats", "plan", "cross_sell")


PRICE_ORDER = """(
    SELECT plan, CAST(row_number() OVER (
        ORDER BY sum(CASE WHEN seats > 0 THEN arr END) / sum(CASE WHEN seats > 0 THEN seats END)
            NULLS LAST, avg(arr), plan) - 1 AS INTEGER) AS rank
    FROM subscriptions WHERE plan IS NOT NULL AND arr > 0
    GROUP BY plan
) AS r"""
"""`plan_order: auto`: the plans of `subscriptions` ranked by ARR per seat (plans sold without
seats after those with, by ARR), lowest first; one text for both engines."""


def plan_rank_values(features: FeatureSet) -> str:
    if isinstance(features.plan_order, str):
        return PRICE_ORDER
    if not features.plan_order:
        return "(SELECT NULL::VARCHAR AS plan, NULL::INTEGER AS rank WHERE false) AS r"
    rows = ", ".join(f"({sql_str(p)}, {i})" for i, p in enumerate(features.plan_order))
    return f"(VALUES {rows}) AS r(plan, rank)"


def plans_by_price(world: AnyWorld) -> list[str]:
    """The plans of `subscriptions`, lowest first, as `plan_order: auto` ranks them."""
    return [str(r[0]) for r in world.rows(f"SELECT plan FROM {PRICE_ORDER} ORDER BY rank")]


# A row is held on day d-1 (before) or on day d (after); end_date is exclusive.
BEFORE = "s.start_date < c.day AND coalesce(s.end_date >= c.day, true)"
AFTER = "s.start_date <= c.day AND coalesce(s.end_date > c.day, true)"


def movements_sql(features: FeatureSet) -> str:
    """The query of `movements(account_id, day, product, kind, arr_delta)` over `subscriptions`,
    in DuckDB's dialect; the Spark engine transpiles this same text."""
    return f"""
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
                coalesce(sum(s.arr) FILTER (WHERE {BEFORE}), 0) AS arr_before,
                coalesce(sum(s.arr) FILTER (WHERE {AFTER}), 0) AS arr_after,
                sum(s.seats) FILTER (WHERE {BEFORE}) AS seats_before,
                sum(s.seats) FILTER (WHERE {AFTER}) AS seats_after,
                max(s.plan_rank) FILTER (WHERE {BEFORE}) AS plan_before,
                max(s.plan_rank) FILTER (WHERE {AFTER}) AS plan_after,
                bool_or(s.start_date < c.day) AS started_before
            FROM change_days c JOIN subs s ON s.account_id = c.account_id
            GROUP BY ALL
        ),
        account_state AS (
            SELECT *,
                sum(arr_before) OVER w AS account_before,
                sum(arr_after) OVER w AS account_after,
                bool_or(started_before) OVER w AS paid_before
            FROM product_state
            WINDOW w AS (PARTITION BY account_id, day)
        ),
        classified AS (
            SELECT account_id, day, product, arr_after - arr_before AS arr_delta,
                CASE
                    WHEN account_before = 0 AND account_after > 0
                        THEN CASE WHEN paid_before THEN 'reactivation' ELSE 'new' END
                    WHEN account_before > 0 AND account_after = 0 THEN 'churn'
                    WHEN has AND NOT had THEN 'cross_sell'
                    WHEN had AND NOT has THEN 'contraction'
                    WHEN plan_after > plan_before AND arr_after > arr_before THEN 'plan'
                    WHEN seats_after > seats_before AND arr_after > arr_before THEN 'seats'
                    WHEN plan_after < plan_before OR seats_after < seats_before
                        OR (plan_after > plan_before OR seats_after > seats_before)
                        THEN CASE WHEN arr_after >= arr_before THEN 'price' ELSE 'contraction' END
                    ELSE 'price'
                END AS kind
            FROM account_state
        )
        SELECT account_id, day, product, kind, arr_delta
        FROM classified
        WHERE arr_delta <> 0
        ORDER BY account_id, day, product
        """


def build_movements(con: duckdb.DuckDBPyConnection, features: FeatureSet) -> None:
    """Temp table `movements(account_id, day, product, kind, arr_delta)` from `subscriptions`."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE movements AS {movements_sql(features)}")


def build_expansions(con: duckdb.DuckDBPyConnection, features: FeatureSet) -> None:
    """Temp tables `movements` and `expansions(account_id, day, expansion_arr, seats_arr,
    plan_arr, cross_sell_arr, cross_sell_products)`: one row per day with an expansion."""
    build_movements(con, features)
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE expansions AS
        SELECT account_id, day,
            sum(arr_delta) AS expansion_arr,
            coalesce(sum(arr_delta) FILTER (WHERE kind = 'seats'), 0) AS seats_arr,
            coalesce(sum(arr_delta) FILTER (WHERE kind = 'plan'), 0) AS plan_arr,
            coalesce(sum(arr_delta) FILTER (WHERE kind = 'cross_sell'), 0) AS cross_sell_arr,
            list(product ORDER BY product) FILTER (WHERE kind = 'cross_sell')
                AS cross_sell_products
        FROM movements
        WHERE kind IN ('seats', 'plan', 'cross_sell') AND arr_delta > 0
        GROUP BY ALL
        ORDER BY account_id, day
        """
    )
