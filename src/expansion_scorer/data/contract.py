"""The data contract: which tables a data directory holds and what their columns mean.

Column kinds are what the loader casts to; `dated_by` names the column that places a row in
time, which the point-in-time cutoff filters on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["str", "date", "timestamp", "number", "money"]

SQL_TYPES: dict[Kind, str] = {
    "str": "VARCHAR",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "number": "DOUBLE",
    # Exact decimal: sums of money do not depend on the order DuckDB's threads add them in.
    "money": "DECIMAL(18, 4)",
}


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    minimum: float | None = None
    maximum: float | None = None
    default: float | None = None
    """What an empty cell reads as (a usage row without a quantity counts once)."""


@dataclass(frozen=True)
class TableSpec:
    name: str
    required: tuple[Column, ...]
    optional: tuple[Column, ...]
    mandatory: bool
    dated_by: str
    ends_by: str | None = None
    """A column of end dates (exclusive) that can lie in the future of the row's date."""

    @property
    def columns(self) -> tuple[Column, ...]:
        return self.required + self.optional

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    # The point-in-time rules, in DuckDB's SQL (the Spark engine transpiles them): as of T, a
    # row is known when it is dated strictly before T, and an end date on or after T is not
    # known yet, so the row reads as open.
    def known_before(self, dated: str, as_of: str) -> str:
        """The predicate keeping a row whose `dated_by` value (the SQL `dated`) is before the
        date `as_of` (a timestamp before its midnight)."""
        return f"{dated} < {as_of}"

    def as_known(self, column: str, value: str, as_of: str) -> str:
        """The SQL `value` of `column` as known before `as_of`: an end date on or after it
        reads as NULL (open)."""
        if column != self.ends_by:
            return value
        return f"CASE WHEN {value} < {as_of} THEN {value} END"


REVENUE_SOURCES = ("subscriptions", "revenue")
"""Exactly one of these holds the money: contracts (ARR) or billed revenue (usage-based)."""

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "accounts",
            required=(
                Column("account_id", "str"),
                Column("account_name", "str"),
                Column("created_at", "date"),
            ),
            optional=(
                Column("industry", "str"),
                Column("employee_count", "number", minimum=0),
                Column("country", "str"),
                Column("segment", "str"),
                Column("csm_owner", "str"),
                # the account's id in the CRM (Salesforce Id, HubSpot record id): carried into
                # the score list so a reverse-ETL sync can match records; never a feature
                Column("crm_id", "str"),
                # where the CSM reads mail (the Salesforce owner's Email): for the weekly
                # digest (`deliver: email`); never a feature
                Column("csm_email", "str"),
            ),
            mandatory=True,
            dated_by="created_at",
        ),
        TableSpec(
            "subscriptions",
            required=(
                Column("account_id", "str"),
                Column("product", "str"),
                Column("arr", "money", minimum=0),
                Column("start_date", "date"),
            ),
            optional=(
                Column("plan", "str"),
                Column("seats", "number", minimum=0),
                Column("end_date", "date"),
            ),
            mandatory=False,  # subscriptions or revenue: see REVENUE_SOURCES
            dated_by="start_date",
            ends_by="end_date",
        ),
        TableSpec(
            "revenue",
            required=(
                Column("account_id", "str"),
                Column("date", "date"),
                Column("amount", "money"),
            ),
            optional=(),
            mandatory=False,
            dated_by="date",
        ),
        TableSpec(
            "usage_events",
            required=(
                Column("account_id", "str"),
                Column("timestamp", "timestamp"),
                Column("event", "str"),
            ),
            optional=(
                Column("user_id", "str"),
                Column("quantity", "number", minimum=0, default=1),
            ),
            mandatory=True,
            dated_by="timestamp",
        ),
        TableSpec(
            "support_tickets",
            required=(Column("account_id", "str"), Column("created_at", "timestamp")),
            optional=(Column("priority", "str"),),
            mandatory=False,
            dated_by="created_at",
        ),
        TableSpec(
            "nps_responses",
            required=(
                Column("account_id", "str"),
                Column("responded_at", "timestamp"),
                Column("score", "number", minimum=0, maximum=10),
            ),
            optional=(),
            mandatory=False,
            dated_by="responded_at",
        ),
        TableSpec(
            "touches",  # what CSMs did, as a CRM activity export gives it; never a feature
            required=(Column("account_id", "str"), Column("touched_at", "timestamp")),
            optional=(
                Column("csm", "str"),
                Column("motion", "str"),
                Column("channel", "str"),
                Column("outcome", "str"),
            ),
            mandatory=False,
            dated_by="touched_at",
        ),
    )
}


def held_on(alias: str, day: str) -> str:
    """The subscription row `alias` is held on `day`: started on or before it and not yet
    ended (`end_date` is exclusive); one definition of "open" for ARR, eligibility and features."""
    return f"{alias}.start_date <= {day} AND ({alias}.end_date IS NULL OR {alias}.end_date > {day})"
