"""Training against a real SQLite MLflow store: rolling backtest, baselines, artifacts, errors."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pytest

from expansion_scorer.config import LearningConfig, TrainingConfig, load_training_config
from expansion_scorer.data.loading import open_world
from expansion_scorer.jobs.train import train_job
from expansion_scorer.settings import load_feature_set
from expansion_scorer.tracking import configure
from expansion_scorer.training.backtest import plan_folds
from expansion_scorer.training.dataset import training_frame
from tests.helpers import rewrite_future, run_cli

SMALL = """
test_months: 4
backtest: {folds: 2, calibration_months: 2}
capacity: {accounts_per_csm_per_week: 4, csms: 5}
lightgbm: {learning_rate: 0.1, n_estimators: 300}
"""


def small_config(**update: object) -> TrainingConfig:
    cfg = load_training_config().model_copy(
        update={
            "test_months": 4,
            "backtest": load_training_config().backtest.model_copy(
                update={"folds": 2, "calibration_months": 2}
            ),
            "capacity": load_training_config().capacity.model_copy(
                update={"accounts_per_csm_per_week": 4}
            ),
            # A faster learning rate: fewer boosting rounds keep the suite within its budget.
            "lightgbm": load_training_config().lightgbm.model_copy(
                update={"learning_rate": 0.1, "n_estimators": 300}
            ),
        }
    )
    return cfg.model_copy(update=update)


def test_train_prints_model_against_baselines_and_logs_every_artifact(
    small_world_dir: Path, mlflow_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a small training config
    config = mlflow_store / "small.yaml"
    config.write_text(SMALL)

    # When a data scientist trains on a generated world
    code, out, err = run_cli(["train", str(small_world_dir), "--config", str(config)], capsys)

    # Then the console shows the model against each baseline per fold and pooled
    assert code == 0, err
    for text in ("fold", "pooled", "rule", "logistic", "expanded", "lift@20", "Bayes-limit"):
        assert text in out, text
    assert "shrunk" not in out, "a history long enough keeps the configured backtest"
    assert "learner kept on held-out predictions:" in out and "calibration kept:" in out
    assert "pooled test ROC AUC: model" in out  # each learner's test figure beside the model's
    assert out.count("model beats") + out.count("model does NOT beat") == 3
    assert "random-split ROC AUC" in out and "calibration: Brier" in out

    # And the first model is the champion, its run holding metrics, folds and artifacts
    client = configure()
    version = client.get_model_version_by_alias("expansion-propensity", "champion")
    run = client.get_run(version.run_id)
    metrics = run.data.metrics
    for key in (
        "test_roc_auc", "test_pr_auc", "test_lift_at_capacity", "test_recall_at_capacity",
        "test_lift_top_decile", "test_brier", "test_ece", "test_uncalibrated_ece",
        "test_rule_roc_auc", "test_logistic_lift_at_capacity", "test_recent_pr_auc",
        "test_bayes_roc_auc", "test_random_split_roc_auc", "margin_over_logistic_roc_auc",
    ):  # fmt: skip
        assert key in metrics, key
    assert metrics["test_roc_auc"] > 0.6
    assert run.data.params["horizon_days"] == "90"
    assert run.data.params["backtest_shrunk"] == "false" and "backtest_shrink" not in run.data.tags
    assert (run.data.params["test_months"], run.data.params["arrangement"]) == ("4", "crossfit")
    assert run.data.tags["mlflow.source.git.commit"]
    assert run.inputs.dataset_inputs, "the training set is logged with mlflow.log_input"
    folds = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    assert len(folds) == 2 and all("logistic_roc_auc" in f.data.metrics for f in folds)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    for name in (
        "gain_lift.png", "calibration.png", "shap_summary.png", "importance.png",
        "season_offset.json",
    ):  # fmt: skip
        assert f"report/{name}" in artifacts
    offset = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/report/season_offset.json")
    assert offset["feature"] == "month_of_year" and len(offset["shifts"]) == 12
    card = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/model_card.md")
    for heading in ("Intended use", "Data window", "Backtest", "Limitations", "logistic"):
        assert heading in card
    assert "Shrunk" not in card and "shrunk" not in card
    assert "season_offset.json" in card
    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/config/training.yaml") == SMALL

    # And the pyfunc loads by alias and serves the calibrated score and the expected ARR
    model = mlflow.pyfunc.load_model("models:/expansion-propensity@champion")
    assert model.metadata.signature is not None
    wrapper = model.unwrap_python_model()
    frame = training_frame(open_world(small_world_dir), load_feature_set(), small_config(), None)
    frame = frame.tail(50)
    served = model.predict(frame[wrapper.feature_names])
    np.testing.assert_allclose(served["score"], wrapper.predict_proba(frame), rtol=0, atol=1e-12)
    assert ((served["score"] > 0) & (served["score"] < 1)).all()
    calibrated = not np.allclose(wrapper.predict_proba(frame), wrapper.raw_proba(frame))
    assert calibrated == (wrapper.calibrator is not None)  # none is kept when it wins
    expected = wrapper.predict_proba(frame) * wrapper.expected_size(frame)
    np.testing.assert_allclose(expected, served["expected_expansion_arr"], rtol=1e-12)
    assert (expected > 0).all()


@pytest.mark.parametrize("arrangement", ["crossfit", "later_months"])
def test_every_fold_trains_calibrates_and_tests_on_separate_label_windows(
    small_world_dir: Path, arrangement: str
) -> None:
    cfg = small_config()
    cfg = TrainingConfig.model_validate(
        {**cfg.model_dump(), "backtest": {**cfg.backtest.model_dump(), "arrangement": arrangement}}
    )
    frame = training_frame(open_world(small_world_dir), load_feature_set(), cfg, None)
    dates = sorted(frame["as_of"].unique())

    folds = plan_folds(dates, cfg)

    horizon = timedelta(days=cfg.horizon_days)
    assert [d for f in folds for d in f.test_dates] == dates[-cfg.test_months :]
    for fold in folds:
        if arrangement == "crossfit":  # every month whose label closes before the test
            assert fold.calib_dates == ()
            assert fold.fit_dates == tuple(d for d in dates if d + horizon <= min(fold.test_dates))
            continue
        assert max(fold.fit_dates) + horizon <= min(fold.calib_dates)
        assert max(fold.calib_dates) + horizon <= min(fold.test_dates)
        assert len(fold.calib_dates) == cfg.backtest.calibration_months
    assert folds[0].test_dates[-1] < folds[1].test_dates[0]
    assert len(folds[1].fit_dates) > len(folds[0].fit_dates), "the origin rolls forward"


def test_train_until_ignores_everything_dated_on_or_after_it(
    small_world_dir: Path, tmp_path: Path, mlflow_store: Path
) -> None:
    # Given the same world, and a copy whose rows from the cutoff on are scrambled
    until = date(2024, 7, 1)
    scrambled = rewrite_future(small_world_dir, tmp_path / "scrambled", str(until), "scramble")
    cfg = small_config(test_months=2)
    features = load_feature_set()

    # When both are trained with --train-until at the cutoff
    a = train_job(small_world_dir, cfg, features, until=until)
    b = train_job(scrambled, cfg, features, until=until)

    # Then the snapshots, the folds, the metrics and the models are the same
    assert a.rows == b.rows and a.final == b.final
    assert [f.layout for f in a.backtest.folds] == [f.layout for f in b.backtest.folds]
    assert a.metrics == b.metrics
    assert max(a.backtest.folds[-1].layout.test_dates) + timedelta(days=90) <= until
    frame = training_frame(open_world(small_world_dir, cutoff=until), features, cfg, until)
    ma = mlflow.pyfunc.load_model(a.model_uri).unwrap_python_model()
    mb = mlflow.pyfunc.load_model(b.model_uri).unwrap_python_model()
    np.testing.assert_array_equal(ma.predict_proba(frame), mb.predict_proba(frame))
    # and the first registration is the champion, the second only the challenger
    client = configure()
    assert (a.alias, b.alias) == ("champion", "challenger")
    champion = client.get_model_version_by_alias("expansion-propensity", "champion")
    assert str(champion.version) == a.version


def test_window_too_short_for_horizon_stops_with_dates(
    small_world_dir: Path, mlflow_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        ["train", str(small_world_dir), "--train-until", "2023-08-01", "--horizon-days", "120"],
        capsys,
    )
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "snapshot" in err and "horizon" in err
    assert not configure().search_registered_models()


def test_without_a_minimum_a_window_too_short_for_the_folds_names_the_fold_and_the_fix(
    small_world_dir: Path, mlflow_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = mlflow_store / "no_shrink.yaml"
    config.write_text("backtest: {minimum: null}\n")

    code, _, err = run_cli(
        ["train", str(small_world_dir), "--train-until", "2024-01-01", "--config", str(config)],
        capsys,
    )

    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "fold 1" in err and "2023-" in err and "fewer backtest.folds" in err
    assert not configure().search_registered_models()


def test_a_fold_without_an_expansion_stops_with_its_dates(
    small_world_dir: Path, tmp_path: Path, mlflow_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a world whose expansions in the last test months were removed (nobody expands)
    import pandas as pd

    data = tmp_path / "flat"
    data.mkdir()
    for path in small_world_dir.glob("*.parquet"):
        if path.name != "truth.parquet":
            (data / path.name).write_bytes(path.read_bytes())
    subs = pd.read_parquet(data / "subscriptions.parquet")
    late = pd.to_datetime(subs["start_date"]) >= pd.Timestamp("2024-10-01")
    subs = subs[~late]
    ends = pd.to_datetime(subs["end_date"]) >= pd.Timestamp("2024-10-01")
    subs.loc[ends, "end_date"] = None
    subs.to_parquet(data / "subscriptions.parquet", index=False)
    config = tmp_path / "small.yaml"
    config.write_text(SMALL.replace("test_months: 4", "test_months: 2"))

    code, _, err = run_cli(["train", str(data), "--config", str(config)], capsys)

    assert code == 2, err
    assert len(err.strip().splitlines()) == 1
    assert "fold 2" in err and "no expansion" in err and "2024-10-01" in err
    assert not configure().search_registered_models()


def test_the_random_split_check_fits_on_a_sample_of_whole_accounts(world_dir: Path) -> None:
    from expansion_scorer.training.backtest import random_split_auc

    cfg = small_config()
    frame = training_frame(open_world(world_dir), load_feature_set(), cfg, None)
    dates = sorted(frame["as_of"].unique())
    sampled = cfg.model_copy(
        update={"backtest": cfg.backtest.model_copy(update={"random_split_rows": len(frame) // 2})}
    )

    full = random_split_auc(frame, dates, load_feature_set(), cfg, cfg.lightgbm)
    half = random_split_auc(frame, dates, load_feature_set(), sampled, sampled.lightgbm)

    assert len(frame) < cfg.backtest.random_split_rows  # the default leaves small data whole
    assert 0.5 < half < 1 and 0.5 < full < 1
    assert half != full  # fitted and tested on other rows
    assert half == random_split_auc(frame, dates, load_feature_set(), sampled, sampled.lightgbm)


def test_the_season_offset_sets_each_months_start_and_is_explained_by_its_feature(
    small_world_dir: Path,
) -> None:
    from expansion_scorer.model.propensity import contributions
    from expansion_scorer.training.backtest import final_layout
    from expansion_scorer.training.train import fit

    cfg = small_config(learning=LearningConfig(candidates=["single"]))  # the booster's offset
    frame = training_frame(open_world(small_world_dir), load_feature_set(), cfg, None)
    model = fit(frame, final_layout(sorted(frame["as_of"].unique()), cfg), load_feature_set(), cfg)

    # The offset is each month's smoothed label log-odds against the whole training window
    assert model.offset is not None and model.offset.feature == "month_of_year"
    fit_rows = frame[
        frame["as_of"].isin(final_layout(sorted(frame["as_of"].unique()), cfg).fit_dates)
    ]
    busiest = fit_rows.groupby("month_of_year")["label"].mean().idxmax()
    quietest = fit_rows.groupby("month_of_year")["label"].mean().idxmin()
    assert model.offset.shifts[float(busiest)] > 0 > model.offset.shifts[float(quietest)]
    assert model.offset.of(frame.assign(month_of_year=13)).tolist() == [0.0] * len(frame)

    # Scores include it, and SHAP values with the base still add up to the score's log-odds
    rows = frame.head(40)
    margin = model.booster.predict(model.matrix(rows), raw_score=True)
    raw = model.raw_proba(rows)
    assert np.allclose(np.log(raw / (1 - raw)), margin + model.offset.of(rows))
    contrib = contributions(model, rows)
    total = contrib.base_logit + contrib.values.sum(axis=1).to_numpy()
    assert np.allclose(total, np.log(raw / (1 - raw)), atol=1e-6)

    # Without it, the booster alone makes the score
    plain = fit(frame, final_layout(sorted(frame["as_of"].unique()), cfg), load_feature_set(),
                cfg.model_copy(update={"season_feature": None}))  # fmt: skip
    assert plain.offset is None
    assert np.allclose(plain.raw_proba(rows), plain.booster.predict(plain.matrix(rows)))


def test_a_season_feature_that_is_not_a_numeric_feature_stops_before_any_work(
    small_world_dir: Path, mlflow_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = mlflow_store / "training.yaml"
    config.write_text("season_feature: industry\n")

    code, _, err = run_cli(["train", str(small_world_dir), "--config", str(config)], capsys)

    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "season_feature" in err and "industry" in err
    assert not configure().search_registered_models()
