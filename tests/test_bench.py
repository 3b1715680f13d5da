"""Every benchmark in bench/ still runs: its `--smoke` run (tiny sizes, seconds), once.

A benchmark's figures do not gate anything, but a benchmark that no longer runs (an import moved,
a definition changed under it) fails here instead of the next time someone needs its figure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import expansion_scorer
from tests.helpers import postgres_missing, spark_missing, unavailable

BENCH = Path(__file__).parents[1] / "bench"
CODE = Path(expansion_scorer.__file__).resolve().parents[1]
"""Where the package under test was imported from: the benchmarks run that code too."""
SCRIPTS = sorted(path.name for path in BENCH.glob("*.py") if not path.name.startswith("_"))
NEEDS: dict[str, Callable[[], str | None]] = {
    "pg_sink.py": postgres_missing,
    "score_engines.py": spark_missing,
}
"""The benchmarks that drive a part the machine may lack: what says whether it is missing."""


def test_every_benchmark_is_found() -> None:
    assert len(SCRIPTS) >= 13 and "score_explain.py" in SCRIPTS
    assert set(NEEDS) <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_benchmark_runs_in_its_smoke_mode(script: str, tmp_path: Path) -> None:
    missing = NEEDS[script]() if script in NEEDS else None
    if missing:
        unavailable(f"{script} cannot run: {missing}")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # its own store
    env["PYTHONPATH"] = os.pathsep.join([str(CODE), *filter(None, [env.get("PYTHONPATH")])])

    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--smoke", "--out", str(tmp_path / "out")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip

    assert done.returncode == 0, f"{script} --smoke failed:\n{done.stderr[-4000:]}"
    assert done.stdout.strip(), f"{script} --smoke printed no figures"
