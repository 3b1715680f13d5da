"""Benchmark: how much of what there is to find does each targeting ranking find?

Generates a world, trains the propensity champion through the CLI into a throw-away SQLite
MLflow store, then per seed the real loop on a world of its own that answers the program
(`data.synthetic.ProgramWorld`, seeded by the seed; `program.simulation.run_program`): weekly
scoring runs every `--every` weeks over three quarters with a holdout salted by the seed, CSMs
touching what they were shown with `--compliance`, the world advancing with those touches; then
the uplift backtest (`target: uplift`, the shipped settings but for the folds) once per learner
(`uplift.learner`: t, x, dr, average, and auto, the one chosen on inner folds of the training
cohorts).

Every ranking is scored on the test cohorts by its TRUE value: the expected incremental
expansions of the accounts it puts on the capacity lists (the `accounts_per_csm` best of each
CSM's cohort), the sum of the world's true effect of a touch on them (`true_effect`, kept by
`run_program`: `p_touched - p_untouched` at the month the touch changes) times the compliance.
No coin flip enters it. Beside it: the true oracle (the lists ranked by that effect), the
feature ceiling (the same booster settings fitted to the training cohorts' true effect instead
of their outcomes: how far the features reach without the noise of the outcomes), a random
pick (its expectation), the propensity the assignment was drawn with, the realised-effect
"oracle" of the earlier benchmark (`effect`, expanded with minus without, in {-1, 0, 1}), and
per ranking the REALISED incremental expansions at capacity (listed minus held-out rate among
the picked, times the picked) and the doubly robust estimate with its 95% bootstrap interval
that training logs, which is what a company without the truth sees.

A seed's uplift frame (features and truth) is kept under the run folder, so `--reuse DIR`
rescores an earlier run's seeds without the loop.

    .venv/bin/python bench/uplift_quality.py [--accounts 3000] [--seeds 5] [--first-seed 0]
        [--every 4] [--fraction 0.5] [--compliance 0.7] [--strength 1] [--folds 2]
        [--test-cohorts 4] [--learners t,x,dr,average,auto] [--pool 1] [--reuse DIR]
        [--out DIR] [--smoke]

`--pool 3` also backtests three worlds' cohorts side by side (three times the randomized
history; accounts and CSMs told apart by world), for each run of three consecutive seeds.
"""

from __future__ import annotations

from expansion_scorer.cli import share_cores_politely

share_cores_politely()  # before LightGBM loads: idle OpenMP threads sleep

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import yaml

from expansion_scorer.cli import main
from expansion_scorer.config import FeatureSet, TrainingConfig, load_training_config, override
from expansion_scorer.data.synthetic import ProgramWorld, generate_world
from expansion_scorer.jobs.uplift import _plan, uplift_frame
from expansion_scorer.model.parts import prepare
from expansion_scorer.program.simulation import run_program
from expansion_scorer.settings import load_feature_set
from expansion_scorer.training.train import schema
from expansion_scorer.training.uplift import (
    ORACLE,
    PROPENSITY,
    UPLIFT,
    CohortFold,
    _rows,
    backtest_uplift,
)
from expansion_scorer.training.uplift_learners import (
    RANDOM,
    _regressor,
    capacity_weights,
    policy_values,
)

import _args


def _mondays(first: date, last: date, every: int) -> list[str]:
    monday = first + timedelta(days=(7 - first.weekday()) % 7)
    out = []
    while monday <= last:
        out.append(str(monday))
        monday += timedelta(weeks=every)
    return out


RANDOM_PICK = "random pick"
REALISED = "realised-effect oracle"
CEILING = "feature ceiling"
"""The true effect itself learnt from the features on each fold's training cohorts: what the
features could reach if the outcomes carried no noise."""


def _seed_frame(args: argparse.Namespace, root: Path, seed: int, weeks: list[date],
                serving: dict, features: object) -> tuple[pd.DataFrame, dict]:  # fmt: skip
    """The seed's uplift frame (features, outcome, the true effect) and what the loop saw; from
    the run folder when an earlier run kept it."""
    kept, about = root / f"frame-{seed}.parquet", root / f"frame-{seed}.json"
    if kept.is_file() and about.is_file():
        return pd.read_parquet(kept), json.loads(about.read_text())
    started = time.perf_counter()
    config = root / f"serving-{seed}.yaml"
    serving["holdout"] = {"fraction": args.fraction, "salt": f"bench-{seed}"}
    config.write_text(yaml.safe_dump(serving, allow_unicode=True))
    out = root / f"weekly-{seed}"
    program = ProgramWorld(root / f"world-{seed}", weeks[0], n_accounts=args.accounts,
                           seed=seed, months=24, strength=args.strength)  # fmt: skip
    data = program.out

    def score(as_of: date, out: Path = out, config: Path = config, data: Path = data) -> None:
        code = main(["score", str(data), "--as-of", str(as_of), "--out", str(out),
                     "--config", str(config)])  # fmt: skip
        assert code == 0

    truth = run_program(program, weeks, score, out, features, compliance=args.compliance,
                        seed=seed)  # fmt: skip
    frame = uplift_frame(data, out, features)
    realised = truth[["account_id", "assigned_on", "effect"]].rename(columns={"effect": REALISED})
    realised["assigned_on"] = pd.to_datetime(realised["assigned_on"]).dt.date
    realised["account_id"] = realised["account_id"].astype(str)
    frame = frame.merge(realised, on=["account_id", "assigned_on"], how="left")
    shutil.rmtree(data)
    info = {"true_itt": float(truth["effect"].mean()),
            "true_effect_mean": float(truth["true_effect"].mean()),
            "loop_s": time.perf_counter() - started}  # fmt: skip
    frame.to_parquet(kept, index=False)
    about.write_text(json.dumps(info))
    return frame, info


