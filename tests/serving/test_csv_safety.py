"""No CSV the project writes can be forged or run as a formula, whatever the names in the data.

Each file is read back twice, with Python's `csv` module and with DuckDB: both must see the
same rows and cells, and no text cell may start as a spreadsheet formula (OWASP's list).
"""

from __future__ import annotations

import ast
import csv
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from expansion_scorer.outputs import neutral_text, write_csv
from tests.helpers import HOSTILE_NAMES, run_cli, with_hostile_names

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
WEEK_1, WEEK_2 = "2024-09-01", "2024-09-08"


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def read_both_ways(path: Path) -> list[list[str]]:
    """The file's rows (header first) as `csv` reads them, checked equal to what DuckDB reads."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    con = duckdb.connect()
    duck = con.execute(
        "SELECT * FROM read_csv(?, header = true, all_varchar = true, quote = '\"',"
        " escape = '\"', delim = ',', strict_mode = true)",
        [str(path)],
    )
    names = [d[0] for d in duck.description]
    seen = [["" if v is None else v for v in r] for r in duck.fetchall()]
    assert names == header, path
    assert seen == body, path
    return rows


def assert_safe(rows: list[list[str]], path: Path) -> None:
    width = len(rows[0])
    for row in rows:
        assert len(row) == width, (path, row)
        for cell in row:
            if cell and not _is_number(cell):
                assert not cell.startswith(FORMULA_STARTS), (path, cell)
                assert not cell.lstrip(" \n\r\t").startswith(FORMULA_STARTS), (path, cell)


def test_hostile_text_round_trips_as_the_same_cells_and_never_as_a_formula(
    tmp_path: Path,
) -> None:
    # Given every hostile name in a text column, a list column and a header, beside numbers
    n = len(HOSTILE_NAMES)
    frame = pd.DataFrame(
        {
            "name": list(HOSTILE_NAMES),
            "amount": [-1.5 * i for i in range(n)],
            "points": [list(HOSTILE_NAMES[i : i + 2]) for i in range(n)],
            "=HYPERLINK(1)": ["x"] * n,
        }
    )

    # When it is written
    write_csv(frame, tmp_path / "t.csv")

    # Then both readers see one header and one row per name, cells as neutralised
    rows = read_both_ways(tmp_path / "t.csv")
    assert len(rows) == n + 1
    assert [r[0] for r in rows[1:]] == [neutral_text(v) for v in HOSTILE_NAMES]
    assert [float(r[1]) for r in rows[1:]] == frame["amount"].tolist()  # negative numbers stay
    assert rows[0][3] == "'=HYPERLINK(1)"
    assert_safe(rows, tmp_path / "t.csv")
    raw = (tmp_path / "t.csv").read_bytes()
    assert b'"\'\r=1+1"' in raw and b'"\'\n=1+1"' in raw  # line breaks only inside quotes


def test_every_csv_of_a_weekly_run_and_the_metrics_is_safe_with_hostile_names(
    small_world_dir: Path, champion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a world whose every account, CSM and segment name is hostile
    data = with_hostile_names(small_world_dir, tmp_path / "data", every=True)
    accounts = pd.read_parquet(data / "accounts.parquet")

    # When two weekly runs write their lists, and the metrics are computed by segment
    out = tmp_path / "out"
    for as_of in (WEEK_1, WEEK_2):
        code, _, err = run_cli(
            ["score", str(data), "--as-of", as_of, "--out", str(out), "--per-csm"], capsys
        )
        assert code == 0, err
    code, _, err = run_cli(["metrics", str(data), "--out", str(tmp_path / "m"), "--by",
                            "segment"], capsys)  # fmt: skip
    assert code == 0, err

    # Then every CSV reads back the same both ways, cell for cell, and none holds a formula
    files = sorted([*out.rglob("*.csv"), *(tmp_path / "m").rglob("*.csv")])
    assert {p.name for p in files} >= {"scores.csv", "excluded.csv", "triggers.csv",
                                       "nrr_by_segment.csv"}  # fmt: skip
    for path in files:
        assert_safe(read_both_ways(path), path)
    # and the lists hold each account once, named as the data names it (neutralised)
    scores = read_both_ways(out / "scores.csv")
    excluded = read_both_ways(out / "excluded.csv")
    names = dict(zip(accounts["account_id"], accounts["account_name"], strict=True))
    for rows in (scores, excluded):
        col_id, col_name = rows[0].index("account_id"), rows[0].index("account_name")
        for r in rows[1:]:
            assert r[col_name] == neutral_text(names[r[col_id]])
    owners = {r[scores[0].index("csm_owner")] for r in scores[1:]}
    assert len(list((out / "per_csm").glob("*.csv"))) == len(owners)  # one list a CSM
    listed = [r[rows[0].index("account_id")] for rows in (scores, excluded) for r in rows[1:]]
    assert len(listed) == len(set(listed))
    triggers = read_both_ways(out / "triggers.csv")
    assert len(triggers) > 1  # the hostile names reached triggers.csv too


def test_the_package_writes_csv_only_through_the_one_writer() -> None:
    # Given every module of the package
    root = Path(__file__).parents[2] / "src" / "expansion_scorer"
    writers = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("to_csv", "writer", "DictWriter"):
                writers.append(f"{path.relative_to(root)}:{node.lineno}:{node.attr}")

    # Then only outputs.py writes CSV
    assert writers and all(w.startswith("outputs.py:") for w in writers), writers
