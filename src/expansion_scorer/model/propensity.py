"""The registered propensity model behind an MLflow pyfunc, with its feature schema.

The log-odds come from a LightGBM booster (one per motion for the `motions` learner), a spline
logistic model (`gam`), or a blend of the two (with a second booster learner beside the first,
its `partner`, when the blend weighs one in).

Categorical features travel as strings; the wrapper maps them onto the categories seen in
training (unseen values become missing), so the model scores the same frame in batch, in
`mlflow models serve` and in Spark. The delivered score is that probability, through the
calibrator the training kept when it earned its place; a second booster, when present,
predicts the ARR of an expansion given that it happens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from expansion_scorer.model import treeshap
from expansion_scorer.model.calibration import Calibrator
from expansion_scorer.model.parts import Contributions, Head, Offset, any_of, prepare, sigmoid

if TYPE_CHECKING:
    from expansion_scorer.model.gam import SplineLogit


@dataclass(frozen=True)
class Choice:
    """Which learner a layout kept, and how each did on its calibration months."""

    learner: str
    calibration_auc: dict[str, float]
    """Learner -> ROC AUC of its raw probability on the layout's calibration months."""
    skipped: dict[str, str]
    """Learner -> why it was not tried on this layout."""
    motions: tuple[str, ...] = ()
    """The motions the `motions` learner fitted, when it was tried (a motion with fewer than
    `learning.min_positives` expansions is left out)."""
    arrangement: str = "later_months"
    """Where the held-out predictions came from (`backtest.arrangement`)."""
    held_rows: int = 0
    """How many held-out predictions the choice and the calibration were made on."""
    blend_weight: float | None = None
    """The booster's share of the blend's log-odds, when the blend was tried."""
    blend_parts: dict[str, float] = field(default_factory=dict)
    """Learner -> its share of the blend's log-odds (the best booster, the next best booster
    learner and the gam), when the blend was tried."""
    calibration: str = "platt"
    """The calibration kept (none, platt or isotonic)."""
    calibration_loss: dict[str, float] = field(default_factory=dict)
    """Calibration -> cross-validated log loss on the held-out predictions."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Learner -> seconds spent fitting it on this layout (its held-out and final fits)."""
    preferred: str = ""
    """Why a simpler learner was kept over the best on held-out ROC AUC; empty: the best."""


