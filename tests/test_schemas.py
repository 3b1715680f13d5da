"""Contracts of the frames written: one line naming the frame, the column and an account."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from expansion_scorer import schemas
from expansion_scorer.errors import UserError
from expansion_scorer.settings import load_feature_set

SHIPPED = Path(__file__).parents[1]
AS_OF = date(2024, 1, 1)


def _scores(**changes: object) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "rank": [1, 2, 3],
            "account_id": ["A1", "A2", "A3"],
            "score": [0.7, 0.4, 0.1],
            "expected_expansion_arr": [900.0, 100.0, float("nan")],
            "band": ["hot", "warm", "watch"],
            "readiness": ["ready", "ready", "not ready"],
            "model_version": "expansion-propensity v1",
            "as_of": AS_OF,
        }
    )
    for column, values in changes.items():
        frame[column] = values
    return frame


def _broken(schema: object, frame: pd.DataFrame) -> str:
    with pytest.raises(UserError) as caught:
        schemas.check(schema, frame)  # type: ignore[arg-type]
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    return message


def test_a_well_formed_list_passes() -> None:
    schemas.check(schemas.scores_schema(["hot", "warm", "watch"]), _scores())


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"score": [0.7, 1.4, 0.1]}, "column score:"),
        ({"account_id": ["A1", "A1", "A3"]}, "column account_id:"),
        ({"band": ["hot", "boiling", "watch"]}, "column band:"),
        ({"rank": [1, 1, 2]}, "column rank:"),
    ],
)
def test_a_list_that_breaks_its_contract_is_one_line_naming_the_column(
    changes: dict[str, object], says: str
) -> None:
    message = _broken(schemas.scores_schema(["hot", "warm", "watch"]), _scores(**changes))
    assert message.startswith("scores breaks its contract: ")
    assert says in message and message.endswith("nothing was written")


def test_the_example_names_the_account() -> None:
    message = _broken(schemas.scores_schema(["hot", "warm", "watch"]), _scores(score=[0.7, 0.4, 2]))
    assert "(e.g. account A3)" in message


def test_drivers_triggers_and_excluded_have_contracts() -> None:
    drivers = pd.DataFrame({"account_id": ["A1", "A2"], "seats": [0.1, -0.2], "plan": [0.0, 0.3]})
    schemas.check(schemas.drivers_schema(), drivers)
    assert "column plan" in _broken(schemas.drivers_schema(), drivers.assign(plan=["a", "b"]))
    excluded = pd.DataFrame({"account_id": ["A1", "A2"], "excluded_reason": ["churned", ""]})
    assert "excluded breaks its contract: column excluded_reason" in _broken(
        schemas.excluded_schema(), excluded
    )
    triggers = pd.DataFrame(
        {"account_id": ["A1"], "score": [0.5], "previous_score": [float("nan")],
         "trigger": ["entered"], "why": ["seats"]}
    )  # fmt: skip
    schemas.check(schemas.triggers_schema(), triggers)
    assert "column trigger" in _broken(schemas.triggers_schema(), triggers.assign(trigger=[""]))


def test_a_training_frame_holds_every_feature_with_its_kind() -> None:
    features = load_feature_set()
    row = {f.name: (1.0 if f.kind == "numeric" else "x") for f in features.features}
    frame = pd.DataFrame([{"account_id": "A1", "as_of": AS_OF, "label": 1, **row}])
    schema = schemas.training_schema(features)
    schemas.check(schema, frame)
    assert "column label" in _broken(schema, frame.assign(label=2))
    first = features.features[0].name
    assert f"column {first}" in _broken(schema, frame.drop(columns=first))
    doubled = pd.concat([frame, frame], ignore_index=True)
    assert "training frame breaks its contract" in _broken(schema, doubled)
