"""Benchmark: score and explain 100,000 accounts on 2 cores.

Trains the champion on a generated world through the CLI, then scores a 100,000-account
feature frame drawn from that world's snapshots (bootstrap rows under new account ids, so the
values are realistic), timing each step of the score-and-explain path: predict, SHAP values,
family points, reasons, motion and readiness. The SHAP step is measured twice, with
`shap.TreeExplainer` (what the scorer uses) and with LightGBM's own `pred_contrib`, on the same
model. Feature computation is not part of this step (see the feature benchmarks).

    .venv/bin/python bench/score_explain.py [--accounts 100000] [--repeats 3]
"""

from __future__ import annotations

from expansion_scorer.cli import share_cores_politely

share_cores_politely()  # before LightGBM loads: idle OpenMP threads sleep

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from expansion_scorer.config import load_feature_set, load_serving_config, load_training_config
from expansion_scorer.data.loading import open_world
from expansion_scorer.data.synthetic import generate_world
from expansion_scorer.jobs import training_frame
from expansion_scorer.serving.explain import (
    contributions,
    family_points,
    motions,
    readiness,
    reasons,
)
from expansion_scorer.serving.job import load_model

OUT = Path(__file__).parent / "out" / "score_explain"


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--world-accounts", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    world = OUT / "world"
    if not (world / "truth.parquet").exists():
        generate_world(world, n_accounts=args.world_accounts, seed=5, months=30)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{OUT / 'mlruns' / 'mlflow.db'}"
    (OUT / "mlruns").mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "expansion_scorer", "train", str(world)], check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    model, version = load_model("models:/expansion-propensity@champion")
    features, serving = load_feature_set(), load_serving_config()
    snapshots = training_frame(open_world(world), features, load_training_config(), None)
    rng = np.random.default_rng(0)
    frame = snapshots.iloc[rng.integers(0, len(snapshots), args.accounts)].reset_index(drop=True)
    frame["account_id"] = [f"B{i:07d}" for i in range(len(frame))]

    n, r = len(frame), args.repeats
    t_predict, p = timed(lambda: model.predict_proba(frame), r)
    t_shap, contrib = timed(lambda: contributions(model, frame), r)
    t_native, _ = timed(lambda: model.booster.predict(model.matrix(frame), pred_contrib=True), r)
    assert isinstance(p, np.ndarray)
    t_points, points = timed(
        lambda: family_points(contrib, features, p, 1 / (1 + np.exp(-contrib.base_logit))), r
    )
    assert isinstance(points, pd.DataFrame)
    t_reasons, _ = timed(lambda: reasons(frame, contrib, points, features, serving.reasons), r)
    t_motion, _ = timed(lambda: motions(frame, points, serving), r)
    t_ready, _ = timed(lambda: readiness(frame, serving), r)
    total = t_predict + t_shap + t_points + t_reasons + t_motion + t_ready

    print(f"{n:,} accounts, model {version}, {len(model.feature_names)} features,"
          f" {model.booster.num_trees()} trees; medians of {r} runs")  # fmt: skip
    rows = [
        ("predict", t_predict),
        ("SHAP, shap.TreeExplainer", t_shap),
        ("SHAP, LightGBM pred_contrib", t_native),
        ("family points", t_points),
        ("reasons", t_reasons),
        ("motion and talking points", t_motion),
        ("readiness", t_ready),
    ]
    for name, seconds in rows:
        print(f"  {name:<30} {seconds:7.2f} s   {seconds / n * 1000 * 1000:8.1f} ms per 1,000")
    print(f"  {'score and explain, total':<30} {total:7.2f} s   (target 60 s)")
    print(f"  TreeExplainer / pred_contrib time ratio: {t_shap / t_native:.2f}")


if __name__ == "__main__":
    main()
