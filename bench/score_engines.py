"""Benchmark: `expansion score` with `--engine duckdb` and `--engine spark` on one world.

Generates a world and trains a champion in a store under bench/out/score_engines (once), then
scores the same as-of date with each engine in a fresh process per run, so every Spark run pays
its JVM start as a real run would. Prints each run's wall time, the medians, and the largest
difference between the engines' scores and features.

    .venv/bin/python bench/score_engines.py [--accounts 2000] [--months 24] [--runs 3]
        [--out DIR] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import date

import numpy as np
import pandas as pd

from expansion_scorer.program.history import HISTORY_FILE, read_features

import _args

AS_OF = "2024-12-01"
SMOKE_SPARK = (
    "--master local[2] --conf spark.ui.enabled=false --conf spark.sql.shuffle.partitions=1"
    " --conf spark.sql.adaptive.enabled=false"
    " --conf 'spark.driver.extraJavaOptions=-XX:TieredStopAtLevel=1 -XX:+UseSerialGC'"
    " pyspark-shell"
)
"""How a smoke run's Spark starts (spark-submit's arguments, read when pyspark launches its
JVM): the test suite's session settings (tests/conftest.py `spark`), so a short run does not
spend its time warming a JVM up."""


def run(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "expansion_scorer", *args], check=True, env=env)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--runs", type=int, default=3)
    args = _args.parse(parser, "score_engines", {"accounts": 60, "months": 24, "runs": 1})
    root = args.out / f"{args.accounts}x{args.months}"
    data = root / "data"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{(root / 'mlflow.db').resolve()}"}
    config = ["--config", str(_args.smoke_training(args.out))] if args.smoke else []
    if args.smoke:  # the test suite's session settings: two cores, one task a stage, no UI
        env["PYSPARK_SUBMIT_ARGS"] = SMOKE_SPARK
    if not (root / "trained").exists():
        run(["generate", "--out", str(data), "--accounts", str(args.accounts),
             "--months", str(args.months)], env)  # fmt: skip
        run(["train", str(data), *config], env)
        (root / "trained").touch()
    times: dict[str, list[float]] = {"duckdb": [], "spark": []}
    for i in range(args.runs):
        for engine in times:
            out = root / f"scores-{engine}"
            took = run(["score", str(data), "--as-of", AS_OF, "--out", str(out),
                        "--engine", engine], env)  # fmt: skip
            times[engine].append(took)
            print(f"run {i + 1} {engine}: {took:.1f} s", flush=True)
    duck = pd.read_parquet(root / "scores-duckdb" / "scores.parquet")
    spark = pd.read_parquet(root / "scores-spark" / "scores.parquet")
    assert duck["account_id"].tolist() == spark["account_id"].tolist(), "ranks differ"
    score_gap = float(np.max(np.abs(duck["score"].to_numpy() - spark["score"].to_numpy())))
    version = str(duck["model_version"].iloc[0])
    wide = {
        e: read_features(root / f"scores-{e}" / HISTORY_FILE, date.fromisoformat(AS_OF), version)
        for e in times
    }
    a = wide["duckdb"].sort_values("account_id").set_index("account_id")
    b = wide["spark"].sort_values("account_id").set_index("account_id")[a.columns]
    feature_gap = float(np.nanmax(np.abs(a.to_numpy(float) - b.to_numpy(float))))
    same_nulls = bool((a.isna() == b.isna()).all().all())
    print(
        f"{len(duck):,} accounts scored as of {AS_OF}; median wall time"
        f" duckdb {statistics.median(times['duckdb']):.1f} s,"
        f" spark {statistics.median(times['spark']):.1f} s"
    )
    print(
        f"largest score difference {score_gap:.2e}; largest numeric feature difference"
        f" {feature_gap:.2e} over {a.shape[1]} features; same missing values: {same_nulls}"
    )


if __name__ == "__main__":
    main()
