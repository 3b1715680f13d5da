"""Writing outputs safely: all files staged first, then renamed into place together.

A run that fails or is killed before its stage is complete leaves the previous outputs
untouched. A complete stage is marked `COMMITTED` before anything is published; a run killed
after that point is finished by the next writer to the folder (`recover`), which applies the
stage again and renames what is left, so the folder never stays half old, half new.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import pandas as pd

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
LEADING_BLANKS = " \t\r\n\u00a0\ufeff"
"""Characters a spreadsheet may skip before it reads a formula: a cell is judged without them."""
COMMITTED = "COMMITTED"
STAGE_PREFIX = ".staging-"
Apply = Callable[[Path], None]
"""Work a stage carries besides its files (a history update): must be safe to run twice."""


def neutral_text(value: str) -> str:
    """A text cell a spreadsheet cannot run: a leading apostrophe before any formula start (OWASP).

    The cell is judged after leading blanks and line breaks, so `"\\n=1+1"` is caught too.
    """
    if value.startswith(FORMULA_PREFIXES) or value.lstrip(LEADING_BLANKS).startswith(
        FORMULA_PREFIXES
    ):
        return "'" + value
    return value


def _cell(value: object) -> object:
    """The cell as the CSV holds it: text made final (lists joined, then neutralised), numbers as
    they are, missing values empty."""
    if isinstance(value, list | tuple):
        value = " | ".join(str(v) for v in value)
    if isinstance(value, str):
        return neutral_text(value)
    if value is None or (isinstance(value, float) and value != value) or value is pd.NaT:
        return ""
    return value


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Every text cell of `frame` as `write_csv` writes it; numbers stay numbers."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(_cell)
    return out


def write_csv(frame: pd.DataFrame, path: Path | BinaryIO) -> None:
    """The one CSV writer: RFC 4180 (CRLF rows; any field holding a comma, a quote, CR or LF is
    quoted), UTF-8, every text cell neutralised as its last step.

    Quoting every field that holds a line break is what stops row forging: a name holding a bare
    CR would otherwise end the row in spreadsheets and start a new one with a live formula.
    """
    safe = neutralise_formulas(frame)
    safe.columns = [neutral_text(str(c)) for c in safe.columns]
    safe.to_csv(
        path, index=False, encoding="utf-8", lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL
    )


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """What `write_csv` writes, as bytes (a mail attachment)."""
    buffer = io.BytesIO()
    write_csv(frame, buffer)
    return buffer.getvalue()


@contextmanager
def locked(out_dir: Path) -> Iterator[None]:
    """One writer at a time per output folder (an advisory lock on `out_dir/.lock`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_outputs(
    out_dir: Path,
    writers: dict[str, Callable[[Path], None]],
    staged: dict[str, Callable[[Path], None]] | None = None,
    apply: Apply | None = None,
) -> list[Path]:
    """Call each writer on a staging path, then move every file into `out_dir`.

    `staged` files are written into the stage but not published; `apply(stage)` runs after the
    stage is committed and before the renames (and again by `recover` if the run dies).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    recover(out_dir, apply)
    stage = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=out_dir))
    try:
        for name, write in {**(staged or {}), **writers}.items():
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            write(stage / name)
        marker = stage / f"{COMMITTED}.tmp"
        marker.write_text(json.dumps(list(writers)), encoding="utf-8")
        _fsync_tree(stage)
        os.replace(marker, stage / COMMITTED)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return _publish(out_dir, stage, apply)


def recover(out_dir: Path, apply: Apply | None = None) -> list[Path]:
    """Finish the stages a killed run committed; delete the ones it had not."""
    published: list[Path] = []
    for stage in sorted(out_dir.glob(f"{STAGE_PREFIX}*")):
        if (stage / COMMITTED).is_file():
            published += _publish(out_dir, stage, apply)
        else:
            shutil.rmtree(stage, ignore_errors=True)
    return published


def _publish(out_dir: Path, stage: Path, apply: Apply | None) -> list[Path]:
    names = json.loads((stage / COMMITTED).read_text(encoding="utf-8"))
    if apply is not None:
        apply(stage)
    final = []
    for name in names:
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        if (stage / name).exists():  # absent when an earlier, killed publish moved it
            os.replace(stage / name, out_dir / name)
        final.append(out_dir / name)
    shutil.rmtree(stage, ignore_errors=True)
    return final


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def csv_writer(frame: pd.DataFrame) -> Callable[[Path], None]:
    return lambda path: write_csv(frame, path)


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
