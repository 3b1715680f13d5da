"""`expansion score --engine spark`: features in Spark SQL, scores through `spark_udf`.

Spark reads the tables, decides who is eligible, computes every feature and applies the
registered pyfunc model to each partition with `mlflow.pyfunc.spark_udf`. Only the finished
feature rows and their scores come back to the driver, where the explanations, the ranking and
the outputs are made by the same code as the DuckDB path.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from expansion_scorer.config import FeatureSet, ServingConfig
from expansion_scorer.errors import UserError
from expansion_scorer.features import spark as engine
from expansion_scorer.model.propensity import PropensityModel
from expansion_scorer.serving.scoring import PRESCORED, Scored, finish_scoring

UDF_RESULT = "score double, expected_expansion_arr double"


def pinned_uri(uri: str, version: str) -> str:
    """`models:/name@alias` as the version already loaded, so the UDF scores the same model
    even if the alias moves during the run."""
    if uri.startswith("models:/") and "@" in uri and " v" in version:
        name, number = version.rsplit(" v", 1)
        return f"models:/{name}/{number}"
    return uri


def score_spark(
    world: engine.SparkWorld,
    as_of: date,
    feature_set: FeatureSet,
    model: PropensityModel,
    model_uri: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The status of every account as of the date, and the feature frame in the DuckDB path's
    order with the UDF's score as `PRESCORED`."""
    import mlflow.pyfunc
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as F

    features, status = engine.feature_relation(world, feature_set, [as_of])
    status = status.drop(columns="as_of")
    missing = [c for c in model.feature_names if c not in features.columns]
    if missing:  # check_schema words it for the user; nothing to score
        return status, engine.to_pandas(features)
    predict = mlflow.pyfunc.spark_udf(
        world.spark, model_uri, result_type=UDF_RESULT, env_manager="local"
    )
    scored = features.withColumn(
        PRESCORED, predict(F.struct(*[F.col(c) for c in model.feature_names])).getField("score")
    )
    try:
        return status, engine.to_pandas(scored)
    except PySparkException as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise UserError(f"Spark could not compute the features or scores ({first})") from None


def score_frame_spark(
    world: engine.SparkWorld,
    as_of: date,
    model: PropensityModel,
    model_uri: str,
    feature_set: FeatureSet,
    serving: ServingConfig,
    model_version: str,
) -> Scored:
    """`serving.scoring.score_frame` with Spark computing eligibility, features and scores; the
    settings were checked against the features once, where the run started (`jobs.score`)."""
    uri = pinned_uri(model_uri, model_version)
    status, frame = score_spark(world, as_of, feature_set, model, uri)
    return finish_scoring(status, frame, as_of, model, feature_set, serving, model_version)