def _feature_ceiling(
    frame: pd.DataFrame, folds: list[CohortFold], cfg: TrainingConfig, features: FeatureSet
) -> pd.DataFrame:
    """Per test row of each fold, the uplift booster settings fitted to the training cohorts'
    true effect (a regression on `oracle`) instead of to their noisy outcomes."""
    parts = []
    for fold in folds:
        train, test = _rows(frame, fold.train), _rows(frame, fold.test)
        numeric, categories = schema(features, train)
        fitted = _regressor(prepare(train, numeric, categories),
                            train[ORACLE].to_numpy(dtype="float64"), cfg.uplift.lightgbm,
                            cfg.seed)  # fmt: skip
        part = test[["account_id", "assigned_on"]].copy()
        part[CEILING] = fitted.predict(prepare(test, numeric, categories))
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _true_value(scores: pd.DataFrame, ranking: str, k: int, compliance: float) -> float:
    w = capacity_weights(scores, ranking, k)
    return float((w * scores[ORACLE].to_numpy(dtype="float64")).sum()) * compliance


def run(args: argparse.Namespace) -> None:
    root = args.reuse or Path(tempfile.mkdtemp(prefix="run-", dir=args.out))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    os.chdir(root)
    world = root / "world"
    if args.reuse is None:
        generate_world(world, n_accounts=args.accounts, seed=0, months=24)
        config = ["--config", str(_args.smoke_training(root))] if args.smoke else []
        assert main(["train", str(world), *config]) == 0
    # three quarters whose 90-day horizons all close before the world ends (2024-12-31)
    weeks = [
        date.fromisoformat(w) for w in _mondays(date(2024, 1, 1), date(2024, 9, 30), args.every)
    ]
    serving = yaml.safe_load((Path(__file__).parents[1] / "serving" / "default.yaml").read_text())
    features = load_feature_set()
    base = {"target": "uplift", "uplift.folds": args.folds,
            "uplift.test_cohorts": args.test_cohorts}  # fmt: skip
    if args.smoke:  # few rounds per arm, and the fewest inner folds `auto` chooses on
        base |= {"uplift.lightgbm.n_estimators": 30, "uplift.inner_folds": 2}
    learners = args.learners.split(",")
    k = load_training_config().uplift.accounts_per_csm
    shares: dict[str, list[float]] = {}
    ahead: dict[str, int] = {}
    frames = {}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        frame, info = _seed_frame(args, root, seed, weeks, serving, features)
        frames[seed] = frame
        rows, tested = _evaluate(frame, learners, base, k, args.compliance, features)
        print(
            f"seed {seed}: {len(frame)} matured assignments, {tested} in the test folds;"
            f" realised mean effect of listing {info['true_itt']:+.4f}; true value at capacity"
            f" (expected incremental expansions, k = {k}, compliance {args.compliance}):",
            flush=True,
        )
        _print(rows, learners, shares, ahead)
    n = args.seeds
    print(
        f"{args.accounts} accounts, {len(weeks)} weekly runs every {args.every} weeks, holdout"
        f" {args.fraction}, {n} seeds: share of the true oracle's value at capacity"
        " (median, worst seed; ahead of propensity in how many seeds)"
    )
    _summary(shares, ahead, n)
    if args.pool < 2:
        return
    # three times the randomized history: the cohorts of `pool` program worlds side by side
    # (their accounts and CSMs told apart by the world), each test cohort's lists per world's CSM
    pooled_shares: dict[str, list[float]] = {}
    pooled_ahead: dict[str, int] = {}
    seeds = sorted(frames)
    groups = [seeds[i : i + args.pool] for i in range(0, len(seeds) - args.pool + 1, args.pool)]
    for group in groups:
        parts = []
        for seed in group:
            part = frames[seed].copy()
            part["account_id"] = f"w{seed}-" + part["account_id"].astype(str)
            part["csm_owner"] = f"w{seed}-" + part["csm_owner"].fillna("").astype(str)
            parts.append(part)
        frame = pd.concat(parts, ignore_index=True)
        rows, tested = _evaluate(frame, learners, base, k, args.compliance, features)
        print(f"seeds {group} pooled: {len(frame)} matured assignments, {tested} in the test"
              " folds; true value at capacity:", flush=True)  # fmt: skip
        _print(rows, learners, pooled_shares, pooled_ahead)
    print(f"{len(groups)} pooled histories of {args.pool} worlds: share of the true oracle's value")
    _summary(pooled_shares, pooled_ahead, len(groups))


