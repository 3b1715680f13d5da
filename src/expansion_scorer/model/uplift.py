"""The delivered uplift model: what a CSM's touch changes in an account's chance to expand.

A T-learner: one LightGBM booster per arm of the randomized holdout (listed, the intent to
treat, and held out); the uplift is the difference of the two probabilities. How it is fitted
and tested lives in `expansion_scorer.training.uplift`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from expansion_scorer.model import treeshap
from expansion_scorer.model.parts import Contributions, prepare


@dataclass(frozen=True)
class Arm:
    """One arm's explanation: contributions in log-odds and the arm's probability."""

    contributions: Contributions
    probability: np.ndarray


def _explain_arm(booster: lgb.Booster, x: pd.DataFrame, index: pd.Index) -> Arm:
    values, base = treeshap.shap_values(booster, x)
    table = pd.DataFrame(values, columns=list(x.columns), index=index)
    p = np.asarray(booster.predict(x), dtype="float64")
    return Arm(Contributions(table, base), p)


class UpliftModel(PythonModel):
    """The chance to expand if listed and if held out, and their difference (the uplift)."""

    def __init__(
        self,
        listed: lgb.Booster,
        holdout: lgb.Booster,
        numeric: list[str],
        categories: dict[str, list[str]],
        horizon_days: int,
    ) -> None:
        self.listed = listed
        self.holdout = holdout
        self.numeric = numeric
        self.categories = categories
        self.horizon_days = horizon_days

    @property
    def feature_names(self) -> list[str]:
        return [*self.numeric, *self.categories]

    def matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        return prepare(frame, self.numeric, self.categories)

    def arms(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The probability of expansion within the horizon if listed, and if held out."""
        x = self.matrix(frame)
        return (
            np.asarray(self.listed.predict(x), dtype="float64"),
            np.asarray(self.holdout.predict(x), dtype="float64"),
        )

    def uplift(self, frame: pd.DataFrame) -> np.ndarray:
        treated, control = self.arms(frame)
        return treated - control

    def explain(self, frame: pd.DataFrame) -> tuple[Arm, Arm]:
        """Each arm's exact TreeSHAP contributions in log-odds and its probability: listed,
        then held out. The two arms' contributions differ by the log odds ratio."""
        x = self.matrix(frame)
        return (
            _explain_arm(self.listed, x, frame.index),
            _explain_arm(self.holdout, x, frame.index),
        )

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        treated, control = self.arms(model_input)
        return pd.DataFrame(
            {"uplift": treated - control, "p_listed": treated, "p_holdout": control}
        )


class LearnedUpliftModel(UpliftModel):
    """The delivered uplift model when the learner is not the T-learner: the chances to expand
    if listed and if held out (and the reasons built on them) are the T-learner's arms; the
    uplift the list is ranked by is the chosen learner's effect, which every learner of
    `training.uplift_learners` delivers as a weighted sum of boosters' predictions (a
    classifier's probability or a regressor's value)."""

    def __init__(
        self, base: UpliftModel, learner: str, terms: list[tuple[float, lgb.Booster]]
    ) -> None:
        super().__init__(base.listed, base.holdout, base.numeric, base.categories,
                         base.horizon_days)  # fmt: skip
        self.learner = learner
        self.terms = terms

    def uplift(self, frame: pd.DataFrame) -> np.ndarray:
        x = self.matrix(frame)
        return np.sum([w * np.asarray(b.predict(x), dtype="float64") for w, b in self.terms],
                      axis=0)  # fmt: skip

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        treated, control = self.arms(model_input)
        return pd.DataFrame(
            {"uplift": self.uplift(model_input), "p_listed": treated, "p_holdout": control}
        )
