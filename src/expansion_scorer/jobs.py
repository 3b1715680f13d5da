"""The job layer: read inputs, call the stages, write outputs. The CLI is a thin shell over it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import mlflow
import mlflow.data.pandas_dataset
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from sklearn.metrics import roc_auc_score

from expansion_scorer.config import FeatureSet, ServingConfig, TrainingConfig
from expansion_scorer.data.loading import World, open_world
from expansion_scorer.data.validation import validate
from expansion_scorer.errors import UserError
from expansion_scorer.features.build import build_features
from expansion_scorer.features.ledger import build_expansions
from expansion_scorer.features.snapshots import (
    account_status,
    build_entities,
    labels,
    training_dates,
)
from expansion_scorer.serving.explain import contributions, reasons
from expansion_scorer.serving.output import csv_writer, parquet_writer, text_writer, write_outputs
from expansion_scorer.serving.report import render_report
from expansion_scorer.tracking import configure, experiment_id
from expansion_scorer.training import train as training
from expansion_scorer.training.model import PropensityModel

DEFAULT_MODEL = "models:/expansion-propensity@champion"
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


def load_model(uri: str) -> tuple[PropensityModel, str]:
    """The wrapped model and a readable version ('expansion-propensity v3')."""
    client = configure()
    try:
        loaded = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as exc:
        first = str(exc).splitlines()[0][:200]
        raise UserError(
            f"model {uri} cannot be loaded ({first}); run `expansion train` first or pass --model"
        ) from None
    model = loaded.unwrap_python_model()
    if not isinstance(model, PropensityModel):
        raise UserError(f"model {uri} is not an expansion-propensity model")
    label = uri
    if uri.startswith("models:/") and "@" in uri:
        name, alias = uri[len("models:/") :].split("@", 1)
        label = f"{name} v{client.get_model_version_by_alias(name, alias).version}"
    elif uri.startswith("models:/"):
        label = uri[len("models:/") :].replace("/", " v")
    return model, label


def band_of(score: float, bands: dict[str, float]) -> str:
    for name, low in sorted(bands.items(), key=lambda kv: -kv[1]):
        if score >= low:
            return name
    return "none"


@dataclass
class ScoreResult:
    files: list[Path]
    scored: int
    excluded: int
    not_yet_customers: int
    model_version: str


def score_frame(
    world: World,
    as_of: date,
    model: PropensityModel,
    feature_set: FeatureSet,
    serving: ServingConfig,
    model_version: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores, ranks and reasons for every eligible account; the rest with why not."""
    status = account_status(world.con, as_of)
    excluded = status[status["excluded_reason"].notna()].reset_index(drop=True)
    eligible = status[status["excluded_reason"].isna()]
    build_entities(world.con, [as_of])
    build_expansions(world.con, feature_set)
    frame = build_features(
        world.con, feature_set, world.has("support_tickets"), world.has("nps_responses")
    )
    if set(frame["account_id"]) != set(eligible["account_id"]):  # pragma: no cover - invariant
        raise AssertionError("eligibility and entity frame disagree")
    frame = frame.merge(eligible[["account_id", "account_name", "csm_owner"]], on="account_id")
    columns = [
        "rank", "account_id", "account_name", "csm_owner", "score", "band",
        *[f"reason_{i + 1}" for i in range(serving.reasons)], "reason_against",
        "model_version", "as_of",
    ]  # fmt: skip
    if frame.empty:
        return pd.DataFrame(columns=columns), excluded
    p = model.predict_proba(frame)
    why = reasons(frame, contributions(model, frame), feature_set, serving.reasons)
    scores = pd.concat([frame[["account_id", "account_name", "csm_owner"]], why], axis=1)
    scores["score"] = p
    scores["band"] = [band_of(v, serving.bands) for v in p]
    scores["model_version"] = model_version
    scores["as_of"] = as_of
    scores = scores.sort_values(["score", "account_id"], ascending=[False, True], kind="stable")
    scores["rank"] = np.arange(1, len(scores) + 1)
    scores = scores[columns]
    return scores.reset_index(drop=True), excluded


def score_job(
    data_dir: Path,
    as_of: date,
    out_dir: Path,
    feature_set: FeatureSet,
    serving: ServingConfig,
    model_uri: str = DEFAULT_MODEL,
) -> ScoreResult:
    world = load_world(data_dir, cutoff=as_of)
    model, version = load_model(model_uri)
    scores, excluded = score_frame(world, as_of, model, feature_set, serving, version)
    not_yet = _created_on_or_after(data_dir, as_of)
    meta = {
        "as_of": str(as_of),
        "model": version,
        "horizon_days": model.horizon_days,
    }
    files = write_outputs(
        Path(out_dir),
        {
            "scores.csv": csv_writer(scores),
            "scores.parquet": parquet_writer(scores),
            "excluded.csv": csv_writer(excluded),
            "report.html": text_writer(render_report(scores, excluded, meta)),
        },
    )
    return ScoreResult(
        files=files,
        scored=len(scores),
        excluded=len(excluded),
        not_yet_customers=not_yet,
        model_version=version,
    )


def _created_on_or_after(data_dir: Path, as_of: date) -> int:
    """How many accounts the as-of date cannot see yet (a count only; never a feature)."""
    world = open_world(data_dir)
    row = world.con.execute(
        f"SELECT count(*) FROM accounts WHERE created_at >= DATE '{as_of}'"
    ).fetchone()
    return int(row[0]) if row else 0
