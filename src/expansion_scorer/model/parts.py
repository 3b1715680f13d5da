"""The pieces a delivered model is built from: its feature matrix, offsets and boosters.

They sit apart from the models so that the models and their explanations (`contributions`) can
both use them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit

from expansion_scorer.errors import UserError


def prepare(
    frame: pd.DataFrame, numeric: list[str], categories: dict[str, list[str]]
) -> pd.DataFrame:
    """The model matrix: numerics as float64, categoricals on the training categories."""
    missing = [c for c in [*numeric, *categories] if c not in frame.columns]
    if missing:
        raise UserError(
            f"feature frame lacks {len(missing)} model feature(s): {', '.join(missing[:5])};"
            " score with the feature definitions the model was trained on"
        )
    out: dict[str, object] = {}
    for name in [*numeric, *categories]:
        if name in categories:
            out[name] = pd.Categorical(frame[name].astype("object"), categories=categories[name])
        elif frame[name].dtype == np.float64:  # as the feature frames hold them: nothing to check
            out[name] = frame[name]
        else:
            values = pd.to_numeric(frame[name], errors="coerce")
            bad = values.isna() & frame[name].notna()
            if bad.any():
                raise UserError(
                    f"feature {name} holds non-numeric values such as {frame[name][bad].iloc[0]!r};"
                    " the model expects a number"
                )
            out[name] = values.astype("float64")
    return pd.DataFrame(out, index=frame.index)[[*numeric, *categories]]


@dataclass(frozen=True)
class Offset:
    """A fixed log-odds shift per value of one feature, added to the booster's margin."""

    feature: str
    shifts: dict[float, float]
    """Value -> shift; values not seen in training get no shift."""
    mean: float
    """The average shift over the training rows: the explanation's base rate includes it."""

    def of(self, frame: pd.DataFrame) -> np.ndarray:
        values = pd.to_numeric(frame[self.feature], errors="coerce")
        return values.map(self.shifts).fillna(0.0).to_numpy(dtype="float64")


def season_offset(
    rows: pd.DataFrame, feature: str, prior_rows: float = 50.0, label: str = "label"
) -> Offset:
    """Per value of `feature`, the log-odds of its `label` rate against the overall rate, each
    rate pulled towards the overall one as if `prior_rows` more rows had it."""
    base = float(rows[label].mean())
    grouped = rows.groupby(pd.to_numeric(rows[feature], errors="coerce"))[label]
    rate = (grouped.sum() + prior_rows * base) / (grouped.size() + prior_rows)
    shift = np.log(rate / (1 - rate)) - np.log(base / (1 - base))
    offset = Offset(feature, {float(k): float(v) for k, v in shift.items()}, 0.0)
    return Offset(feature, offset.shifts, float(offset.of(rows).mean()))


@dataclass(frozen=True)
class Head:
    """One booster of the model and the offset it starts from."""

    name: str
    booster: lgb.Booster
    offset: Offset | None

    def margin(self, x: pd.DataFrame, frame: pd.DataFrame) -> np.ndarray:
        margin = np.asarray(self.booster.predict(x, raw_score=True), dtype="float64")
        return margin if self.offset is None else margin + self.offset.of(frame)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Log-odds to probability."""
    return np.asarray(expit(z), dtype="float64")


def any_of(p: np.ndarray) -> np.ndarray:
    """The chance of at least one of independent events, per row: 1 - prod(1 - p) over axis 0."""
    return 1.0 - np.prod(1.0 - np.asarray(p, dtype="float64"), axis=0)


@dataclass(frozen=True)
class Contributions:
    values: pd.DataFrame
    """Per account and model feature, SHAP value in log-odds."""
    base_logit: float
