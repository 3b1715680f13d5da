"""Open a data directory (or a source mapping) as DuckDB views, typed per the contract and cut
off at a date.

Nothing is read into pandas here: the views scan the files in place. With a cutoff, every view
hides rows dated on or after it, and an `end_date` on or after it reads as open, which is how
the point-in-time rule holds by construction for scoring and for `train --train-until`.

Each table found becomes a view `raw_<table>` (the rows as written) and a view `<table>` (typed
and cut off). A source mapping only changes where `raw_<table>` comes from (`data/sources.py`);
everything after it is shared.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pandas as pd

from expansion_scorer.data.contract import REVENUE_SOURCES, SQL_TYPES, TABLES, TableSpec
from expansion_scorer.data.sources import DataSource, Sources, expand_files, is_uri
from expansion_scorer.errors import ContractError, UserError


@dataclass(frozen=True)
class TableSource:
    """Where a contract table's rows come from: one contract file, or one mapping entry."""

    label: str
    """How errors name it: `accounts.parquet`, or `sources.yaml tables.accounts`."""
    files: tuple[Path, ...]
    """The files it reads, when known (a SELECT's are not): hashed into the manifest."""
    sql: str | None = None
    """The mapping's SELECT, when it has one."""
    columns: tuple[tuple[str, str], ...] = ()
    """(contract column, source column) renamed by the mapping, for error messages."""
    mapped: bool = False
    """From a mapping entry: its errors say to fix the mapping, not to re-export a file."""

    def column(self, name: str) -> str:
        """`name`, or `name (from its_source_column)` when the mapping renamed it."""
        source = dict(self.columns).get(name)
        return f"{name} (from {source})" if source and source != name else name


class AnyWorld(Protocol):
    """What validation, the catalogue and the manifest read, on either engine: the tables
    found, and DuckDB SQL over the views `<table>` and `raw_<table>` (`World`, or the Spark
    engine's `SparkWorld`, which transpiles it)."""

    @property
    def tables(self) -> dict[str, TableSource]: ...
    @property
    def cutoff(self) -> date | None: ...
    @property
    def warnings(self) -> list[str]: ...
    @property
    def consumption(self) -> bool: ...
    def has(self, table: str) -> bool: ...
    def label(self, table: str) -> str: ...
    def rows(self, sql: str) -> list[tuple[Any, ...]]: ...
    def frame(self, sql: str) -> pd.DataFrame: ...
    def sha256(self, table: str) -> str: ...


class Tables:
    """What a world answers from the tables it holds, whichever engine reads them."""

    tables: dict[str, TableSource]

    def has(self, table: str) -> bool:
        return table in self.tables

    def label(self, table: str) -> str:
        return self.tables[table].label

    @property
    def consumption(self) -> bool:
        """Money comes from billed revenue (usage-based pricing), not from contracts."""
        return "revenue" in self.tables


@dataclass
class World(Tables):
    con: duckdb.DuckDBPyConnection
    tables: dict[str, TableSource]
    cutoff: date | None
    warnings: list[str] = field(default_factory=list)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of a DuckDB query over the world's views."""
        return self.con.execute(sql).fetchall()

    def frame(self, sql: str) -> pd.DataFrame:
        """A DuckDB query over the world's views, as a frame."""
        return self.con.execute(sql).df()

    def sha256(self, table: str) -> str:
        """The content hash of the contract file a table is read from."""
        return file_sha256(self.tables[table].files[0])


