"""Benchmark: score (and explain) 1,000,000 accounts as of one date on 2 cores, in chunks.

Trains a champion on a generated world through the CLI (once; kept under bench/out/score_1m),
then draws a 1,000,000-account feature frame from that world's snapshots (bootstrap rows under
new account ids, names and CSMs, so values are realistic) and writes it to Parquet. Each mode
then runs in a fresh process, so its peak memory is its own: it reads the frame, loads the
model and runs `score_features` (predict, and with explanations TreeSHAP, family points,
reasons, motion and talking points; readiness and ranking in both), chunk by chunk.
Explanations run once with the scorer's default TreeSHAP method ("default") and once per method
named in `--methods`, forced in that process. Feature computation is not part of this step.

    .venv/bin/python bench/score_1m.py [--accounts 1000000] [--chunk-rows 100000]
                                       [--methods default,pred_contrib] [--out DIR] [--smoke]
"""

from __future__ import annotations

from expansion_scorer.cli import share_cores_politely

share_cores_politely()  # before LightGBM loads: idle OpenMP threads sleep

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import _args

MODEL = "models:/expansion-propensity@champion"
AS_OF = date(2025, 6, 1)


def prepare(accounts: int, world_accounts: int, out: Path, training: list[str]) -> Path:
    from expansion_scorer.config import load_training_config
    from expansion_scorer.data.loading import open_world
    from expansion_scorer.data.synthetic import generate_world
    from expansion_scorer.settings import load_feature_set
    from expansion_scorer.training.dataset import training_frame

    world = out / "world"
    if not (world / "truth.parquet").exists():
        generate_world(world, n_accounts=world_accounts, seed=5, months=30)
    if not (out / "mlruns" / "mlflow.db").exists():
        (out / "mlruns").mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "expansion_scorer", "train", str(world), *training],
            check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
    path = out / f"frame-{accounts}.parquet"
    if not path.exists():
        snapshots = training_frame(
            open_world(world), load_feature_set(), load_training_config(), None
        )
        names = pd.read_parquet(world / "accounts.parquet")
        rng = np.random.default_rng(0)
        frame = snapshots.iloc[rng.integers(0, len(snapshots), accounts)].reset_index(drop=True)
        frame["account_id"] = [f"B{i:07d}" for i in range(accounts)]
        picked = names.iloc[rng.integers(0, len(names), accounts)]
        frame["account_name"] = picked["account_name"].to_numpy()
        frame["csm_owner"] = picked["csm_owner"].to_numpy()
        frame.drop(columns=["label", "expansion_arr"], errors="ignore").to_parquet(path)
    return path


def measure(path: Path, mode: str, chunk_rows: int) -> dict[str, Any]:
    from expansion_scorer.config import load_serving_config
    from expansion_scorer.model import treeshap
    from expansion_scorer.model.loading import load_model
    from expansion_scorer.serving.scoring import score_features
    from expansion_scorer.settings import load_feature_set

    explain = mode != "plain"
    if mode in treeshap.METHODS:  # this process explains with that method, not the default
        treeshap.method_for = lambda booster: mode  # type: ignore[assignment]
    started = time.perf_counter()
    frame = pd.read_parquet(path)
    model, version = load_model(MODEL)
    loaded = time.perf_counter()
    scores, _drivers, _ = score_features(
        frame, model, load_feature_set(), load_serving_config(), version, AS_OF,
        explain=explain, chunk_rows=chunk_rows,
    )  # fmt: skip
    done = time.perf_counter()
    assert len(scores) == len(frame)
    return {
        "accounts": len(frame),
        "load_seconds": loaded - started,
        "score_seconds": done - loaded,
        "accounts_per_second": len(frame) / (done - loaded),
        "peak_rss_gb": peak_rss_gb(),
        "method": treeshap.method_for(model.booster) if explain else "",
    }


def peak_rss_gb() -> float:
    """This process's peak resident memory. Not ru_maxrss: Linux carries that across exec, so a
    child would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--world-accounts", type=int, default=2_000)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument(
        "--methods", default="default,pred_contrib", help="TreeSHAP methods, a process each"
    )
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--frame", type=Path, help=argparse.SUPPRESS)
    # the smoke times the scorer's own method only (a process each: pred_contrib's would be a
    # third start of every library for a figure that means nothing at 300 accounts)
    smoke = {"accounts": 300, "world_accounts": 60, "chunk_rows": 100, "methods": "default"}
    args = _args.parse(parser, "score_1m", smoke)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{args.out / 'mlruns' / 'mlflow.db'}"
    if args.measure:
        result = measure(args.frame, args.measure, args.chunk_rows)
        print(json.dumps(result))
        return

    # A smoke world is too small for a booster to beat the spline model, and a champion without
    # trees would leave TreeSHAP untried: its smoke champion is one booster.
    training = []
    if args.smoke:
        config = _args.smoke_training(args.out, learning__candidates=["single"])
        training = ["--config", str(config)]
    path = prepare(args.accounts, args.world_accounts, args.out, training)
    print(f"{args.accounts:,} accounts, chunks of {args.chunk_rows:,}, {os.cpu_count()} cores")
    for mode in ("plain", *args.methods.split(",")):
        child = subprocess.run(
            [sys.executable, __file__, "--measure", mode, "--frame", str(path),
             "--chunk-rows", str(args.chunk_rows), "--out", str(args.out)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        r = json.loads(child.stdout.strip().splitlines()[-1])
        label = f"score and explain, {r['method']}" if r["method"] else "score only"
        print(
            f"  {label:<40} {r['score_seconds']:8.1f} s  {r['accounts_per_second']:9,.0f}"
            f" accounts/s  peak memory {r['peak_rss_gb']:.2f} GB"
            f"  (reading the frame and the model: {r['load_seconds']:.1f} s)"
        )


if __name__ == "__main__":
    main()