class PropensityModel(PythonModel):
    """Probability of expansion within the horizon, and the ARR it would bring.

    The probability comes from one booster (`booster`, from `offset`), or, for the `motions`
    learner, from one booster per motion (`motions`) combined as the chance of any of them;
    `offset` is then the delivered label's own, which the calibrator reads.
    """

    offset: Offset | None = None
    """Models pickled before the season offset have no attribute of their own: they read None."""
    affinity: dict[str, str] | None = None
    """The event -> product affinity fitted on the final training snapshots, when the feature
    definitions say `affinity: learned`: scoring computes the features with it."""
    plan_order: list[str] | None = None
    """The plans, lowest first, the model's features were computed with."""
    motions: tuple[Head, ...] = ()
    """With the `motions` learner, one head per motion; `booster` is then the first's."""
    choice: Choice | None = None
    """How each learner did on the calibration months; None on models saved before."""
    gam: SplineLogit | None = None
    """The spline logistic model, for the `gam` and `blend` learners."""
    weight: float = 1.0
    """The boosters' share of the log-odds; the gam has the rest (0: the gam alone)."""
    partner: PropensityModel | None = None
    """In a blend, a second booster learner's model (other leaves, or one head per motion)."""
    partner_weight: float = 0.0
    """The partner's share of the blend's log-odds, taken from the gam's."""

    def __init__(
        self,
        booster: lgb.Booster | None,
        numeric: list[str],
        categories: dict[str, list[str]],
        horizon_days: int,
        calibrator: Calibrator | None = None,
        size_booster: lgb.Booster | None = None,
        offset: Offset | None = None,
    ) -> None:
        self.booster = booster
        self.numeric = numeric
        self.categories = categories
        self.horizon_days = horizon_days
        self.calibrator = calibrator
        self.size_booster = size_booster
        self.offset = offset

    @property
    def feature_names(self) -> list[str]:
        return [*self.numeric, *self.categories]

    def matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        return prepare(frame, self.numeric, self.categories)

    def shift(self, frame: pd.DataFrame) -> np.ndarray | None:
        """The offset's log-odds per row; None without one (models saved before it had none)."""
        return None if self.offset is None else self.offset.of(frame)

    @property
    def learner(self) -> str:
        """Which learner the calibration months chose (`LearningConfig`)."""
        return "single" if self.choice is None else self.choice.learner

    @property
    def rounds(self) -> int:
        """The most boosting rounds any of its boosters kept (0 for the gam alone)."""
        heads = (*self.heads, *(() if self.partner is None else self.partner.heads))
        return max((h.booster.current_iteration() for h in heads), default=0)

    @property
    def heads(self) -> tuple[Head, ...]:
        """The boosters behind the probability: one, one per motion, or none (the gam)."""
        if self.motions:
            return self.motions
        return () if self.booster is None else (Head("any", self.booster, self.offset),)

    def boosted_logit(self, frame: pd.DataFrame, shift: np.ndarray | None) -> np.ndarray:
        """The boosters' log-odds with the offset."""
        x = self.matrix(frame)
        if self.motions:
            p = any_of(np.stack([sigmoid(h.margin(x, frame)) for h in self.motions]))
            p = np.clip(p, 1e-12, 1 - 1e-12)
            return np.log(p / (1 - p))
        assert self.booster is not None
        margin = np.asarray(self.booster.predict(x, raw_score=True), "float64")
        return margin if shift is None else margin + shift

    def logit(self, frame: pd.DataFrame, shift: np.ndarray | None = None) -> np.ndarray:
        """The raw log-odds: the boosters', the gam's, or their blend (`weight` and the
        partner's `partner_weight`; the gam has the rest)."""
        if self.gam is None or self.weight >= 1:
            return self.boosted_logit(frame, shift)
        gam = self.gam.margin(frame) + (0.0 if shift is None else shift)
        partner = self._partnered()
        if self.weight <= 0 and partner is None:
            return gam
        mixed = (1 - self.weight - self.partner_weight) * gam
        if self.weight > 0:
            mixed = mixed + self.weight * self.boosted_logit(frame, shift)
        if partner is not None:
            own = None if shift is None else partner.shift(frame)  # its heads' own offset
            mixed = mixed + self.partner_weight * partner.boosted_logit(frame, own)
        return mixed

    def _partnered(self) -> PropensityModel | None:
        """The partner, when the blend gives it a share."""
        return self.partner if self.partner is not None and self.partner_weight > 0 else None

    def _raw(self, frame: pd.DataFrame, shift: np.ndarray | None) -> np.ndarray:
        return sigmoid(self.logit(frame, shift))

    def raw_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """The booster's probability with its offset, before calibration (what SHAP explains)."""
        return self._raw(frame, self.shift(frame))

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """The delivered score: the calibrated probability of expansion within the horizon."""
        shift = self.shift(frame)
        raw = self._raw(frame, shift)
        return raw if self.calibrator is None else self.calibrator.transform(raw, shift)

    def expected_size(self, frame: pd.DataFrame) -> np.ndarray:
        """Predicted expansion ARR given that the account expands."""
        if self.size_booster is None:
            return np.full(len(frame), np.nan)
        return np.asarray(self.size_booster.predict(self.matrix(frame)), dtype="float64")

    @property
    def explainer(self) -> str:
        """How `explain` works it out: the TreeSHAP method, or the gam's own terms."""
        return "gam terms" if self.booster is None else treeshap.method_for(self.booster)

    def explain(self, frame: pd.DataFrame, method: str | None = None) -> Contributions:
        """Each row's contributions in log-odds, adding up to `logit` (see `contributions`)."""
        return contributions(self, frame, method)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        score = self.predict_proba(model_input)  # once: the expected ARR reuses it
        return pd.DataFrame(
            {"score": score, "expected_expansion_arr": score * self.expected_size(model_input)}
        )


