"""Benchmark: does `expansion measure` find a program's true effect, and how fast?

Trains the champion through the CLI, into a throw-away SQLite MLflow store, on a generated world;
then per seed runs the real loop on a world of its own that answers the program
(`data.synthetic.ProgramWorld`, seeded by the seed): weekly scoring runs with a holdout salted by
the seed (two quarters, `--weeks` runs each), CSMs touching what they were shown with
`--compliance`, the world advancing a week at a time with those touches
(`program.simulation.run_program`, which also knows each account's outcome in both arms), and
`expansion measure`. Prints, over seeds, how often the pooled 95% intervals (unadjusted and
adjusted for what the draw knew) cover the true intent-to-treat effect, how much narrower the
adjusted one is, how often the always-valid interval excluded zero at any look (one look per
matured cohort), and the plan's detectable effect at two quarters.

    .venv/bin/python bench/program_measure.py [--accounts 3000] [--seeds 20] [--weeks 2]
        [--first-seed 0] [--fraction 0.1] [--compliance 0.7] [--strength 1]
        [--tracking-uri URI] [--out DIR] [--smoke]

`--tracking-uri` reads the champion from a store that holds one instead of training it;
`--smoke` runs one seed on a tiny world, in seconds, so that the benchmark never stops working
unseen (the test suite runs it).
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
from typing import Any

import yaml

from expansion_scorer.cli import main
from expansion_scorer.data.synthetic import ProgramWorld, generate_world
from expansion_scorer.program.simulation import run_program
from expansion_scorer.settings import load_feature_set


def _weeks(first: date, per_quarter: int) -> list[str]:
    """`per_quarter` weekly dates (Mondays, four weeks apart) in each of two quarters."""
    out = []
    for quarter_start in (first, date(first.year + (first.month + 2) // 12,
                                       (first.month + 2) % 12 + 1, 1)):  # fmt: skip
        monday = quarter_start + timedelta(days=(7 - quarter_start.weekday()) % 7)
        out += [str(monday + timedelta(weeks=4 * k)) for k in range(per_quarter)]
    return out


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="bench-program-", dir=args.out))
    os.chdir(root)
    if args.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    else:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
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
        assert main(["measure", str(data), "--out", str(out), "--config", str(config)]) == 0
        seconds = time.perf_counter() - started
        shutil.rmtree(data)
        summary = json.loads((out / "measure" / "program.json").read_text())
        pooled, always = summary["pooled"], summary["always_valid"]
        true = float(truth["effect"].mean())
        rows.append(
            {
                "seed": seed,
                "true": true,
                "estimate": pooled["effect"],
                "low": pooled["effect_low"],
                "high": pooled["effect_high"],
                "covered": pooled["effect_low"] <= true <= pooled["effect_high"],
                "adjusted": pooled["adjusted_effect"],
                "adjusted_low": pooled["adjusted_low"],
                "adjusted_high": pooled["adjusted_high"],
                "adjusted_covered": pooled["adjusted_low"] <= true <= pooled["adjusted_high"],
                "always_low": always["low"],
                "always_high": always["high"],
                "declared": any(k["low"] > 0 or k["high"] < 0 for k in always["looks"]),
                "looks": len(always["looks"]),
                "verdict": always["verdict"],
                "plan_two_quarters": summary["plan"]["quarters"][1]["detectable"],
                "reliable": summary["reliable"],
                "n_listed": pooled["n_listed"],
                "n_holdout": pooled["n_holdout"],
                "measure_s": seconds,
            }
        )
        r = rows[-1]
        print(
            f"seed {seed:2d}: true {r['true']:+.4f}, estimate {r['estimate']:+.4f}"
            f" [{r['low']:+.4f}, {r['high']:+.4f}] covered={r['covered']}; adjusted"
            f" {r['adjusted']:+.4f} [{r['adjusted_low']:+.4f}, {r['adjusted_high']:+.4f}]"
            f" covered={r['adjusted_covered']}; always-valid [{r['always_low']:+.4f},"
            f" {r['always_high']:+.4f}] over {r['looks']} looks, declared={r['declared']}"
            f" ({r['verdict']}); plan at two quarters {r['plan_two_quarters']:.4f};"
            f" reliable={r['reliable']}; listed {r['n_listed']} holdout {r['n_holdout']}"
            f" measure {seconds:.1f}s",
            flush=True,
        )
    widths = [r["high"] - r["low"] for r in rows]
    reduction = [1 - (r["adjusted_high"] - r["adjusted_low"]) / w
                 for r, w in zip(rows, widths, strict=True)]  # fmt: skip
    errors = [abs(r["estimate"] - r["true"]) / abs(r["true"]) for r in rows if r["true"]]
    print(
        f"{args.accounts} accounts, {len(weeks)} weekly runs, holdout {args.fraction}, strength"
        f" {args.strength}: 95% interval covers the truth in {sum(r['covered'] for r in rows)}"
        f"/{len(rows)} seeds unadjusted, {sum(r['adjusted_covered'] for r in rows)}/{len(rows)}"
        f" adjusted; adjusted narrower in {sum(x > 0 for x in reduction)}/{len(rows)} (median"
        f" width {statistics.median(widths):.4f}, median reduction"
        f" {100 * statistics.median(reduction):.1f}%, range {100 * min(reduction):.1f}% to"
        f" {100 * max(reduction):.1f}%); always-valid excluded zero at some look in"
        f" {sum(r['declared'] for r in rows)}/{len(rows)}; median |estimate - truth| / truth"
        f" {statistics.median(errors) if errors else float('nan'):.2f}; median plan at two"
        f" quarters {statistics.median(r['plan_two_quarters'] for r in rows):.4f}; median measure"
        f" {statistics.median(r['measure_s'] for r in rows):.1f} s"
    )
    return rows


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--weeks", type=int, default=2, help="scoring runs per quarter")
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--compliance", type=float, default=0.7)
    parser.add_argument("--strength", type=float, default=1.0, help="scale of a touch's effect")
    parser.add_argument("--tracking-uri", help="an MLflow store holding the champion: no training")
    parser.add_argument("--smoke", action="store_true", help="one seed, a tiny world: seconds")
    parser.add_argument("--out", type=Path, help="where the run's folder goes (default: temp)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.accounts, args.seeds, args.weeks, args.fraction = 150, 1, 1, 0.5
    return args


if __name__ == "__main__":
    run(parse())
