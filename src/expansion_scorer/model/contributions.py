"""Each account's SHAP values in log-odds, as the model scores it: exact TreeSHAP per booster,
the season offset spoken through its feature, and a model of one booster per motion explained as
the sum of its parts.

It sits beside the model because it depends on how the model adds up its parts; the serving
stage puts these values on the score's scale and into words (`serving.explain`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from expansion_scorer.model import treeshap
from expansion_scorer.model.parts import Head, any_of, sigmoid

if TYPE_CHECKING:
    from expansion_scorer.model.propensity import PropensityModel


@dataclass(frozen=True)
class Contributions:
    values: pd.DataFrame
    """Per account and model feature, SHAP value in log-odds."""
    base_logit: float


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
    if boosted is None or model.weight <= 0:
        return gam
    # a blend of log-odds explains as the same blend of each part's log-odds contributions
    w = model.weight
    return Contributions(
        values=boosted.values * w + gam.values * (1 - w),
        base_logit=w * boosted.base_logit + (1 - w) * gam.base_logit,
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
