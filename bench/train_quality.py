"""Benchmark: how much of the learnable signal the trained model finds, and its margins.

Generates a world (3,000 accounts over 30 months by default), trains it through the CLI into a
throw-away SQLite MLflow store, and prints the pooled test-fold figures the README quotes:
(AUC - 0.5) / (Bayes AUC - 0.5), where the Bayes AUC is that of the simulator's true
probabilities on the same test snapshots; the margins over each baseline; lift at capacity.

    .venv/bin/python bench/train_quality.py [--accounts 3000] [--months 30] [--seed 0]
        [--trials 0]
"""

from __future__ import annotations

from expansion_scorer.cli import share_cores_politely

share_cores_politely()  # before LightGBM loads: idle OpenMP threads sleep

import argparse
import os
import tempfile
import time
from pathlib import Path

from expansion_scorer.config import load_feature_set, load_training_config
from expansion_scorer.data.synthetic import generate_world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--months", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trials", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        started = time.perf_counter()
        generate_world(data, n_accounts=args.accounts, seed=args.seed, months=args.months)
        print(
            f"world: {args.accounts:,} accounts, {args.months} months,"
            f" {time.perf_counter() - started:.0f}s"
        )
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        os.chdir(tmp)

        from expansion_scorer.jobs import train_job

        cfg = load_training_config()
        cfg = cfg.model_copy(
            update={"tuning": cfg.tuning.model_copy(update={"trials": args.trials})}
        )
        started = time.perf_counter()
        result = train_job(data, cfg, load_feature_set())
        took = time.perf_counter() - started

    m = result.metrics
    print(result.table)
    for line in result.margins:
        print(line)
    print(f"training took {took:.0f}s ({result.rows:,} snapshots)")
    print(f"pooled test ROC AUC {m['roc_auc']:.3f}, Bayes-limit {result.bayes_auc:.3f}")
    print(f"share of the Bayes gap: {result.share_of_bayes:.3f}")
    print(
        f"lift at capacity (k={cfg.capacity.k}) {m['lift_at_capacity']:.2f},"
        f" recall {m['recall_at_capacity']:.1%}; top-decile lift {m['lift_top_decile']:.2f}"
    )
    print(
        f"ECE {result.backtest.pooled['model_uncalibrated']['ece']:.4f} raw ->"
        f" {m['ece']:.4f} calibrated; random-split AUC {result.random_split_auc:.3f}"
    )
    print(
        f"ARR captured at capacity: ranked by score {m['arr_captured_by_score']:.1%},"
        f" by expected ARR {m['arr_captured_by_expected_arr']:.1%}"
    )


if __name__ == "__main__":
    main()
