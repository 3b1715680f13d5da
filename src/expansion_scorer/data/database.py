"""PostgreSQL by URL, as a source (`read_select`) and for the score sink: URLs, redaction, errors.

The driver is ADBC's libpq driver (`adbc-driver-postgresql`): both directions are binary COPY
straight between PostgreSQL and Arrow in C, so rows never pass through Python objects, and its
wheels bundle libpq. Passwords come from the URL (literally or as `${ENV_VAR}`), from
PGPASSWORD or from ~/.pgpass (libpq reads the last two itself), and every text that leaves this
module for a person, a log or a file goes through `redact` first.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import pyarrow as pa

from expansion_scorer.errors import UserError

SCHEMES = ("postgresql", "postgres")
CONNECT_TIMEOUT_S = 10
"""libpq's `connect_timeout` unless the URL sets one: a host that drops packets ends in seconds."""

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/@\s:]*):[^\s/]*@")
_PARAM_PASSWORD = re.compile(r"(?i)\b((?:ssl)?password\s*=\s*)('[^']*'|[^&\s]*)")
_SECRET_PARAMS = ("password", "sslpassword")


class DatabaseError(UserError):
    """The database could not be reached or refused what was asked; the message is redacted."""


def redact(text: str, *secrets: str) -> str:
    """`text` with every password removed: the given secrets and PGPASSWORD's value (as written
    and percent-encoded), the password part of any URL and any `password=` setting.

    Every error, log line and manifest entry about a database goes through this one function.
    """
    known = {s for s in (*secrets, os.environ.get("PGPASSWORD", "")) if s}
    forms = {f for s in known for f in (s, quote(s, safe=""), quote(s))}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    text = _URL_PASSWORD.sub(r"\1@", text)
    return _PARAM_PASSWORD.sub(r"\1***", text)


@dataclass(frozen=True)
class Database:
    """A PostgreSQL URL taken apart; `uri` is for libpq only, `display` for everyone else."""

    user: str
    host: str
    port: str
    dbname: str
    params: tuple[tuple[str, str], ...]
    password: str = field(default="", repr=False)

    @property
    def where(self) -> str:
        """host:port, as a person would look it up ('local socket' when the URL names none)."""
        host = self.host if self.host.startswith("/") else _bracket(self.host)
        return f"{host or 'local socket'}:{self.port or 5432}"

    @property
    def display(self) -> str:
        """The URL without its password, safe to print, log and record."""
        user = f"{quote(self.user, safe='')}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        shown = [(k, v) for k, v in self.params if k.lower() not in _SECRET_PARAMS]
        query = f"?{urlencode(shown)}" if shown else ""
        text = f"postgresql://{user}{_bracket(self.host)}{port}/{quote(self.dbname)}{query}"
        return redact(text, self.password)  # holds none by construction; redact says so

    @property
    def uri(self) -> str:
        """What libpq connects with: the password percent-encoded, a connect timeout added."""
        userinfo = quote(self.user, safe="")
        if self.password:
            userinfo += ":" + quote(self.password, safe="")
        port = f":{self.port}" if self.port else ""
        params = list(self.params)
        names = {k for k, _ in params}
        if "connect_timeout" not in names:
            params.append(("connect_timeout", str(CONNECT_TIMEOUT_S)))
        if "application_name" not in names:
            params.append(("application_name", "expansion-scorer"))
        at = "@" if userinfo else ""
        host = _bracket(self.host)
        return f"postgresql://{userinfo}{at}{host}{port}/{quote(self.dbname)}?{urlencode(params)}"

    def redact(self, text: str) -> str:
        return redact(text, self.password)


def _bracket(host: str) -> str:
    """A host as a URL holds it: IPv6 in brackets, a socket directory percent-encoded."""
    if host.startswith("/"):
        return quote(host, safe="")
    return f"[{host}]" if ":" in host else host


