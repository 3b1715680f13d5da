"""`--engine spark`: the same scores as DuckDB's, and bad input said in the same one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from tests.helpers import run_cli, write_tables

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

AS_OF = "2024-11-01"
"""After the champion's final fit months, as a weekly run is: both engines read the drift
reference training logged (`tests/serving/test_monitor.py` holds it to the data's), instead of
recomputing it (a minute on Spark; Spark's features of those months are held to DuckDB's by
`tests/features/test_spark.py`)."""


def test_spark_engine_scores_equal_duckdb_engine(
    small_world_dir: Path,
    champion: Path,
    spark: SparkSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outs = {}
    for engine in ("duckdb", "spark"):
        outs[engine] = tmp_path / engine
        code, _, err = run_cli(
            ["score", str(small_world_dir), "--as-of", AS_OF, "--out", str(outs[engine]),
             "--engine", engine],
            capsys,
        )  # fmt: skip
        assert code == 0, err

    duck = pd.read_parquet(outs["duckdb"] / "scores.parquet")
    other = pd.read_parquet(outs["spark"] / "scores.parquet")
    assert len(duck) > 50
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


def test_spark_monitor_equals_duckdb_monitor(
    small_world_dir: Path,
    champion: Path,
    spark: SparkSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "weekly"
    for week in ("2024-09-01", "2024-09-08"):
        args = ["score", str(small_world_dir), "--as-of", week, "--out", str(out)]
        code, _, err = run_cli(args, capsys)
        assert code == 0, err

    said = {}
    for engine in ("duckdb", "spark"):
        code, _, err = run_cli(
            ["monitor", str(small_world_dir), "--out", str(out), "--engine", engine], capsys
        )
        assert code == 0, err
        said[engine] = {
            name: (out / "monitor" / name).read_bytes() for name in ("drift.csv", "outcomes.csv")
        }

    outcomes = pd.read_csv(out / "monitor" / "outcomes.csv")
    assert len(outcomes) == 2 and (outcomes["lift_at_k"] > 0).all()
    assert said["spark"] == said["duckdb"]
