"""Why each account scored as it did, in the account's own numbers.

SHAP values (exact TreeSHAP, in log-odds) are summed per feature family, so correlated features
of one family do not crowd the top reasons, and scaled onto the probability scale: each
account's family impacts add up to its score minus the base rate, in percentage points.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from expansion_scorer.config import FeatureDef, FeatureSet, ServingConfig
from expansion_scorer.serving import treeshap
from expansion_scorer.serving.text import fill, is_missing, render
from expansion_scorer.training.model import PropensityModel

OPERATORS = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
NO_MOTION = "No clear motion yet: nurture"


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in r.items()} for r in frame.to_dict(orient="records")]


@dataclass(frozen=True)
class Contributions:
    values: pd.DataFrame
    """Per account and model feature, SHAP value in log-odds."""
    base_logit: float


def contributions(
    model: PropensityModel, frame: pd.DataFrame, method: str | None = None
) -> Contributions:
    """Exact TreeSHAP by the fastest method exact for the booster (`treeshap.method_for`)."""
    values, base = treeshap.shap_values(model.booster, model.matrix(frame), method)
    table = pd.DataFrame(values, columns=model.feature_names, index=frame.index)
    offset = model.offset
    if offset is not None:  # the offset speaks through its feature, around its training mean
        base += offset.mean
        if offset.feature in table.columns:
            table[offset.feature] += offset.of(frame) - offset.mean
    return Contributions(values=table, base_logit=base)


def family_points(
    contrib: Contributions, feature_set: FeatureSet, scores: np.ndarray, base_score: float
) -> pd.DataFrame:
    """Per account and family, the family's share of (score - base score), in points (0-100)."""
    family_of = {f.name: f.family for f in feature_set.features}
    sums = contrib.values.T.groupby(lambda name: family_of[name], sort=False).sum().T
    total = sums.sum(axis=1).to_numpy()
    gap = (np.asarray(scores) - base_score) * 100.0
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(np.abs(total) > 1e-12, gap / total, 0.0)
    return sums.mul(scale, axis=0)


def speak(feature: FeatureDef, row: dict[str, Any], strict: bool = False) -> str:
    """The feature's sentence in the account's numbers; its `missing` sentence when the
    account has no value for it. `strict` raises where `render` would fall back to the
    description (the shipped sentences are tested never to)."""
    if is_missing(row.get(feature.name)):
        said = f"{feature.description}: not on record"
        if feature.missing is None:
            return said
        return fill(feature.missing, row) if strict else render(feature.missing, said, row)
    if not isinstance(feature.reason, str):
        return feature.description
    if strict:
        return fill(feature.reason, row)
    return render(feature.reason, feature.description, row)


def points_text(points: float) -> str:
    """'+12 pts', '+1 pt', '-3 pts'."""
    whole = f"{points:+.0f}"
    return f"{whole} pt" if whole in ("+1", "-1") else f"{whole} pts"


def reasons(
    frame: pd.DataFrame,
    contrib: Contributions,
    points: pd.DataFrame,
    feature_set: FeatureSet,
    top: int,
) -> pd.DataFrame:
    """`reason_1..top`: the strongest positive families; `reason_against`: the strongest negative.

    Each family speaks through its feature that pushes hardest in the family's direction, among
    those that may speak; context families (the calendar) are never a reason.
    """
    defs = {f.name: f for f in feature_set.features}
    columns = list(contrib.values.columns)
    context = feature_set.context_families
    fam_names = [f for f in points.columns if f not in context]
    members = [
        np.array(
            [
                columns.index(f.name)
                for f in feature_set.features
                # defined but not in this model, or context: skip
                if f.family == fam and f.name in columns and feature_set.speaks(f)
            ]
        )
        for fam in fam_names
    ]
    keep = [j for j, idx in enumerate(members) if len(idx)]
    fam_names, members = [fam_names[j] for j in keep], [members[j] for j in keep]
    records = _records(frame)
    fam_values = points[fam_names].to_numpy()
    shap_values = contrib.values.to_numpy()
    out: dict[str, list[str]] = {f"reason_{k + 1}": [] for k in range(top)}
    against: list[str] = []
    for i, row in enumerate(records):
        order = np.argsort(-fam_values[i], kind="stable")

        def sentence(j: int, sign: float, i: int = i, row: dict = row) -> str:
            idx = members[j]
            d = defs[columns[idx[np.argmax(sign * shap_values[i, idx])]]]
            return f"{speak(d, row)} ({points_text(fam_values[i, j])})"

        positive = [j for j in order[:top] if fam_values[i, j] >= 0.5]
        for k in range(top):
            out[f"reason_{k + 1}"].append(sentence(positive[k], 1.0) if k < len(positive) else "")
        worst = int(order[-1]) if len(order) else -1
        told = worst >= 0 and fam_values[i, worst] <= -0.5
        against.append(sentence(worst, -1.0) if told else "")
    return pd.DataFrame({**out, "reason_against": against}, index=frame.index)


def motions(frame: pd.DataFrame, points: pd.DataFrame, serving: ServingConfig) -> pd.DataFrame:
    """The motion whose families push the score up most, its label and its talking points."""
    keys = list(serving.motions)
    if not keys:
        return pd.DataFrame(
            {"motion_key": "", "motion": NO_MOTION, "talking_points": [[]] * len(frame)},
            index=frame.index,
        )
    strength = np.column_stack(
        [
            points[[f for f in serving.motions[k].families if f in points.columns]]
            .sum(axis=1)
            .to_numpy()
            for k in keys
        ]
    )
    best = strength.argmax(axis=1)
    records = _records(frame)
    chosen: list[str] = []
    labels: list[str] = []
    talking: list[list[str]] = []
    for i, row in enumerate(records):
        if strength[i, best[i]] < 0.5:
            chosen.append("")
            labels.append(NO_MOTION)
            talking.append([])
            continue
        key = keys[best[i]]
        motion = serving.motions[key]
        chosen.append(key)
        labels.append(render(motion.label, key.replace("_", "-").capitalize(), row))
        talking.append([t for t in (render(s, "", row) for s in motion.talking_points) if t])
    return pd.DataFrame(
        {"motion_key": chosen, "motion": labels, "talking_points": talking}, index=frame.index
    )


def readiness(frame: pd.DataFrame, serving: ServingConfig) -> pd.DataFrame:
    """'ready' or 'not yet', with every rule that holds the account back, in its numbers."""
    said: list[list[str]] = [[] for _ in range(len(frame))]
    records = _records(frame)
    for rule in serving.readiness:
        values = pd.to_numeric(frame[rule.feature], errors="coerce")
        fires = OPERATORS[rule.op](values, rule.value).fillna(False).to_numpy(dtype=bool)
        for i in np.flatnonzero(fires):
            said[i].append(render(rule.says, f"{rule.name.replace('_', ' ')}", records[i]))
    return pd.DataFrame(
        {
            "readiness": ["not yet" if s else "ready" for s in said],
            "readiness_reason": ["; ".join(s) for s in said],
        },
        index=frame.index,
    )
