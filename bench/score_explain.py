"""Benchmark: score and explain 100,000 accounts on 2 cores, every TreeSHAP method side by side.

Trains the champion on a generated world through the CLI (default config, or `--config`, e.g.
training/large.yaml), then scores a 100,000-account feature frame drawn from that world's
snapshots (bootstrap rows under new account ids, so the values are realistic), timing each step
of the score-and-explain path: predict, SHAP values, family points, reasons, motion and
readiness (each sentence rendered in bulk), and the whole explained list as the scorer makes it
(`score_features`: all of these and the ranking) against the same without explanations. SHAP
is measured with every method in the same run, on the same model and rows:
`shap.TreeExplainer` (the reference), LightGBM's `pred_contrib` in one call (LightGBM's threads),
on one thread, and in chunks of 10,000 rows, and `leaf_patterns`; each with its largest
difference from the reference and the memory it adds at its peak. Feature computation is not
part of this step (see the feature benchmarks).

    .venv/bin/python bench/score_explain.py [--accounts 100000] [--repeats 3] [--config PATH]
        [--out DIR] [--smoke]
"""

from __future__ import annotations

from expansion_scorer.cli import share_cores_politely

share_cores_politely()  # before LightGBM loads: idle OpenMP threads sleep

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shap

from expansion_scorer.config import load_serving_config, load_training_config
from expansion_scorer.data.loading import open_world
from expansion_scorer.data.synthetic import generate_world
from expansion_scorer.model import treeshap
from expansion_scorer.model.loading import load_model
from expansion_scorer.model.propensity import contributions
from expansion_scorer.serving.explain import family_points, motions, readiness, reasons
from expansion_scorer.serving.scoring import score_features
from expansion_scorer.settings import load_feature_set
from expansion_scorer.training.dataset import training_frame

import _args

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any, float]:
    """Median seconds of `repeats` runs, the last result, and the most resident memory any run
    added above what the process held before it (sampled every 2 ms), in MB."""
    seconds, result, peak = [], None, 0
    for _ in range(repeats):
        result = None
        before, top, done = rss(), [0], threading.Event()

        def sample(before: int = before, top: list[int] = top, done: threading.Event = done):
            while not done.wait(0.002):
                top[0] = max(top[0], rss() - before)

        watcher = threading.Thread(target=sample)
        watcher.start()
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
        done.set()
        watcher.join()
        peak = max(peak, top[0], rss() - before)
    return statistics.median(seconds), result, peak / 1024**2


def reference(booster: Any, matrix: pd.DataFrame) -> np.ndarray:
    """What the scorer called before `treeshap`: a new `shap.TreeExplainer` per chunk."""
    return np.asarray(shap.TreeExplainer(booster).shap_values(matrix))


