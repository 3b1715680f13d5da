"""The schedules in serving/ call the CLI with arguments it accepts, in the right order."""

from __future__ import annotations

import runpy
import shlex
import sys
import types
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import jinja2
import pytest

from expansion_scorer.cli import build_parser

SERVING = Path(__file__).parents[2] / "serving"


def _cli_args(command: str) -> list[list[str]]:
    """The argument lists of every `expansion` call in a shell command line."""
    calls = []
    for part in command.split("&&"):
        words = shlex.split(part.split(">>")[0])
        if words and words[0].endswith("bin/expansion"):
            calls.append(words[1:])
    return calls


def test_the_cron_line_runs_score_then_monitor_as_of_the_day() -> None:
    lines = [
        line
        for line in (SERVING / "weekly.cron").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#") and "=" not in line.split()[0]
    ]
    assert len(lines) == 1
    fields = lines[0].split(maxsplit=5)
    assert fields[:5] == ["0", "6", "*", "*", "1"]  # Mondays at 06:00
    command = fields[5].replace("$(date +\\%F)", "2024-09-02")
    for name in ("HOME", "DATA", "OUT"):
        command = command.replace(f"$EXPANSION_{name}", f"/srv/{name.lower()}")

    calls = _cli_args(command)

    assert [c[0] for c in calls] == ["score", "monitor"]
    score = build_parser().parse_args(calls[0])
    assert str(score.as_of) == "2024-09-02" and score.per_csm
    assert build_parser().parse_args(calls[1]).out == score.out


class _Task:
    def __init__(self, task_id: str, bash_command: str) -> None:
        self.task_id, self.bash_command, self.downstream = task_id, bash_command, []
        _Task.made.append(self)

    made: ClassVar[list[_Task]] = []

    def __rshift__(self, other: _Task) -> _Task:
        self.downstream.append(other)
        return other


class _Dag:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    def __enter__(self) -> _Dag:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def test_the_airflow_dag_validates_scores_and_monitors_as_of_the_interval_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Airflow is not a dependency: the DAG file runs against stand-ins of its two classes."""
    sdk = types.ModuleType("airflow.sdk")
    sdk.DAG = _Dag  # type: ignore[attr-defined]
    bash = types.ModuleType("airflow.providers.standard.operators.bash")
    bash.BashOperator = _Task  # type: ignore[attr-defined]
    for name in ("airflow", "airflow.providers", "airflow.providers.standard",
                 "airflow.providers.standard.operators"):  # fmt: skip
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "airflow.sdk", sdk)
    monkeypatch.setitem(sys.modules, "airflow.providers.standard.operators.bash", bash)
    _Task.made = []

    module = runpy.run_path(str(SERVING / "airflow_dag.py"))

    dag = module["dag"]
    assert dag.kwargs["schedule"] == "0 6 * * 1" and dag.kwargs["max_active_runs"] == 1
    tasks = {t.task_id: t for t in _Task.made}
    assert [t.task_id for t in tasks["validate"].downstream] == ["score"]
    assert [t.task_id for t in tasks["score"].downstream] == ["monitor"]
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["ds"] = lambda d: d.strftime("%Y-%m-%d")
    context = {
        "data_interval_end": datetime(2024, 9, 2, 6),
        "var": {"value": {"expansion_home": "/srv/app", "expansion_data": "/srv/data",
                          "expansion_out": "/srv/out"}},
    }  # fmt: skip
    rendered = {k: env.from_string(t.bash_command).render(context) for k, t in tasks.items()}
    parsed = {k: build_parser().parse_args(_cli_args(c)[0]) for k, c in rendered.items()}
    assert parsed["validate"].command == "validate"
    assert str(parsed["score"].as_of) == "2024-09-02"
    assert str(parsed["score"].out) == str(parsed["monitor"].out) == "/srv/out"
