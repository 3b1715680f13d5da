"""Why each account scored as it did, in the account's own numbers.

SHAP values (exact TreeSHAP, in log-odds) are summed per feature family, so correlated features
of one family do not crowd the top reasons, and scaled onto the probability scale: each
account's family impacts add up to its score minus the base rate, in percentage points.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from expansion_scorer.config import FeatureDef, FeatureSet, ServingConfig
from expansion_scorer.model.parts import Contributions
from expansion_scorer.text import Columns, fill, is_missing, render, render_rows

if TYPE_CHECKING:
    from expansion_scorer.model.uplift import UpliftModel

OPERATORS = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
NO_MOTION = "No clear motion yet: nurture"


def uplift_points(
    model: UpliftModel, frame: pd.DataFrame, feature_set: FeatureSet
) -> tuple[Contributions, pd.DataFrame]:
    """What makes a touch matter for each account: per family, its points of uplift.

    Each arm's booster is explained by the same exact TreeSHAP and put on the probability scale
    as a propensity score is (`family_points`); the listed arm's points minus the held-out arm's
    add up to the uplift minus the base uplift. The contributions returned are the difference
    of the two arms' SHAP values in log-odds (they add up to the log odds ratio), which picks
    the feature that speaks for each family.
    """
    listed, held = model.explain(frame)
    listed_points, held_points = (
        family_points(arm.contributions, feature_set, arm.probability,
                      1 / (1 + np.exp(-arm.contributions.base_logit)))
        for arm in (listed, held)
    )  # fmt: skip
    a, b = listed.contributions, held.contributions
    difference = Contributions(a.values - b.values, a.base_logit - b.base_logit)
    return difference, listed_points - held_points


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


def speak_rows(feature: FeatureDef, columns: Columns, rows: np.ndarray) -> list[str]:
    """`speak` for each account at `rows`, each sentence filled a column at a time."""
    out: list[str] = [""] * len(rows)
    missing = columns.missing(feature.name)[rows]
    said = f"{feature.description}: not on record"
    for lacks in (True, False):
        at = np.flatnonzero(missing == lacks)
        if not len(at):
            continue
        if lacks:
            source, fallback = feature.missing, said
        else:
            reason = feature.reason
            source, fallback = (reason if isinstance(reason, str) else None), feature.description
        for k, text in zip(at, render_rows(source, fallback, columns, rows[at]), strict=True):
            out[k] = text
    return out


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
    those that may speak; context families (the calendar) are never a reason. Ties go to the
    family listed first and, within a family, to the feature listed first. The choice is made
    for every account at once; then each feature's sentence is filled for the accounts it
    speaks for.
    """
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
            ],
            dtype=np.intp,
        )
        for fam in fam_names
    ]
    keep = [j for j, idx in enumerate(members) if len(idx)]
    fam_names, members = [fam_names[j] for j in keep], [members[j] for j in keep]
    n = len(frame)
    slots = [f"reason_{k + 1}" for k in range(top)] + ["reason_against"]
    out = {slot: np.full(n, "", dtype=object) for slot in slots}
    if not fam_names or not n:
        return pd.DataFrame(out, index=frame.index)
    fam_values = points[fam_names].to_numpy()
    shap_values = contrib.values.to_numpy()
    # per account and family, the feature (a column of `shap_values`) that speaks for it
    speaker = {
        sign: np.column_stack(
            [idx[np.argmax(sign * shap_values[:, idx], axis=1)] for idx in members]
        )
        for sign in (1.0, -1.0)
    }
    order = np.argsort(-fam_values, axis=1, kind="stable")
    everyone = np.arange(n)
    head = order[:, :top]
    passing = np.take_along_axis(fam_values, head, axis=1) >= 0.5
    place = np.cumsum(passing, axis=1) - 1  # among the families passing, the k-th strongest
    wanted: list[tuple[str, np.ndarray, np.ndarray, float]] = []  # slot, accounts, families
    for k in range(min(top, len(fam_names))):
        here = passing & (place == k)
        who = np.flatnonzero(here.any(axis=1))
        wanted.append((slots[k], who, head[who, here[who].argmax(axis=1)], 1.0))
    worst = order[:, -1]
    who = np.flatnonzero(fam_values[everyone, worst] <= -0.5)
    wanted.append(("reason_against", who, worst[who], -1.0))

    table = Columns(frame)
    feature_of = [contrib.values.columns[c] for c in range(shap_values.shape[1])]
    defs = {f.name: f for f in feature_set.features}
    for slot, who, fams, sign in wanted:
        said = np.empty(len(who), dtype=object)
        feature = speaker[sign][who, fams]
        for c in np.unique(feature):
            at = np.flatnonzero(feature == c)
            said[at] = speak_rows(defs[feature_of[c]], table, who[at])
        pts = fam_values[who, fams]
        out[slot][who] = [f"{s} ({points_text(p)})" for s, p in zip(said, pts, strict=True)]
    return pd.DataFrame(out, index=frame.index)


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
    n = len(frame)
    offered = ~(strength[np.arange(n), best] < 0.5)  # NaN strength offers, as it always has
    chosen = np.full(n, "", dtype=object)
    labels = np.full(n, NO_MOTION, dtype=object)
    talking: list[list[str]] = [[] for _ in range(n)]
    table = Columns(frame)
    for m, key in enumerate(keys):
        who = np.flatnonzero(offered & (best == m))
        if not len(who):
            continue
        motion = serving.motions[key]
        chosen[who] = key
        labels[who] = render_rows(motion.label, key.replace("_", "-").capitalize(), table, who)
        for source in motion.talking_points:
            for i, text in zip(who, render_rows(source, "", table, who), strict=True):
                if text:
                    talking[i].append(text)
    return pd.DataFrame(
        {"motion_key": chosen, "motion": labels, "talking_points": talking}, index=frame.index
    )


def readiness(frame: pd.DataFrame, serving: ServingConfig) -> pd.DataFrame:
    """'ready' or 'not yet', with every rule that holds the account back, in its numbers."""
    said: list[list[str]] = [[] for _ in range(len(frame))]
    table = Columns(frame)
    for rule in serving.readiness:
        values = pd.to_numeric(frame[rule.feature], errors="coerce")
        fires = OPERATORS[rule.op](values, rule.value).fillna(False).to_numpy(dtype=bool)
        who = np.flatnonzero(fires)
        fallback = rule.name.replace("_", " ")
        for i, text in zip(who, render_rows(rule.says, fallback, table, who), strict=True):
            said[i].append(text)
    return pd.DataFrame(
        {
            "readiness": ["not yet" if s else "ready" for s in said],
            "readiness_reason": ["; ".join(s) for s in said],
        },
        index=frame.index,
    )
