"""`expansion demo`: a company generated, validated, trained on, and then two quarters of the
program run on it, measured, and reported.

The world is a `ProgramWorld`, written up to the program's start: the model trains on the
history before it (`--train-until` the first weekly run, so no week is scored by a model that
read its future). From then on the world advances a week at a time with the touches CSMs make
on what they were shown (`program.simulation.run_program`): four weekly runs with the
configured holdout, then `expansion measure`, then the weekly run as of the first Monday of the
data's last month, whose report says whether working the list made accounts expand, how sure
that is, whether the control group held, and when a clearer answer will come. The loop also
replays the world with the arms swapped, so the demo prints the effect the program truly had
beside the one measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from expansion_scorer.config import FeatureSet, ServingConfig
from expansion_scorer.data.synthetic import ProgramWorld

PROGRAM_START = date(2024, 10, 7)
"""A Monday 21 months into the demo world (which starts 2023-01-01 and runs 30 months): the
history before it trains the model, the months after it leave room for two quarters of cohorts
to mature within a 90-day horizon."""
WEEKS = (date(2024, 10, 7), date(2024, 11, 4), date(2025, 1, 6), date(2025, 2, 3))
"""Two weekly runs in each of two quarters, four weeks apart."""
COMPLIANCE = 0.7
"""The share of shown accounts a CSM touches."""


@dataclass(frozen=True)
class DemoProgram:
    out: Path
    """The weekly output root: the history, `measure/` and the last run's report."""
    true_effect: float
    """The intent-to-treat effect the world says the program had on the compared assignments."""
    summary: dict[str, Any]
    """What `expansion measure` wrote to `program.json`."""
    as_of: date
    """The last weekly run, whose report shows the measurement."""


@dataclass(frozen=True)
class DemoResult:
    program: DemoProgram
    seconds: float


def program_world(data: Path, n_accounts: int, seed: int) -> ProgramWorld:
    """The demo's world, written up to the program's start."""
    return ProgramWorld(data, PROGRAM_START, n_accounts=n_accounts, seed=seed)


def run_demo_program(
    world: ProgramWorld,
    out: Path,
    feature_set: FeatureSet,
    serving: ServingConfig,
    model_uri: str,
    seed: int = 0,
    say: Callable[[str], None] = print,
) -> DemoProgram:
    """The weekly runs with their holdout, CSMs' touches and the world's answer; the measurement;
    and the last weekly run (the first Monday of the world's last month)."""
    from expansion_scorer.jobs.measure import measure_job
    from expansion_scorer.jobs.score import score_job
    from expansion_scorer.program.simulation import run_program

    def score(as_of: date) -> None:
        say(f"    weekly run as of {as_of}")
        score_job(world.out, as_of, out, feature_set, serving, model_uri=model_uri,
                  csm_files=True)  # fmt: skip

    truth = run_program(world, WEEKS, score, out, feature_set, compliance=COMPLIANCE, seed=seed)
    measured = measure_job(world.out, out, feature_set, serving)
    last = world.end - timedelta(days=1)
    first = date(last.year, last.month, 1)
    as_of = first + timedelta(days=(7 - first.weekday()) % 7)
    say(f"5/5 measured to {measured.summary['data_end']}, then the weekly run as of {as_of}")
    score(as_of)
    return DemoProgram(out, float(truth["effect"].mean()), measured.summary, as_of)


def demo_job(
    out: Path, n_accounts: int, seed: int, say: Callable[[str], None] = print
) -> DemoResult:
    """Generate, validate, train, run the program two quarters, measure and report, saying each
    step as it starts."""
    from expansion_scorer.jobs.train import say as say_training
    from expansion_scorer.jobs.train import train_job
    from expansion_scorer.settings import load_settings
    from expansion_scorer.training.dataset import load_world

    started = time.perf_counter()
    settings = load_settings()
    assert settings.training is not None and settings.serving is not None
    data = out / "data"
    say(f"1/5 generating {n_accounts:,} accounts into {data}, up to {WEEKS[0]}")
    world = program_world(data, n_accounts, seed)
    say("2/5 validating")
    for warning in load_world(data, cutoff=None).warnings:
        say(f"    warning: {warning}")
    say(f"3/5 training on the history before {WEEKS[0]}")
    trained = train_job(data, settings.training, settings.features, until=WEEKS[0])
    say_training(trained)
    say(
        f"4/5 the program: {len(WEEKS)} weekly runs from {WEEKS[0]} with"
        f" {settings.serving.holdout.fraction:.0%} of candidates held out, CSMs touching what"
        " they are shown, the world answering"
    )
    program = run_demo_program(world, out / "scores", settings.features, settings.serving,
                               settings.champion(), seed, say=say)  # fmt: skip
    return DemoResult(program, time.perf_counter() - started)


def say(result: DemoResult) -> None:
    """What `demo` prints once the program has been measured: the verdict beside the truth, and
    the report to open."""
    demo = result.program
    always = demo.summary["always_valid"]
    print(
        f"    always-valid {always['level']:.0%}: {100 * always['low']:+.1f} to"
        f" {100 * always['high']:+.1f} pts, {always['verdict']}; the world's true effect"
        f" {100 * demo.true_effect:+.1f} pts"
    )
    print(f"done in {result.seconds:.0f}s; open {demo.out / 'report.html'}")
