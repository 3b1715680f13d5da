"""Source mappings: a company's own exports (or database tables) read as the contract's tables.

A mapping (`sources.yaml`) names, per contract table, either a file glob with a column map or a
SELECT that DuckDB runs over raw files (or, with `database:`, over a database named by URL). It
only decides where the `raw_<table>` rows come from; validation, the point-in-time cut-off and
the features are the same code as for a data directory.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from expansion_scorer.data.contract import TABLES
from expansion_scorer.errors import UserError
from expansion_scorer.yamldoc import parse_yaml

FORMATS: dict[str, Literal["parquet", "csv", "json"]] = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".ndjson": "json",
    ".jsonl": "json",
}
PRESETS = {
    "stripe": "stripe.yaml",
    "stripe-metered": "stripe_metered.yaml",
    "segment": "segment.yaml",
    "salesforce": "salesforce.yaml",
    "hubspot": "hubspot.yaml",
    "salesforce-activity": "salesforce_activity.yaml",
    "hubspot-engagements": "hubspot_engagements.yaml",
}
"""Shipped mapping entries, one vendor each, that `expansion sources NAME...` joins into one
mapping for a user to copy and edit; the files are `defaults/sources/<name>.yaml`."""

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TableMapping(_Strict):
    """Where one contract table comes from: `files` (+ `columns`), or `sql` (+ `database`)."""

    files: str | None = None
    """A glob of Parquet, CSV or JSON/NDJSON files, relative to the base folder."""
    columns: dict[str, str] = {}
    """Contract column -> the source column holding it (with `files`); the rest pass as named."""
    sql: str | None = None
    """A SELECT producing the contract's columns, run by DuckDB (or on `database`)."""
    database: str | None = None
    """The name of an entry of `databases:` the SELECT runs on."""

    @model_validator(mode="after")
    def _one_source(self) -> TableMapping:
        if (self.files is None) == (self.sql is None):
            raise ValueError("give either files (with columns) or sql")
        if self.columns and self.files is None:
            raise ValueError("columns renames the columns of files; with sql, rename in the SELECT")
        if self.database is not None and self.sql is None:
            raise ValueError("database needs a sql SELECT to run on it")
        if self.files is not None and Path(self.files).suffix.lower() not in FORMATS:
            raise ValueError(
                f"files {self.files}: use .parquet, .csv, .tsv, .json, .ndjson or .jsonl files"
            )
        return self


class SourceMap(_Strict):
    databases: dict[str, str] = {}
    """Databases by name: a URL whose password, if any, is `${ENV_VAR}` (or PGPASSWORD)."""
    tables: dict[str, TableMapping]

    @model_validator(mode="after")
    def _known_names(self) -> SourceMap:
        for name, entry in self.tables.items():
            if name not in TABLES:
                raise ValueError(
                    f"tables.{name}: not a contract table; use one of {', '.join(TABLES)}"
                )
            known = [c.name for c in TABLES[name].columns]
            for column in entry.columns:
                if column not in known:
                    raise ValueError(
                        f"tables.{name}.columns.{column}: not a column of {name};"
                        f" use one of {', '.join(known)}"
                    )
            if entry.database is not None and entry.database not in self.databases:
                raise ValueError(
                    f"tables.{name}.database: {entry.database} is not under databases;"
                    f" name one of {', '.join(self.databases) or '(none defined)'}"
                )
        for name, url in self.databases.items():
            password = urlsplit(url).password
            if password is not None and not _ENV.fullmatch(password):
                raise ValueError(
                    f"databases.{name}: the URL holds a password; write"
                    f" ${{{name.upper()}_PASSWORD}} in its place and set that environment"
                    " variable (or PGPASSWORD)"
                )
        return self


@dataclass(frozen=True)
class Sources:
    """A loaded mapping: where it came from and the folder its relative paths start from."""

    mapping: SourceMap
    path: Path
    data_dir: Path | None
    """Contract files of tables the mapping does not name are read from here, and relative
    paths resolve against it; without it, they resolve against the mapping file's folder."""

    @property
    def base(self) -> Path:
        return (self.data_dir if self.data_dir is not None else self.path.parent).resolve()

    def label(self, table: str) -> str:
        """How errors name a mapped table: the mapping file and its entry."""
        return f"{self.path.name} tables.{table}"


