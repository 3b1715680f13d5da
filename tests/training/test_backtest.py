"""The backtest's shape against the history: kept when it fits, shrunk when it does not, refused
below the minimum. The plans are checked on month starts; the console, the run and the model
card on a generated world trained with a real SQLite MLflow store."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import mlflow
import pytest

from expansion_scorer.config import TrainingConfig, load_training_config
from expansion_scorer.errors import UserError
from expansion_scorer.features.snapshots import month_starts
from expansion_scorer.tracking import configure
from expansion_scorer.training.backtest import (
    Shape,
    months_needed,
    plan_backtest,
    plan_folds,
    shape_of,
    shrink_steps,
    with_shape,
)
from expansion_scorer.training.train import purged_blocks
from tests.helpers import run_cli

FAST = """
capacity: {accounts_per_csm_per_week: 4, csms: 5}
lightgbm: {learning_rate: 0.1, n_estimators: 300}
learning: {candidates: [single]}
"""
"""The default backtest (3 folds over 6 test months, 3 calibration months), learning faster."""


def months(n: int, first: date = date(2023, 4, 1)) -> list[date]:
    return month_starts(first, first + timedelta(days=31 * n))[:n]


def config(**backtest: object) -> TrainingConfig:
    """The default config, deciding on later calibration months (the shapes tested here)."""
    cfg = load_training_config()
    return TrainingConfig.model_validate(
        {
            **cfg.model_dump(),
            "backtest": {**cfg.backtest.model_dump(), "arrangement": "later_months", **backtest},
        }
    )


def test_the_shrink_drops_the_oldest_folds_then_test_months_then_calibration_months() -> None:
    # Given the default backtest and the default minimum
    configured, minimum = Shape(3, 6, 3), Shape(1, 1, 1)

    # When the steps towards the minimum are listed
    steps = shrink_steps(configured, minimum)

    # Then folds go first (each remaining fold as configured), then test months, then calibration
    assert steps == [
        Shape(2, 4, 3),
        Shape(1, 2, 3),
        Shape(1, 1, 3),
        Shape(1, 1, 2),
        Shape(1, 1, 1),
    ]
    # and a minimum above the configured backtest never grows it
    assert shrink_steps(Shape(1, 1, 1), Shape(1, 2, 2)) == []
    assert shrink_steps(Shape(2, 2, 2), Shape(1, 2, 1)) == [Shape(2, 2, 1)]


def test_a_history_long_enough_keeps_the_configured_backtest_exactly() -> None:
    # Given 24 snapshot months and the default config
    cfg, dates = config(), months(24)

    # When the backtest is planned
    plan = plan_backtest(dates, cfg)

    # Then it is the configured one, unshrunk and silent
    assert not plan.shrunk and plan.message == "" and plan.cfg == cfg
    assert plan.folds == plan_folds(dates, cfg)
    assert [len(f.test_dates) for f in plan.folds] == [2, 2, 2]


@pytest.mark.parametrize("n", [8, 10, 12, 14])
def test_a_short_history_runs_the_largest_backtest_it_holds_with_every_embargo(n: int) -> None:
    # Given a history of n snapshot months, too short for the default backtest (14 from April)
    cfg, dates = config(), months(n)
    horizon = timedelta(days=cfg.horizon_days)

    # When the backtest is planned
    plan = plan_backtest(dates, cfg)

    # Then it holds the first shape of the shrink order that fits, and no larger one fits
    steps = [shape_of(cfg), *shrink_steps(shape_of(cfg), Shape(1, 1, 1))]
    assert plan.shape in steps
    for larger in steps[: steps.index(plan.shape)]:
        with pytest.raises(UserError):
            plan_folds(dates, with_shape(cfg, larger))
    assert plan.shrunk == (n < 14)
    # and no test fold touches a label window of its calibration or training months
    assert [d for f in plan.folds for d in f.test_dates] == dates[-plan.shape.test_months :]
    for fold in [*plan.folds, plan.final]:
        assert max(fold.fit_dates) + horizon <= min(fold.calib_dates)
        assert len(fold.calib_dates) == plan.shape.calibration_months
        if fold.test_dates:
            assert max(fold.calib_dates) + horizon <= min(fold.test_dates)
    assert plan.cfg.horizon_days == cfg.horizon_days
    assert plan.cfg.test_months == plan.shape.test_months


def test_the_shrink_says_what_changed_from_what_to_what_and_why() -> None:
    # Given 8 snapshot months from April 2023
    dates = months(8)

    # When the default backtest is planned on them
    plan = plan_backtest(dates, config())

    # Then test months went before calibration months: one test month, two calibration months
    assert plan.shape == Shape(1, 1, 2)
    # and the line names each change, what was kept, and the months needed against those found
    assert plan.message == (
        "backtest shrunk to fit the history: backtest.folds 3 -> 1, test_months 6 -> 1,"
        " backtest.calibration_months 3 -> 2 (the 90-day embargo kept); the configured 3 folds"
        " over 6 test months with 3 calibration months needs 14 snapshot months and the data"
        " has 8 snapshot months (2023-04-01..2023-11-01) with 90-day labels closed"
    )
    assert months_needed(Shape(3, 6, 3), 90, dates[0]) == 14
    assert not plan_backtest(months(14), config()).shrunk


def test_below_the_minimum_one_line_says_what_was_found_and_what_is_needed() -> None:
    # Given one snapshot month fewer than the smallest backtest needs
    cfg = config()
    needed = months_needed(Shape(1, 1, 1), cfg.horizon_days, date(2023, 4, 1))
    assert plan_backtest(months(needed), cfg).shape == Shape(1, 1, 1)

    # When the backtest is planned
    with pytest.raises(UserError) as refused:
        plan_backtest(months(needed - 1), cfg)

    # Then the refusal is one line with the months found and needed
    message = str(refused.value)
    assert "\n" not in message
    assert f"the data has {needed - 1} snapshot months (2023-04-01..2023-09-01)" in message
    assert "1 fold over 1 test month with 1 calibration month and a 90-day embargo" in message
    assert f"needs {needed} (backtest.minimum)" in message


def test_a_raised_minimum_refuses_earlier_and_no_minimum_refuses_as_before() -> None:
    dates = months(8)

    # A minimum of two test months still fits 8 months; three do not
    assert plan_backtest(dates, config(minimum={"test_months": 2})).shape == Shape(1, 2, 1)
    with pytest.raises(UserError, match="needs 9"):
        plan_backtest(dates, config(minimum={"test_months": 3}))
    # Without a minimum, the configured backtest's own problem, as before shrinking existed
    with pytest.raises(UserError, match=r"fold 1 .* fewer backtest\.folds"):
        plan_backtest(dates, config(minimum=None))


@pytest.mark.parametrize("n", [7, 8, 10, 12, 14])
def test_a_cross_fitted_backtest_fits_on_every_closed_month_and_purges_each_block(n: int) -> None:
    # Given a history of n snapshot months and the default (cross-fitted) config
    cfg, dates = load_training_config(), months(n)
    horizon = timedelta(days=cfg.horizon_days)

    # When the backtest is planned
    plan = plan_backtest(dates, cfg)

    # Then every layout fits on every month whose label closes before its test, and no other
    assert plan.final.fit_dates == tuple(dates) and plan.final.calib_dates == ()
    for fold in plan.folds:
        assert fold.fit_dates == tuple(d for d in dates if d + horizon <= min(fold.test_dates))
    # and each cross-fitting block is predicted only from months whose labels it cannot share
    for fold in [*plan.folds, plan.final]:
        for train, held in purged_blocks(fold.fit_dates, cfg.horizon_days, 3):
            for d in train:
                assert d + horizon <= min(held) or d >= max(held) + horizon
    # and a short history keeps more of its test months than when deciding on later months
    assert plan.shape.test_months >= plan_backtest(dates, config()).shape.test_months


def test_a_short_history_trains_with_a_printed_shrunk_backtest_on_the_card(
    small_world_dir: Path, mlflow_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a generated world cut to its first year (7 snapshot months with closed labels)
    settings = mlflow_store / "fast.yaml"
    settings.write_text(FAST)

    # When it is trained with the default backtest
    code, out, err = run_cli(
        ["train", str(small_world_dir), "--train-until", "2024-01-01", "--config", str(settings)],
        capsys,
    )

    # Then it trains, and the console's first line says what was shrunk and why
    assert code == 0, err
    first = out.splitlines()[0]
    assert first.startswith(
        "backtest shrunk to fit the history: backtest.folds 3 -> 1, test_months 6 -> 1"
        " (the 90-day embargo kept)"
    )
    assert "the data has 7 snapshot months (2023-04-01..2023-10-01)" in first
    assert "2023-10-01..2023-10-01" in out  # the one test month, the latest
    # and the registered run records it as a tag, as params and on the model card
    client = configure()
    version = client.get_model_version_by_alias("expansion-propensity", "champion")
    run = client.get_run(version.run_id)
    assert run.data.tags["backtest_shrink"] == first
    params = run.data.params
    assert (params["backtest_shrunk"], params["folds"], params["test_months"]) == ("true", "1", "1")
    assert (params["configured_folds"], params["configured_test_months"]) == ("3", "6")
    assert params["arrangement"] == "crossfit"
    assert params["final_fit_dates"] == "2023-04-01..2023-10-01"  # every closed month
    card = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/model_card.md")
    assert "**Shrunk backtest.**" in card and "test_months 6 -> 1" in card
    resolved = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/config/training_resolved.json")
    assert resolved["test_months"] == 1 and resolved["backtest"]["folds"] == 1
    configured = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/config/training.json")
    assert configured["test_months"] == 6 and configured["backtest"]["folds"] == 3


def test_a_history_below_the_minimum_stops_with_one_line_and_registers_nothing(
    small_world_dir: Path, mlflow_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the same world cut a month earlier (6 snapshot months; the minimum needs 7)
    # When it is trained
    code, out, err = run_cli(["train", str(small_world_dir), "--train-until", "2023-12-01"], capsys)

    # Then it stops with one line saying what was found and what is needed, and nothing else
    assert code == 2
    assert err.strip().splitlines() == [
        "error: the history is too short for the smallest backtest: the data has 6 snapshot"
        " months (2023-04-01..2023-09-01) with 90-day labels closed, and 1 fold over 1 test"
        " month and a 90-day embargo before the test and around each cross-fitting block needs"
        " 7 (backtest.minimum); use more history (a later --train-until) or a shorter horizon"
    ]
    assert "Traceback" not in err and out == ""
    assert not configure().search_registered_models()


def test_a_short_history_is_gated_on_the_same_shrunk_backtest(
    small_world_dir: Path, mlflow_store: Path
) -> None:
    # Given a champion trained on the world's first year
    from expansion_scorer.jobs.train import train_job
    from expansion_scorer.settings import load_feature_set

    raw = load_training_config().model_dump()
    cfg = TrainingConfig.model_validate(
        {**raw, "lightgbm": {**raw["lightgbm"], "learning_rate": 0.1, "n_estimators": 300}}
    )
    until = date(2024, 1, 1)
    train_job(small_world_dir, cfg, load_feature_set(), until=until)

    # When a second model is trained on it and sent to the gate
    second = train_job(small_world_dir, cfg, load_feature_set(), until=until, promote=True)

    # Then the gate compares both on the shrunk backtest's one test month
    assert second.shrink and second.decision is not None
    client = configure()
    champion = client.get_model_version_by_alias("expansion-propensity", "champion")
    gate = client.get_run(champion.tags["last_gate_run"])
    assert gate.data.params["gate_test_dates"] == "2023-10-01..2023-10-01"
