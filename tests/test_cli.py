"""Command-line overrides go through the same validation as the config files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_cli

SHIPPED = Path(__file__).parents[1]


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--horizon-days", "3", "horizon_days: Input should be greater than or equal to 7"),
        ("--trials", "-1", "tuning.trials: Input should be greater than or equal to 0"),
    ],
)
def test_an_override_outside_a_fields_limits_stops_before_any_data_is_read(
    flag: str, value: str, says: str, unopened_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a data directory that does not exist: the override must stop first
    code, _, err = run_cli(["train", str(unopened_store / "nowhere"), flag, value], capsys)

    assert code == 2
    assert err.strip().splitlines() == [f"error: config command line: {says}"]
    assert not (unopened_store / "store").exists()  # nothing tracked, nothing registered


@pytest.mark.parametrize("command", ["score", "monitor", "measure"])
def test_a_template_typo_stops_the_command_before_any_data_is_read(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a serving config whose first motion label uses a filter that does not exist
    text = (SHIPPED / "serving" / "default.yaml").read_text(encoding="utf-8")
    broken = tmp_path / "serving.yaml"
    broken.write_text(text.replace("label: Add seats", "label: '{{ seats|nmu }}'"), "utf-8")
    out = tmp_path / "out"
    when = ["--as-of", "2024-01-01"] if command == "score" else []
    args = [command, str(tmp_path / "nowhere"), *when, "--out", str(out), "--config", str(broken)]

    code, _, err = run_cli(args, capsys)

    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"serving config {broken}: motion seats: label: template does not parse" in err
    assert not out.exists()


def test_score_loads_the_model_its_training_config_registers(
    mlflow_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = mlflow_store / "out"
    retail = ["--features", str(SHIPPED / "features" / "online_retail.yaml"), "--config",
              str(SHIPPED / "serving" / "online_retail.yaml")]  # fmt: skip
    # the Online Retail features and serving config with the built-in training config disagree
    code, _, err = run_cli(["score", str(mlflow_store), "--as-of", "2024-01-01", "--out",
                            str(out), *retail], capsys)  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "baselines.utilisation_feature" in err and "--training-config" in err

    # with its training config, score looks for that config's model (none is registered here)
    world = mlflow_store / "world"
    code, _, err = run_cli(["generate", "--out", str(world), "--accounts", "40", "--months", "8"],
                           capsys)  # fmt: skip
    assert code == 0, err
    training = ["--training-config", str(SHIPPED / "training" / "online_retail.yaml")]
    code, _, err = run_cli(["score", str(world), "--as-of", "2023-08-01", "--out", str(out),
                            *retail, *training], capsys)  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "models:/expansion-propensity-online-retail@champion cannot be loaded" in err
    assert not out.exists()


def test_a_program_world_is_advanced_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = tmp_path / "world"
    small = ["--accounts", "40", "--months", "8", "--seed", "3"]
    code, out, err = run_cli(
        ["generate", "--out", str(world), *small, "--program-start", "2023-06-01"], capsys
    )
    assert code == 0, err
    assert "simulated until 2023-06-01" in out

    # a week's touches from a CRM export (CSV), then the world moves on a week
    touches = tmp_path / "touches.csv"
    touches.write_text("account_id,touched_at,csm\r\nA000003,2023-06-06 10:00,Ana\r\n")
    code, out, err = run_cli(
        ["generate", "--out", str(world), "--advance-to", "2023-06-12", "--touches",
         str(touches)],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "simulated until 2023-07-01" in out
    assert (world / "touches.parquet").is_file()

    # a touch the world cannot take is one line, and the world stays as it was
    before = {p.name: p.read_bytes() for p in world.iterdir()}
    touches.write_text("account_id,touched_at\r\nNOPE,2023-06-13 10:00\r\n")
    code, _, err = run_cli(
        ["generate", "--out", str(world), "--advance-to", "2023-06-19", "--touches",
         str(touches)],
        capsys,
    )  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1 and "NOPE" in err
    assert {p.name: p.read_bytes() for p in world.iterdir()} == before
    code, _, err = run_cli(["generate", "--out", str(tmp_path / "none"), "--advance-to",
                            "2023-06-19"], capsys)  # fmt: skip
    assert code == 2 and "--program-start" in err


def test_progress_shows_on_a_terminal_only_and_never_under_quiet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    from expansion_scorer import progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.delenv(progress.QUIET, raising=False)
    assert list(progress.progress(range(3), "folds")) == [0, 1, 2]
    assert "folds" in terminal.getvalue() and "/3 [" in terminal.getvalue()  # done/total, time
    monkeypatch.setenv(progress.QUIET, "1")
    quiet = Terminal()
    monkeypatch.setattr("sys.stderr", quiet)
    assert list(progress.progress(range(3), "folds")) == [0, 1, 2]
    assert quiet.getvalue() == ""
    monkeypatch.setattr("sys.stderr", io.StringIO())  # a pipe or a log file
    monkeypatch.delenv(progress.QUIET)
    assert not progress.shown()
