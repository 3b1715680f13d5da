"""`bench/program_measure.py --smoke`: the program benchmark runs end to end on a tiny world, so
it never stops working unseen."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "bench" / "program_measure.py"


def test_the_program_benchmark_smoke_run_measures_one_seed(
    champion: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(BENCH.parent))  # its shared `_args`, as a script finds it
    bench = runpy.run_path(str(BENCH), run_name="bench")
    uri = f"sqlite:///{champion / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)  # the benchmark works in its own folder; this one comes back

    rows = bench["run"](bench["parse"](["--smoke", "--keep", "--tracking-uri", uri, "--out",
                                        str(tmp_path / "bench")]))  # fmt: skip

    assert len(rows) == 1
    row = rows[0]
    assert row["low"] <= row["estimate"] <= row["high"]
    assert row["adjusted_low"] <= row["adjusted"] <= row["adjusted_high"]
    assert row["always_low"] < row["always_high"] and row["looks"] == 2
    assert row["plan_two_quarters"] > 0

    # and the kept seed, measured again with the current code, draws again and checks the plan
    kept = ["--kept", str(tmp_path / "bench"), "--redraws", "1", "--plan-check",
            "--check-replicates", "2", "--check-effects", "0.3", "--check-reps", "20"]  # fmt: skip
    again = bench["remeasure"](bench["parse"](kept))
    assert [r["seed"] for r in again] == [row["seed"]]
    assert abs(again[0]["estimate"] - row["estimate"]) < 1e-12
    assert abs(again[0]["true"] - row["true"]) < 1e-12
