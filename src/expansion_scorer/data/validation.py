"""Check a data directory against the contract before anything is computed from it.

The first violation ends the check with a `ContractError` naming the table, the column and an
example row. Problems that are not errors (usage of accounts missing from `accounts`, such as
free workspaces) come back as warnings; those rows simply never join an eligible account.

Every check is DuckDB SQL over the `raw_<table>` views, run through the world's query surface
(`rows`): by DuckDB, or by Spark on the same text transpiled, with the same messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from expansion_scorer.data.contract import SQL_TYPES, TABLES, Column, TableSpec
from expansion_scorer.data.loading import AnyWorld
from expansion_scorer.errors import ContractError


@dataclass(frozen=True)
class ValidationReport:
    row_counts: dict[str, int]
    warnings: list[str]


def _show(value: object) -> str:
    text = repr(value)
    text = text.replace("\n", " ").replace("\r", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def _first(world: AnyWorld, sql: str) -> tuple[Any, ...] | None:
    found = world.rows(sql)
    return found[0] if found else None


def _example(world: AnyWorld, spec: TableSpec, condition: str) -> str:
    """'row N (account_id ...)': the first raw row matching `condition`, 1-based as in the file."""
    row = _first(
        world,
        f"SELECT __row, account_id FROM (SELECT row_number() OVER () AS __row, *"
        f" FROM raw_{spec.name}) WHERE {condition} ORDER BY __row LIMIT 1",
    )
    if row is None:  # pragma: no cover - only called after a count found the row
        return "an unknown row"
    return f"row {row[0]} (account_id {_show(row[1])})"


def _fail(
    world: AnyWorld, spec: TableSpec, col: str, condition: str, problem: str, fix: str
) -> None:
    source = world.tables[spec.name]
    where = _example(world, spec, condition)
    value = _first(
        world,
        f'SELECT "{col}" FROM (SELECT row_number() OVER () AS __row, * FROM raw_{spec.name})'
        f" WHERE {condition} ORDER BY __row LIMIT 1",
    )
    shown = _show(value[0]) if value else "?"
    raise ContractError(
        f"{source.label}: column {source.column(col)}, {where}: {problem} (value {shown}); {fix}"
    )


def _cast(col: Column) -> str:
    if col.kind == "str":
        return f'CAST("{col.name}" AS VARCHAR)'
    return f'TRY_CAST("{col.name}" AS {SQL_TYPES[col.kind]})'


def _check_table(world: AnyWorld, spec: TableSpec) -> int:
    source = world.tables[spec.name]
    file = source.label
    present = [str(c) for c in world.frame(f"SELECT * FROM raw_{spec.name} LIMIT 0").columns]
    missing = [c.name for c in spec.required if c.name not in present]
    if missing:
        fix = f"; map it under columns or select a column AS {missing[0]}" if source.mapped else ""
        raise ContractError(
            f"{file}: missing required column {missing[0]}; it has"
            f" {', '.join(present) or 'none'}{fix}"
        )
    cols = [c for c in spec.columns if c.name in present]
    checks: list[tuple[Column, str, str, str]] = []
    for col in cols:
        raw = f'"{col.name}"'
        if col in spec.required:
            checks.append((col, f"{raw} IS NULL", "empty value in a required column", "fill it"))
        if col.kind != "str":
            what = {"date": "a date", "timestamp": "a timestamp"}.get(col.kind, "a number")
            checks.append(
                (
                    col,
                    f"{raw} IS NOT NULL AND {_cast(col)} IS NULL",
                    f"not {what}",
                    "use ISO 8601 (2024-03-31)"
                    if col.kind in ("date", "timestamp")
                    else "use a plain number",
                )
            )
        if col.minimum is not None:
            checks.append(
                (col, f"{_cast(col)} < {col.minimum}", f"below {col.minimum:g}", "correct the row")
            )
        if col.maximum is not None:
            checks.append(
                (col, f"{_cast(col)} > {col.maximum}", f"above {col.maximum:g}", "correct the row")
            )
    if spec.name == "subscriptions" and "end_date" in present:
        checks.append(
            (
                spec.column("end_date"),
                "TRY_CAST(end_date AS DATE) < TRY_CAST(start_date AS DATE)",
                "end_date before start_date",
                "end_date is exclusive and must be on or after start_date",
            )
        )
    counts = ", ".join(f"count(*) FILTER (WHERE {cond})" for _, cond, _, _ in checks)
    row = _first(world, f"SELECT count(*), {counts} FROM raw_{spec.name}")
    assert row is not None
    if row[0] == 0:
        raise ContractError(
            f"{file}: the table is empty; export its rows"
            + ("" if spec.mandatory else f", or remove the file if there are no {spec.name}")
        )
    for (col, cond, problem, fix), bad in zip(checks, row[1:], strict=True):
        if bad:
            _fail(world, spec, col.name, cond, problem, fix)
    return int(row[0])


def validate(world: AnyWorld, catalogue: list[str] | str | None = None) -> ValidationReport:
    """Errors stop with one line; warnings (orphan rows, future rows, and usage events outside
    the `catalogue` of the feature definitions; none when it is `auto`, the data's own) are
    counted and returned."""
    counts: dict[str, int] = {}
    for name in TABLES:
        if world.has(name):
            counts[name] = _check_table(world, TABLES[name])
    dup = _first(
        world,
        "SELECT account_id, count(*) FROM raw_accounts GROUP BY ALL HAVING count(*) > 1"
        " ORDER BY account_id LIMIT 1",
    )
    if dup:
        spec = TABLES["accounts"]
        where = _example(world, spec, f"account_id = '{str(dup[0]).replace(chr(39), chr(39) * 2)}'")
        raise ContractError(
            f"{world.label('accounts')}: column account_id, {where}: duplicate account_id"
            f" {_show(dup[0])} appears {dup[1]} times; account_id must be unique"
        )
    known = "CAST(account_id AS VARCHAR) IN (SELECT CAST(account_id AS VARCHAR) FROM raw_accounts)"
    money = "revenue" if world.consumption else "subscriptions"
    orphans = _first(world, f"SELECT count(*) FROM raw_{money} WHERE NOT ({known})")
    if orphans and orphans[0]:
        _fail(
            world,
            TABLES[money],
            "account_id",
            f"NOT ({known})",
            f"account not in accounts ({orphans[0]} such rows)",
            f"add the account to accounts or remove its {money} rows",
        )
    if world.has("touches"):
        _check_touches(world, known)
    warnings = []
    for name in ("usage_events", "support_tickets", "nps_responses"):
        if not world.has(name):
            continue
        found = _first(
            world,
            f"SELECT count(*), count(DISTINCT account_id) FROM raw_{name} WHERE NOT ({known})",
        )
        if found and found[0]:
            warnings.append(
                f"{world.label(name)}: {found[0]} rows of {found[1]} accounts not in accounts"
                " (free workspaces?) are left out"
            )
    if catalogue and not isinstance(catalogue, str) and world.has("usage_events"):
        warnings.extend(_unknown_events(world, catalogue))
    warnings.extend(_future_rows(world))
    world.warnings.extend(warnings)
    return ValidationReport(row_counts=counts, warnings=warnings)


def _check_touches(world: AnyWorld, known: str) -> None:
    """A touch must be of a known account and dated inside the data: `expansion measure` reads
    touches as what happened, so a wrong one is an error, not a warning."""
    spec = TABLES["touches"]
    orphans = _first(world, f"SELECT count(*) FROM raw_touches WHERE NOT ({known})")
    if orphans and orphans[0]:
        _fail(
            world,
            spec,
            "account_id",
            f"NOT ({known})",
            f"account not in accounts ({orphans[0]} such rows)",
            "export touches of the accounts in accounts only",
        )
    newest = _first(world, "SELECT max(TRY_CAST(timestamp AS TIMESTAMP)) FROM raw_usage_events")
    if newest and newest[0] is not None:
        late = f"{_cast(spec.column('touched_at'))} > TIMESTAMP '{newest[0]}' + INTERVAL 1 DAY"
        row = _first(world, f"SELECT count(*) FROM raw_touches WHERE {late}")
        if row and row[0]:
            _fail(
                world,
                spec,
                "touched_at",
                late,
                f"touch dated after the newest usage event ({newest[0]:%Y-%m-%d};"
                f" {row[0]} such rows)",
                "export touches with the same cut-off as the other tables",
            )


def _future_rows(world: AnyWorld) -> list[str]:
    """Rows dated after the newest usage event, the export's own clock: a sign of a bad cut-off."""
    newest = _first(world, "SELECT max(TRY_CAST(timestamp AS TIMESTAMP)) FROM raw_usage_events")
    if not newest or newest[0] is None:
        return []
    horizon = f"TIMESTAMP '{newest[0]}' + INTERVAL 1 DAY"
    found = []
    for name, spec in TABLES.items():
        if name in ("usage_events", "touches") or not world.has(name):
            continue
        col = spec.column(spec.dated_by)
        row = _first(world, f"SELECT count(*) FROM raw_{name} WHERE {_cast(col)} > {horizon}")
        if row and row[0]:
            found.append(
                f"{world.label(name)}: {row[0]} rows dated after the newest usage event"
                f" ({newest[0]:%Y-%m-%d}); check the export's cut-off"
            )
    return found


def _unknown_events(world: AnyWorld, catalogue: list[str]) -> list[str]:
    """Events outside the catalogue are counted, not rejected: they still count in windows
    over every event, and no window can ask for them by name."""
    listed = ", ".join("'" + e.replace("'", "''") + "'" for e in catalogue)
    rows = world.rows(
        f"""
        SELECT CAST(event AS VARCHAR) AS event, count(*) AS n FROM raw_usage_events
        WHERE CAST(event AS VARCHAR) NOT IN ({listed}) OR event IS NULL
        GROUP BY ALL ORDER BY n DESC, event
        """
    )
    if not rows:
        return []
    total = sum(n for _, n in rows)
    named = ", ".join(f"{e} {n:,}" for e, n in rows[:5]) + (", ..." if len(rows) > 5 else "")
    return [
        f"{world.label('usage_events')}: {total:,} rows with {len(rows)} events outside the"
        f" catalogue ({named}); add them to `events` in the feature definitions to use them"
    ]
