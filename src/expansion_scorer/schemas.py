"""Contracts of the frames the project writes: the training set, and the weekly run's scores,
drivers, triggers and excluded accounts.

Each is a pandera schema, checked just before the frame is logged or written; a frame that
breaks it stops the command in one line (which frame, which column, what, an example account)
and nothing is written. The input tables have their own contract (`data.contract`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from expansion_scorer.config import FeatureSet
from expansion_scorer.errors import UserError

if TYPE_CHECKING:
    import pandera.pandas as pa

KEY = "account_id"


def _pa() -> Any:
    """pandera, imported when a contract is first checked: it pulls in pyspark.pandas when
    pyspark is installed, a second of start-up every other command is spared."""
    import pandera.pandas as pa

    return pa


def _numeric(pa: Any) -> Any:
    return pa.Check(lambda s: pd.api.types.is_numeric_dtype(s), error="is not numeric")


def _text(pa: Any) -> Any:
    return pa.Check(
        lambda s: s.map(lambda v: isinstance(v, str)), element_wise=False, error="is not text"
    )


def _probability(pa: Any, name: str, nullable: bool = False) -> pa.Column:
    return pa.Column(
        checks=[_numeric(pa), pa.Check.in_range(0.0, 1.0)], nullable=nullable, name=name
    )


def _account(pa: Any) -> pa.Column:
    return pa.Column(checks=[_text(pa)], nullable=False, unique=True, name=KEY)


def training_schema(features: FeatureSet) -> pa.DataFrameSchema:
    """One row per (account, month start), a 0/1 label and every feature, numeric features as
    numbers and categorical ones as text."""
    pa = _pa()
    columns = {
        KEY: pa.Column(checks=[_text(pa)], nullable=False),
        "as_of": pa.Column(nullable=False),
        "label": pa.Column(checks=[_numeric(pa), pa.Check.isin([0, 1])], nullable=False),
        "expansion_arr": pa.Column(
            checks=[_numeric(pa), pa.Check.ge(0.0)], nullable=False, required=False
        ),
    }
    for f in features.features:
        if f.kind == "numeric":
            columns[f.name] = pa.Column(checks=[_numeric(pa)], nullable=True)
        else:
            columns[f.name] = pa.Column(
                checks=[pa.Check(lambda s: not pd.api.types.is_numeric_dtype(s) or s.isna().all(),
                                 error="is numeric, not text categories")],
                nullable=True,
            )  # fmt: skip
    return pa.DataFrameSchema(columns, unique=[KEY, "as_of"], name="training frame")


def scores_schema(bands: list[str]) -> pa.DataFrameSchema:
    """The ranked list: each eligible account once, ranks 1..n, a probability, a known band."""
    pa = _pa()
    return pa.DataFrameSchema(
        {
            "rank": pa.Column(checks=[_numeric(pa), pa.Check.ge(1)], nullable=False, unique=True),
            KEY: _account(pa),
            "score": _probability(pa, "score"),
            "expected_expansion_arr": pa.Column(
                checks=[_numeric(pa), pa.Check.ge(0.0)], nullable=True
            ),
            "band": pa.Column(checks=[pa.Check.isin(bands)], nullable=False),
            "readiness": pa.Column(checks=[_text(pa)], nullable=False),
            "model_version": pa.Column(checks=[_text(pa)], nullable=False),
            "as_of": pa.Column(nullable=False),
        },
        name="scores",
    )


def drivers_schema() -> pa.DataFrameSchema:
    """Points per reason family and account: numbers, one row per scored account."""
    pa = _pa()
    return pa.DataFrameSchema(
        {KEY: _account(pa), r"^(?!account_id$).*": pa.Column(checks=[_numeric(pa)],
                                                             nullable=True, regex=True)},
        name="drivers",
    )  # fmt: skip


def triggers_schema() -> pa.DataFrameSchema:
    """Who to act on this week: each account once, with its score and what fired."""
    pa = _pa()
    return pa.DataFrameSchema(
        {
            KEY: _account(pa),
            "score": _probability(pa, "score"),
            "previous_score": _probability(pa, "previous_score", nullable=True),
            "trigger": pa.Column(
                checks=[_text(pa), pa.Check.str_length(min_value=1)], nullable=False
            ),
            "why": pa.Column(checks=[_text(pa)], nullable=False),
        },
        name="triggers",
    )


def excluded_schema() -> pa.DataFrameSchema:
    """Every account that exists but is not scored, each once, with the reason."""
    pa = _pa()
    return pa.DataFrameSchema(
        {
            KEY: _account(pa),
            "excluded_reason": pa.Column(
                checks=[_text(pa), pa.Check.str_length(min_value=1)], nullable=False
            ),
        },
        name="excluded",
    )


def check(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> None:
    """Stop in one line when `frame` breaks `schema`: the frame, the column, what, and the
    first offending account."""
    pa = _pa()
    if frame.empty:
        return
    try:
        schema.validate(frame, lazy=False)
    except pa.errors.SchemaError as exc:
        column = exc.column_name if isinstance(exc.column_name, str) else None
        what = str(exc).splitlines()[0].rstrip(":")
        example = ""
        cases = exc.failure_cases
        if exc.reason_code == pa.errors.SchemaErrorReason.COLUMN_NOT_IN_DATAFRAME:
            missing = [
                name
                for name, spec in schema.columns.items()
                if spec.required and not spec.regex and name not in frame.columns
            ]
            column, what = (missing[0] if missing else column), "missing"
        if isinstance(cases, pd.DataFrame) and "index" in cases and KEY in frame:
            rows = [i for i in cases["index"].tolist() if i in frame.index]
            if rows:
                example = f" (e.g. account {frame.loc[rows[0], KEY]})"
        where = f"column {column}: " if column else ""
        raise UserError(
            f"{schema.name} breaks its contract: {where}{what}{example}; nothing was written"
        ) from None
