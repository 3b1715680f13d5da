"""`expansion measure`: what working the lists does to expansion, from the randomized holdout
of the weekly history, with its always-valid verdict, the control group's checks and the plan;
`--plan` alone says how long an answer will take."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from expansion_scorer.config import FeatureSet, ServingConfig, TrainingConfig
from expansion_scorer.data.sources import DataSource
from expansion_scorer.errors import UserError
from expansion_scorer.outputs import bytes_writer, csv_writer, text_writer, write_outputs
from expansion_scorer.program.history import HISTORY_FILE, randomized_assignments, read_assignments
from expansion_scorer.program.holdout import COMPARED, HOLDOUT
from expansion_scorer.program.measure import (
    BOOTSTRAP,
    COVARIATES,
    FIXED_HORIZON,
    always_valid,
    candidates_per_quarter,
    clean,
    compare_rankings,
    compliance,
    control_checks,
    health,
    plan_from,
    program_chart,
    program_table,
)
from expansion_scorer.program.outcomes import outcomes


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str, allow_nan=False) + "\n"


@dataclass(frozen=True)
class PlanResult:
    plan: dict[str, Any]
    files: list[Path]


def plan_job(
    data_dir: DataSource, out_root: Path, feature_set: FeatureSet, serving: ServingConfig
) -> PlanResult:
    """`expansion measure --plan`: the plan alone, from the matured cohorts when there are any,
    else from the configuration and the data's base rate; writes `measure/plan.json`."""
    history = Path(out_root) / HISTORY_FILE
    per_quarter, runs = (
        candidates_per_quarter(history, serving.holdout.period) if history.is_file() else (0, 0)
    )
    if not runs:
        raise UserError(
            f"{out_root}: no weekly run to plan from ({HISTORY_FILE} has no week); run"
            " `expansion score` into this folder first"
        )
    assigned = read_assignments(history)
    randomized = assigned[assigned["arm"].isin(COMPARED)]
    measured = outcomes(data_dir, feature_set, randomized)[0] if len(randomized) else pd.DataFrame()
    horizon = (
        int(assigned["horizon_days"].max()) if len(assigned) else TrainingConfig().horizon_days
    )
    found = plan_from(measured, data_dir, feature_set, horizon, serving, per_quarter)
    files = write_outputs(Path(out_root) / "measure", {"plan.json": text_writer(_json(found))})
    return PlanResult(plan=found, files=files)


@dataclass(frozen=True)
class MeasureResult:
    table: pd.DataFrame
    summary: dict[str, Any]
    files: list[Path]


def measure_job(
    data_dir: DataSource, out_root: Path, feature_set: FeatureSet, serving: ServingConfig
) -> MeasureResult:
    """Measure the program from the weekly history under `out_root`; write `measure/`."""
    history, randomized = randomized_assignments(
        out_root,
        "run `expansion score` into this folder every week with a holdout first",
        "score weekly with holdout.fraction above 0 (serving config) to build a control group",
    )
    measured, end, book_arr = outcomes(data_dir, feature_set, randomized)
    if measured.empty:
        first = min(pd.to_datetime(randomized["assigned_on"]).dt.date)
        raise UserError(
            f"{history}: no assignment's horizon has closed in the data yet (the data ends"
            f" {end}, the first cohort was drawn {first}); measure again later (`--plan` says"
            " how long the answer will take)"
        )
    level = serving.program.confidence
    checks = control_checks(
        randomized, measured, serving.holdout.fraction, serving.program.max_holdout_touched
    )
    table = program_table(measured, level=level, checks=checks)
    pooled = table.iloc[0]
    n_listed = int(pooled["n_listed"])
    incremental = [float(pooled[c]) * n_listed for c in ("arr_effect", "arr_effect_low",
                                                          "arr_effect_high")]  # fmt: skip
    first_period = randomized["period"].min()
    # the chance of being held out the draw used: the configured one, or with the holdout
    # since turned off, the share the history shows
    drawn_at = serving.holdout.fraction or float((randomized["arm"] == HOLDOUT).mean())
    sequence = always_valid(
        measured,
        drawn_at,
        level,
        planned=float((randomized["period"] == first_period).sum()),
    )
    compared = None
    rankings = _compared(serving, randomized)
    if rankings is not None:
        compared, rows = compare_rankings(
            measured, rankings, drawn_at, level, float((randomized["period"] == first_period).sum())
        )
        table = pd.concat([table, rows], ignore_index=True)
    warnings = [f"the {c['period']} estimate is unreliable: {c['check']}"
                for c in checks.to_dict(orient="records") if not c["reliable"]]  # fmt: skip
    per_quarter, _ = candidates_per_quarter(history, serving.holdout.period)
    horizon = int(randomized["horizon_days"].max())
    found_plan = plan_from(measured, data_dir, feature_set, horizon, serving, per_quarter)
    summary: dict[str, Any] = {
        "data_end": str(end),
        "cohorts_matured": int((table["scope"] == "cohort").sum()),
        "cohorts_pending": int(randomized["assigned_on"].nunique())
        - int((table["scope"] == "cohort").sum()),
        "holdout": serving.holdout.model_dump(mode="json"),
        "pooled": {k: (None if pd.isna(v) else v) for k, v in pooled.to_dict().items()},
        "incremental_expansion_arr": incremental[0] if pooled["note"] == "" else None,
        "incremental_expansion_arr_interval": incremental[1:] if pooled["note"] == "" else None,
        "book_arr_at_start": book_arr,
        "nrr_points": (100 * incremental[0] / book_arr)
        if book_arr and pooled["note"] == ""
        else None,
        "nrr_points_interval": [100 * v / book_arr for v in incremental[1:]]
        if book_arr and pooled["note"] == ""
        else None,
        "compliance": compliance(measured, level=level),
        "interval": f"{level:.0%} {FIXED_HORIZON}, bootstrap over accounts ({BOOTSTRAP}"
        " resamples): valid when read once, not week after week",
        "adjusted_for": list(COVARIATES),
        "always_valid": sequence,
        **({"compare": compared} if compared is not None else {}),
        "reliable": bool(checks["reliable"].all()),
        "checks": checks.to_dict(orient="records"),
        "warnings": warnings,
        "plan": found_plan,
        "health": health(data_dir, feature_set, history, measured, table, serving),
    }
    summary = clean(summary)
    writers = {
        "program.csv": csv_writer(table),
        "program.json": text_writer(_json(summary)),
        "plan.json": text_writer(_json(found_plan)),
        "program.png": bytes_writer(program_chart(table)),
    }
    files = write_outputs(Path(out_root) / "measure", writers)
    return MeasureResult(table=table, summary=summary, files=files)


