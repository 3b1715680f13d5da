"""Configuration errors: one line naming the file, the field and what is wrong, before any data."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from expansion_scorer.config import (
    Engine,
    load_serving_config,
    load_training_config,
    override,
)
from expansion_scorer.errors import UserError
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
