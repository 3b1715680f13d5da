"""The registered model: a LightGBM booster behind an MLflow pyfunc, with its feature schema.

Categorical features travel as strings; the wrapper maps them onto the categories seen in
training (unseen values become missing), so the model scores the same frame in batch, in
`mlflow models serve` and in Spark. The delivered score is the booster's output put through a
calibrator fitted out of time; a second booster, when present, predicts the ARR of an expansion
given that it happens.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from expansion_scorer.errors import UserError
from expansion_scorer.training.calibration import Calibrator


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


class PropensityModel(PythonModel):
    """Probability of expansion within the horizon, and the ARR it would bring."""

    def __init__(
        self,
        booster: lgb.Booster,
        numeric: list[str],
        categories: dict[str, list[str]],
        horizon_days: int,
        calibrator: Calibrator | None = None,
        size_booster: lgb.Booster | None = None,
    ) -> None:
        self.booster = booster
        self.numeric = numeric
        self.categories = categories
        self.horizon_days = horizon_days
        self.calibrator = calibrator
        self.size_booster = size_booster

    @property
    def feature_names(self) -> list[str]:
        return [*self.numeric, *self.categories]

    def matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        return prepare(frame, self.numeric, self.categories)

    def raw_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """The booster's own probability, before calibration (what SHAP explains)."""
        return np.asarray(self.booster.predict(self.matrix(frame)), dtype="float64")

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """The delivered score: the calibrated probability of expansion within the horizon."""
        raw = self.raw_proba(frame)
        return raw if self.calibrator is None else self.calibrator.transform(raw)

    def expected_size(self, frame: pd.DataFrame) -> np.ndarray:
        """Predicted expansion ARR given that the account expands."""
        if self.size_booster is None:
            return np.full(len(frame), np.nan)
        return np.asarray(self.size_booster.predict(self.matrix(frame)), dtype="float64")

    def expected_expansion_arr(self, frame: pd.DataFrame) -> np.ndarray:
        """Score times predicted size: the ARR an account is expected to add in the horizon."""
        return self.predict_proba(frame) * self.expected_size(frame)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "score": self.predict_proba(model_input),
                "expected_expansion_arr": self.expected_expansion_arr(model_input),
            }
        )
