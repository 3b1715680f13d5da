"""Benchmark: 1,000,000 score rows into PostgreSQL through the `--to` sink, and read back.

Starts a throwaway PostgreSQL server from Debian's binaries (`tests/pgserver.py`; fsync on, the
server's default settings otherwise), builds a 1,000,000-row list with the columns and text
lengths of a real `scores.parquet` (three reasons, a reason against, two talking points), and
times, per repeat: the Arrow table (`sink.rows`), a new week into the table (`sink.write`: the
COPY into a temporary table and the insert, one transaction), a re-run of that week (its
1,000,000 rows deleted and inserted again; with `--compare`, once more as INSERT ... ON CONFLICT
DO UPDATE, which the sink does not use) and `read_select` of the week back into Arrow. Each
repeat writes a new week, so the table grows by 1,000,000 rows a repeat as it would weekly.
Prints each repeat and the medians.

    .venv/bin/python bench/pg_sink.py [--rows 1000000] [--repeats 3] [--compare] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa

import _args

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/pgserver.py

from expansion_scorer.data.database import read_select
from expansion_scorer.serving import sink as sinks
from tests import pgserver

WEEK = date(2025, 6, 2)
T = TypeVar("T")


def score_list(n: int, seed: int = 0) -> pd.DataFrame:
    """A ranked list shaped like `scores.parquet`: ids, names, CSMs, sentences with numbers."""
    rng = np.random.default_rng(seed)
    seats = rng.integers(5, 400, n)
    used = (seats * rng.uniform(0.6, 1.3, n)).astype(int)
    points = rng.integers(1, 30, n)
    score = np.sort(rng.beta(2, 6, n))[::-1]
    ids = np.array([f"A{i:07d}" for i in range(n)])
    csms = np.array([f"CSM {i}" for i in range(200)])
    bands = np.where(score >= 0.4, "hot", np.where(score >= 0.2, "watch", "none"))
    motions = np.array(["Add seats", "Upgrade to enterprise", "Cross-sell Analytics",
                        "No clear motion yet: nurture"])  # fmt: skip
    reason = (
        pd.Series(used).astype(str)
        + " people used it in 90 days on "
        + pd.Series(seats).astype(str)
        + " seats (+"
        + pd.Series(points).astype(str)
        + " pts)"
    )
    talk = (
        pd.Series(used).astype(str)
        + " people used the product in the last 28 days on "
        + pd.Series(seats).astype(str)
        + " seats, and more were invited: ask who else should be working in it, and make sure"
        " nobody waits for access. | Offer to size seats to the team they are growing into,"
        " so they are not back at the same limit next quarter."
    )
    return pd.DataFrame(
        {
            "rank": np.arange(1, n + 1, dtype="int32"),
            "account_id": ids[rng.permutation(n)],
            "account_name": [f"Company {i} Ltd" for i in range(n)],
            "csm_owner": csms[rng.integers(0, len(csms), n)],
            "score": score,
            "expected_expansion_arr": score * rng.uniform(2_000, 60_000, n),
            "band": bands,
            "arm": np.where(rng.random(n) < 0.1, "holdout", "listed"),
            "readiness": np.where(rng.random(n) < 0.3, "not yet", "ready"),
            "readiness_reason": np.where(rng.random(n) < 0.3, "usage falling 25% in 28 days", ""),
            "motion": motions[rng.integers(0, len(motions), n)],
            "reason_1": reason,
            "reason_2": "schedules tasks on " + pd.Series(points).astype(str) + "% of active days",
            "reason_3": "API calls doubled in 28 days, a fit for Integrations (+3 pts)",
            "reason_against": "industry not on record (-1 pt)",
            "talking_points": talk,
            "model_version": "expansion-propensity v7",
            "as_of": WEEK,
        }
    )


def rerun_as_updates(url: str, data: pa.Table) -> None:
    """The alternative the sink does not use, for comparison: the same COPY into a temporary
    table, then INSERT ... ON CONFLICT DO UPDATE of every column, one transaction."""
    import adbc_driver_postgresql.dbapi as pg

    cols = data.column_names
    listed = ", ".join(cols)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c not in sinks.KEY)
    conn = pg.connect(url)
    try:
        with conn.cursor() as cur:
            cur.adbc_ingest("stage", data, mode="create", temporary=True)
            cur.execute(
                f"INSERT INTO expansion_scores ({listed}) SELECT {listed} FROM stage"
                f" ORDER BY account_id ON CONFLICT (as_of, account_id) DO UPDATE SET {updates}"
            )
        conn.commit()
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--compare", action="store_true", help="also time a re-run as ON CONFLICT DO UPDATE"
    )
    args = _args.parse(parser, "pg_sink", {"rows": 1000, "repeats": 1, "compare": True})

    frame = score_list(args.rows)
    print("load average at the start: " + ", ".join(f"{v:.1f}" for v in os.getloadavg()))
    server = pgserver.start(fsync=True)
    try:
        sink = sinks.open_sink(server.url())
        sinks.check(sink, 3)
        laps: dict[str, list[float]] = {}

        def timed(step: str, fn: Callable[..., T], *args: object) -> T:
            started = time.perf_counter()
            out = fn(*args)
            laps.setdefault(step, []).append(time.perf_counter() - started)
            return out

        for i in range(args.repeats):
            week = WEEK + timedelta(weeks=i)
            rows = frame.assign(as_of=week)
            data = timed("Arrow table (sink.rows)", sinks.rows, rows, None, datetime.now(UTC), 3)
            new = timed("a new week (COPY, insert, commit)", sinks.write, sink, data, week)
            again = timed("a re-run of the week (delete, insert)", sinks.write, sink, data, week)
            if args.compare:
                timed("the re-run as ON CONFLICT DO UPDATE instead", rerun_as_updates,
                      server.url(), data)  # fmt: skip
            where = f"SELECT * FROM expansion_scores WHERE as_of = DATE '{week}'"
            back = timed("read_select of the week into Arrow", read_select, server.url(), where)
            assert new.rows == again.rows == again.replaced == back.num_rows == args.rows
            held = server.psql("SELECT count(*) FROM expansion_scores").strip()
            print(
                f"repeat {i + 1}: "
                + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in laps.items())
                + f"; table holds {int(held):,} rows, {data.nbytes / 1e6:,.0f} MB of Arrow a week",
                flush=True,
            )
        print(f"\nmedians over {args.repeats} repeats, {args.rows:,} rows:")
        print("  load average at the end: " + ", ".join(f"{v:.1f}" for v in os.getloadavg()))
        for step, values in laps.items():
            print(f"  {step}: {statistics.median(values):.1f} s")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
