"""Writing outputs safely: all files staged first, then renamed into place together.

A run that fails before the renames leaves the previous outputs untouched; the renames
themselves are atomic per file on one filesystem.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells a spreadsheet would run as formulas get a leading apostrophe (OWASP)."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(
                lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_PREFIXES) else v
            )
    return out


def write_outputs(out_dir: Path, writers: dict[str, Callable[[Path], None]]) -> list[Path]:
    """Call each writer on a staging path, then move every file into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
    try:
        for name, write in writers.items():
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            write(stage / name)
        final = []
        for name in writers:
            (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / name, out_dir / name)
            final.append(out_dir / name)
        return final
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def csv_writer(frame: pd.DataFrame) -> Callable[[Path], None]:
    safe = neutralise_formulas(frame)
    return lambda path: safe.to_csv(path, index=False, encoding="utf-8")


def parquet_writer(frame: pd.DataFrame) -> Callable[[Path], None]:
    return lambda path: frame.to_parquet(path, index=False)


def bytes_writer(data: bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(data)

    return write


def text_writer(text: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_text(text, encoding="utf-8")

    return write
