"""Benchmark: how fast the synthetic world is written, everything included, on 2 cores.

Each run is a fresh Python process that calls `generate_world` into a temporary directory (all
tables and truth.parquet written, then deleted) and reports its wall time and peak memory. With
`--baseline SRC`, runs of another checkout's package (its `src` folder, for example a worktree of
an older commit) alternate with this one's, so both see the same machine load.

    .venv/bin/python bench/generate.py [--accounts 50000] [--months 24] [--activity 0.25]
        [--repeats 3] [--baseline /work/wt-gen-base/src] [--out DIR] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _args

SRC = Path(__file__).resolve().parents[1] / "src"


def _one_run(accounts: int, months: int, activity: float, seed: int, out: Path) -> None:
    """In the child: generate once and print a JSON line with the figures."""
    from expansion_scorer.data.synthetic import generate_world

    with tempfile.TemporaryDirectory(prefix="world-", dir=out) as world:
        started, cpu = time.perf_counter(), time.process_time()
        counts = generate_world(
            Path(world), n_accounts=accounts, seed=seed, months=months, activity=activity
        )
        took, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024  # KiB -> GiB
    print(
        json.dumps(
            {"events": counts["usage_events"], "seconds": took, "cpu": cpu, "peak_gib": peak}
        )
    )


def _spawn(src: Path, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", "--accounts", str(args.accounts)]
    command += ["--months", str(args.months), "--activity", str(args.activity)]
    command += ["--seed", str(args.seed), "--out", str(args.out)]
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--activity", type=float, default=0.25, help="thin the usage log")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another checkout's src to compare with")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = _args.parse(parser, "generate", {"accounts": 40, "months": 12, "repeats": 1})
    if args.child:
        _one_run(args.accounts, args.months, args.activity, args.seed, args.out)
        return

    sources = {"this checkout": SRC}
    if args.baseline is not None:
        sources["baseline"] = args.baseline.resolve()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in sources}
    for repeat in range(args.repeats):
        for name, src in sources.items():
            run = _spawn(src, args)
            runs[name].append(run)
            print(f"  {name} run {repeat + 1}: {run['seconds']:.1f} s ({run['cpu']:.1f} s CPU),"
                  f" peak {run['peak_gib']:.2f} GiB",
                  flush=True)  # fmt: skip

    print(f"{args.accounts:,} accounts x {args.months} months, activity {args.activity},"
          f" seed {args.seed}; medians of {args.repeats}")  # fmt: skip
    for name, done in runs.items():
        events = int(done[0]["events"])
        seconds = statistics.median(r["seconds"] for r in done)
        cpu = statistics.median(r["cpu"] for r in done)
        peak = max(r["peak_gib"] for r in done)
        print(f"{name} ({sources[name]}): {events:,} usage events in {seconds:.1f} s"
              f" ({events / seconds / 1e6:.2f} M events/s, {cpu:.1f} s CPU);"
              f" peak memory {peak:.2f} GiB")  # fmt: skip


if __name__ == "__main__":
    main()
