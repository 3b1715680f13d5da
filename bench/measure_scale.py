"""Benchmark: `expansion measure` over a year of weekly history for a large book.

Generates a world (100,000 accounts over 24 months by default, thin usage: measuring reads the
ledger, not usage), writes a history holding a year of weekly assignments (four quarters; each
week a fresh share of the accounts is drawn, 10% held out), and times `measure_job` end to end:
reading the world, the ledger, every matured assignment's outcome, the pooled and per-group
bootstrap intervals, and the outputs. Median of `--repeats` runs, with peak memory.

    .venv/bin/python bench/measure_scale.py [--accounts 100000] [--per-week 2000] [--repeats 3]
        [--world DIR] [--out DIR] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from expansion_scorer.config import load_serving_config
from expansion_scorer.data.synthetic import generate_world
from expansion_scorer.jobs.measure import measure_job
from expansion_scorer.program.history import APPEND_ONLY, HISTORY_FILE, TABLES
from expansion_scorer.program.holdout import ASSIGNMENT_COLUMNS, period_of
from expansion_scorer.settings import load_feature_set

import _args


def write_history(out: Path, accounts: list[str], per_week: int, seed: int = 0) -> int:
    """A year of weekly assignments from 2023-07-03, each account at most once a quarter."""
    rng = np.random.default_rng(seed)
    rows = []
    first = date(2023, 7, 3)
    drawn: dict[str, set[str]] = {}
    for week in range(52):
        day = first + timedelta(weeks=week)
        period = period_of(day, "quarter")
        taken = drawn.setdefault(period, set())
        pool = np.array([a for a in rng.choice(accounts, per_week * 2, replace=False)
                         if a not in taken][:per_week])  # fmt: skip
        taken.update(pool)
        u = rng.random(len(pool))
        rows.append(
            pd.DataFrame(
                {
                    "period": period,
                    "account_id": pool,
                    "arm": np.where(u < 0.1, "holdout", "listed"),
                    "assigned_on": day,
                    "draw": u,
                    "csm_owner": [f"CSM {i % 400}" for i in range(len(pool))],
                    "rank": np.arange(1, len(pool) + 1),
                    "score": rng.random(len(pool)),
                    "band": rng.choice(["hot", "warm", "watch"], len(pool)),
                    "motion": rng.choice(["Add seats", "Upgrade plan", "Cross-sell"], len(pool)),
                    "model_version": "expansion-propensity v1",
                    "horizon_days": 90,
                    "drafted_by": None,
                }
            )
        )
    frame = pd.concat(rows, ignore_index=True)[ASSIGNMENT_COLUMNS]
    con = duckdb.connect(str(out / HISTORY_FILE))
    for name, columns in {**TABLES, **APPEND_ONLY}.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")
    con.execute("INSERT INTO assignments SELECT * FROM frame")
    con.close()
    return len(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--per-week", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--world", type=Path, help="a world an earlier run generated: not again")
    args = _args.parse(parser, "measure_scale", {"accounts": 200, "per_week": 10, "repeats": 1})
    root = Path(tempfile.mkdtemp(prefix="run-", dir=args.out))
    world = args.world or root / "world"
    if args.world is None:
        started = time.perf_counter()
        generate_world(world, n_accounts=args.accounts, seed=0, months=24, activity=0.02)
        print(f"world: {args.accounts:,} accounts in {time.perf_counter() - started:.0f} s")
    ids = pd.read_parquet(world / "accounts.parquet")["account_id"].tolist()
    out = root / "weekly"
    out.mkdir()
    n = write_history(out, ids, args.per_week)
    print(f"history: {n:,} assignments over 52 weeks")
    features, serving = load_feature_set(), load_serving_config()
    seconds, cpu = [], []
    for _ in range(args.repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = measure_job(world, out, features, serving)
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)  # this process's own: others' load aside
        load = os.getloadavg()[0]
        print(f"  measure: {seconds[-1]:.1f} s ({cpu[-1]:.1f} s of CPU, load {load:.1f})",
              flush=True)  # fmt: skip
    pooled = result.summary["pooled"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(
        f"measure over {n:,} assignments ({result.summary['cohorts_matured']} cohorts,"
        f" {pooled['n_listed']:,} listed, {pooled['n_holdout']:,} held out): median"
        f" {statistics.median(seconds):.1f} s of {args.repeats} (runs"
        f" {', '.join(f'{s:.1f}' for s in seconds)}; median CPU {statistics.median(cpu):.1f} s),"
        f" peak {peak:.2f} GiB"
    )


if __name__ == "__main__":
    main()
