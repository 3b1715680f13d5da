"""`expansion monitor`: drift since training, outcomes of matured lists, and when to retrain."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from expansion_scorer.serving.monitor import bins_of, psi, shares
from tests.helpers import run_cli

WEEKS = ("2024-09-01", "2024-09-08")


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    return stdout


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shifted_one() -> None:
    rng = np.random.default_rng(3)
    train = rng.normal(size=5000)
    ref = bins_of(train, 10)

    same = psi(ref["expected"], shares(rng.normal(size=5000), ref["edges"]))
    shifted = psi(ref["expected"], shares(rng.normal(loc=1.0, size=5000), ref["edges"]))

    assert same < 0.02
    assert shifted > 0.25
    # missing values are a bin of their own: losing a feature is drift
    gone = psi(ref["expected"], shares(np.full(5000, np.nan), ref["edges"]))
    assert gone > 1


def test_monitor_reports_drift_and_the_outcomes_of_matured_runs(
    small_world_dir: Path, champion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "weekly"
    for week in WEEKS:
        _run(["score", str(small_world_dir), "--as-of", week, "--out", str(out)], capsys)

    stdout = _run(["monitor", str(small_world_dir), "--out", str(out)], capsys)

    drift = pd.read_csv(out / "monitor" / "drift.csv")
    outcomes = pd.read_csv(out / "monitor" / "outcomes.csv")
    summary = json.loads((out / "monitor" / "monitor.json").read_text(encoding="utf-8"))
    assert "score" in set(drift["column"]) and "seat_utilisation" in set(drift["column"])
    assert (drift["psi"] >= 0).all()
    assert set(drift["status"]) <= {"ok", "warn", "retrain"}
    # both weeks are more than a horizon before the end of the data: their outcomes are known
    assert outcomes["as_of"].tolist() == list(WEEKS)
    assert outcomes["precision_at_k"].between(0, 1).all()
    assert (outcomes["lift_at_k"] > 0).all()
    assert summary["matured_runs"] == 2 and summary["promised_lift_at_capacity"] > 0
    assert "outcomes of matured runs" in stdout and f"{WEEKS[1]}: top" in stdout
    assert ("RETRAIN recommended" in stdout) == summary["retrain"]


def test_a_world_that_drifted_warns_in_the_weekly_run_and_recommends_retraining(
    small_world_dir: Path, champion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    shutil.copytree(small_world_dir, data)
    usage = pd.read_parquet(data / "usage_events.parquet")
    late = pd.to_datetime(usage["timestamp"]) >= pd.Timestamp("2024-08-04")
    usage.loc[late, "quantity"] = usage.loc[late, "quantity"] * 25  # a tracking change
    usage.to_parquet(data / "usage_events.parquet", index=False)
    out = tmp_path / "weekly"

    weekly = _run(["score", str(data), "--as-of", WEEKS[0], "--out", str(out)], capsys)
    stdout = _run(["monitor", str(data), "--out", str(out)], capsys)

    assert "warning: drift since training: PSI" in weekly
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["drift"]["psi"]["events_per_user_28d"] >= 0.25
    assert "RETRAIN recommended: PSI at or above 0.25" in stdout
    assert "events_per_user_28d" in stdout


def test_monitor_without_a_history_says_what_to_run_first(
    small_world_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        ["monitor", str(small_world_dir), "--out", str(tmp_path / "none")], capsys
    )

    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "expansion score" in err


def test_the_reference_training_logs_is_the_one_the_data_gives(
    world_dir: Path, champion: Path
) -> None:
    from expansion_scorer.config import MonitorConfig
    from expansion_scorer.data.loading import open_world
    from expansion_scorer.features.catalogue import for_model
    from expansion_scorer.model.loading import load_versioned
    from expansion_scorer.serving.monitor import logged_reference, model_record, reference
    from expansion_scorer.settings import load_feature_set
    from expansion_scorer.tracking import ModelRef

    registered = ModelRef.from_label("expansion-propensity v1")
    assert registered is not None
    record = model_record(registered)
    assert record is not None
    model, _ = load_versioned(registered.uri)
    cfg = MonitorConfig()

    logged = logged_reference(record, record.fit_dates, cfg)
    own = for_model(load_feature_set(), model.affinity, model.plan_order)
    computed = reference(open_world(world_dir), model, own, record.fit_dates, cfg)

    assert logged is not None and logged["columns"]
    assert json.loads(json.dumps(computed)) == logged
    # a run as of a date inside the fit months reads its months' reference from training too
    seen = record.fit_dates[:5]
    earlier = logged_reference(record, seen, cfg)
    assert earlier is not None and earlier["dates"] == [str(d) for d in seen]
    assert (
        json.loads(json.dumps(reference(open_world(world_dir), model, own, seen, cfg))) == earlier
    )
    assert earlier["rows"] < logged["rows"]
    # a reference of other months, or other settings, is not taken for it
    assert logged_reference(record, record.fit_dates[1:], cfg) is None
    assert logged_reference(record, record.fit_dates[1:6], cfg) is None
    assert logged_reference(record, record.fit_dates, MonitorConfig(bins=cfg.bins + 1)) is None
    assert logged_reference(record, seen, MonitorConfig(bins=cfg.bins + 1)) is None
