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
        [--tracking-uri URI] [--out DIR] [--keep] [--smoke]

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

import numpy as np
import pandas as pd
import yaml

from expansion_scorer.cli import main
from expansion_scorer.data.synthetic import ProgramWorld, generate_world
from expansion_scorer.program import measure as ms
from expansion_scorer.program import statistics as st
from expansion_scorer.program.history import randomized_assignments
from expansion_scorer.program.holdout import HOLDOUT, LISTED
from expansion_scorer.program.outcomes import outcomes
from expansion_scorer.program.simulation import run_program
from expansion_scorer.settings import load_feature_set, load_settings

import _args

HERE = Path(__file__).resolve()  # before the run moves into its folder


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
        config = ["--config", str(_args.smoke_training(root))] if args.smoke else []
        assert main(["train", str(trained_on), *config]) == 0
    weeks = _weeks(date(2024, 4, 1), args.weeks)
    serving = yaml.safe_load((HERE.parents[1] / "serving" / "default.yaml").read_text())
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
        if args.keep:  # each matured assignment: covariates, outcome and both potential ones
            _, randomized = randomized_assignments(out, "", "")
            matured = outcomes(data, features, randomized)[0].merge(
                truth.drop(columns=["period", "arm"]), on=["account_id", "assigned_on"]
            )
            matured.to_parquet(root / f"matured-{seed}.parquet", index=False)
        shutil.rmtree(data)
        summary = json.loads((out / "measure" / "program.json").read_text())
        rows.append(_result(seed, summary, float(truth["effect"].mean()), seconds))
    _report(rows, f"{args.accounts} accounts, {len(weeks)} weekly runs, holdout {args.fraction},"
                  f" strength {args.strength}")  # fmt: skip
    return rows


