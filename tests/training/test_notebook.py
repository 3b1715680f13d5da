"""notebooks/retraining.ipynb runs top to bottom on a small world, as in CI."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "retraining.ipynb"


def test_retraining_notebook_runs(
    small_world_dir: Path, mlflow_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPANSION_DATA", str(small_world_dir))
    notebook = nbformat.read(NOTEBOOK, as_version=4)

    NotebookClient(notebook, timeout=600, kernel_name="python3").execute()

    outputs = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
    assert "as @champion" in outputs and "as @challenger" in outputs
    assert "aliases now:" in outputs
