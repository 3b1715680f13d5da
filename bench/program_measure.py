"""Benchmark: does `expansion measure` find a program's true effect, and how fast?

Trains the champion through the CLI, into a throw-away SQLite MLflow store, on a generated world;
then per seed runs the real loop on a world of its own that answers the program
(`data.synthetic.ProgramWorld`, seeded by the seed): weekly scoring runs with a holdout salted by
the seed (two quarters, `--weeks` runs each), CSMs touching what they were shown with
`--compliance`, the world advancing a week at a time with those touches
(`serving.simulation.run_program`, which also knows each account's outcome in both arms), and
`expansion measure`. Prints, over seeds, how often the pooled 95% interval covers the true
intent-to-treat effect and how far the estimate is from it.

    .venv/bin/python bench/program_measure.py [--accounts 3000] [--seeds 20] [--weeks 2]
        [--first-seed 0] [--fraction 0.1] [--compliance 0.7] [--strength 1] [--out DIR] [--smoke]
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

import yaml

from expansion_scorer.cli import main
from expansion_scorer.data.synthetic import ProgramWorld, generate_world
from expansion_scorer.serving.simulation import run_program
from expansion_scorer.settings import load_feature_set

import _args


def _weeks(first: date, per_quarter: int) -> list[str]:
    """`per_quarter` weekly dates (Mondays, four weeks apart) in each of two quarters."""
    out = []
    for quarter_start in (first, date(first.year + (first.month + 2) // 12,
                                       (first.month + 2) % 12 + 1, 1)):  # fmt: skip
        monday = quarter_start + timedelta(days=(7 - quarter_start.weekday()) % 7)
        out += [str(monday + timedelta(weeks=4 * k)) for k in range(per_quarter)]
    return out


def run(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="run-", dir=args.out))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    os.chdir(root)
    trained_on = root / "world"
    generate_world(trained_on, n_accounts=args.accounts, seed=0, months=24)
    assert main(["train", str(trained_on)]) == 0
    weeks = _weeks(date(2024, 4, 1), args.weeks)
    serving = yaml.safe_load((Path(__file__).parents[1] / "serving" / "default.yaml").read_text())
    features = load_feature_set()
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        config = root / f"serving-{seed}.yaml"
        serving["holdout"] = {"fraction": args.fraction, "salt": f"bench-{seed}"}
        config.write_text(yaml.safe_dump(serving, allow_unicode=True))
        out = root / f"weekly-{seed}"
        world = ProgramWorld(root / f"world-{seed}", date.fromisoformat(weeks[0]),
                             n_accounts=args.accounts, seed=seed, months=24,
                             strength=args.strength)  # fmt: skip

        def score(
            as_of: date, out: Path = out, config: Path = config, data: Path = world.out
        ) -> None:
            code = main(["score", str(data), "--as-of", str(as_of), "--out", str(out),
                         "--config", str(config)])  # fmt: skip
            assert code == 0

        truth = run_program(world, [date.fromisoformat(w) for w in weeks], score, out, features,
                            compliance=args.compliance, seed=seed)  # fmt: skip
        data = world.out
        started = time.perf_counter()
        assert main(["measure", str(data), "--out", str(out)]) == 0
        seconds = time.perf_counter() - started
        shutil.rmtree(data)
        pooled = json.loads((out / "measure" / "program.json").read_text())["pooled"]
        true = float(truth["effect"].mean())
        rows.append(
            {
                "seed": seed,
                "true": true,
                "estimate": pooled["effect"],
                "low": pooled["effect_low"],
                "high": pooled["effect_high"],
                "covered": pooled["effect_low"] <= true <= pooled["effect_high"],
                "n_listed": pooled["n_listed"],
                "n_holdout": pooled["n_holdout"],
                "measure_s": seconds,
            }
        )
        r = rows[-1]
        print(
            f"seed {seed:2d}: true {r['true']:+.4f}, estimate {r['estimate']:+.4f}"
            f" [{r['low']:+.4f}, {r['high']:+.4f}] covered={r['covered']}"
            f" listed {r['n_listed']} holdout {r['n_holdout']} measure {seconds:.1f}s",
            flush=True,
        )
    covered = sum(r["covered"] for r in rows)
    errors = [abs(r["estimate"] - r["true"]) / abs(r["true"]) for r in rows if r["true"]]
    print(
        f"{args.accounts} accounts, {len(weeks)} weekly runs, holdout {args.fraction}:"
        f" pooled 95% interval covers the truth in {covered}/{len(rows)} seeds;"
        f" median |estimate - truth| / truth {statistics.median(errors):.2f};"
        f" median interval width {statistics.median(r['high'] - r['low'] for r in rows):.4f};"
        f" median measure {statistics.median(r['measure_s'] for r in rows):.1f} s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--weeks", type=int, default=2, help="scoring runs per quarter")
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--compliance", type=float, default=0.7)
    parser.add_argument("--strength", type=float, default=1.0, help="scale of a touch's effect")
    smoke = {"accounts": 150, "seeds": 1, "weeks": 1, "fraction": 0.5}
    run(_args.parse(parser, "program_measure", smoke))
