"""Benchmark: the whole point-in-time training set at scale, 52 weekly snapshots, on 2 cores.

Generates (once, cached under bench/out/) a world in the data contract, then times building the
training set exactly as `expansion train` does (eligibility, the movement ledger, every feature
and the labels) for 52 weekly snapshot dates, with DuckDB limited to the given memory and
spilling to disk beyond it. Reports wall time, rows per second and the process's peak memory.

    .venv/bin/python bench/features_scale.py [--accounts 12000] [--months 24] [--activity 1]
        [--out DIR] [--smoke]
"""

from __future__ import annotations

from expansion_scorer.cli import share_cores_politely

share_cores_politely()  # before LightGBM loads: idle OpenMP threads sleep

import argparse
import resource
import time
from datetime import timedelta

import duckdb

from expansion_scorer.config import load_training_config
from expansion_scorer.data.loading import open_world
from expansion_scorer.data.synthetic import generate_world
from expansion_scorer.features.frame import Labelling, feature_frame
from expansion_scorer.features.snapshots import data_span
from expansion_scorer.settings import load_feature_set

import _args


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=12_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--snapshots", type=int, default=52)
    parser.add_argument("--activity", type=float, default=1.0, help="thin the usage log")
    parser.add_argument("--memory", default="3GB", help="DuckDB memory limit; it spills beyond")
    smoke = {"accounts": 40, "months": 12, "snapshots": 3, "memory": "1GB"}
    args = _args.parse(parser, "features_scale", smoke)

    world_dir = args.out / f"world-{args.accounts}-{args.months}-{args.activity}"
    if not (world_dir / "truth.parquet").exists():
        started = time.perf_counter()
        counts = generate_world(
            world_dir, n_accounts=args.accounts, seed=1, months=args.months, activity=args.activity
        )
        took = time.perf_counter() - started
        rate = counts["usage_events"] / took / 1e6
        print(f"generated {counts['usage_events']:,} usage events in {took:.1f} s ({rate:.2f} M/s)")
    events = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{world_dir / 'usage_events.parquet'}')"
    ).fetchall()[0][0]

    started = time.perf_counter()
    world = open_world(world_dir)
    spill = args.out / "spill"
    spill.mkdir(parents=True, exist_ok=True)
    world.con.execute(f"SET memory_limit = '{args.memory}'")
    world.con.execute(f"SET temp_directory = '{spill}'")
    _, end = data_span(world)
    horizon = load_training_config().horizon_days
    last = end - timedelta(days=horizon)
    last -= timedelta(days=last.weekday())  # Mondays
    dates = [last - timedelta(weeks=i) for i in range(args.snapshots)][::-1]
    cfg = load_training_config()  # with a label per motion, as `expansion train` builds
    labelling = Labelling(horizon, cfg.label, motions="motions" in cfg.learning.candidates)
    frame = feature_frame(world, load_feature_set(), dates, labelling).labelled
    took = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024  # KiB -> GiB

    print(f"{events:,} usage events, {args.accounts:,} accounts, {len(dates)} weekly snapshots"
          f" {dates[0]}..{dates[-1]}")  # fmt: skip
    print(f"training set: {len(frame):,} rows x {frame.shape[1] - 4} features in {took:.1f} s"
          f" ({events / took / 1e6:.2f} M events/s); peak memory {peak:.2f} GiB"
          f" (DuckDB limit {args.memory})")  # fmt: skip


if __name__ == "__main__":
    main()
