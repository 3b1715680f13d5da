"""`bench/deliver.py --smoke` runs: the delivery benchmark does not stop working unseen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_the_delivery_benchmark_runs_its_smoke_size() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "deliver.py"), "--smoke"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "3 CSMs, 6 act-this-week accounts" in done.stdout
    assert "delivering the week:" in done.stdout
