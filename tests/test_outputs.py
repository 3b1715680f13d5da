"""Outputs are safe to open in a spreadsheet and appear all at once or not at all."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from expansion_scorer.outputs import (
    csv_writer,
    neutralise_formulas,
    text_writer,
    write_outputs,
)


@pytest.mark.parametrize("cell", ["=1+1", "+33", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_formula_like_text_is_neutralised(cell: str) -> None:
    frame = pd.DataFrame({"name": [cell, "plain"], "score": [-0.5, 0.5]})
    out = neutralise_formulas(frame)
    assert out["name"].tolist() == ["'" + cell, "plain"]
    assert out["score"].tolist() == [-0.5, 0.5]  # numbers stay numbers


def test_a_failing_writer_leaves_earlier_outputs_and_no_staging(tmp_path: Path) -> None:
    write_outputs(
        tmp_path, {"a.csv": csv_writer(pd.DataFrame({"x": [1]})), "b.txt": text_writer("v1")}
    )

    def broken(path: Path) -> None:
        path.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_outputs(tmp_path, {"a.csv": csv_writer(pd.DataFrame({"x": [2]})), "b.txt": broken})

    assert (tmp_path / "a.csv").read_text() == "x\n1\n"
    assert (tmp_path / "b.txt").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.txt"]
