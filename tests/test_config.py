"""Configuration errors: one line naming the file, the field and what is wrong, before any data."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from expansion_scorer.config import (
    Engine,
    Settings,
    load_serving_config,
    load_training_config,
    override,
)
from expansion_scorer.errors import UserError
from expansion_scorer.settings import load_feature_set, load_settings
from expansion_scorer.tracking import ModelRef, resolve
from tests.helpers import run_cli

SHIPPED = Path(__file__).parents[1]


def _edited(tmp_path: Path, shipped: str, edit: dict[str, object]) -> Path:
    raw = yaml.safe_load((SHIPPED / shipped).read_text(encoding="utf-8"))
    raw.update(edit)
    path = tmp_path / Path(shipped).name
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def test_the_shipped_configs_load() -> None:
    assert load_training_config(SHIPPED / "training" / "default.yaml").horizon_days >= 7
    assert load_serving_config(SHIPPED / "serving" / "default.yaml").holdout.fraction <= 0.5


@pytest.mark.parametrize(
    ("shipped", "edit", "says"),
    [
        ("training/default.yaml", {"horizon_dayz": 90}, "horizon_dayz: Extra inputs"),
        ("training/default.yaml", {"horizon_days": 3}, "horizon_days: Input should be greater"),
        ("serving/default.yaml", {"holdout": {"fraction": 0.7}}, "holdout.fraction"),
        ("serving/default.yaml", {"rank_by": "luck"}, "rank_by"),
    ],
)
def test_a_config_mistake_is_one_line_naming_the_file_and_field(
    shipped: str, edit: dict[str, object], says: str, tmp_path: Path
) -> None:
    path = _edited(tmp_path, shipped, edit)
    load = load_training_config if shipped.startswith("training") else load_serving_config
    with pytest.raises(UserError) as caught:
        load(path)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert path.name in message and says in message


def test_an_override_is_validated_like_the_file() -> None:
    cfg = load_training_config()
    assert override(cfg, {"tuning.trials": 3}).tuning.trials == 3
    with pytest.raises(UserError, match="horizon_days"):
        override(cfg, {"horizon_days": 3})


def test_an_unknown_engine_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert [e.value for e in Engine] == ["duckdb", "spark"]
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        run_cli(["score", str(tmp_path), "--as-of", "2024-01-01", "--out", str(out), "--engine",
                 "flink"], capsys)  # fmt: skip
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "'flink' is not an engine; use one of duckdb, spark" in err
    assert not out.exists()


def test_the_shipped_recipes_load_as_one_settings_object() -> None:
    settings = load_settings()
    assert settings.champion() == "models:/expansion-propensity@champion"
    retail = load_settings(
        SHIPPED / "features" / "online_retail.yaml",
        SHIPPED / "training" / "online_retail.yaml",
        SHIPPED / "serving" / "online_retail.yaml",
    )
    # the model training registers is the one scoring loads
    assert retail.training is not None
    assert retail.champion() == f"models:/{retail.training.registered_model}@champion"
    assert retail.champion() == "models:/expansion-propensity-online-retail@champion"


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        ({"motions": {"seats": {"label": "Add seats", "families": ["seatz"]}}},
         "motion seats names unknown families seatz"),
        ({"triggers": {"top_band": "boiling"}}, "triggers.top_band boiling is not a band"),
        ({"readiness": [{"name": "young", "feature": "tenure", "op": "<", "value": 90,
                         "says": "too young"}]}, "readiness rule young reads unknown feature"),
        ({"motions": {"seats": {"label": "{{ seats|nmu }} seats", "families": ["seats"]}}},
         "motion seats: label: template does not parse (No filter named 'nmu'.)"),
    ],
)  # fmt: skip
def test_a_serving_config_that_disagrees_with_the_features_stops_at_load(
    edit: dict[str, object], says: str, tmp_path: Path
) -> None:
    path = _edited(tmp_path, "serving/default.yaml", edit)
    with pytest.raises(UserError) as caught:
        load_settings(serving=path)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"serving config {path}: ") and says in message


def test_a_training_config_that_disagrees_with_the_features_stops_at_load(tmp_path: Path) -> None:
    path = _edited(tmp_path, "training/default.yaml", {"season_feature": "month"})
    with pytest.raises(UserError, match=r"training config .*: season_feature names 'month'"):
        load_settings(training=path, serving=False)
    # the Online Retail features with the built-in training config: its baselines read seats
    with pytest.raises(UserError) as caught:
        load_settings(SHIPPED / "features" / "online_retail.yaml", None,
                      SHIPPED / "serving" / "online_retail.yaml")  # fmt: skip
    assert "baselines.utilisation_feature names 'seat_utilisation'" in str(caught.value)
    assert "pass --training-config" in str(caught.value)


def test_a_config_that_is_not_yaml_is_one_line_naming_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "training.yaml"
    path.write_text("horizon_days: 90\nlightgbm: {n_estimators: 300\nbacktest: {}\n")
    with pytest.raises(UserError) as caught:
        load_training_config(path)
    assert str(caught.value) == f"config {path} line 3: not valid YAML; fix its syntax"


def test_a_feature_whose_sql_does_not_bind_is_named_at_load(tmp_path: Path) -> None:
    raw = yaml.safe_load((SHIPPED / "features" / "features.yaml").read_text(encoding="utf-8"))
    third = raw["features"][2]
    third["sql"] = "seatz / 2"  # a typo in one definition among many that bind
    path = tmp_path / "features.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(UserError) as caught:
        load_feature_set(path)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"config {path}: feature {third['name']}: its sql does not run")
    assert "seatz" in message


def test_settings_built_in_code_are_checked_too() -> None:
    serving = load_serving_config().model_dump()
    serving["triggers"]["top_band"] = "boiling"
    with pytest.raises(ValueError, match="not a band"):
        Settings.model_validate({"features": load_feature_set(), "serving": serving})


def test_an_override_goes_through_the_settings(tmp_path: Path) -> None:
    settings = load_settings(serving=False, training_overrides={"horizon_days": 60})
    assert settings.training is not None and settings.training.horizon_days == 60
    with pytest.raises(UserError, match="config command line: horizon_days"):
        load_settings(serving=False, training_overrides={"horizon_days": 3})


def test_a_model_is_named_by_its_name_and_version(mlflow_store: Path) -> None:
    ref = ModelRef("expansion-propensity", "3")
    assert ref.uri == "models:/expansion-propensity/3"
    assert ref.label == "expansion-propensity v3"
    assert ModelRef.from_label(ref.label) == ref
    assert ModelRef.from_label("runs:/abc/model") is None
    from expansion_scorer.tracking import configure

    client = configure()
    assert resolve(client, ref.uri) == ref
    assert resolve(client, "runs:/abc/model") is None