# Each account's contributions in log-odds, as the model scores it: exact TreeSHAP per booster,
# the season offset spoken through its feature, a model of one booster per motion explained as
# the sum of its parts, and the gam by its own terms; the serving stage puts them on the
# score's scale and into words (`serving.explain`).


def _head_contributions(
    head: Head, x: pd.DataFrame, frame: pd.DataFrame, names: list[str], method: str | None
) -> Contributions:
    values, base = treeshap.shap_values(head.booster, x, method)
    table = pd.DataFrame(values, columns=names, index=frame.index)
    offset = head.offset
    if offset is not None:  # the offset speaks through its feature, around its training mean
        base += offset.mean
        if offset.feature in table.columns:
            table[offset.feature] += offset.of(frame) - offset.mean
    return Contributions(values=table, base_logit=base)


def contributions(
    model: PropensityModel, frame: pd.DataFrame, method: str | None = None
) -> Contributions:
    """Exact TreeSHAP by the fastest method exact for the booster (`treeshap.method_for`).

    A model of one booster per motion explains as the sum of its parts: each motion's SHAP
    values weighted by that motion's share of the combined probability's log-odds slope
    (d logit(P) / d logit(p_m) = p_m / P for P = 1 - prod(1 - p_m)), and its base is the
    combined probability of the motions' bases. `serving.explain.family_points` then puts them
    on the delivered score's scale, where they add up to the score minus the base rate.
    """
    boosted = _boosted(model, frame, method) if model.heads else None
    gam = _gam_contributions(model, frame) if model.gam is not None and model.weight < 1 else None
    if gam is None:
        assert boosted is not None
        return boosted
    partner = model._partnered()
    if (boosted is None or model.weight <= 0) and partner is None:
        return gam
    # a blend of log-odds explains as the same blend of each part's log-odds contributions
    parts = [(1 - model.weight - model.partner_weight, gam)]
    if boosted is not None and model.weight > 0:
        parts.append((model.weight, boosted))
    if partner is not None:
        # by its own fastest exact method: `method` names the one for the model's first booster
        parts.append((model.partner_weight, _boosted(partner, frame, None)))
    return Contributions(
        values=sum((c.values * w for w, c in parts[1:]), parts[0][1].values * parts[0][0]),
        base_logit=float(sum(w * c.base_logit for w, c in parts)),
    )


def _gam_contributions(model: PropensityModel, frame: pd.DataFrame) -> Contributions:
    """The gam's own terms: exact, each feature's term centred on its training mean."""
    assert model.gam is not None
    values = model.gam.contributions(frame)[model.feature_names]
    base = model.gam.intercept_
    offset = model.offset
    if offset is not None:
        base += offset.mean
        if offset.feature in values.columns:
            values[offset.feature] += offset.of(frame) - offset.mean
    return Contributions(values=values, base_logit=float(base))


def _boosted(model: PropensityModel, frame: pd.DataFrame, method: str | None) -> Contributions:
    x = model.matrix(frame)
    parts = [
        _head_contributions(head, x, frame, model.feature_names, method) for head in model.heads
    ]
    if len(parts) == 1:
        return parts[0]
    p = np.stack([sigmoid(part.values.sum(axis=1).to_numpy() + part.base_logit) for part in parts])
    weight = p / np.maximum(any_of(p), 1e-12)
    values = parts[0].values.mul(weight[0], axis=0)
    for part, w in zip(parts[1:], weight[1:], strict=True):
        values += part.values.mul(w, axis=0)
    base = float(any_of(sigmoid(np.array([part.base_logit for part in parts]))))
    return Contributions(values=values, base_logit=float(np.log(base / (1 - base))))
