"""Score history: every weekly run's scores, reason-family impacts and numeric features, and the
holdout's assignments.

One DuckDB file under the output root, `history.duckdb`, keyed by (as_of, model_version,
account_id). A run stages its rows as Parquet; `apply_stage` replaces that week and model in one
transaction, so re-running a week replaces it and a run killed mid-write leaves the file as it
was. Readers only ever look at runs dated strictly before the as-of date they serve. The
`assignments` table is append-only, keyed by (period, account_id): an arm, once recorded, is
never replaced, whichever week is re-run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pandas as pd

from expansion_scorer.data.loading import sql_str
from expansion_scorer.errors import UserError
from expansion_scorer.program import outbox
from expansion_scorer.program.holdout import COMPARED, HOLDOUT

HISTORY_FILE = "history.duckdb"
TABLES = {
    "scores": """as_of DATE, model_version VARCHAR, account_id VARCHAR, account_name VARCHAR,
        csm_owner VARCHAR, rank INTEGER, score DOUBLE, band VARCHAR, on_list BOOLEAN,
        fired BOOLEAN, trigger VARCHAR, arm VARCHAR""",
    "drivers": "as_of DATE, model_version VARCHAR, account_id VARCHAR, family VARCHAR,"
    " points DOUBLE",
    "features": "as_of DATE, model_version VARCHAR, account_id VARCHAR, feature VARCHAR,"
    " value DOUBLE",
}
APPEND_ONLY = {
    "assignments": """period VARCHAR, account_id VARCHAR, arm VARCHAR, assigned_on DATE,
        draw DOUBLE, csm_owner VARCHAR, rank INTEGER, score DOUBLE, band VARCHAR,
        motion VARCHAR, model_version VARCHAR, horizon_days INTEGER, drafted_by VARCHAR""",
}
STAGED = {name: f"history/{name}.parquet" for name in TABLES}
"""Staged as written by the run: `scores` as rows, `drivers` and `features` wide (one column
per family or feature), unpivoted by DuckDB on the way in, which keeps a million-account week
out of a pandas melt."""
WIDE = {"drivers": ("family", "points"), "features": ("feature", "value")}


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path), read_only=read_only)
    if not read_only:
        for name, columns in {**TABLES, **APPEND_ONLY}.items():
            con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")
        # histories written before the holdout have no arm: their weeks had none
        con.execute("ALTER TABLE scores ADD COLUMN IF NOT EXISTS arm VARCHAR")
        # nor, before interleaving, which ranking drafted an assignment: none did
        con.execute("ALTER TABLE assignments ADD COLUMN IF NOT EXISTS drafted_by VARCHAR")
    return con


def _columns(spec: str) -> str:
    return ", ".join(c.split()[0] for c in spec.split(","))


def apply_stage(history: Path) -> Callable[[Path], None]:
    """Replace the staged week and model in `history`, every table in one transaction."""

    def apply(stage: Path) -> None:
        if not all((stage / rel).is_file() for rel in STAGED.values()):
            return
        con = _connect(history, read_only=False)
        try:
            keys = con.execute(
                "SELECT DISTINCT as_of, model_version FROM read_parquet(?)",
                [str(stage / STAGED["scores"])],
            ).fetchall()
            con.execute("BEGIN TRANSACTION")
            for name, rel in STAGED.items():
                for as_of, version in keys:
                    con.execute(
                        f"DELETE FROM {name} WHERE as_of = ? AND model_version = ?",
                        [as_of, version],
                    )
                columns = _columns(TABLES[name])
                source = f"read_parquet({sql_str(str(stage / rel))})"
                if name in WIDE:
                    names = con.execute(f"SELECT * FROM {source} LIMIT 0").fetchdf().columns
                    if len(names) <= 3:  # nothing scored: keys only
                        continue
                    key, value = WIDE[name]
                    source = (
                        f"{source} UNPIVOT INCLUDE NULLS ({value} FOR {key} IN"
                        " (COLUMNS(* EXCLUDE (as_of, model_version, account_id))))"
                    )
                con.execute(f"INSERT INTO {name} SELECT {columns} FROM {source}")
            for name, spec in APPEND_ONLY.items():
                staged = stage / f"history/{name}.parquet"
                if not staged.is_file():
                    continue
                found = set(
                    con.execute("SELECT * FROM read_parquet(?) LIMIT 0", [str(staged)]).fetchdf()
                )
                # a week staged before a column existed (drafted_by) holds none: NULL
                columns = ", ".join(
                    c if c in found else f"NULL AS {c}" for c in _columns(spec).split(", ")
                )
                con.execute(
                    f"""INSERT INTO {name} SELECT {columns} FROM read_parquet(?) s
                    WHERE NOT EXISTS (SELECT 1 FROM {name} t
                                      WHERE t.period = s.period AND t.account_id = s.account_id)""",
                    [str(staged)],
                )
            if (stage / outbox.STAGED).is_file():  # the week's deliveries, recorded with it
                outbox.merge(con, stage / outbox.STAGED)
            con.execute("COMMIT")
            con.execute("CHECKPOINT")
        finally:
            con.close()

    return apply


@dataclass(frozen=True)
class Past:
    """What the history holds before an as-of date, for triggers and cooldowns."""

    as_of: date | None
    """The latest earlier run, or None on the first run."""
    scores: pd.DataFrame
    drivers: pd.DataFrame
    """Wide: account_id, then points per family."""
    features: pd.DataFrame
    """Wide: account_id, then each stored numeric feature."""
    last_fired: pd.DataFrame
    """account_id, fired_on, fired_score: the latest trigger within the cooldown."""


EMPTY_SCORES = pd.DataFrame(columns=["account_id", "score", "band", "on_list"])


def read_past(history: Path, as_of: date, model_version: str, cooldown_weeks: int) -> Past:
    empty = Past(None, EMPTY_SCORES, pd.DataFrame(columns=["account_id"]),
                 pd.DataFrame(columns=["account_id"]),
                 pd.DataFrame(columns=["account_id", "fired_on", "fired_score"]))  # fmt: skip
    if not history.is_file():
        return empty
    con = _connect(history, read_only=True)
    try:
        row = con.execute(
            f"""SELECT as_of, model_version FROM (SELECT DISTINCT as_of, model_version
            FROM scores WHERE as_of < ?) ORDER BY as_of DESC,
            (model_version = {sql_str(model_version)}) DESC, model_version DESC LIMIT 1""",
            [as_of],
        ).fetchone()
        if row is None:
            return empty
        prev, version = row
        key = [prev, version]
        scores = con.execute(
            "SELECT account_id, score, band, on_list FROM scores"
            " WHERE as_of = ? AND model_version = ? ORDER BY account_id",
            key,
        ).df()
        drivers = _wide(con, "drivers", "family", "points", key)
        features = _wide(con, "features", "feature", "value", key)
        since = as_of - timedelta(weeks=cooldown_weeks)
        fired = con.execute(
            """SELECT account_id, arg_max(as_of, as_of) AS fired_on,
                      arg_max(score, as_of) AS fired_score
            FROM scores WHERE fired AND as_of < ? AND as_of >= ?
            GROUP BY account_id ORDER BY account_id""",
            [as_of, since],
        ).df()
    finally:
        con.close()
    return Past(prev, scores, drivers, features, fired)


def _wide(
    con: duckdb.DuckDBPyConnection, table: str, key: str, value: str, where: list[object]
) -> pd.DataFrame:
    """One run's rows of a long table as account_id plus one column per key, pivoted by DuckDB."""
    as_of, version = where
    rows = f"{table} WHERE as_of = DATE '{as_of}' AND model_version = {sql_str(str(version))}"
    found = con.execute(f"SELECT count(*) FROM {rows}").fetchone()
    if not found or not found[0]:
        return pd.DataFrame(columns=["account_id"])
    return con.execute(
        f"PIVOT (SELECT account_id, {key}, {value} FROM {rows}) ON {key}"
        f" USING first({value}) GROUP BY account_id ORDER BY account_id"
    ).df()


