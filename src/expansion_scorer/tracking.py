"""Where MLflow keeps runs and models (`MLFLOW_TRACKING_URI`, else SQLite in ./mlruns), and how a
registered model is named."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.store.artifact.utils.models import get_model_name_and_version
from mlflow.tracking import MlflowClient

DEFAULT_URI = "sqlite:///mlruns/mlflow.db"
CHAMPION = "champion"
CHALLENGER = "challenger"


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


@dataclass(frozen=True)
class ModelRef:
    """A registered model version. Its URI and its label are built from the name and the
    version here, and nowhere else."""

    name: str
    version: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def label(self) -> str:
        """How lists, the history and the console name it: 'expansion-propensity v3'."""
        return f"{self.name} v{self.version}"

    @classmethod
    def from_label(cls, label: str) -> ModelRef | None:
        """The version a history row names (the history keys each run by `label`); None for a
        run scored with a model outside the registry."""
        name, sep, number = label.rpartition(" v")
        return cls(name, number) if sep and name and number.isdigit() else None


def alias_uri(name: str, alias: str) -> str:
    """Whichever version of `name` holds `alias`: 'models:/expansion-propensity@champion'."""
    return f"models:/{name}@{alias}"


def resolve(client: MlflowClient, uri: str) -> ModelRef | None:
    """The registered version a `models:/` URI (by alias or by version) points to; None for a
    run, a logged model or a file."""
    if not uri.startswith("models:/"):
        return None
    found = get_model_name_and_version(client, uri)
    return ModelRef(found[0], str(found[1])) if len(found) == 2 else None


def git_commit() -> str:
    """The commit of the code a run was made with ('unknown' outside a checkout)."""
    for where in (Path.cwd(), Path(__file__).resolve().parent):
        try:
            out = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True
            )
            return out.stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            continue
    return "unknown"


def requirements() -> list[str]:
    """The pinned packages a logged model needs to load and score."""
    from importlib.metadata import version

    return [
        f"{name}=={version(name)}"
        for name in ("mlflow", "lightgbm", "pandas", "numpy", "scikit-learn", "shap")
    ]


def flat_metrics(
    metrics: dict[str, dict[str, float]], prefix: str, names: dict[str, str] | None = None
) -> dict[str, float]:
    """MLflow metric names: `prefix`, the scorer's name (`names` renames it; '' for the model
    itself) and the metric's; NaN left out (some stores reject it; a missing metric says it)."""
    names = names or {}
    return {
        f"{prefix}{names.get(scorer, scorer + '_')}{key}": value
        for scorer, values in metrics.items()
        for key, value in values.items()
        if value == value
    }
