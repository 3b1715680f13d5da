"""Benchmark: the full backtest plus the final fit on 1,000,000 snapshot rows x 100 features.

The frame is drawn, not built from a world (feature SQL has its own benchmark): 40 month
starts of 25,000 accounts, 100 numeric features of which a few carry a logistic signal, a
label and an expansion ARR, and the three features the baselines read. It runs what
`expansion train` runs before logging: fold planning and checks, K folds (booster with early
stopping, calibrator, size model, logistic baseline, rules), the random-split check and the
final fit. Prints wall time per step and the peak resident memory.

    .venv/bin/python bench/train_scale.py [--rows 1000000] [--features 100] [--config PATH]
        [--learners single] [--side-by-side] [--smoke] [--out DIR]
"""

from __future__ import annotations

from expansion_scorer.cli import share_cores_politely

share_cores_politely()  # before LightGBM loads: idle OpenMP threads sleep

import argparse
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from expansion_scorer.config import FeatureDef, FeatureSet, TrainingConfig, load_training_config
from expansion_scorer.features.snapshots import month_starts
from expansion_scorer.training.backtest import (
    backtest,
    check_folds,
    final_layout,
    plan_folds,
    random_split_auc,
)
from expansion_scorer.training.train import fit

import _args

BASELINE_FEATURES = ("seat_utilisation", "active_users_change_28d", "days_since_expansion")


def draw_frame(rows: int, n_features: int, seed: int) -> tuple[pd.DataFrame, FeatureSet]:
    rng = np.random.default_rng(seed)
    dates = month_starts(date(2022, 1, 1), date(2025, 4, 1))
    per_date = rows // len(dates)
    x = rng.standard_normal((per_date * len(dates), n_features)).astype("float64")
    x[rng.random(x.shape) < 0.05] = np.nan
    weights = np.zeros(n_features)
    weights[:10] = rng.normal(0, 0.6, 10)
    logit = -1.6 + np.nan_to_num(x) @ weights + 0.4 * np.tanh(np.nan_to_num(x[:, 10] * x[:, 11]))
    label = (rng.random(len(x)) < 1 / (1 + np.exp(-logit))).astype("int64")
    names = [*BASELINE_FEATURES, *(f"f{j:03d}" for j in range(n_features - 3))]
    frame = pd.DataFrame(x, columns=names)
    frame["days_since_expansion"] = np.abs(frame["days_since_expansion"]) * 200
    frame.insert(0, "account_id", np.tile([f"A{i:06d}" for i in range(per_date)], len(dates)))
    frame.insert(1, "as_of", np.repeat(np.array(dates, dtype=object), per_date))
    frame["label"] = label
    frame["expansion_arr"] = np.where(label == 1, rng.gamma(2.0, 3000.0, len(x)), 0.0)
    feature_set = FeatureSet(
        plan_order=["starter"],
        features=[FeatureDef(name=n, family="bench", description=n, sql=n) for n in names],
    )
    return frame, feature_set


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def run(args: argparse.Namespace) -> None:
    frame, feature_set = draw_frame(args.rows, args.features, args.seed)
    cfg = load_training_config(args.config)
    if args.learners:
        raw = cfg.model_dump()
        raw["learning"] = {**raw["learning"], "candidates": args.learners.split(",")}
        cfg = TrainingConfig.model_validate(raw)
    print(f"frame: {len(frame):,} rows x {args.features} features; peak {peak_gb():.2f} GB")
    print(f"learners: {', '.join(cfg.learning.candidates)}; {cfg.backtest.arrangement}")

    started = time.perf_counter()
    dates = sorted(frame["as_of"].unique())
    folds = plan_folds(dates, cfg)
    final = final_layout(dates, cfg)
    check_folds(frame, [*folds, final])
    t = time.perf_counter()
    bt = backtest(frame, folds, feature_set, cfg)
    print(f"backtest ({len(folds)} folds, with baselines): {time.perf_counter() - t:.0f}s")
    for r in bt.folds:
        print(f"  fold {r.layout.index}: {r.learner}, {r.best_iteration} rounds")
    t = time.perf_counter()
    auc = random_split_auc(frame, dates, feature_set, cfg, cfg.lightgbm)
    print(f"random-split check: {time.perf_counter() - t:.0f}s (AUC {auc:.3f})")
    t = time.perf_counter()
    model = fit(frame, final, feature_set, cfg, only=bt.survivors)
    print(f"final fit: {time.perf_counter() - t:.0f}s ({model.learner}, {model.rounds} rounds)")
    total = time.perf_counter() - started
    print(f"pooled test ROC AUC {bt.pooled['model']['roc_auc']:.3f}")
    print(f"total: {total:.0f}s ({total / 60:.1f} min); peak resident memory {peak_gb():.2f} GB")
    print(f"RESULT {total:.1f} {peak_gb():.2f} {bt.pooled['model']['roc_auc']:.4f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", type=Path, help="a training config (default: the built-in)")
    parser.add_argument("--learners", help="comma-separated learning.candidates instead")
    parser.add_argument(
        "--side-by-side",
        action="store_true",
        help="run one booster (`single`) and the configured learners, each in its own process,"
        " and print their times, peak memories and the ratio",
    )
    args = _args.parse(parser, "train_scale", {"rows": 8000, "features": 12, "side_by_side": True})
    if not args.side_by_side:
        run(args)
        return
    results = {}
    config = args.config or (_args.smoke_training(args.out) if args.smoke else None)
    for name, learners in (("one booster", ["--learners", "single"]), ("learners", [])):
        command = [sys.executable, __file__, "--rows", str(args.rows), "--features",
                   str(args.features), "--seed", str(args.seed), "--out", str(args.out),
                   *learners]  # fmt: skip
        if config:
            command += ["--config", str(config)]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        print(f"## {name}\n{out}", flush=True)
        line = next(x for x in out.splitlines() if x.startswith("RESULT"))
        results[name] = [float(v) for v in line.split()[1:]]
    (one, one_gb, one_auc), (many, many_gb, many_auc) = results.values()
    print(
        f"one booster {one:.0f} s, {one_gb:.2f} GB, ROC AUC {one_auc:.3f}; learners {many:.0f} s,"
        f" {many_gb:.2f} GB, ROC AUC {many_auc:.3f}; ratio {many / one:.2f}x"
    )


if __name__ == "__main__":
    main()