def _compared(serving: ServingConfig, randomized: pd.DataFrame) -> tuple[str, str] | None:
    """The two rankings to compare: the configured `compare`, or when the weekly run no longer
    interleaves, the two that drafted the most assignments in the history; None when no two
    rankings have drafted any."""
    if serving.compare is not None:
        a, b = serving.compare
        return a, b
    drafted = randomized["drafted_by"].dropna() if "drafted_by" in randomized else pd.Series()
    found = drafted.value_counts()
    if len(found) < 2:
        return None
    return str(found.index[0]), str(found.index[1])


def say_plan(plan: dict[str, Any]) -> None:
    """The plan: candidates a quarter, what is detectable when, and the fraction that detects
    the target."""
    print(
        f"plan: {plan['candidates_per_quarter']:,.0f} candidates a quarter, holdout"
        f" {plan['fraction']:.0%}, outcome variance {plan['variance']:.4f} from"
        f" {plan['variance_from']}"
    )
    detectable = ", ".join(
        f"Q+{q['quarter']} {q['detectable']:.3f}" if q["detectable"] is not None else "-"
        for q in plan["quarters"]
    )
    print(f"  smallest effect detectable (80% power, 5% two-sided): {detectable}")
    print(f"  to detect {plan['detect']:.3f}: {plan['says']}")
    if plan.get("compare"):
        c = plan["compare"]
        print(f"  {' against '.join(c['rankings'])}: {c['says']}")


def say(result: MeasureResult) -> None:
    """What `measure` prints: the pooled effect, adjusted and always-valid, compliance, the plan,
    the warnings and the files."""
    s = result.summary
    p = s["pooled"]
    print(
        f"{s['cohorts_matured']} cohorts matured by {s['data_end']}"
        f" ({s['cohorts_pending']} still inside their horizon)"
    )
    level = f"{s['always_valid']['level']:.0%}"
    if p["note"]:
        print(f"pooled: {p['note']}")
    else:
        print(
            f"pooled: {p['n_listed']:,} listed expanded {p['rate_listed']:.1%},"
            f" {p['n_holdout']:,} held out {p['rate_holdout']:.1%}: effect"
            f" {100 * p['effect']:+.1f} pts ({level} fixed-horizon {100 * p['effect_low']:+.1f}"
            f" to {100 * p['effect_high']:+.1f}); adjusted {100 * p['adjusted_effect']:+.1f} pts"
            f" ({100 * p['adjusted_low']:+.1f} to {100 * p['adjusted_high']:+.1f})"
        )
        low, high = s["incremental_expansion_arr_interval"]
        print(
            f"incremental expansion ARR {s['incremental_expansion_arr']:,.0f}"
            f" ({level} {low:,.0f} to {high:,.0f})"
            + (f"; NRR {s['nrr_points']:+.2f} pts" if s["nrr_points"] is not None else "")
        )
    a = s["always_valid"]
    print(
        f"always-valid {level}: {100 * a['low']:+.1f} to {100 * a['high']:+.1f} pts over"
        f" {len(a['looks'])} looks: {a['verdict']}"
    )
    if s.get("compare"):
        print(f"rankings: {s['compare']['says']}")
    c = s["compliance"]
    if c["touches"]:
        print(
            f"touched within {c['window_days']} days: listed {c['listed_touched']:.0%},"
            f" held out {c['holdout_touched']:.0%}"
            + (
                f"; effect of a touch on compliers {100 * c['complier_effect']:+.1f} pts"
                f" ({level} {100 * c['complier_effect_low']:+.1f} to"
                f" {100 * c['complier_effect_high']:+.1f})"
                if "complier_effect" in c
                else ""
            )
        )
    say_plan(s["plan"])
    for warning in s["warnings"]:
        print(f"warning: {warning}")
    for path in result.files:
        print(f"  {path}")