def read_runs(history: Path) -> pd.DataFrame:
    """Every run's scores: as_of, model_version, account_id, rank, score, on_list."""
    if not history.is_file():
        return pd.DataFrame(
            columns=["as_of", "model_version", "account_id", "rank", "score", "on_list"]
        )
    con = _connect(history, read_only=True)
    try:
        return con.execute(
            "SELECT as_of, model_version, account_id, rank, score, on_list FROM scores"
            " ORDER BY as_of, model_version, rank"
        ).df()
    finally:
        con.close()


def read_features(history: Path, as_of: date, model_version: str) -> pd.DataFrame:
    """The numeric features of one run, wide."""
    con = _connect(history, read_only=True)
    try:
        return _wide(con, "features", "feature", "value", [as_of, model_version])
    finally:
        con.close()


def keyed(wide: pd.DataFrame, as_of: date, model_version: str) -> pd.DataFrame:
    """A wide (account_id, columns...) frame with the history keys, values as float64."""
    if "account_id" not in wide.columns:  # nothing scored
        wide = pd.DataFrame({"account_id": pd.Series(dtype="str")})
    values = wide.drop(columns="account_id").apply(pd.to_numeric, errors="coerce")
    out = values.astype("float64")
    out.insert(0, "account_id", wide["account_id"].to_numpy())
    out.insert(0, "model_version", model_version)
    out.insert(0, "as_of", pd.Timestamp(as_of).date())
    return out


ASSIGNMENTS_STAGED = "history/assignments.parquet"


def read_assignments(
    history: Path, period: str | None = None, through: date | None = None
) -> pd.DataFrame:
    """Recorded arms: of one period (assigned on or before `through` when given), or all."""
    columns = [c.split()[0] for c in APPEND_ONLY["assignments"].split(",")]
    if not history.is_file():
        return pd.DataFrame(columns=columns)
    con = _connect(history, read_only=True)
    try:
        tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
        if "assignments" not in tables:
            return pd.DataFrame(columns=columns)
        where: list[str] = ["true"]
        args: list[object] = []
        if period is not None:
            where.append("period = ?")
            args.append(period)
        if through is not None:
            where.append("assigned_on <= ?")
            args.append(through)
        return con.execute(
            f"SELECT * FROM assignments WHERE {' AND '.join(where)}"
            " ORDER BY assigned_on, period, account_id",
            args,
        ).df()
    finally:
        con.close()


def randomized_assignments(
    out_root: Path, no_history: str, no_holdout: str
) -> tuple[Path, pd.DataFrame]:
    """The history under `out_root` and its compared (listed and held-out) assignments; one line
    when there is no history or nobody has been held out, ending with the caller's `no_history`
    or `no_holdout` (what to do, in the caller's terms)."""
    history = Path(out_root) / HISTORY_FILE
    if not history.is_file():
        raise UserError(f"{out_root}: no weekly history ({HISTORY_FILE}); {no_history}")
    assigned = read_assignments(history)
    randomized = assigned[assigned["arm"].isin(COMPARED)]
    if not (randomized["arm"] == HOLDOUT).any():
        raise UserError(f"{history}: no account has been held out yet; {no_holdout}")
    return history, randomized
