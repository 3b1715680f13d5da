"""Command-line overrides go through the same validation as the config files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_cli


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--horizon-days", "3", "horizon_days: Input should be greater than or equal to 7"),
        ("--trials", "-1", "tuning.trials: Input should be greater than or equal to 0"),
    ],
)
def test_an_override_outside_a_fields_limits_stops_before_any_data_is_read(
    flag: str, value: str, says: str, mlflow_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a data directory that does not exist: the override must stop first
    code, _, err = run_cli(["train", str(mlflow_store / "nowhere"), flag, value], capsys)

    assert code == 2
    assert err.strip().splitlines() == [f"error: config command line: {says}"]
    assert not (mlflow_store / "store").exists()  # nothing tracked, nothing registered
