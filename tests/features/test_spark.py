"""The Spark engine's features: the same frame as DuckDB's, on the same point-in-time rules.

Both engines run one description of the reader, eligibility and the base aggregates (DuckDB's
SQL, transpiled for Spark); these tests hold the two to 1e-9 on a generated world.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from expansion_scorer.config import load_training_config
from expansion_scorer.data.loading import open_world
from expansion_scorer.features import build, ledger, snapshots
from expansion_scorer.features.catalogue import fit_affinity, resolve_plans
from expansion_scorer.settings import load_feature_set
from expansion_scorer.training.job import training_set
from tests.helpers import rewrite_future

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

AS_OF = "2024-09-01"
DATES = [date(2024, 3, 1), date(2024, 9, 1)]
AFFINITY = {"export_report": "Analytics", "schedule_task": "Automation", "api_call": "Integrations"}
"""A fitted affinity (`affinity: learned` fits one in training), so the affinity features read
something in both engines."""


def _duckdb_features(data: Path, dates: list[date]) -> pd.DataFrame:
    features = load_feature_set().with_catalogue(affinity=AFFINITY)
    world = open_world(data)
    snapshots.build_entities(world.con, dates)
    ledger.build_expansions(world.con, features)
    return build.build_features(world.con, features, True, True)


def _spark_features(
    session: SparkSession, data: Path, dates: list[date], cutoff: date | None = None
) -> pd.DataFrame:
    from expansion_scorer.features import spark as engine

    features = load_feature_set().with_catalogue(affinity=AFFINITY)
    world = engine.read_world(session, data, cutoff=cutoff)
    engine.build_entities(world, dates)
    engine.build_expansions(world, features)
    return engine.to_pandas(engine.build_features(world, features))


def _assert_same(duck: pd.DataFrame, other: pd.DataFrame) -> None:
    """Same rows and columns; categoricals equal, numbers within 1e-9."""
    assert list(duck.columns) == list(other.columns)
    assert duck[["account_id", "as_of"]].equals(other[["account_id", "as_of"]])
    for col in duck.columns[2:]:
        left, right = duck[col], other[col]
        if pd.api.types.is_numeric_dtype(left):
            np.testing.assert_allclose(
                right.to_numpy(float), left.to_numpy(float), rtol=1e-9, atol=1e-9, err_msg=col
            )
        else:
            assert left.fillna("<NA>").tolist() == right.fillna("<NA>").tolist(), col


def _cells(frame: pd.DataFrame) -> list[list[str]]:
    """Every cell as text, a missing one as <NA> whichever engine's missing it is."""
    return frame.astype(object).fillna("<NA>").astype(str).to_numpy().tolist()


def test_spark_features_equal_duckdb_features(world_dir: Path, spark: SparkSession) -> None:
    duck = _duckdb_features(world_dir, DATES)

    other = _spark_features(spark, world_dir, DATES)

    assert len(duck) > 300 and duck["as_of"].nunique() == 2
    assert duck["top_unowned_fit"].notna().any() and duck["nps_last"].notna().any()
    _assert_same(duck, other)


def test_spark_reader_cuts_off_rows_dated_on_or_after_as_of(
    world_dir: Path, spark: SparkSession, tmp_path: Path
) -> None:
    as_of = date.fromisoformat(AS_OF)
    scrambled = rewrite_future(world_dir, tmp_path / "scrambled", AS_OF, "scramble")

    other = _spark_features(spark, scrambled, [as_of], cutoff=as_of)

    _assert_same(_duckdb_features(world_dir, [as_of]), other)


def test_spark_training_set_equals_duckdb(world_dir: Path, spark: SparkSession) -> None:
    from expansion_scorer.features import spark as engine

    cfg = load_training_config()
    world = open_world(world_dir)
    features = resolve_plans(world.con, load_feature_set())  # affinity: learned, as shipped
    duck = training_set(world, features, cfg, None)

    other = training_set(
        open_world(world_dir), features, cfg, None, on=engine.read_world(spark, world_dir)
    )

    frame = duck.labelled
    assert len(frame) > 2000 and frame["as_of"].nunique() > 12 and frame["label"].sum() > 50
    _assert_same(frame, other.labelled)
    assert list(duck.status.columns) == list(other.status.columns)
    assert _cells(duck.status) == _cells(other.status)
    # the affinity each fold fits, and the features it gives, are the same on both engines
    dates = sorted(frame["as_of"].unique())[:-4]
    fitted = fit_affinity(duck.affinity_data(cfg.horizon_days), dates)
    assert fitted.pairs
    assert fit_affinity(other.affinity_data(cfg.horizon_days), dates).pairs == fitted.pairs
    own = features.with_catalogue(affinity=fitted.pairs)
    _assert_same(duck.evaluate(own), other.evaluate(own))
