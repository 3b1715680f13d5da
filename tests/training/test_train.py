"""Training against a real SQLite MLflow store: registered champion, honest time split."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from expansion_scorer.config import load_feature_set, load_training_config
from expansion_scorer.data.loading import open_world
from expansion_scorer.jobs import train_job, training_frame
from tests.helpers import rewrite_future, run_cli


def test_train_registers_a_champion_with_metrics_and_a_servable_model(
    world_dir: Path, mlflow_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # When a data scientist trains on a generated world
    code, out, err = run_cli(["train", str(world_dir), "--horizon-days", "90"], capsys)

    # Then the model is registered with the champion alias and the run holds the metrics
    assert code == 0, err
    assert "Bayes-limit ROC AUC" in out
    client = MlflowClient()
    version = client.get_model_version_by_alias("expansion-propensity", "champion")
    run = client.get_run(version.run_id)
    for key in ("test_roc_auc", "test_pr_auc", "test_lift_top_decile", "test_bayes_roc_auc"):
        assert key in run.data.metrics
    assert run.data.metrics["test_roc_auc"] > 0.6
    assert run.data.params["horizon_days"] == "90"
    assert run.inputs.dataset_inputs, "the training set is logged with mlflow.log_input"

    # And the pyfunc loads by alias and scores a feature frame like the batch path
    model = mlflow.pyfunc.load_model("models:/expansion-propensity@champion")
    assert model.metadata.signature is not None
    wrapper = model.unwrap_python_model()
    world = open_world(world_dir)
    cfg = load_training_config()
    frame = training_frame(world, load_feature_set(), cfg, None).tail(50)
    served = model.predict(frame[wrapper.feature_names])["score"].to_numpy()
    np.testing.assert_allclose(served, wrapper.predict_proba(frame), rtol=0, atol=1e-12)
    assert ((served > 0) & (served < 1)).all()


def test_time_split_keeps_training_labels_out_of_the_test_period(world_dir: Path) -> None:
    from expansion_scorer.training.train import time_split

    cfg = load_training_config().model_copy(update={"test_months": 4})
    frame = training_frame(open_world(world_dir), load_feature_set(), cfg, None)
    split = time_split(list(frame["as_of"].unique()), cfg)

    last_label_day = max(split.train_dates) + timedelta(days=cfg.horizon_days)
    assert last_label_day <= min(split.test_dates)
    assert len(split.test_dates) == 4


def test_train_until_ignores_everything_dated_on_or_after_it(
    world_dir: Path, tmp_path: Path, mlflow_store: Path
) -> None:
    # Given the same world, and a copy whose rows from the cutoff on are scrambled
    until = date(2024, 7, 1)
    scrambled = rewrite_future(world_dir, tmp_path / "scrambled", str(until), "scramble")
    cfg = load_training_config().model_copy(update={"test_months": 3})
    features = load_feature_set()

    # When both are trained with --train-until at the cutoff
    a = train_job(world_dir, cfg, features, until=until)
    b = train_job(scrambled, cfg, features, until=until)

    # Then the snapshots, the split, the metrics and the models are the same
    assert a.rows == b.rows and a.split == b.split
    assert a.metrics == b.metrics
    assert max(a.split.test_dates) + timedelta(days=cfg.horizon_days) <= until
    frame = training_frame(open_world(world_dir, cutoff=until), features, cfg, until)
    ma = mlflow.pyfunc.load_model(a.model_uri).unwrap_python_model()
    mb = mlflow.pyfunc.load_model(b.model_uri).unwrap_python_model()
    np.testing.assert_array_equal(ma.predict_proba(frame), mb.predict_proba(frame))
    # and the second registration took the champion alias
    champion = MlflowClient().get_model_version_by_alias("expansion-propensity", "champion")
    assert str(champion.version) == b.version


def test_window_too_short_for_horizon_stops_with_dates(
    world_dir: Path, mlflow_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        ["train", str(world_dir), "--train-until", "2023-08-01", "--horizon-days", "120"], capsys
    )
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "snapshot" in err and "horizon" in err
    assert not MlflowClient().search_registered_models()