def _summary(shares: dict[str, list[float]], ahead: dict[str, int], n: int) -> None:
    for name, got in shares.items():
        beat = f"; ahead of propensity in {ahead[name]}/{n}" if name in ahead else ""
        print(f"  {name:24} {statistics.median(got):.2f} {min(got):.2f}{beat}")


def _evaluate(
    frame: pd.DataFrame, learners: list[str], base: dict, k: int, compliance: float,
    features: FeatureSet,
) -> tuple[dict[str, dict[str, float | str]], int]:  # fmt: skip
    """Per learner and per reference ranking: the true value at capacity on the test cohorts,
    the realised incremental expansions there, the doubly robust estimate and its interval."""
    extra = frame[["account_id", "assigned_on", REALISED]]
    rows: dict[str, dict[str, float | str]] = {}
    tested = 0
    for learner in learners:
        started = time.perf_counter()
        cfg = override(load_training_config(), {**base, "uplift.learner": learner}, "benchmark")
        folds, _, _ = _plan(frame, cfg)
        bt = backtest_uplift(frame, folds, features, cfg)
        scores = bt.scores.merge(extra, on=["account_id", "assigned_on"], how="left")
        values = policy_values(scores, [UPLIFT, PROPENSITY, RANDOM], k)
        rows[learner] = {
            "true": _true_value(scores, UPLIFT, k, compliance),
            "realised": bt.pooled[UPLIFT]["incremental_at_capacity"],
            "dr": values[UPLIFT].says(),
            "chosen": "/".join(f.choice.learner for f in bt.folds),
            "seconds": time.perf_counter() - started,
        }
        if tested:
            continue
        tested = len(scores)
        scores = scores.merge(_feature_ceiling(frame, folds, cfg, features),
                              on=["account_id", "assigned_on"], how="left")  # fmt: skip
        for name in (ORACLE, CEILING, PROPENSITY, REALISED):
            rows[name] = {
                "true": _true_value(scores, name, k, compliance),
                "realised": bt.pooled[name]["incremental_at_capacity"]
                if name in bt.pooled else float("nan"),
                "dr": values[PROPENSITY].says() if name == PROPENSITY else "",
            }  # fmt: skip
        rows[RANDOM_PICK] = {"true": _true_value(scores, RANDOM, k, compliance),
                             "realised": float("nan"), "dr": values[RANDOM].says()}  # fmt: skip
    return rows, tested


def _print(
    rows: dict[str, dict[str, float | str]], learners: list[str],
    shares: dict[str, list[float]], ahead: dict[str, int],
) -> None:  # fmt: skip
    oracle = float(rows[ORACLE]["true"])
    print(f"  {'ranking':24} {'true':>7} {'share':>6} {'realised':>9}  {'DR estimate [95%]':24}"
          " chosen per fold", flush=True)  # fmt: skip
    for name, row in rows.items():
        share = float(row["true"]) / oracle if oracle else float("nan")
        shares.setdefault(name, []).append(share)
        if name in learners:
            ahead[name] = ahead.get(name, 0) + (row["true"] > rows[PROPENSITY]["true"])
        got = f"{float(row['true']):7.1f} {share:6.2f} {float(row['realised']):9.1f}"
        seconds = f" ({float(row['seconds']):.0f} s)" if "seconds" in row else ""
        print(f"  {name:24} {got}  {row['dr']!s:24} {row.get('chosen', '')}{seconds}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=4, help="weeks between scoring runs")
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--compliance", type=float, default=0.7)
    parser.add_argument("--strength", type=float, default=1.0, help="scale of a touch's effect")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--test-cohorts", type=int, default=4)
    parser.add_argument("--pool", type=int, default=1,
                        help="also backtest this many worlds' cohorts side by side")  # fmt: skip
    parser.add_argument("--learners", default="t,x,dr,average,auto",
                        help="uplift.learner values to backtest, comma-separated")  # fmt: skip
    parser.add_argument(
        "--reuse",
        type=Path,
        help="the folder of an earlier run: its world and champion (seeds in another process)",
    )
    smoke = {"accounts": 150, "seeds": 2, "pool": 2, "every": 17, "folds": 1, "test_cohorts": 2}
    run(_args.parse(parser, "uplift_quality", smoke))
