"""The Spark engine's features: the same frame as DuckDB's, on the same point-in-time rules.

Both engines run one description of the reader, validation, eligibility and the base aggregates
(DuckDB's SQL, transpiled for Spark); these tests hold the two to 1e-9 on a generated world,
read by Spark from a local path or a `file://` URI, and hold validation to the same lines.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from expansion_scorer.config import load_training_config
from expansion_scorer.data.loading import open_world
from expansion_scorer.data.validation import validate
from expansion_scorer.errors import ContractError
from expansion_scorer.features import build, ledger, snapshots
from expansion_scorer.features.catalogue import catalogue, fit_affinity, resolve_plans
from expansion_scorer.serving.manifest import input_summary
from expansion_scorer.settings import load_feature_set
from expansion_scorer.training.dataset import training_set
from tests.helpers import TINY, rewrite_future, run_cli, write_tables

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


def test_spark_features_equal_duckdb_features(small_world_dir: Path, spark: SparkSession) -> None:
    duck = _duckdb_features(small_world_dir, DATES)

    other = _spark_features(spark, small_world_dir, DATES)

    assert len(duck) > 100 and duck["as_of"].nunique() == 2
    assert duck["top_unowned_fit"].notna().any() and duck["nps_last"].notna().any()
    _assert_same(duck, other)


def test_spark_reader_cuts_off_rows_dated_on_or_after_as_of(
    small_world_dir: Path, spark: SparkSession, tmp_path: Path
) -> None:
    as_of = date.fromisoformat(AS_OF)
    scrambled = rewrite_future(small_world_dir, tmp_path / "scrambled", AS_OF, "scramble")

    other = _spark_features(spark, scrambled, [as_of], cutoff=as_of)

    _assert_same(_duckdb_features(small_world_dir, [as_of]), other)


def test_spark_training_set_from_a_file_uri_equals_duckdb(
    small_world_dir: Path, spark: SparkSession
) -> None:
    from expansion_scorer.features import spark as engine

    cfg = load_training_config()
    world = open_world(small_world_dir)
    features = resolve_plans(world, load_feature_set())  # affinity: learned, as shipped
    duck = training_set(world, features, cfg, None)
    on_spark = engine.open_spark_world(small_world_dir.as_uri())  # the only world

    assert resolve_plans(on_spark, load_feature_set()) == features
    other = training_set(on_spark, features, cfg, None)

    frame = duck.labelled
    assert len(frame) > 1000 and frame["as_of"].nunique() > 12 and frame["label"].sum() > 50
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


def test_spark_world_from_a_uri_reads_and_validates_as_duckdb(
    small_world_dir: Path, spark: SparkSession
) -> None:
    from expansion_scorer.features import spark as engine

    as_of = date.fromisoformat(AS_OF)
    duck = open_world(small_world_dir, cutoff=as_of)
    other = engine.open_spark_world(small_world_dir.as_uri(), cutoff=as_of)

    assert validate(other, load_feature_set().events) == validate(duck, load_feature_set().events)
    summary = input_summary(other)
    assert summary == input_summary(duck)  # file names, rows, rows before as_of, content hashes
    assert summary["usage_events"]["rows_before_as_of"] < summary["usage_events"]["rows"]
    assert catalogue(other, load_feature_set()) == catalogue(duck, load_feature_set())


def _bad_tables(case: str) -> dict[str, pd.DataFrame]:
    tables = {name: frame.copy() for name, frame in TINY.items()}
    if case == "duplicate account":
        tables["accounts"].loc[2, "account_id"] = "A1"
    elif case == "unknown account":
        tables["subscriptions"].loc[3, "account_id"] = "Z7"
    elif case == "future row":
        tables["accounts"].loc[2, "created_at"] = "2025-01-01"
    return tables


def test_spark_validation_says_what_duckdb_says(spark: SparkSession, tmp_path: Path) -> None:
    from expansion_scorer.features import spark as engine

    said = {}
    for case in ("duplicate account", "unknown account", "future row"):
        data = write_tables(tmp_path / case.replace(" ", "_"), _bad_tables(case))
        lines = []
        for world in (open_world(data), engine.read_world(spark, data.as_uri())):
            try:
                lines.append("\n".join(validate(world).warnings))
            except ContractError as exc:
                lines.append(str(exc))
        said[case] = lines

    for case, (duck, other) in said.items():
        assert other == duck, case
    assert said["duplicate account"][0] == (
        "accounts.csv: column account_id, row 1 (account_id 'A1'): duplicate account_id 'A1'"
        " appears 2 times; account_id must be unique"
    )
    assert said["unknown account"][0].startswith(
        "subscriptions.csv: column account_id, row 4 (account_id 'Z7'): account not in accounts"
    )
    assert (
        "accounts.csv: 1 rows dated after the newest usage event (2024-04-01); check the"
        " export's cut-off"
    ) in said["future row"][0].splitlines()


def test_spark_world_at_a_missing_uri_is_one_line(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from expansion_scorer.features import spark as engine

    missing = (tmp_path / "nowhere").as_uri()
    code, out, err = run_cli(["train", missing, "--engine", "spark"], capsys)

    assert code == 2 and not out
    assert err.strip() == f"error: {missing}: not a directory; pass the folder holding the tables"
    both = write_tables(tmp_path / "both", TINY)
    TINY["accounts"].to_parquet(both / "accounts.parquet")
    with pytest.raises(ContractError) as duck:
        open_world(both)
    with pytest.raises(ContractError) as other:
        engine.read_world(spark, both)
    assert str(other.value) == str(duck.value)
    assert "both accounts.parquet and accounts.csv exist" in str(duck.value)
    code, _, err = run_cli(["train", missing], capsys)
    assert code == 2 and err.startswith(f"error: {missing}: DuckDB reads a local folder, not a URI")
