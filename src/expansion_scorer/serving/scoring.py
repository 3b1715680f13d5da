"""The scoring core: from a feature frame to the ranked, explained list, whichever engine made it.

`score_frame` builds the features (`features.frame.feature_frame`) and hands them to
`finish_scoring`; the Spark engine (`serving.spark`) builds them on Spark and hands them to the
same function, so scores,
reasons, motion, readiness and uplift are one piece of code. `jobs.score` wires it into the
weekly run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from expansion_scorer.config import FeatureSet, Ranking, ServingConfig
from expansion_scorer.data.loading import World
from expansion_scorer.errors import UserError
from expansion_scorer.features.frame import feature_frame
from expansion_scorer.model.propensity import PropensityModel
from expansion_scorer.model.uplift import UpliftModel
from expansion_scorer.progress import progress
from expansion_scorer.serving.explain import (
    family_points,
    motions,
    readiness,
    reasons,
    uplift_points,
)

if TYPE_CHECKING:
    from expansion_scorer.features.spark import SparkWorld


def band_of(score: float, bands: dict[str, float]) -> str:
    for name, low in sorted(bands.items(), key=lambda kv: -kv[1]):
        if score >= low:
            return name
    return "none"


@dataclass(frozen=True)
class Scored:
    scores: pd.DataFrame
    """One row per eligible account, in rank order."""
    drivers: pd.DataFrame
    """Per account and reason family, the impact on the score in points."""
    excluded: pd.DataFrame
    """Every account that exists at the as-of date and cannot be scored, with the reason."""
    features: pd.DataFrame = field(default_factory=pd.DataFrame)
    """The feature frame, in rank order."""


def uplift_columns(serving: ServingConfig) -> list[str]:
    """When a list may be built by uplift (`rank_by: uplift`, or uplift compared): the uplift,
    expected incremental ARR and what makes a touch matter; otherwise none."""
    if not serving.uses_uplift:
        return []
    slots = [f"uplift_reason_{i + 1}" for i in range(serving.reasons)]
    return ["uplift", "expected_incremental_arr", *slots, "uplift_reason_against"]


def score_columns(serving: ServingConfig) -> list[str]:
    return [
        "rank", "account_id", "crm_id", "account_name", "csm_owner", "score",
        "expected_expansion_arr", *uplift_columns(serving)[:2], "band", "readiness",
        "readiness_reason", "motion", *[f"reason_{i + 1}" for i in range(serving.reasons)],
        "reason_against", *uplift_columns(serving)[2:], "talking_points", "model_version",
        "as_of",
    ]  # fmt: skip


def _delivered_base(model: PropensityModel, base_logit: float) -> float:
    """The score of an account with no information: the base rate as the model delivers it,
    through its calibrator (with the offset at its mean, which `base_logit` already holds)."""
    raw = np.array([1.0 / (1.0 + np.exp(-base_logit))])
    if model.calibrator is None:
        return float(raw[0])
    shift = None if model.offset is None else np.array([model.offset.mean])
    return float(model.calibrator.transform(raw, shift)[0])


def check_schema(model: PropensityModel | UpliftModel, frame: pd.DataFrame, name: str) -> None:
    """Stop, in one line, when the features do not give a model (the propensity model or the
    uplift model beside it) what it was trained on."""
    missing = [c for c in model.feature_names if c not in frame.columns]
    mistyped = [
        f"{c} (expects a number, gets {frame[c].dtype})"
        for c in model.numeric
        if c in frame.columns and not pd.api.types.is_numeric_dtype(frame[c])
    ] + [
        f"{c} (expects text categories, gets {frame[c].dtype})"
        for c in model.categories
        if c in frame.columns and pd.api.types.is_numeric_dtype(frame[c])
    ]
    if missing or mistyped:
        said = []
        if missing:
            said.append(f"missing {', '.join(missing)}")
        if mistyped:
            said.append(f"mistyped {', '.join(mistyped)}")
        raise UserError(
            f"{name} does not match the features: {'; '.join(said)};"
            " score with the feature definitions it was trained on, or retrain"
        )


def score_frame(
    world: World | SparkWorld,
    as_of: date,
    model: PropensityModel,
    feature_set: FeatureSet,
    serving: ServingConfig,
    model_version: str,
    uplift: UpliftModel | None = None,
) -> Scored:
    """Scores, reasons, motion and readiness for every eligible account; the rest with why not.

    `feature_set` is the definitions as the model scores with them (`for_model`: its learned
    affinity and plan order), resolved once by the caller."""
    built = feature_frame(world, feature_set, [as_of])
    return finish_scoring(
        built.status_on(as_of), built.features, as_of, model, feature_set, serving, model_version,
        uplift,
    )  # fmt: skip


PRESCORED = "__score"
"""A feature-frame column holding scores computed elsewhere (the Spark engine's UDF)."""


def finish_scoring(
    status: pd.DataFrame,
    frame: pd.DataFrame,
    as_of: date,
    model: PropensityModel,
    feature_set: FeatureSet,
    serving: ServingConfig,
    model_version: str,
    uplift: UpliftModel | None = None,
) -> Scored:
    """From the status of every account and the eligible ones' features to the ranked list.

    Whichever engine made `frame`, scoring and explaining from here on is the same code; a
    `PRESCORED` column, when present, is the score instead of the model's predict on the driver.
    """
    excluded = status[status["excluded_reason"].notna()].reset_index(drop=True)
    eligible = status[status["excluded_reason"].isna()]
    frame = frame.merge(
        eligible[["account_id", "crm_id", "account_name", "csm_owner"]], on="account_id"
    )
    if len(frame) != len(eligible):  # pragma: no cover - an invariant of the SQL
        raise AssertionError("eligible accounts and feature rows disagree")
    given = frame.pop(PRESCORED).to_numpy(dtype="float64") if PRESCORED in frame else None
    columns = score_columns(serving)
    check_schema(model, frame, f"model {model_version}")
    if uplift is not None:
        check_schema(uplift, frame, "the uplift model")
    if frame.empty:
        return Scored(pd.DataFrame(columns=columns), pd.DataFrame(), excluded, frame)

    scores, drivers, order = score_features(
        frame, model, feature_set, serving, model_version, as_of, given=given, uplift=uplift
    )
    return Scored(scores, drivers, excluded, frame.iloc[order].reset_index(drop=True))


CHUNK_ROWS = 100_000
"""Accounts scored and explained at a time: bounds the SHAP matrix and the model matrix."""


def _score_chunk(
    frame: pd.DataFrame,
    model: PropensityModel,
    feature_set: FeatureSet,
    serving: ServingConfig,
    explain: bool,
    given: np.ndarray | None = None,
    uplift: UpliftModel | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    p = model.predict_proba(frame) if given is None else given
    if explain:
        contrib = model.explain(frame)
        base = _delivered_base(model, contrib.base_logit)
        points = family_points(contrib, feature_set, p, base)
        said = [
            reasons(frame, contrib, points, feature_set, serving.reasons),
            motions(frame, points, serving),
        ]
    else:
        points = pd.DataFrame(index=frame.index)
        blank = {f"reason_{k + 1}": "" for k in range(serving.reasons)}
        said = [
            pd.DataFrame(
                {**blank, "reason_against": "", "motion_key": "", "motion": "",
                 "talking_points": [[] for _ in range(len(frame))]},
                index=frame.index,
            )
        ]  # fmt: skip
    scores = pd.concat(
        [
            # a frame built elsewhere (a benchmark's, say) may hold no CRM id: it reads empty
            frame.reindex(columns=["account_id", "crm_id", "account_name", "csm_owner"]),
            *said,
            readiness(frame, serving),
        ],
        axis=1,
    )
    scores["score"] = p
    # score x the size model's ARR given an expansion; empty when the model has no size model
    size = model.expected_size(frame)
    scores["expected_expansion_arr"] = p * size
    if uplift is not None:
        scores["uplift"] = uplift.uplift(frame)  # the learner's effect (the T-learner's arms')
        scores["expected_incremental_arr"] = scores["uplift"] * size
        slots = [f"reason_{k + 1}" for k in range(serving.reasons)] + ["reason_against"]
        if explain:
            contrib, touch = uplift_points(uplift, frame, feature_set)
            why = reasons(frame, contrib, touch, feature_set, serving.reasons)
        else:
            why = pd.DataFrame({slot: "" for slot in slots}, index=frame.index)
        for slot in slots:
            scores[f"uplift_{slot}"] = why[slot].to_numpy()
    return scores, points


def order_by(scores: pd.DataFrame, ranking: Ranking, bands: dict[str, float]) -> np.ndarray:
    """The row positions of `scores` in `ranking`'s order.

    Within a band, ready accounts first, then by score, or by expected expansion ARR for
    `expected_arr` (accounts without a size estimate go after those with one). By uplift, what a
    touch adds orders the whole list: a band or readiness says how likely an expansion is, not
    whether a call makes it more likely, which the uplift already weighs."""
    band_order = {b: i for i, (b, _) in enumerate(sorted(bands.items(), key=lambda kv: -kv[1]))}
    keys = pd.DataFrame(
        {
            "_band": scores["band"].map(band_order).fillna(len(band_order)).to_numpy(),
            "_ready": (scores["readiness"] != "ready").astype(int).to_numpy(),
            "score": scores["score"].to_numpy(),
            "account_id": scores["account_id"].to_numpy(),
        }
    )
    first, worth = ["_band", "_ready"], []
    if ranking == "expected_arr":
        worth = ["expected_expansion_arr"]
    elif ranking == "uplift":
        first, worth = [], ["expected_incremental_arr", "uplift"]
    for column in worth:
        keys[column] = scores[column].to_numpy()
    return keys.sort_values(
        [*first, *worth, "score", "account_id"],
        ascending=[*[True] * len(first), *[False] * len(worth), False, True],
        kind="stable",
        na_position="last",
    ).index.to_numpy()


def score_features(
    frame: pd.DataFrame,
    model: PropensityModel,
    feature_set: FeatureSet,
    serving: ServingConfig,
    model_version: str,
    as_of: date,
    explain: bool = True,
    chunk_rows: int = CHUNK_ROWS,
    given: np.ndarray | None = None,
    uplift: UpliftModel | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Score (and explain) a feature frame chunk by chunk, then rank it.

    Returns the ranked scores, the family impacts in the same order (empty without
    explanations) and the rank order as row positions of `frame`. `given` holds scores already
    computed for the rows of `frame` (by Spark); without it the model scores them here.
    """
    pieces = [
        _score_chunk(
            frame.iloc[i : i + chunk_rows],
            model,
            feature_set,
            serving,
            explain,
            None if given is None else given[i : i + chunk_rows],
            uplift,
        )
        for i in progress(
            range(0, len(frame), chunk_rows), "scoring and explaining", -(-len(frame) // chunk_rows)
        )
    ]
    scores = pd.concat([s for s, _ in pieces])
    points = pd.concat([p for _, p in pieces])
    del pieces
    p = scores["score"].to_numpy()
    scores["band"] = [band_of(v, serving.bands) for v in p]
    scores["model_version"] = model_version
    scores["as_of"] = as_of
    scores = scores.reset_index(drop=True)
    order = order_by(scores, serving.rankings[0], serving.bands)
    scores = scores.iloc[order].reset_index(drop=True)
    scores["rank"] = np.arange(1, len(scores) + 1)
    drivers = points.reset_index(drop=True).iloc[order].reset_index(drop=True).round(2)
    drivers.insert(0, "account_id", scores["account_id"])
    return scores, drivers, order
