"""The demo's program: two quarters of weekly runs with the configured holdout on a world whose
accounts answer what CSMs do, then `expansion measure`, then the last weekly run, whose report says
whether working the list made accounts expand, how sure that is, whether the control group held,
and when a clearer answer will come.

The world is a `ProgramWorld`: the demo trains on its files up to the program's start, and from
then on it advances a week at a time with the touches CSMs make on what they were shown
(`serving.simulation.run_program`), which also replays it with the arms swapped, so the demo can
print the effect the program truly had beside the one measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

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
    summary: dict[str, object]
    """What `expansion measure` wrote to `program.json`."""
    as_of: date
    """The last weekly run, whose report shows the measurement."""


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
    from expansion_scorer.serving.job import score_job
    from expansion_scorer.serving.measure import measure_job
    from expansion_scorer.serving.simulation import run_program

    def score(as_of: date) -> None:
        say(f"    weekly run as of {as_of}")
        score_job(world.out, as_of, out, feature_set, serving, model_uri=model_uri,
                  csm_files=True)  # fmt: skip

    truth = run_program(world, WEEKS, score, out, feature_set, compliance=COMPLIANCE, seed=seed)
    measured = measure_job(world.out, out, feature_set, serving)
    last = world.end - timedelta(days=1)
    first = date(last.year, last.month, 1)
    as_of = first + timedelta(days=(7 - first.weekday()) % 7)
    score(as_of)
    return DemoProgram(out, float(truth["effect"].mean()), measured.summary, as_of)
