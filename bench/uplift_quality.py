"""Benchmark: does ranking by uplift realise more incremental expansions than ranking by propensity?

Generates a world, trains the propensity champion through the CLI into a throw-away SQLite
MLflow store, then per seed the real loop on a world of its own that answers the program
(`data.synthetic.ProgramWorld`, seeded by the seed; `program.simulation.run_program`): weekly
scoring runs every `--every` weeks over three quarters with a holdout salted by the seed, CSMs
touching what they were shown with `--compliance`, the world advancing with those touches; then
the uplift training
(`target: uplift`, the shipped uplift settings but for the folds). Prints, per seed and as
medians over seeds, on the held-out cohort folds: the Qini coefficient of the uplift ranking,
the propensity ranking (the score each assignment was drawn with) and the oracle (the world's
true lift, `p_touched - p_expand`, of each assignment), and the incremental expansions realised
at capacity by each.

    .venv/bin/python bench/uplift_quality.py [--accounts 3000] [--seeds 3] [--first-seed 0]
        [--every 4] [--fraction 0.5] [--compliance 0.7] [--strength 1] [--folds 2]
        [--test-cohorts 4] [--reuse DIR] [--out DIR] [--smoke]
"""

from __future__ import annotations

from expansion_scorer.cli import share_cores_politely

share_cores_politely()  # before LightGBM loads: idle OpenMP threads sleep

import argparse
import os
import shutil
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import yaml

from expansion_scorer.cli import main
from expansion_scorer.config import load_training_config, override
from expansion_scorer.data.synthetic import ProgramWorld, generate_world
from expansion_scorer.jobs.uplift import uplift_job
from expansion_scorer.program.simulation import run_program
from expansion_scorer.settings import load_feature_set
from expansion_scorer.training.uplift import ORACLE, PROPENSITY, UPLIFT

import _args


def _mondays(first: date, last: date, every: int) -> list[str]:
    monday = first + timedelta(days=(7 - first.weekday()) % 7)
    out = []
    while monday <= last:
        out.append(str(monday))
        monday += timedelta(weeks=every)
    return out


def run(args: argparse.Namespace) -> None:
    root = args.reuse or Path(tempfile.mkdtemp(prefix="run-", dir=args.out))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    os.chdir(root)
    world = root / "world"
    if args.reuse is None:
        generate_world(world, n_accounts=args.accounts, seed=0, months=24)
        assert main(["train", str(world)]) == 0
    # three quarters whose 90-day horizons all close before the world ends (2024-12-31)
    weeks = [
        date.fromisoformat(w) for w in _mondays(date(2024, 1, 1), date(2024, 9, 30), args.every)
    ]
    serving = yaml.safe_load((Path(__file__).parents[1] / "serving" / "default.yaml").read_text())
    features = load_feature_set()
    cfg = override(
        load_training_config(),
        {
            "target": "uplift",
            "uplift.folds": args.folds,
            "uplift.test_cohorts": args.test_cohorts,
        },
        "benchmark",
    )
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
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
        trained = time.perf_counter()
        result = uplift_job(data, out, cfg, features)
        pooled = result.backtest.pooled
        shutil.rmtree(data)
        row = {"seed": seed, "assignments": result.rows, "true_itt": float(truth["effect"].mean()),
               "test_rows": pooled["all"]["rows"], "train_s": time.perf_counter() - trained,
               "seed_s": time.perf_counter() - started}  # fmt: skip
        for scorer in (UPLIFT, PROPENSITY, ORACLE):
            row[f"qini_{scorer}"] = pooled[scorer]["qini"]
            row[f"incr_{scorer}"] = pooled[scorer]["incremental_at_capacity"]
            row[f"taken_{scorer}"] = pooled[scorer]["taken_at_capacity"]
        rows.append(row)
        print(result.table, flush=True)
        print(
            f"seed {seed}: {row['assignments']} matured assignments, {row['test_rows']:.0f} in"
            f" the test folds; Qini uplift {row['qini_uplift']:+.4f}, propensity"
            f" {row['qini_propensity']:+.4f}, oracle {row['qini_oracle']:+.4f}; incremental"
            f" expansions at capacity ({row['taken_uplift']:.0f} accounts worked): uplift"
            f" {row['incr_uplift']:.1f}, propensity {row['incr_propensity']:.1f}, oracle"
            f" {row['incr_oracle']:.1f}; uplift training {row['train_s']:.0f} s",
            flush=True,
        )
    wins = sum(r["incr_uplift"] > r["incr_propensity"] for r in rows)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print(
        f"{args.accounts} accounts, {len(weeks)} weekly runs every {args.every} weeks, holdout"
        f" {args.fraction}, {len(rows)} seeds (medians): Qini uplift {med('qini_uplift'):+.4f},"
        f" propensity {med('qini_propensity'):+.4f}, oracle {med('qini_oracle'):+.4f};"
        f" incremental expansions at capacity uplift {med('incr_uplift'):.1f}, propensity"
        f" {med('incr_propensity'):.1f}, oracle {med('incr_oracle'):.1f}; uplift ahead of"
        f" propensity in {wins}/{len(rows)} seeds"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=4, help="weeks between scoring runs")
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--compliance", type=float, default=0.7)
    parser.add_argument("--strength", type=float, default=1.0, help="scale of a touch's effect")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--test-cohorts", type=int, default=4)
    parser.add_argument(
        "--reuse",
        type=Path,
        help="the folder of an earlier run: its world and champion (seeds in another process)",
    )
    smoke = {"accounts": 150, "seeds": 1, "every": 8, "folds": 1, "test_cohorts": 2}
    run(_args.parse(parser, "uplift_quality", smoke))
