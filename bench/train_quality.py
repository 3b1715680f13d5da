"""Benchmark: how much of the learnable signal the trained model finds, and its margins.

Generates a world (3,000 accounts over 30 months by default), trains it through the CLI into a
throw-away SQLite MLflow store, and prints the pooled test-fold figures the README quotes:
(AUC - 0.5) / (Bayes AUC - 0.5), where the Bayes AUC is that of the simulator's true
probabilities on the same test snapshots; the margins over each baseline; lift at capacity.

    .venv/bin/python bench/train_quality.py [--accounts 3000] [--months 30] [--seed 0]
        [--trials 0] [--ceiling] [--catalogue default|random] [--structure usage|budget|renewal]
        [--out DIR] [--smoke]

`--catalogue random` names products, plans and events from the seed and redraws the strength of
each mechanism; `--structure` picks what drives expansion. With `--ceiling` it also prints the
share of the ceiling reached (the model's share of the Bayes gap over the ceiling's).
"""

from __future__ import annotations

from expansion_scorer.cli import share_cores_politely

share_cores_politely()  # before LightGBM loads: idle OpenMP threads sleep

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from expansion_scorer.config import TrainingConfig, load_training_config, override
from expansion_scorer.data.synthetic import Catalogue, generate_world
from expansion_scorer.jobs.train import TrainResult
from expansion_scorer.settings import load_feature_set
from expansion_scorer.training.report import learner_summary

import _args

CEILING_ROUNDS = 600


def _frame_with_truth(data: Path, cfg: TrainingConfig) -> pd.DataFrame:
    from expansion_scorer.training.dataset import load_world, training_frame, with_truth

    frame = training_frame(load_world(data, None), load_feature_set(), cfg, None)
    return with_truth(data, frame, cfg.horizon_days)


def _feature_ceiling(frame: pd.DataFrame, cfg: TrainingConfig) -> float:
    """Pooled test ROC AUC of LightGBM regressed on the true log-odds instead of the 0/1 label.

    Fitted per fold on the rows the model sees (its training and calibration months), it shows
    how much of the Bayes limit the features can express at all when labels carry no noise.
    """
    from expansion_scorer.training.backtest import TRUTH_COLUMN, plan_folds
    from expansion_scorer.training.train import lgb_params, prepare, schema

    features = load_feature_set()
    truth = frame[TRUTH_COLUMN].clip(1e-6, 1 - 1e-6)
    target = np.log(truth / (1 - truth)).to_numpy()
    scores, labels = [], []
    for fold in plan_folds(sorted(frame["as_of"].unique()), cfg):
        seen = frame["as_of"].isin({*fold.fit_dates, *fold.calib_dates}).to_numpy()
        test = frame["as_of"].isin(set(fold.test_dates)).to_numpy()
        numeric, categories = schema(features, frame[seen])
        params = {**lgb_params(cfg.lightgbm, cfg.seed), "objective": "regression"}
        data = lgb.Dataset(prepare(frame[seen], numeric, categories), label=target[seen])
        rounds = min(CEILING_ROUNDS, cfg.lightgbm.n_estimators)  # a smoke config's are fewer
        booster = lgb.train(params, data, num_boost_round=rounds)
        scores.append(booster.predict(prepare(frame[test], numeric, categories)))
        labels.append(frame["label"].to_numpy()[test])
    return float(roc_auc_score(np.concatenate(labels), np.concatenate(scores)))


@dataclass
class Measured:
    """One world trained once: the result and, with the ceiling, how far the features reach."""

    result: TrainResult
    cfg: TrainingConfig
    took: float
    ceiling_share: float | None

    @property
    def of_ceiling(self) -> float | None:
        share = self.result.share_of_bayes
        if share is None or not self.ceiling_share:
            return None
        return share / self.ceiling_share


def measure(
    accounts: int,
    months: int,
    seed: int,
    catalogue_kind: str,
    structure: str,
    trials: int = 0,
    ceiling: bool = True,
    learners: list[str] | None = None,
    out: Path | None = None,
    config: Path | None = None,
) -> Measured:
    """Generate a world, train it into a throw-away store under `out` (with the training config
    at `config`, else the shipped one) and, with `ceiling`, fit the ceiling."""
    from expansion_scorer.jobs.train import train_job

    catalogue = Catalogue.of(catalogue_kind, seed, structure)
    here = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="run-", dir=out) as tmp:
        data = Path(tmp) / "data"
        started = time.perf_counter()
        generate_world(data, n_accounts=accounts, seed=seed, months=months, catalogue=catalogue)
        print(
            f"world: {accounts:,} accounts, {months} months, catalogue {catalogue_kind},"
            f" structure {structure}, seed {seed}, {time.perf_counter() - started:.0f}s",
            flush=True,
        )
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        os.chdir(tmp)
        try:
            update: dict[str, object] = {"tuning.trials": trials}
            if learners:
                update["learning.candidates"] = learners
            cfg = override(load_training_config(config), update, "benchmark")
            started = time.perf_counter()
            result = train_job(data, cfg, load_feature_set())
            took = time.perf_counter() - started
            share = None
            if ceiling and result.bayes_auc is not None:
                auc = _feature_ceiling(_frame_with_truth(data, cfg), cfg)
                share = (auc - 0.5) / (result.bayes_auc - 0.5)
        finally:
            os.chdir(here)
    return Measured(result, cfg, took, share)


def _kept(result: TrainResult) -> str:
    """The learner each fold kept, then the final fit's: `motions, single / motions`."""
    folds = ", ".join(f.learner for f in result.backtest.folds)
    return f"{folds} / {result.learner}"


