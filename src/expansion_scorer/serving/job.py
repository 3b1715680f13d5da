"""The scoring job: the eligible accounts as of a date, scored, explained, ranked and written."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from expansion_scorer.config import FeatureSet, ServingConfig
from expansion_scorer.data.loading import World, open_world
from expansion_scorer.data.validation import validate
from expansion_scorer.errors import UserError
from expansion_scorer.features.build import build_features
from expansion_scorer.features.ledger import build_expansions
from expansion_scorer.features.snapshots import account_status, build_entities
from expansion_scorer.serving.explain import (
    contributions,
    family_points,
    motions,
    readiness,
    reasons,
)
from expansion_scorer.serving.output import csv_writer, parquet_writer, text_writer, write_outputs
from expansion_scorer.serving.report import UNASSIGNED, render_report
from expansion_scorer.tracking import configure
from expansion_scorer.training.model import PropensityModel

DEFAULT_MODEL = "models:/expansion-propensity@champion"


def load_model(uri: str) -> tuple[PropensityModel, str]:
    """The wrapped model and a readable version ('expansion-propensity v3')."""
    client = configure()
    try:
        loaded = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as exc:
        first = str(exc).splitlines()[0][:200]
        raise UserError(
            f"model {uri} cannot be loaded ({first}); run `expansion train` first or pass --model"
        ) from None
    model = loaded.unwrap_python_model()
    if not isinstance(model, PropensityModel):
        raise UserError(f"model {uri} is not an expansion-propensity model")
    label = uri
    if uri.startswith("models:/") and "@" in uri:
        name, alias = uri[len("models:/") :].split("@", 1)
        label = f"{name} v{client.get_model_version_by_alias(name, alias).version}"
    elif uri.startswith("models:/"):
        label = uri[len("models:/") :].replace("/", " v")
    return model, label


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


def score_columns(serving: ServingConfig) -> list[str]:
    return [
        "rank", "account_id", "account_name", "csm_owner", "score", "band", "readiness",
        "readiness_reason", "motion", *[f"reason_{i + 1}" for i in range(serving.reasons)],
        "reason_against", "talking_points", "model_version", "as_of",
    ]  # fmt: skip


def _delivered_base(model: PropensityModel, base_logit: float) -> float:
    """The score of an account with no information: the base rate as the model delivers it."""
    raw = 1.0 / (1.0 + np.exp(-base_logit))
    calibrate = getattr(model, "calibrate", None)
    return float(np.ravel(calibrate(np.array([raw])))[0]) if callable(calibrate) else float(raw)


def score_frame(
    world: World,
    as_of: date,
    model: PropensityModel,
    feature_set: FeatureSet,
    serving: ServingConfig,
    model_version: str,
) -> Scored:
    """Scores, reasons, motion and readiness for every eligible account; the rest with why not."""
    serving.check_against(feature_set)
    status = account_status(world.con, as_of)
    excluded = status[status["excluded_reason"].notna()].reset_index(drop=True)
    eligible = status[status["excluded_reason"].isna()]
    build_entities(world.con, [as_of])
    build_expansions(world.con, feature_set)
    frame = build_features(
        world.con, feature_set, world.has("support_tickets"), world.has("nps_responses")
    )
    frame = frame.merge(eligible[["account_id", "account_name", "csm_owner"]], on="account_id")
    if len(frame) != len(eligible):  # pragma: no cover - an invariant of the SQL
        raise AssertionError("eligible accounts and feature rows disagree")
    columns = score_columns(serving)
    if frame.empty:
        return Scored(pd.DataFrame(columns=columns), pd.DataFrame(), excluded)

    p = model.predict_proba(frame)
    contrib = contributions(model, frame)
    points = family_points(contrib, feature_set, p, _delivered_base(model, contrib.base_logit))
    scores = pd.concat(
        [
            frame[["account_id", "account_name", "csm_owner"]],
            reasons(frame, contrib, points, feature_set, serving.reasons),
            motions(frame, points, serving),
            readiness(frame, serving),
        ],
        axis=1,
    )
    scores["score"] = p
    scores["band"] = [band_of(v, serving.bands) for v in p]
    scores["model_version"] = model_version
    scores["as_of"] = as_of
    band_order = {
        b: i for i, (b, _) in enumerate(sorted(serving.bands.items(), key=lambda kv: -kv[1]))
    }
    scores["_band"] = scores["band"].map(band_order).fillna(len(band_order))
    scores["_ready"] = (scores["readiness"] != "ready").astype(int)
    order = scores.sort_values(
        ["_band", "_ready", "score", "account_id"],
        ascending=[True, True, False, True],
        kind="stable",
    ).index
    scores = scores.loc[order].reset_index(drop=True)
    scores["rank"] = np.arange(1, len(scores) + 1)
    drivers = points.loc[order].reset_index(drop=True).round(2)
    drivers.insert(0, "account_id", scores["account_id"])
    return Scored(scores, drivers, excluded)


def flat(scores: pd.DataFrame, serving: ServingConfig) -> pd.DataFrame:
    """The score list with talking points as one text cell, for CSV and Parquet."""
    out = scores[score_columns(serving)].copy()
    out["talking_points"] = out["talking_points"].map(lambda t: " | ".join(t))
    return out


def per_csm(scores: pd.DataFrame, capacity: int) -> dict[str, pd.DataFrame]:
    """Each CSM's list: their top `capacity` accounts in rank order; file names are slugs."""
    owners = scores["csm_owner"].fillna(UNASSIGNED).astype(str)
    lists: dict[str, pd.DataFrame] = {}
    for owner in sorted(owners.unique()):
        ascii_name = unicodedata.normalize("NFKD", owner).encode("ascii", "ignore").decode()
        slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-") or "csm"
        name, n = f"{slug}.csv", 2
        while name in lists:
            name, n = f"{slug}-{n}.csv", n + 1
        lists[name] = scores[owners == owner].head(capacity)
    return lists