def _result(seed: int, summary: dict[str, Any], true: float, seconds: float) -> dict[str, Any]:
    """One seed's figures from what `measure` wrote (or `_remeasure` recomputed); printed."""
    pooled, always = summary["pooled"], summary["always_valid"]
    r = {
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
    return r


def _report(rows: list[dict[str, Any]], what: str) -> None:
    widths = [r["high"] - r["low"] for r in rows]
    reduction = [1 - (r["adjusted_high"] - r["adjusted_low"]) / w
                 for r, w in zip(rows, widths, strict=True)]  # fmt: skip
    errors = [abs(r["estimate"] - r["true"]) / abs(r["true"]) for r in rows if r["true"]]
    print(
        f"{what}: 95% interval covers the truth in {sum(r['covered'] for r in rows)}"
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


def _kept(folders: list[Path]) -> list[tuple[Path, int]]:
    """Each kept seed (run folder, seed) in the folders given, in order."""
    found = [(p.parent, int(p.stem.split("-")[1])) for f in folders
             for p in Path(f).glob("**/matured-*.parquet")]  # fmt: skip
    return sorted(found, key=lambda k: (k[1], str(k[0])))


def _remeasure(run_dir: Path, seed: int) -> tuple[dict[str, Any], pd.DataFrame, Any]:
    """What `expansion measure` says of a kept seed, recomputed with the code as it is now from
    its matured assignments and its weekly history (the world itself is gone): the summary's
    pooled row, always-valid interval, checks and plan."""
    serving = load_settings(training=False, serving=run_dir / f"serving-{seed}.yaml").serving
    assert serving is not None
    matured = pd.read_parquet(run_dir / f"matured-{seed}.parquet")
    history, randomized = randomized_assignments(run_dir / f"weekly-{seed}", "", "")
    fraction, level = serving.holdout.fraction, serving.program.confidence
    checks = ms.control_checks(randomized, matured, fraction, serving.program.max_holdout_touched)
    table = ms.program_table(matured, level=level, checks=checks)
    first = randomized["period"].min()
    always = ms.always_valid(matured, fraction, level,
                             planned=float((randomized["period"] == first).sum()))  # fmt: skip
    per_quarter, _ = ms.candidates_per_quarter(history, serving.holdout.period)
    horizon = int(randomized["horizon_days"].max())
    plan = ms.plan_from(matured, run_dir, load_feature_set(), horizon, serving, per_quarter)
    pooled = ms.clean(table.iloc[0].to_dict())
    summary = {"pooled": pooled, "always_valid": always, "plan": plan,
               "reliable": bool(checks["reliable"].all())}  # fmt: skip
    return summary, matured, serving


def remeasure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """`--kept`: every kept seed measured again with the current code."""
    rows = []
    for run_dir, seed in _kept(args.kept):
        started = time.perf_counter()
        summary, matured, _ = _remeasure(run_dir, seed)
        seconds = time.perf_counter() - started
        rows.append(_result(seed, summary, float(matured["effect"].mean()), seconds))
    _report(rows, f"{len(rows)} kept seeds measured again ({', '.join(map(str, args.kept))})")
    if args.redraws:
        redraw_check(args)
    if args.plan_check:
        plan_check(args)
    return rows


def redraw_check(args: argparse.Namespace) -> None:
    """`--redraws N`: on each kept seed, the holdout drawn again N times at its fraction, each
    assignment's outcome the one its world gives in the arm drawn (both are known: the world was
    replayed with every arm swapped), and the pooled row measured as `measure` does (1,000
    resamples): how often each 95% interval covers the kept seed's true effect, how often the
    adjusted one is narrower, and how often the always-valid interval excludes zero at some
    look. The world stays the one the first draw made (who was a candidate in the second
    quarter depends on the first quarter's touches), so this checks the statistics over draws,
    not the loop over worlds."""
    rng = np.random.default_rng(1)
    covered = adjusted_covered = narrower = declared = total = 0
    reductions = []
    for run_dir, seed in _kept(args.kept):
        serving = load_settings(training=False, serving=run_dir / f"serving-{seed}.yaml").serving
        assert serving is not None
        fraction, level = serving.holdout.fraction, serving.program.confidence
        matured = pd.read_parquet(run_dir / f"matured-{seed}.parquet")
        rows = matured[matured["arm"].isin([LISTED, HOLDOUT])].reset_index(drop=True)
        true = float(rows["effect"].mean())
        with_, without = (rows[c].to_numpy("int32") for c in ("expanded_with", "expanded_without"))
        first = rows["period"].min()
        for _ in range(args.redraws):
            treated = rng.random(len(rows)) >= fraction
            drawn = rows.assign(expanded=np.where(treated, with_, without),
                                arm=np.where(treated, LISTED, HOLDOUT))  # fmt: skip
            r = ms._row("pooled", "all", drawn, int(rng.integers(1 << 30)), level)
            covered += r["effect_low"] <= true <= r["effect_high"]
            adjusted_covered += r["adjusted_low"] <= true <= r["adjusted_high"]
            width = r["effect_high"] - r["effect_low"]
            reductions.append(1 - (r["adjusted_high"] - r["adjusted_low"]) / width)
            narrower += reductions[-1] > 0
            always = ms.always_valid(drawn, fraction, level,
                                     planned=float((drawn["period"] == first).sum()))  # fmt: skip
            declared += any(k["low"] > 0 or k["high"] < 0 for k in always["looks"])
            total += 1
    print(
        f"{total} draws over {len(_kept(args.kept))} kept seeds: 95% interval covers the truth"
        f" in {covered}/{total} unadjusted, {adjusted_covered}/{total} adjusted; adjusted"
        f" narrower in {narrower}/{total} (median reduction"
        f" {100 * statistics.median(reductions):.1f}%, range {100 * min(reductions):.1f}% to"
        f" {100 * max(reductions):.1f}%); always-valid excluded zero at some look in"
        f" {declared}/{total}",
        flush=True,
    )


def _detected(y: np.ndarray, treated: np.ndarray, frame: pd.DataFrame, reps: int) -> bool:
    """Whether `measure`'s adjusted fixed-horizon 95% interval excludes zero."""
    rows = frame.assign(expanded=y, arm=np.where(treated, LISTED, HOLDOUT))
    wanted = {"adjusted": lambda d: d["expanded:adjusted"]}
    _, low, high = ms.bootstrap(rows, ["expanded"], wanted, reps=reps, adjust=("expanded",),
                                normal=("adjusted",))["adjusted"]  # fmt: skip
    return bool(low > 0 or high < 0)


def plan_check(args: argparse.Namespace) -> None:
    """`--plan-check`: does the plan's detectable effect at two quarters match the effect that
    is detected 80% of the time at that size? Each kept seed's plan is made as `--plan` makes it
    before anything has matured, at two quarters of the candidates its history shows, but with
    the variance its matured assignments give. The simulation keeps each seed's accounts,
    covariates and outcomes without the program (`expanded_without`, from the world replayed with
    every arm swapped), draws the holdout again at the seed's fraction, and adds an effect of a
    known size: a listed account that would not have expanded does with probability delta / (1
    - its arm's rate without the program). A replicate detects the effect when `measure`'s
    adjusted fixed-horizon interval (its bootstrap over accounts, `--check-reps` resamples)
    excludes zero. The smallest delta of the grid detected in 80% of replicates is compared
    with the median plan."""
    rng = np.random.default_rng(0)
    kept = _kept(args.kept)
    frames, plans = [], []
    for run_dir, seed in kept:
        summary, matured, serving = _remeasure(run_dir, seed)
        plan = summary["plan"]
        fraction = serving.holdout.fraction
        two = st.detectable(plan["variance"], 2 * plan["candidates_per_quarter"], fraction)
        rows = matured[matured["arm"].isin([LISTED, HOLDOUT])].reset_index(drop=True)
        compared = len(rows)
        plans.append(two)
        frames.append((rows, fraction))
        print(f"seed {seed}: plan at two quarters {two:.4f} ({plan['candidates_per_quarter']:.0f}"
              f" candidates a quarter, {compared} compared assignments matured in two; variance"
              f" {plan['variance']:.4f} from {plan['variance_from']})", flush=True)  # fmt: skip
    planned = statistics.median(plans)
    per_seed = max(1, args.check_replicates // len(frames))
    rates = {}
    for delta in sorted(args.check_effects):
        hits = []
        for rows, fraction in frames:
            y0 = rows["expanded_without"].to_numpy("float64")
            for _ in range(per_seed):
                treated = rng.random(len(rows)) >= fraction
                base = y0[treated].mean()
                lift = rng.random(len(rows)) < delta / max(1 - base, 1e-9)
                y = np.where(treated & (y0 == 0) & lift, 1.0, y0)
                hits.append(_detected(y, treated, rows, args.check_reps))
        rates[delta] = float(np.mean(hits))
        print(f"effect {delta:.3f}: detected in {100 * rates[delta]:.0f}% of {len(hits)}"
              " replicates", flush=True)  # fmt: skip
    found = [d for d, r in sorted(rates.items()) if r >= st.POWER]
    smallest = found[0] if found else float("nan")
    print(
        f"plan at two quarters (median over {len(plans)} seeds) {planned:.4f}; smallest effect"
        f" of the grid detected in 80% of replicates {smallest:.4f}; plan / simulation"
        f" {planned / smallest:.2f}"
    )


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
    parser.add_argument(
        "--keep",
        action="store_true",
        help="write each seed's matured"
        " assignments (covariates, outcome, both potential outcomes) to"
        " matured-<seed>.parquet in the run's folder",
    )
    parser.add_argument(
        "--kept",
        type=Path,
        nargs="+",
        help="no loop: measure the seeds kept"
        " (--keep) in these folders again with the current code",
    )
    parser.add_argument(
        "--plan-check",
        action="store_true",
        help="with --kept: the plan's detectable effect at two quarters against a simulation's",
    )
    parser.add_argument(
        "--redraws", type=int, default=0, help="with --kept: draws of the holdout per kept seed"
    )
    parser.add_argument(
        "--check-effects",
        type=float,
        nargs="+",
        default=[0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.10, 0.12],
    )
    parser.add_argument(
        "--check-replicates",
        type=int,
        default=200,
        help="replicates per effect, spread over the kept seeds",
    )
    parser.add_argument(
        "--check-reps", type=int, default=200, help="bootstrap resamples per replicate"
    )
    parser.add_argument("--smoke", action="store_true", help="one seed, a tiny world: seconds")
    parser.add_argument("--out", type=Path, help="where the run's folder goes (default: temp)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.accounts, args.seeds, args.weeks, args.fraction = 150, 1, 1, 0.5
    return args


if __name__ == "__main__":
    parsed = parse()
    remeasure(parsed) if parsed.kept else run(parsed)