DataSource = Path | str | Sources
"""What a job reads: a data directory of contract files, a source mapping, or (the Spark
engine) a URI of a folder of contract files such as `hdfs://namenode/data`."""

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(data: DataSource) -> bool:
    """Written with a scheme (`hdfs://`, `s3a://`, `file://`): a location for Hadoop to open,
    not a local path."""
    return isinstance(data, str) and _SCHEME.match(data) is not None


def data_root(data: DataSource) -> Path | None:
    """The data directory, when there is one on this machine (where the generator's
    truth.parquet may sit)."""
    if isinstance(data, Sources):
        return data.data_dir
    if is_uri(data):
        parts = urlsplit(str(data))
        return Path(unquote(parts.path)) if parts.scheme == "file" else None
    return Path(data)


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def parse_sources(text: str, where: str) -> SourceMap:
    raw = parse_yaml(text, where)
    try:
        return SourceMap.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{where}: {_first_error(exc)}") from None


def load_sources(path: Path, data_dir: Path | None = None) -> Sources:
    """Read and check a mapping file; nothing is opened yet."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read source mapping {path}: {exc.strerror}") from None
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UserError(f"{data_dir}: not a directory; pass the folder the mapping's paths start")
    return Sources(parse_sources(text, path.name), path, Path(data_dir) if data_dir else None)


PRESET_HEADER = """\
# Source mapping for expansion-scorer, joined from the presets: {names}.
#
# Edit the paths, ids and fields marked below to your exports, then run
# `expansion validate --sources sources.yaml`. Relative paths start from DATA_DIR when a
# command is given one (`expansion validate exports/2025-06 --sources sources.yaml`), else
# from this file's folder; contract tables not mapped here are read from DATA_DIR as
# <table>.parquet or .csv. Each `sql:` is DuckDB SQL over the files and must produce the
# contract's columns (README, "The data contract"); `files:` with `columns:` maps a glob and
# renames columns. The one id every system must share is the product's own account id.

"""


def preset_text(names: list[str]) -> str:
    """The named presets joined into one mapping, comments kept; each table at most once."""
    unknown = [n for n in names if n not in PRESETS]
    if unknown or not names:
        raise UserError(
            f"preset {', '.join(unknown) or '(none)'}: unknown; use one or more of"
            f" {', '.join(PRESETS)}"
        )
    bodies: list[str] = []
    seen: dict[str, str] = {}
    for name in dict.fromkeys(names):
        text = (
            resources.files("expansion_scorer")
            .joinpath("defaults", "sources", PRESETS[name])
            .read_text(encoding="utf-8")
        )
        for table in parse_sources(text, PRESETS[name]).tables:
            if table in seen:
                raise UserError(
                    f"presets {seen[table]} and {name} both map {table}; choose one of them"
                )
            seen[table] = name
        bodies.append(text.split("\ntables:\n", 1)[1].rstrip() + "\n")
    joined = PRESET_HEADER.format(names=", ".join(dict.fromkeys(names))) + "tables:\n"
    joined += "\n".join(bodies)
    parse_sources(joined, "the joined presets")  # what is printed must load as it is
    return joined


def expand_files(sources: Sources, table: str, pattern: str) -> list[Path]:
    """The files a glob names, sorted; one format among them."""
    full = pattern if Path(pattern).is_absolute() else str(sources.base / pattern)
    found = sorted(Path(p) for p in glob.glob(full, recursive=True) if Path(p).is_file())
    if not found:
        raise UserError(
            f"{sources.label(table)}: files {pattern} matches no file under {sources.base};"
            " fix the path or the glob"
        )
    kinds = {FORMATS.get(p.suffix.lower()) for p in found}
    if len(kinds) != 1 or None in kinds:
        raise UserError(
            f"{sources.label(table)}: files {pattern} matches files of several formats;"
            " narrow the glob to one (.parquet, .csv or .json)"
        )
    return found
