"""Open a data directory as DuckDB views, typed per the contract and cut off at a date.

Nothing is read into pandas here: the views scan the files in place. With a cutoff, every view
hides rows dated on or after it, and an `end_date` on or after it reads as open, which is how
the point-in-time rule holds by construction for scoring and for `train --train-until`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb

from expansion_scorer.data.contract import REVENUE_SOURCES, SQL_TYPES, TABLES, TableSpec
from expansion_scorer.errors import ContractError, UserError


@dataclass
class World:
    con: duckdb.DuckDBPyConnection
    files: dict[str, Path]
    cutoff: date | None
    warnings: list[str] = field(default_factory=list)

    def has(self, table: str) -> bool:
        return table in self.files

    @property
    def consumption(self) -> bool:
        """Money comes from billed revenue (usage-based pricing), not from contracts."""
        return "revenue" in self.files


def is_consumption(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute("SELECT consumption FROM world_info").fetchone()
    return bool(row and row[0])


def sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def locate_tables(data_dir: Path) -> dict[str, Path]:
    if not data_dir.is_dir():
        raise ContractError(f"{data_dir}: not a directory; pass the folder holding the tables")
    found: dict[str, Path] = {}
    for spec in TABLES.values():
        candidates = [data_dir / f"{spec.name}.{ext}" for ext in ("parquet", "csv")]
        present = [p for p in candidates if p.is_file()]
        if len(present) == 2:
            raise ContractError(
                f"{spec.name}: both {present[0].name} and {present[1].name} exist in {data_dir};"
                " keep one"
            )
        if present:
            found[spec.name] = present[0]
        elif spec.mandatory:
            raise ContractError(
                f"{spec.name}: missing; expected {spec.name}.parquet or {spec.name}.csv"
                f" in {data_dir}"
            )
    money = [name for name in REVENUE_SOURCES if name in found]
    if not money:
        raise ContractError(
            f"subscriptions: missing; expected subscriptions.parquet or subscriptions.csv"
            f" in {data_dir} (or revenue.parquet/.csv for usage-based pricing)"
        )
    if len(money) == 2:
        raise ContractError(
            f"{data_dir}: both subscriptions and revenue are present; keep one source of money"
        )
    return found


def raw_source(path: Path) -> str:
    """A table function reading the file as written: CSV cells stay text until validated."""
    if path.suffix == ".csv":
        return f"read_csv({sql_str(str(path))}, header=true, all_varchar=true)"
    return f"read_parquet({sql_str(str(path))})"


def file_columns(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    try:
        rel = con.sql(f"SELECT * FROM {raw_source(path)} LIMIT 0")
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise ContractError(f"{path.name}: cannot be read ({first}); re-export the file") from None
    return list(rel.columns)


def typed_select(spec: TableSpec, present: list[str], cutoff: date | None) -> str:
    """SELECT casting each contract column; absent optional columns become typed NULLs."""
    exprs = []
    for col in spec.columns:
        sql_type = SQL_TYPES[col.kind]
        if col.name in present:
            expr = (
                f'CAST("{col.name}" AS VARCHAR)'
                if col.kind == "str"
                else f'TRY_CAST("{col.name}" AS {sql_type})'
            )
        else:
            expr = f"CAST(NULL AS {sql_type})"
        if spec.name == "usage_events" and col.name == "quantity":
            expr = f"coalesce({expr}, 1)"
        if cutoff is not None and spec.name == "subscriptions" and col.name == "end_date":
            expr = f"CASE WHEN {expr} < DATE '{cutoff}' THEN {expr} END"
        exprs.append(f'{expr} AS "{col.name}"')
    return ", ".join(exprs)


def _limit_memory(con: duckdb.DuckDBPyConnection) -> None:
    """EXPANSION_DUCKDB_MEMORY (such as 3GB) caps DuckDB's buffers; it spills beyond them to
    EXPANSION_DUCKDB_TEMP, or to DuckDB's own default temporary directory."""
    limit = os.environ.get("EXPANSION_DUCKDB_MEMORY")
    if limit:
        try:
            con.execute(f"SET memory_limit = {sql_str(limit)}")
        except duckdb.Error:
            raise UserError(
                f"EXPANSION_DUCKDB_MEMORY={limit!r} is not a memory size; use one like 3GB"
            ) from None
    spill = os.environ.get("EXPANSION_DUCKDB_TEMP")
    if spill:
        con.execute(f"SET temp_directory = {sql_str(spill)}")


def open_world(data_dir: Path, cutoff: date | None = None, threads: int | None = None) -> World:
    """Views `<table>` (typed, cut off) and `raw_<table>` (as written) for every table found."""
    files = locate_tables(Path(data_dir))
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    _limit_memory(con)
    con.execute(f"CREATE TEMP TABLE world_info AS SELECT {'revenue' in files} AS consumption")
    for name, spec in TABLES.items():
        if name not in files:  # an absent optional table reads as empty, with its columns
            con.execute(f"CREATE VIEW {name} AS SELECT {typed_select(spec, [], None)} WHERE false")
    for name, path in files.items():
        spec = TABLES[name]
        present = file_columns(con, path)
        con.execute(f"CREATE VIEW raw_{name} AS SELECT * FROM {raw_source(path)}")
        where = ""
        if cutoff is not None:
            dated = f'TRY_CAST("{spec.dated_by}" AS {SQL_TYPES[spec.column(spec.dated_by).kind]})'
            where = f" WHERE {dated} < DATE '{cutoff}'"
        con.execute(
            f"CREATE VIEW {name} AS SELECT {typed_select(spec, present, cutoff)}"
            f" FROM raw_{name}{where}"
        )
    return World(con=con, files=files, cutoff=cutoff)
