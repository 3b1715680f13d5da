"""Expansion as a revenue metric: NRR and GRR from the ARR movement ledger.

For a period [p0, p1), the cohort is the accounts with ARR on p0-1; their movements during the
period are summed by kind. New business and reactivations are outside the cohort.

    NRR = (starting + expansion + price uplift - contraction - churned) / starting x 100
    GRR = (starting - contraction - churned) / starting x 100

Expansion counts seats, plan and cross-sell movements; price uplifts at renewal are revenue
from existing customers, so they count in NRR, in a column of their own; price decreases count
as contraction. With both, NRR is the cohort's ARR at the end of the period over its start.
"""

from __future__ import annotations

from datetime import date

import duckdb
import pandas as pd

from expansion_scorer.features.ledger import EXPANSION_KINDS
from expansion_scorer.features.snapshots import month_starts

GROUPABLE = ("segment", "industry", "country", "csm_owner")
AMOUNTS = ("starting_arr", "expansion_arr", "price_uplift_arr", "contraction_arr", "churned_arr")


def _add_months(d: date, months: int) -> date:
    index = d.year * 12 + d.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def revenue_table(
    con: duckdb.DuckDBPyConnection, first: date, end: date, by: str | None = None
) -> pd.DataFrame:
    """Per month start M (and group): the month [M, M+1) and the trailing 12 months to M+1.

    Needs temp table `movements` (see ledger.build_movements). Months run from `first` to the
    last month that closes on or before `end`.
    """
    months = [m for m in month_starts(first, end) if _add_months(m, 1) <= end]
    periods = [(m, "month", m, _add_months(m, 1)) for m in months] + [
        (m, "t12m", _add_months(m, -11), _add_months(m, 1))
        for m in months
        if _add_months(m, -11) >= months[0]
    ]
    frame = _moved(con, periods, by)
    wide = frame[frame["win"] == "month"].drop(columns="win")
    t12 = frame[frame["win"] == "t12m"].drop(columns="win")
    t12 = t12.rename(columns={c: f"t12m_{c}" for c in [*AMOUNTS, "nrr", "grr"]})
    out = wide.merge(t12, on=["month", "grp"], how="left")
    out["month"] = pd.to_datetime(out["month"]).dt.date
    out = out.rename(columns={"grp": by or "group"})
    return out.round(4).reset_index(drop=True)


def quarter_table(con: duckdb.DuckDBPyConnection, first: date, end: date) -> pd.DataFrame:
    """Per calendar quarter that closes on or before `end` (from `first`'s quarter): starting ARR,
    expansion, price uplift, contraction, churn, NRR and GRR of the accounts paying at its start."""
    starts = [m for m in month_starts(first, end) if m.month % 3 == 1 and _add_months(m, 3) <= end]
    if not starts:
        return pd.DataFrame(columns=["quarter", *AMOUNTS, "nrr", "grr"])
    frame = _moved(con, [(m, "quarter", m, _add_months(m, 3)) for m in starts], None)
    frame["quarter"] = [
        f"{d.year}Q{(d.month - 1) // 3 + 1}" for d in pd.to_datetime(frame["month"])
    ]
    return frame[["quarter", *AMOUNTS, "nrr", "grr"]].round(4).reset_index(drop=True)


def _moved(
    con: duckdb.DuckDBPyConnection, periods: list[tuple[date, str, date, date]], by: str | None
) -> pd.DataFrame:
    """ARR movements of each period's starting cohort: (month, win, grp) rows with NRR, GRR."""
    con.execute("CREATE OR REPLACE TEMP TABLE periods (month DATE, win VARCHAR, p0 DATE, p1 DATE)")
    con.executemany("INSERT INTO periods VALUES (?, ?, ?, ?)", periods)
    group = f"coalesce(CAST(a.{by} AS VARCHAR), '(none)')" if by else "'all'"
    frame = con.execute(
        f"""
        WITH cohort AS (
            SELECT p.month, p.win, s.account_id, sum(s.arr) AS arr
            FROM periods p JOIN subscriptions s
              ON s.start_date <= p.p0 - 1 AND (s.end_date IS NULL OR s.end_date > p.p0 - 1)
            GROUP BY ALL HAVING sum(s.arr) > 0
        ),
        moved AS (
            SELECT c.month, c.win, c.account_id,
                coalesce(sum(m.arr_delta) FILTER (WHERE m.kind IN {EXPANSION_KINDS}), 0)
                    AS expansion_arr,
                coalesce(sum(m.arr_delta) FILTER (WHERE m.kind = 'price' AND m.arr_delta > 0), 0)
                    AS price_uplift_arr,
                -coalesce(sum(m.arr_delta) FILTER (WHERE m.kind = 'contraction'
                    OR (m.kind = 'price' AND m.arr_delta < 0)), 0) AS contraction_arr,
                -coalesce(sum(m.arr_delta) FILTER (WHERE m.kind = 'churn'), 0) AS churned_arr
            FROM cohort c JOIN periods p ON p.month = c.month AND p.win = c.win
            JOIN movements m ON m.account_id = c.account_id AND m.day >= p.p0 AND m.day < p.p1
            GROUP BY ALL
        )
        SELECT c.month, c.win, {group} AS grp,
            sum(c.arr) AS starting_arr,
            coalesce(sum(m.expansion_arr), 0) AS expansion_arr,
            coalesce(sum(m.price_uplift_arr), 0) AS price_uplift_arr,
            coalesce(sum(m.contraction_arr), 0) AS contraction_arr,
            coalesce(sum(m.churned_arr), 0) AS churned_arr
        FROM cohort c
        LEFT JOIN moved m ON m.month = c.month AND m.win = c.win AND m.account_id = c.account_id
        JOIN accounts a ON a.account_id = c.account_id
        GROUP BY ALL
        ORDER BY c.month, grp, c.win
        """
    ).df()
    for col in AMOUNTS:
        frame[col] = frame[col].astype("float64")
    s = frame["starting_arr"]
    frame["nrr"] = (
        (s + frame["expansion_arr"] + frame["price_uplift_arr"] - frame["contraction_arr"]
         - frame["churned_arr"]) / s * 100
    )  # fmt: skip
    frame["grr"] = (s - frame["contraction_arr"] - frame["churned_arr"]) / s * 100
    return frame


def revenue_chart(table: pd.DataFrame, by: str | None) -> bytes:
    """PNG: monthly and trailing-12-month NRR (per group when grouped), with GRR."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5), dpi=110)
    key = by or "group"
    for name, part in table.groupby(key, sort=True):
        label = "" if by is None else f"{name}: "
        months = pd.to_datetime(part["month"])
        line = ax.plot(
            months, part["t12m_nrr"], linewidth=2.2, label=f"{label}NRR, trailing 12 months"
        )
        if by is None:
            ax.plot(months, part["nrr"], linewidth=1, alpha=0.6, color=line[0].get_color(),
                    label="NRR, month")  # fmt: skip
            ax.plot(months, part["t12m_grr"], linewidth=1.6, linestyle="--",
                    label="GRR, trailing 12 months")  # fmt: skip
    ax.axhline(100, color="#888888", linewidth=0.8)
    ax.set_ylabel("% of starting ARR")
    ax.set_title("Net revenue retention" + (f" by {by}" if by else ""))
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.25)
    fig.autofmt_xdate()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
