"""Where MLflow keeps runs and models: `MLFLOW_TRACKING_URI`, else SQLite in ./mlruns."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

DEFAULT_URI = "sqlite:///mlruns/mlflow.db"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def _sqlite_path(uri: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


def configure() -> MlflowClient:
    """Point MLflow at the store, creating the SQLite folder when it is a local file."""
    uri = tracking_uri()
    db = _sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(client: MlflowClient, name: str) -> str:
    """The experiment's id; a new one keeps its artifacts beside a SQLite store."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    db = _sqlite_path(tracking_uri())
    location = (db.parent.resolve() / "artifacts").as_uri() if db is not None else None
    return str(client.create_experiment(name, artifact_location=location))