@dataclass(frozen=True)
class ScoreResult:
    files: list[Path]
    scored: int
    not_ready: int
    excluded: int
    not_yet_customers: int
    model_version: str


def score_job(
    data_dir: Path,
    as_of: date,
    out_dir: Path,
    feature_set: FeatureSet,
    serving: ServingConfig,
    model_uri: str = DEFAULT_MODEL,
    csm_files: bool = False,
) -> ScoreResult:
    world = open_world(data_dir, cutoff=as_of)
    validate(world)
    model, version = load_model(model_uri)
    scored = score_frame(world, as_of, model, feature_set, serving, version)
    table = flat(scored.scores, serving)
    meta = {
        "as_of": str(as_of),
        "model": version,
        "horizon_days": model.horizon_days,
        "capacity": serving.accounts_per_csm,
        "bands": serving.bands,
    }
    writers: dict[str, Callable[[Path], None]] = {
        "scores.csv": csv_writer(table),
        "scores.parquet": parquet_writer(table),
        "drivers.parquet": parquet_writer(scored.drivers),
        "excluded.csv": csv_writer(scored.excluded),
        "report.html": text_writer(
            render_report(scored.scores, scored.drivers, scored.excluded, meta)
        ),
    }
    if csm_files:
        for name, rows in per_csm(table, serving.accounts_per_csm).items():
            writers[f"per_csm/{name}"] = csv_writer(rows)
    files = write_outputs(Path(out_dir), writers)
    return ScoreResult(
        files=files,
        scored=len(table),
        not_ready=int((table["readiness"] != "ready").sum()),
        excluded=len(scored.excluded),
        not_yet_customers=_created_on_or_after(data_dir, as_of),
        model_version=version,
    )


def _created_on_or_after(data_dir: Path, as_of: date) -> int:
    """How many accounts the as-of date cannot see yet: a count for the console, never a feature."""
    row = (
        open_world(data_dir)
        .con.execute(f"SELECT count(*) FROM accounts WHERE created_at >= DATE '{as_of}'")
        .fetchone()
    )
    return int(row[0]) if row else 0