def file_sha256(path: Path) -> str:
    """A file's content hash, read in chunks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def is_consumption(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute("SELECT consumption FROM world_info").fetchone()
    return bool(row and row[0])


def sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def contract_files(data_dir: Path) -> dict[str, Path]:
    """The contract files a directory holds, `<table>.parquet` or `<table>.csv` (not both)."""
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
    return found


def check_tables(found: set[str], where: str, mapping: str | None = None) -> None:
    """Every mandatory table, and exactly one source of money, among those found."""

    def expected(name: str) -> str:
        files = f"{name}.parquet or {name}.csv in {where}"
        return f"map it under tables.{name} in {mapping} or put {files}" if mapping else files

    for spec in TABLES.values():
        if spec.mandatory and spec.name not in found:
            raise ContractError(f"{spec.name}: missing; {'' if mapping else 'expected '}"
                                f"{expected(spec.name)}")  # fmt: skip
    money = [name for name in REVENUE_SOURCES if name in found]
    if not money:
        raise ContractError(
            f"subscriptions: missing; {'' if mapping else 'expected '}{expected('subscriptions')}"
            " (or revenue for usage-based pricing)"
        )
    if len(money) == 2:
        raise ContractError(
            f"{where}: both subscriptions and revenue are present; keep one source of money"
        )


def locate_tables(data_dir: Path) -> dict[str, Path]:
    found = contract_files(data_dir)
    check_tables(set(found), str(data_dir))
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
    """SELECT casting each contract column; absent optional columns become typed NULLs.

    DuckDB's dialect; the Spark engine transpiles the same text (`typed_view`).
    """
    as_of = f"DATE '{cutoff}'"
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
        if col.default is not None:
            expr = f"coalesce({expr}, {col.default:g})"
        if cutoff is not None:
            expr = spec.as_known(col.name, expr, as_of)
        exprs.append(f'{expr} AS "{col.name}"')
    return ", ".join(exprs)


def typed_view(spec: TableSpec, present: list[str] | None, cutoff: date | None) -> str:
    """The query of view `<table>`: `raw_<table>` typed, without the rows dated on or after
    the cutoff; with `present` None, the table is absent and reads as empty."""
    if present is None:
        return f"SELECT {typed_select(spec, [], None)} WHERE false"
    where = ""
    if cutoff is not None:
        dated = f'TRY_CAST("{spec.dated_by}" AS {SQL_TYPES[spec.column(spec.dated_by).kind]})'
        where = f" WHERE {spec.known_before(dated, f'DATE {sql_str(str(cutoff))}')}"
    return f"SELECT {typed_select(spec, present, cutoff)} FROM raw_{spec.name}{where}"


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


def raw_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return list(con.sql(f"SELECT * FROM raw_{table} LIMIT 0").columns)


def _file_tables(con: duckdb.DuckDBPyConnection, files: dict[str, Path]) -> dict[str, TableSource]:
    for name, path in files.items():
        file_columns(con, path)  # readable, or one line saying it is not
        con.execute(f"CREATE VIEW raw_{name} AS SELECT * FROM {raw_source(path)}")
    return {name: TableSource(path.name, (path,)) for name, path in files.items()}


def _reader(paths: list[Path]) -> str:
    """A table function over files of one format, columns matched by name across files."""
    listed = "[" + ", ".join(sql_str(str(p)) for p in paths) + "]"
    suffix = paths[0].suffix.lower()
    if suffix in (".csv", ".tsv"):
        return f"read_csv({listed}, header=true, all_varchar=true, union_by_name=true)"
    if suffix in (".json", ".ndjson", ".jsonl"):
        return f"read_json({listed}, format='auto', union_by_name=true)"
    return f"read_parquet({listed}, union_by_name=true)"


def _mapped_files(
    con: duckdb.DuckDBPyConnection, sources: Sources, name: str, pattern: str
) -> TableSource:
    entry = sources.mapping.tables[name]
    label = sources.label(name)
    paths = expand_files(sources, name, pattern)
    try:
        present = list(con.sql(f"SELECT * FROM {_reader(paths)} LIMIT 0").columns)
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"{label}: files {pattern} cannot be read ({first}); fix the files"
                        " or the glob") from None  # fmt: skip
    renames = [(dst, src) for dst, src in entry.columns.items() if src != dst]
    for dst, src in entry.columns.items():
        if src not in present:
            raise UserError(
                f"{label}: column {src} (mapped to {dst}) is not in {pattern}; it has"
                f" {', '.join(present) or 'none'}; fix columns.{dst}"
            )
    dropped = {src for _, src in renames} | {dst for dst, _ in renames if dst in present}
    keep = ", ".join(f'"{c}"' for c in present if c not in dropped)
    renamed = ", ".join(f'"{src}" AS "{dst}"' for dst, src in renames)
    select = ", ".join(part for part in (keep, renamed) if part)
    con.execute(f"CREATE VIEW raw_{name} AS SELECT {select} FROM {_reader(paths)}")
    return TableSource(label, tuple(paths), columns=tuple(renames), mapped=True)


def _mapped_select(con: duckdb.DuckDBPyConnection, sources: Sources, name: str) -> TableSource:
    """The SELECT's rows, computed once into a temp table: a SELECT may join and aggregate,
    and every later read (validation, the typed view, each feature) would repeat it."""
    entry = sources.mapping.tables[name]
    label = sources.label(name)
    sql = str(entry.sql).strip().rstrip(";")
    if entry.database is not None:
        from expansion_scorer.data.database import read_select

        try:  # the URL as written: `read_select` fills ${ENV_VAR} and redacts every error
            rows = read_select(sources.mapping.databases[entry.database], sql)
        except UserError as exc:
            raise UserError(f"{label} (database {entry.database}): {exc}") from None
        con.register(f"__rows_{name}", rows)
        con.execute(f"CREATE TEMP TABLE raw_{name} AS SELECT * FROM __rows_{name}")
        con.unregister(f"__rows_{name}")
        return TableSource(label, (), sql=sql, mapped=True)
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"{label}: the sql does not parse ({first}); fix it") from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise UserError(f"{label}: the sql must be one SELECT statement; fix it")
    try:
        con.execute(f"CREATE TEMP TABLE raw_{name} AS {sql}")
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"{label}: the SELECT fails ({first}); fix it") from None
    return TableSource(label, (), sql=sql, mapped=True)


KINDS_ACCEPTED = {
    "date": ("DATE", "TIMESTAMP", "VARCHAR"),
    "timestamp": ("DATE", "TIMESTAMP", "VARCHAR"),
    "number": ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
               "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "DECIMAL", "VARCHAR"),
}  # fmt: skip
KINDS_ACCEPTED["money"] = KINDS_ACCEPTED["number"]


def _check_types(con: duckdb.DuckDBPyConnection, name: str, source: TableSource) -> None:
    """A mapped column of a type the contract cannot read (a date as a number, a count as a
    list) is the mapping's error, named before any value is read."""
    spec = TABLES[name]
    kinds = {c.name: c.kind for c in spec.columns}
    for column, sql_type in con.execute(
        f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM raw_{name})"
    ).fetchall():
        kind = kinds.get(column)
        if kind is None or kind == "str":
            continue
        if not str(sql_type).startswith(KINDS_ACCEPTED[kind]):
            what = {"date": "a date", "timestamp": "a timestamp"}.get(kind, "a number")
            hint = " (from Unix seconds: to_timestamp(x))" if kind in ("date", "timestamp") else ""
            raise UserError(
                f"{source.label}: column {source.column(column)} is {sql_type}, not {what};"
                f" cast it in the mapping{hint}"
            )


