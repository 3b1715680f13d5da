"""`expansion monitor`: drift of the latest weekly run against the model's training months, and
the outcomes of the runs whose horizon has closed; whether to retrain, and why."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd

from expansion_scorer.config import Engine, FeatureSet, MonitorConfig, ServingConfig
from expansion_scorer.data.sources import DataSource
from expansion_scorer.data.validation import validate
from expansion_scorer.errors import UserError
from expansion_scorer.features.catalogue import for_model
from expansion_scorer.features.frame import open_data
from expansion_scorer.model.loading import load_versioned
from expansion_scorer.outputs import csv_writer, locked, recover, text_writer, write_outputs
from expansion_scorer.program.history import HISTORY_FILE, apply_stage, read_features, read_runs
from expansion_scorer.serving.monitor import (
    drift_table,
    matured_outcomes,
    model_record,
    recommendation,
    training_reference,
)
from expansion_scorer.tracking import ModelRef


@dataclass(frozen=True)
class MonitorResult:
    as_of: date
    model_version: str
    drift: pd.DataFrame
    outcomes: pd.DataFrame
    promised_lift: float
    retrain: bool
    why: list[str]
    files: list[Path]


def monitor_job(
    data_dir: DataSource,
    out_root: Path,
    feature_set: FeatureSet,
    serving: ServingConfig,
    engine: Engine = Engine.DUCKDB,
) -> MonitorResult:
    """Drift of the latest run against training, and outcomes of the runs that have matured;
    with `Engine.SPARK`, Spark computes the training months' features and the outcomes."""
    out_root = Path(out_root)
    history = out_root / HISTORY_FILE
    if not history.is_file():
        raise UserError(
            f"{out_root}: no {HISTORY_FILE}; run `expansion score DATA --as-of DATE --out"
            f" {out_root}` first"
        )
    with locked(out_root):
        recover(out_root, apply_stage(history))
        runs = read_runs(history)
    world = open_data(data_dir, engine)
    validate(world)
    latest = runs.sort_values(["as_of", "model_version"]).iloc[-1]
    as_of = pd.Timestamp(latest["as_of"]).date()
    version = str(latest["model_version"])
    registered = ModelRef.from_label(version)
    record = None if registered is None else model_record(registered)
    if registered is None or record is None:
        raise UserError(f"model {version}: not a registered version with a training record")
    model, _ = load_versioned(registered.uri)
    cfg = serving.monitor
    own = for_model(feature_set, model.affinity, model.plan_order)
    ref = training_reference(world, model, own, record, cfg)
    current = read_features(history, as_of, version)
    week = runs[
        (pd.to_datetime(runs["as_of"]).dt.date == as_of) & (runs["model_version"] == version)
    ]
    current = current.merge(week[["account_id", "score"]], on="account_id", how="right")
    drift = drift_table(ref, current, cfg)
    outcomes = matured_outcomes(world, runs, feature_set, model.horizon_days, record.capacity_k)
    retrain, why = recommendation(drift, outcomes, record, cfg)
    summary = {
        "latest_run": str(as_of),
        "model": version,
        "reference_months": ref["dates"],
        "promised_lift_at_capacity": record.promised_lift,
        "promised_precision_at_capacity": record.promised_precision,
        "capacity_k": record.capacity_k,
        "matured_runs": len(outcomes),
        "retrain": retrain,
        "why": why,
    }
    files = write_outputs(
        out_root / "monitor",
        {
            "drift.csv": csv_writer(drift),
            "outcomes.csv": csv_writer(outcomes),
            "monitor.json": text_writer(json.dumps(summary, indent=2, default=str) + "\n"),
        },
    )
    return MonitorResult(as_of, version, drift, outcomes, record.promised_lift, retrain, why, files)


def say(result: MonitorResult, cfg: MonitorConfig) -> None:
    """What `monitor` prints: the most drifted columns, matured outcomes and the recommendation."""
    print(
        f"drift of the run of {result.as_of} ({result.model_version}) against its training"
        f" months, PSI (warn at {cfg.psi_warn}, retrain at {cfg.psi_retrain}):"
    )
    for r in result.drift.head(8).itertuples():
        print(f"  {r.column:<28} {r.psi:7.3f}  {r.status}")
    flagged = int((result.drift["status"] != "ok").sum())
    print(f"  ... {len(result.drift)} columns, {flagged} at or above {cfg.psi_warn}")
    if result.outcomes.empty:
        print("outcomes: no run has reached the end of its horizon in the data yet")
    else:
        print(f"outcomes of matured runs (the backtest promised lift {result.promised_lift:.2f}):")
        for r in result.outcomes.itertuples():
            print(
                f"  {r.as_of}: top {r.top_k} precision {r.precision_at_k:.1%} lift"
                f" {r.lift_at_k:.2f}; CSM lists ({r.on_lists}) precision"
                f" {r.precision_on_lists:.1%} lift {r.lift_on_lists:.2f};"
                f" base rate {r.base_rate:.1%}"
            )
    if result.retrain:
        print("RETRAIN recommended: " + "; ".join(result.why))
    else:
        print("no retraining needed: drift and outcomes are within their thresholds")
    for path in result.files:
        print(f"  {path}")