def chunked(booster: Any, matrix: pd.DataFrame, rows: int = 10_000) -> np.ndarray:
    return np.vstack(
        [
            booster.predict(matrix.iloc[i : i + rows], pred_contrib=True)[:, :-1]
            for i in range(0, len(matrix), rows)
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--world-accounts", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--config", type=Path, help="training config (default: the default)")
    args = _args.parse(
        parser, "score_explain", {"accounts": 300, "world_accounts": 60, "repeats": 1}
    )

    world = args.out / "world"
    if not (world / "truth.parquet").exists():
        generate_world(world, n_accounts=args.world_accounts, seed=5, months=30)
    store = args.out / ("mlruns" if args.config is None else f"mlruns-{args.config.stem}")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    if not (store / "mlflow.db").exists():
        store.mkdir(parents=True, exist_ok=True)
        config = [] if args.config is None else ["--config", str(args.config)]
        if args.smoke and args.config is None:  # one booster: a spline champion has no trees
            smoke = _args.smoke_training(args.out, learning__candidates=["single"])
            config = ["--config", str(smoke)]
        subprocess.run(
            [sys.executable, "-m", "expansion_scorer", "train", str(world), *config], check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
    model, version = load_model("models:/expansion-propensity@champion")
    features, serving = load_feature_set(), load_serving_config()
    snapshots = training_frame(open_world(world), features, load_training_config(), None)
    rng = np.random.default_rng(0)
    frame = snapshots.iloc[rng.integers(0, len(snapshots), args.accounts)].reset_index(drop=True)
    frame["account_id"] = [f"B{i:07d}" for i in range(len(frame))]
    frame["account_name"] = [f"Account {i}" for i in range(len(frame))]
    frame["csm_owner"] = [f"csm-{i % 40}" for i in range(len(frame))]

    n, r, booster = len(frame), args.repeats, model.booster
    matrix = model.matrix(frame)
    load = os.getloadavg()
    started = time.perf_counter()
    treeshap.method_for(booster)  # tables built once per model: timed apart, below
    t_tables = time.perf_counter() - started
    started = time.perf_counter()
    treeshap.shap_values(booster, matrix.head(10))  # numba's compiled kernel, from its cache
    t_kernel = time.perf_counter() - started

    t_predict, p, _ = timed(lambda: model.predict_proba(frame), r)
    t_raw, _, _ = timed(lambda: booster.predict(matrix, raw_score=True), r)
    t_ref, ref, m_ref = timed(lambda: reference(booster, matrix), r)
    methods: list[tuple[str, Callable[[], Any]]] = [
        ("pred_contrib, one call", lambda: booster.predict(matrix, pred_contrib=True)[:, :-1]),
        (
            "pred_contrib, one thread",
            lambda: booster.predict(matrix, pred_contrib=True, num_threads=1)[:, :-1],
        ),
        ("pred_contrib, 10,000-row chunks", lambda: chunked(booster, matrix)),
        (
            "leaf_patterns",
            lambda: treeshap.shap_values(booster, matrix, treeshap.LEAF_PATTERNS)[0],
        ),
    ]
    shap_rows = [("shap.TreeExplainer (reference)", t_ref, 0.0, m_ref)]
    for name, fn in methods:
        seconds, values, memory = timed(fn, r)
        shap_rows.append((name, seconds, float(np.abs(values - ref).max()), memory))

    default = treeshap.method_for(booster)
    t_contrib, contrib, _ = timed(lambda: contributions(model, frame), r)
    assert isinstance(p, np.ndarray)
    t_points, points, _ = timed(
        lambda: family_points(contrib, features, p, 1 / (1 + np.exp(-contrib.base_logit))), r
    )
    assert isinstance(points, pd.DataFrame)
    t_reasons, _, _ = timed(lambda: reasons(frame, contrib, points, features, serving.reasons), r)
    t_motion, _, _ = timed(lambda: motions(frame, points, serving), r)
    t_ready, _, _ = timed(lambda: readiness(frame, serving), r)
    total = t_predict + t_contrib + t_points + t_reasons + t_motion + t_ready
    as_of = date(2025, 6, 1)  # stamped on the list; the features are already computed
    whole = {
        explain: timed(
            lambda explain=explain: score_features(
                frame, model, features, serving, version, as_of, explain=explain
            ),
            r,
        )
        for explain in (False, True)
    }

    print(f"{n:,} accounts, model {version}, {len(model.feature_names)} features,"
          f" {booster.num_trees()} trees, {os.cpu_count()} cores; medians of {r} runs; load"
          f" average {load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")  # fmt: skip
    print(f"  {'step':<44} {'seconds':>8} {'ms/1,000':>9} {'x predict':>9}")
    for name, seconds in [("predict (calibrated)", t_predict), ("booster.predict (raw)", t_raw)]:
        print(f"  {name:<44} {seconds:8.2f} {seconds / n * 1e6:9.1f} {seconds / t_predict:9.1f}")
    print(f"  SHAP values, log-odds{'':<23} {'':>8} {'':>9} {'':>9}   largest difference  memory")
    for name, seconds, diff, memory in shap_rows:
        print(
            f"  {name:<44} {seconds:8.2f} {seconds / n * 1e6:9.1f} {seconds / t_predict:9.1f}"
            f"   {diff:18.1e}  {memory:6.0f} MB"
        )
    print(f"  (leaf_patterns, once per model and process: tables {t_tables:.2f} s,"
          f" compiled kernel {t_kernel:.2f} s)")  # fmt: skip
    rest = [
        (f"contributions() ({default}, with offset)", t_contrib),
        ("family points", t_points),
        ("reasons", t_reasons),
        ("motion and talking points", t_motion),
        ("readiness", t_ready),
    ]
    for name, seconds in rest:
        print(f"  {name:<44} {seconds:8.2f} {seconds / n * 1e6:9.1f} {seconds / t_predict:9.1f}")
    print(f"  {'score and explain, total of the steps':<44} {total:8.2f} {'':>9}"
          f" {total / t_predict:9.1f}")  # fmt: skip
    for explain, label in ((False, "scored list, no explanations"), (True, "explained list")):
        seconds, _, memory = whole[explain]
        print(f"  {'score_features: ' + label:<44} {seconds:8.2f} {seconds / n * 1e6:9.1f}"
              f" {seconds / t_predict:9.1f}   ranking included, adds {memory:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