def _mapped_tables(con: duckdb.DuckDBPyConnection, sources: Sources) -> dict[str, TableSource]:
    """The mapping's tables, and from `sources.data_dir` the contract files it does not map."""
    con.execute(f"SET file_search_path = {sql_str(str(sources.base))}")
    found = contract_files(sources.data_dir) if sources.data_dir is not None else {}
    tables = _file_tables(con, {k: v for k, v in found.items() if k not in sources.mapping.tables})
    for name, entry in sources.mapping.tables.items():
        if entry.files is not None:
            tables[name] = _mapped_files(con, sources, name, entry.files)
        else:
            tables[name] = _mapped_select(con, sources, name)
        _check_types(con, name, tables[name])
    where = str(sources.data_dir) if sources.data_dir is not None else str(sources.base)
    check_tables(set(tables), where, mapping=sources.path.name)
    return {name: tables[name] for name in TABLES if name in tables}


def open_world(data: DataSource, cutoff: date | None = None, threads: int | None = None) -> World:
    """Views `<table>` (typed, cut off) and `raw_<table>` (as written) for every table found,
    from a data directory or through a source mapping."""
    if is_uri(data):
        raise UserError(
            f"{data}: DuckDB reads a local folder, not a URI; give a local path, or read the"
            " URI with --engine spark (train, score, monitor)"
        )
    if not isinstance(data, Sources):
        files = locate_tables(Path(data))  # before connecting: a wrong path costs nothing
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    _limit_memory(con)
    # Timestamps with a time zone (warehouse exports) read as UTC, whatever the machine's zone.
    con.execute("SET TimeZone = 'UTC'")
    tables = _mapped_tables(con, data) if isinstance(data, Sources) else _file_tables(con, files)
    con.execute(f"CREATE TEMP TABLE world_info AS SELECT {'revenue' in tables} AS consumption")
    for name, spec in TABLES.items():
        # an absent optional table reads as empty, with its columns
        present = raw_columns(con, name) if name in tables else None
        con.execute(f"CREATE VIEW {name} AS {typed_view(spec, present, cutoff)}")
    return World(con=con, tables=tables, cutoff=cutoff)
