"""The job layer: read inputs, call the stages, write outputs. The CLI is a thin shell over it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import mlflow
import mlflow.data.pandas_dataset
import pandas as pd
from mlflow.models import infer_signature
from sklearn.metrics import roc_auc_score

from expansion_scorer.config import FeatureSet, TrainingConfig
from expansion_scorer.data.loading import World, open_world
from expansion_scorer.data.validation import validate
from expansion_scorer.errors import UserError
from expansion_scorer.features.build import build_features
from expansion_scorer.features.ledger import build_expansions
from expansion_scorer.features.snapshots import (
    build_entities,
    labels,
    training_dates,
)
from expansion_scorer.tracking import configure, experiment_id
from expansion_scorer.training import train as training

TRUTH_FILE = "truth.parquet"


def load_world(data_dir: Path, cutoff: date | None) -> World:
    world = open_world(data_dir, cutoff=cutoff)
    validate(world)
    return world


def training_frame(
    world: World, feature_set: FeatureSet, cfg: TrainingConfig, until: date | None
) -> pd.DataFrame:
    """Point-in-time features and labels of every eligible (account, month start)."""
    dates = training_dates(world.con, cfg.horizon_days, cfg.min_history_days, until)
    if not dates:
        raise UserError(
            f"no snapshot month has a complete {cfg.horizon_days}-day label window before"
            f" {until or 'the end of the data'}; use more history or a shorter horizon"
        )
    build_entities(world.con, dates)
    build_expansions(world.con, feature_set)
    features = build_features(
        world.con, feature_set, world.has("support_tickets"), world.has("nps_responses")
    )
    y = labels(world.con, cfg.horizon_days)
    return features.merge(y, on=["account_id", "as_of"], how="inner", validate="one_to_one")


def bayes_auc(data_dir: Path, test: pd.DataFrame) -> float | None:
    """AUC of the simulator's true probabilities on the same test rows, when they exist."""
    path = Path(data_dir) / TRUTH_FILE
    if not path.is_file():
        return None
    truth = pd.read_parquet(path)
    truth["as_of"] = pd.to_datetime(truth["as_of"]).dt.date
    joined = test.merge(truth, on=["account_id", "as_of"], how="inner")
    if len(joined) != len(test) or joined["label"].nunique() < 2:
        return None
    return float(roc_auc_score(joined["label"], joined["p_expand"]))


@dataclass
class TrainResult:
    run_id: str
    model_uri: str
    version: str
    metrics: dict[str, float]
    bayes_auc: float | None
    split: training.TimeSplit
    rows: int
    extra: dict[str, object] = field(default_factory=dict)


def train_job(
    data_dir: Path,
    cfg: TrainingConfig,
    feature_set: FeatureSet,
    until: date | None = None,
    config_text: str | None = None,
) -> TrainResult:
    world = load_world(data_dir, cutoff=until)
    frame = training_frame(world, feature_set, cfg, until)
    split = training.time_split(list(frame["as_of"].unique()), cfg)
    train = frame[frame["as_of"].isin(split.train_dates)]
    test = frame[frame["as_of"].isin(split.test_dates)]
    candidate = training.fit(train, feature_set, cfg)
    metrics = training.evaluate(test["label"].to_numpy(), candidate.predict_proba(test))
    bayes = bayes_auc(data_dir, test)
    final = training.fit(frame, feature_set, cfg)

    client = configure()
    exp = experiment_id(client, cfg.experiment)
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_params(
            {
                "horizon_days": cfg.horizon_days,
                "train_until": str(until) if until else "",
                "train_dates": f"{split.train_dates[0]}..{split.train_dates[-1]}",
                "test_dates": f"{split.test_dates[0]}..{split.test_dates[-1]}",
                "snapshot_rows": len(frame),
                "features": len(final.feature_names),
                "seed": cfg.seed,
                **{f"lgbm_{k}": v for k, v in cfg.lightgbm.model_dump().items()},
            }
        )
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        if bayes is not None:
            mlflow.log_metric("test_bayes_roc_auc", bayes)
        mlflow.log_input(
            mlflow.data.pandas_dataset.from_pandas(frame, name="snapshots", targets="label"),
            context="training",
        )
        mlflow.log_dict(feature_set.model_dump(), "config/features.json")
        mlflow.log_dict(cfg.model_dump(), "config/training.json")
        example = frame[final.feature_names].head(20)
        signature = infer_signature(example, pd.DataFrame({"score": final.predict_proba(example)}))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=final,
            signature=signature,
            input_example=example,
            registered_model_name=cfg.registered_model,
            pip_requirements=_requirements(),
        )
        version = str(info.registered_model_version)
        client.set_registered_model_alias(cfg.registered_model, "champion", version)
    return TrainResult(
        run_id=run.info.run_id,
        model_uri=f"models:/{cfg.registered_model}/{version}",
        version=version,
        metrics=metrics,
        bayes_auc=bayes,
        split=split,
        rows=len(frame),
    )


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [
        f"{name}=={version(name)}"
        for name in ("mlflow", "lightgbm", "pandas", "numpy", "scikit-learn", "shap")
    ]
