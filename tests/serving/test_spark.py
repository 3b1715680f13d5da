"""`--engine spark`: the same features and scores as DuckDB's, on the same point-in-time rules."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from expansion_scorer.config import load_feature_set
from expansion_scorer.data.loading import open_world
from expansion_scorer.features import build, ledger, snapshots
from tests.helpers import rewrite_future, run_cli, write_tables

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

AS_OF = "2024-09-01"
DATES = [date(2024, 3, 1), date(2024, 9, 1)]
AFFINITY = {"export_report": "Analytics", "schedule_task": "Automation", "api_call": "Integrations"}
"""A fitted affinity (`affinity: learned` fits one in training), so the affinity features read
something in both engines."""


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    """One local session on two cores for the module; CI must have Java and pyspark."""
    missing = None
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        missing = "pyspark is not installed (make install installs it)"
    if missing is None and not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        missing = "Java is missing (.ci/run installs openjdk-17-jre-headless as root)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the Spark engine cannot be tested: {missing}")
        pytest.skip(missing)
    python = os.environ.get("PYSPARK_PYTHON")
    os.environ["PYSPARK_PYTHON"] = sys.executable  # the UDF's workers need this venv
    session = (
        SparkSession.builder.master("local[2]")
        .appName("expansion-scorer-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    # Stopping a session leaves its JVM running (1.5 GB resident); the rest of the suite
    # trains models on the same two cores, so end the JVM this fixture started.
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is not None:
        gateway.shutdown()
        proc = getattr(gateway, "proc", None)
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        SparkContext._gateway = None
        SparkContext._jvm = None
    if python is None:
        del os.environ["PYSPARK_PYTHON"]
    else:
        os.environ["PYSPARK_PYTHON"] = python


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


def test_spark_engine_scores_equal_duckdb_engine(
    world_dir: Path,
    champion: Path,
    spark: SparkSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outs = {}
    for engine in ("duckdb", "spark"):
        outs[engine] = tmp_path / engine
        code, _, err = run_cli(
            ["score", str(world_dir), "--as-of", AS_OF, "--out", str(outs[engine]),
             "--engine", engine],
            capsys,
        )  # fmt: skip
        assert code == 0, err

    duck = pd.read_parquet(outs["duckdb"] / "scores.parquet")
    other = pd.read_parquet(outs["spark"] / "scores.parquet")
    assert len(duck) > 100
    assert other["account_id"].tolist() == duck["account_id"].tolist()
    np.testing.assert_allclose(other["score"], duck["score"], rtol=0, atol=1e-9)
    words = ["band", "readiness", "motion", "reason_1", "reason_2", "reason_3", "reason_against"]
    assert other[words].equals(duck[words])
    assert (outs["spark"] / "excluded.csv").read_bytes() == (
        outs["duckdb"] / "excluded.csv"
    ).read_bytes()
    manifest = json.loads((outs["spark"] / "manifest.json").read_text())
    assert manifest["engine"] == "spark"


def test_spark_engine_reports_bad_input_in_one_line(
    tiny_tables: dict[str, pd.DataFrame], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny_tables["usage_events"].loc[1, "timestamp"] = "yesterday"
    data = write_tables(tmp_path / "data", tiny_tables)

    said = []
    for engine in ("duckdb", "spark"):
        out = tmp_path / engine
        code, _, err = run_cli(
            ["score", str(data), "--as-of", AS_OF, "--out", str(out), "--engine", engine], capsys
        )
        assert code == 2 and not out.exists()
        said.append(err)

    assert said[0] == said[1]
    assert len(said[1].strip().splitlines()) == 1 and "timestamp" in said[1]