def _auc(result: TrainResult, scorer: str) -> str:
    pooled = result.backtest.pooled
    return f"{pooled[scorer]['roc_auc']:.3f}" if scorer in pooled else "-"


def table(
    sizes: list[int],
    seeds: list[int],
    months: int,
    structure: str,
    baseline: bool = True,
    out: Path | None = None,
    config: Path | None = None,
    repeat: int = 1,
) -> None:
    """The README's quality table: per world and size, pooled test ROC AUC of one booster
    trained alone and, inside the configured learners' run, of the best booster, the gam, the
    blend, the logistic baseline and the chosen model; the chosen model's share of the feature
    ceiling; ECE before and after calibration; train time against one booster's (without
    `baseline`, the configured learners only, with their own ceiling fit). With `repeat`, each
    side is trained that many times, the two in turn, and the times are the medians (the
    figures are deterministic: the first run's)."""
    worlds = [("default", 0), *(("random", s) for s in seeds)]
    print(
        "| world | accounts | Bayes | one booster | booster | GAM | blend | logistic |"
        " chosen | chosen, of ceiling | kept (folds / final) | calibration | ECE raw -> delivered |"
        " train: one booster, learners (ratio) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for accounts in sizes:
        for kind, seed in worlds:
            common = {"out": out, "config": config}
            single = (
                measure(accounts, months, seed, kind, structure, learners=["single"], **common)
                if baseline
                else None
            )
            chosen = measure(
                accounts, months, seed, kind, structure, ceiling=single is None, **common
            )
            if single is not None:
                chosen.ceiling_share = single.ceiling_share
            took = {"single": [single.took] if single else [], "chosen": [chosen.took]}
            for _ in range(repeat - 1):
                if single is not None:
                    took["single"].append(
                        measure(accounts, months, seed, kind, structure, ceiling=False,
                                learners=["single"], **common).took
                    )  # fmt: skip
                took["chosen"].append(
                    measure(accounts, months, seed, kind, structure, ceiling=False, **common).took
                )
            alone_s = statistics.median(took["single"]) if single else None
            chosen_s = statistics.median(took["chosen"])
            name = "default" if kind == "default" else f"random, seed {seed}"
            r = chosen.result
            bayes = r.bayes_auc or float("nan")
            alone = "-" if single is None else _auc(single.result, "model")
            calibration = "-" if r.choice is None else r.choice.calibration
            ece = r.backtest.pooled
            times = (
                f"{chosen_s:.0f} s"
                if alone_s is None
                else f"{alone_s:.0f} s, {chosen_s:.0f} s ({chosen_s / alone_s:.2f}x)"
            )
            of_ceiling = "-" if chosen.of_ceiling is None else f"**{chosen.of_ceiling:.3f}**"
            print(
                f"| {name} | {accounts:,} | {bayes:.3f} | {alone} | {_auc(r, 'booster')} |"
                f" {_auc(r, 'gam')} | {_auc(r, 'blend')} | {_auc(r, 'logistic')} |"
                f" **{_auc(r, 'model')}** | {of_ceiling} | {_kept(r)} | {calibration} |"
                f" {ece['model_uncalibrated']['ece']:.4f} -> {ece['model']['ece']:.4f} |"
                f" {times} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--months", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trials", type=int, default=0)
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="also fit the features to the simulator's true log-odds: how far they can reach",
    )
    parser.add_argument("--catalogue", choices=["default", "random"], default="default")
    parser.add_argument("--structure", choices=["usage", "budget", "renewal"], default="usage")
    parser.add_argument(
        "--learners", help="comma-separated learning.candidates instead of the configured ones"
    )
    parser.add_argument(
        "--table",
        action="store_true",
        help="the README's table: every size in --sizes, the default world and --random-seeds",
    )
    parser.add_argument("--sizes", default="300,800,3000")
    parser.add_argument("--random-seeds", default="1,2,3,4,5")
    parser.add_argument(
        "--no-baseline", action="store_true", help="with --table: skip the `single` runs"
    )
    parser.add_argument(
        "--repeat", type=int, default=1,
        help="with --table: train each side this many times, in turn; the times are medians",
    )  # fmt: skip
    # the smoke runs the table's code: one 60-account world, one booster and the learners
    smoke = {"accounts": 60, "months": 30, "table": True, "sizes": "60", "random_seeds": ""}
    args = _args.parse(parser, "train_quality", smoke)
    if args.table:
        sizes = [int(s) for s in args.sizes.split(",")]
        seeds = [int(s) for s in args.random_seeds.split(",") if s]
        config = _args.smoke_training(args.out) if args.smoke else None
        table(
            sizes, seeds, args.months, args.structure, not args.no_baseline, args.out, config,
            args.repeat,
        )  # fmt: skip
        return
    learners = args.learners.split(",") if args.learners else None
    run = measure(
        args.accounts, args.months, args.seed, args.catalogue, args.structure, args.trials,
        args.ceiling, learners, args.out,
    )  # fmt: skip
    result, cfg = run.result, run.cfg
    m = result.metrics
    print(result.table)
    for line in result.margins:
        print(line)
    print(f"training took {run.took:.0f}s ({result.rows:,} snapshots)")
    print(f"pooled test ROC AUC {m['roc_auc']:.3f}, Bayes-limit {result.bayes_auc:.3f}")
    print(f"share of the Bayes gap: {result.share_of_bayes:.3f}")
    print(f"learner kept (folds / final): {_kept(result)}")
    for line in learner_summary(result.backtest, result.choice):
        print(line)
    if run.ceiling_share is not None:
        print(f"feature ceiling (LightGBM fitted to the true log-odds, same folds): share"
              f" {run.ceiling_share:.3f}")  # fmt: skip
        print(f"share of the ceiling reached: {run.of_ceiling:.3f}")
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