def _expand(text: str, what: str) -> str:
    """`${NAME}` replaced by the environment variable NAME; one line when it is unset."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise UserError(
                f"the database URL's {what} names ${{{name}}}, which is not set in the"
                f" environment: export {name}, or give the password through PGPASSWORD"
            )
        return os.environ[name]

    return _ENV.sub(value, text)


def parse_url(url: str) -> Database:
    """A `postgresql://` or `postgres://` URL, `${ENV_VAR}` expanded in each part.

    Literal parts are percent-decoded; values taken from the environment are used as they are,
    so a password from `${VAR}` may hold any character.
    """
    text = url.strip()
    scheme, sep, _ = text.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise UserError(
            f"{redact(text)!r} is not a PostgreSQL URL: use"
            " postgresql://USER@HOST:PORT/DATABASE (password from ${VAR} in the URL or PGPASSWORD)"
        )
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise UserError(f"the database URL {redact(text)!r} cannot be read: {exc}") from None
    userinfo = parts.netloc.rpartition("@")[0]
    raw_user, has_password, raw_password = userinfo.partition(":")
    user = _expand(unquote(raw_user), "user")
    password = _expand(unquote(raw_password), "password") if has_password else ""
    host = _expand(unquote(parts.hostname or ""), "host")
    dbname = _expand(unquote(parts.path.lstrip("/")), "database name")
    params = tuple(
        (k, _expand(v, f"{k} setting")) for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    for key, value in params:
        if key.lower() == "password" and not password:
            password = value
    params = tuple((k, v) for k, v in params if k.lower() != "password")
    return Database(user, host, str(port or ""), dbname, params, password)


def display(url: str) -> str:
    """A URL as it may be shown: its `display` form, or the redacted text if it does not parse."""
    try:
        return parse_url(url).display
    except UserError:
        return redact(url)


def _libpq_reason(message: str) -> str:
    """The server's or libpq's own words from a driver message, on one line."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    for ln in lines:
        for marker in ("ERROR:", "FATAL:"):
            if marker in ln:
                return ln.split(marker, 1)[1].strip()
    first = lines[0] if lines else message
    return first.split("failed: ", 1)[-1].strip().rstrip(".")


def connection_error(db: Database, exc: BaseException) -> DatabaseError:
    """One line for a failed connection: unreachable, wrong password, missing database, other."""
    message = db.redact(str(exc))
    reason = _libpq_reason(message)
    low = message.lower()
    user = db.user or "(libpq's default user)"
    if "password authentication failed" in low or "no password supplied" in low:
        return DatabaseError(
            f"authentication failed for user {user} at {db.where} ({db.display}): check the"
            " password (in the URL, as ${VAR} in it, in PGPASSWORD or ~/.pgpass)"
        )
    if re.search(r'database ".*" does not exist', low):
        return DatabaseError(
            f"database {db.dbname or user} does not exist at {db.where} ({db.display}):"
            " create it, or fix the database name in the URL"
        )
    if "pg_hba.conf" in low:
        return DatabaseError(
            f"the server at {db.where} does not admit user {user} to database {db.dbname}"
            f" from here ({reason}): ask its administrator for a pg_hba.conf entry"
        )
    unreachable = (
        "connection refused",
        "could not translate host name",
        "timeout expired",
        "no route to host",
        "network is unreachable",
        "no such file or directory",
        "is the server running",
        "could not connect",
    )
    if any(marker in low for marker in unreachable):
        return DatabaseError(
            f"cannot reach PostgreSQL at {db.where} ({reason}): check the host and port in the"
            " URL and that the server is running and accepts connections from here"
        )
    return DatabaseError(f"cannot connect to {db.display}: {reason}")


def connect(db: Database, autocommit: bool = False) -> Any:
    """An ADBC DBAPI connection; a failure to connect is one redacted line."""
    import adbc_driver_manager
    import adbc_driver_postgresql.dbapi as pg

    try:
        return pg.connect(db.uri, autocommit=autocommit)
    except adbc_driver_manager.Error as exc:
        raise connection_error(db, exc) from None


def query_error(db: Database, what: str, exc: BaseException) -> DatabaseError:
    """One line for a statement the server refused: what was being done, where, the reason."""
    return DatabaseError(f"{what} failed on {db.display}: {_libpq_reason(db.redact(str(exc)))}")


def read_select(url: str, sql: str) -> pa.Table:
    """Run a SELECT on the database at `url` and return its rows as Arrow.

    The statement runs in a read-only transaction and comes back through binary COPY, typed
    (text as strings, integers, doubles, dates, timestamps with or without time zone); numeric
    columns come back as text, which the contract's casts read.
    """
    import adbc_driver_manager

    db = parse_url(url)
    conn = connect(db)
    try:
        with conn.cursor() as cur:
            try:
                cur.execute("SET TRANSACTION READ ONLY")
                cur.execute(sql)
                table: pa.Table = cur.fetch_arrow_table()
            except adbc_driver_manager.Error as exc:
                raise query_error(db, "the SELECT", exc) from None
        conn.rollback()
    finally:
        conn.close()
    return _plain(table)


def _plain(table: pa.Table) -> pa.Table:
    """Columns of types Arrow has no name for (numeric, arrays of them, ...) as their storage,
    which is text: DuckDB reads extension types it does not know as opaque blobs."""
    columns, fields = [], []
    for name, column in zip(table.column_names, table.columns, strict=True):
        if isinstance(column.type, pa.ExtensionType):
            column = pa.chunked_array(
                [chunk.storage for chunk in column.chunks], type=column.type.storage_type
            )
        columns.append(column)
        fields.append(pa.field(name, column.type))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))
