"""Is the model still fit for the world? Drift since training, and the outcomes of past lists.

Drift is the population stability index (PSI) of each numeric feature and of the score between
the model's training window (its final fit months that the run can see, as training logged them
beside the model, or rebuilt point in time from the data when it logged none) and a weekly run.
Outcomes: for runs whose horizon has passed, the realised precision and lift of the top
`capacity_k` accounts (what the backtest's lift at capacity measures) and of the CSMs' capacity
lists, against what the backtest promised. Either crossing its threshold recommends retraining.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.artifacts
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from expansion_scorer.config import FeatureSet, MonitorConfig
from expansion_scorer.data.loading import World
from expansion_scorer.features.frame import Labelling, feature_frame, label_frame
from expansion_scorer.features.snapshots import data_span, month_starts
from expansion_scorer.model.propensity import PropensityModel
from expansion_scorer.tracking import ModelRef, configure

if TYPE_CHECKING:
    from expansion_scorer.features.spark import SparkWorld

EPS = 1e-4  # floor for a bin's share, so an empty bin does not make PSI infinite
SCORE = "score"


def bins_of(values: np.ndarray, bins: int) -> dict[str, list[float]]:
    """Quantile edges of the reference values and the share in each bin (last: missing)."""
    values = np.asarray(values, dtype="float64")
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        edges: list[float] = []
    else:
        qs = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])
        edges = [float(e) for e in np.unique(qs)]
    return {"edges": edges, "expected": shares(values, edges)}


def shares(values: np.ndarray, edges: list[float]) -> list[float]:
    values = np.asarray(values, dtype="float64")
    finite = np.isfinite(values)
    idx = np.searchsorted(np.asarray(edges), values[finite], side="right")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype("float64")
    counts = np.append(counts, float((~finite).sum()))
    total = counts.sum()
    return [float(c) for c in (counts / total if total else counts)]


def psi(expected: list[float], actual: list[float]) -> float:
    e = np.maximum(np.asarray(expected), EPS)
    a = np.maximum(np.asarray(actual), EPS)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class ModelRecord:
    """What training recorded about a registered model version."""

    version: str
    run_id: str
    fit_dates: list[date]
    capacity_k: int
    promised_lift: float
    promised_precision: float

    def fit_dates_seen(self, cutoff: date | None) -> list[date]:
        """The final fit's months that a world cut off at `cutoff` (None: not cut) can see."""
        return [d for d in self.fit_dates if cutoff is None or d <= cutoff]


def model_record(ref: ModelRef) -> ModelRecord | None:
    """The registered version's final fit months and backtest metrics, from its run."""
    client = configure()
    run_id = client.get_model_version(ref.name, ref.version).run_id
    if not run_id:
        return None
    run = client.get_run(run_id)
    span = run.data.params.get("final_fit_dates", "")
    if ".." not in span:
        return None
    first, last = (date.fromisoformat(d) for d in span.split(".."))
    lift = float(run.data.metrics.get("test_lift_at_capacity", float("nan")))
    base = float(run.data.metrics.get("test_base_rate", float("nan")))
    return ModelRecord(
        version=ref.label,
        run_id=run_id,
        fit_dates=month_starts(first, last),
        capacity_k=int(run.data.params.get("capacity_k", 100)),
        promised_lift=lift,
        promised_precision=lift * base,
    )


def reference(
    world: World | SparkWorld,
    model: PropensityModel,
    feature_set: FeatureSet,
    dates: list[date],
    cfg: MonitorConfig,
) -> dict[str, Any]:
    """Binned distributions of the numeric features and the score over the training months.

    Only `dates` before the world's cutoff are used, so a run as of T reads nothing from T on.
    """
    usable = [d for d in dates if world.cutoff is None or d <= world.cutoff]
    if not usable:
        return {"dates": [], "columns": {}}
    frame = feature_frame(world, feature_set, usable).features
    return _reference(frame, model.predict_proba(frame), model, feature_set, usable, cfg)


def references_of(
    frame: pd.DataFrame,
    model: PropensityModel,
    feature_set: FeatureSet,
    dates: list[date],
    cfg: MonitorConfig,
) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """`reference` from the features of `dates` already computed (`frame`'s `as_of` months;
    training has them), and of their first 1, 2, ... n - 1: what a run as of a date inside the
    fit months sees of them (a backfill, a simulated program), so it does not rebuild them from
    the data. The frame is scored once. The earlier ones are None when binning every one would
    cost more than `EARLIER_BUDGET` (a large frame: such a run rebuilds its months, as before)."""
    months = pd.to_datetime(frame["as_of"]).dt.date.to_numpy()
    order = np.argsort(months, kind="stable")
    ordered = frame.iloc[order]
    scores = model.predict_proba(ordered)
    whole = _reference(ordered, scores, model, feature_set, dates, cfg)
    counts = [int((months <= d).sum()) for d in dates[:-1]]
    if sum(counts) * (len(model.numeric) + 1) > EARLIER_BUDGET:
        return whole, None
    return whole, [
        _reference(ordered.iloc[:n], scores[:n], model, feature_set, dates[: k + 1], cfg)
        for k, n in enumerate(counts)
    ]


EARLIER_BUDGET = 300_000_000
"""The most rows x columns `references_of` bins over the earlier months (about 15 s)."""


def _reference(
    frame: pd.DataFrame,
    scores: np.ndarray,
    model: PropensityModel,
    feature_set: FeatureSet,
    dates: list[date],
    cfg: MonitorConfig,
) -> dict[str, Any]:
    family = {f.name: f.family for f in feature_set.features}
    columns = {
        c: bins_of(frame[c].to_numpy(dtype="float64"), cfg.bins)
        for c in model.numeric
        if family.get(c) not in cfg.skip_families
    }
    columns[SCORE] = bins_of(scores, cfg.bins)
    return {
        "dates": [str(d) for d in dates],
        "settings": _settings(cfg),
        "rows": len(frame),
        "columns": columns,
    }


def _settings(cfg: MonitorConfig) -> dict[str, Any]:
    return {"bins": cfg.bins, "skip_families": list(cfg.skip_families)}


def drift_table(ref: dict[str, Any], current: pd.DataFrame, cfg: MonitorConfig) -> pd.DataFrame:
    """PSI per column (numeric features and `score`) of `current` against the reference."""
    rows = []
    for name, spec in ref["columns"].items():
        if name not in current.columns:
            continue
        values = pd.to_numeric(current[name], errors="coerce").to_numpy(dtype="float64")
        value = psi(spec["expected"], shares(values, spec["edges"]))
        status = (
            "retrain" if value >= cfg.psi_retrain else "warn" if value >= cfg.psi_warn else "ok"
        )
        rows.append({"column": name, "psi": round(value, 6), "status": status})
    table = pd.DataFrame(rows, columns=["column", "psi", "status"])
    return table.sort_values(["psi", "column"], ascending=[False, True], kind="stable").reset_index(
        drop=True
    )


def drift_warning(table: pd.DataFrame, cfg: MonitorConfig) -> str | None:
    """One line when anything drifted past `psi_warn`, naming the worst columns."""
    flagged = table[table["psi"] >= cfg.psi_warn]
    if flagged.empty:
        return None
    worst = ", ".join(f"{r.column} {r.psi:.2f}" for r in flagged.head(5).itertuples())
    verdict = "retraining recommended" if (flagged["psi"] >= cfg.psi_retrain).any() else "watch it"
    return (
        f"drift since training: PSI {worst} ({len(flagged)} column(s) at or above"
        f" {cfg.psi_warn}); {verdict}; details with `expansion monitor`"
    )


def matured_outcomes(
    world: World | SparkWorld,
    runs: pd.DataFrame,
    feature_set: FeatureSet,
    horizon_days: int,
    capacity_k: int,
) -> pd.DataFrame:
    """Per past run whose horizon has closed in the data: precision and lift of its lists,
    computed on the world's engine."""
    _, end = data_span(world)
    columns = [
        "as_of", "model_version", "scored", "base_rate", "top_k", "precision_at_k", "lift_at_k",
        "on_lists", "precision_on_lists", "lift_on_lists",
    ]  # fmt: skip
    if runs.empty:
        return pd.DataFrame(columns=columns)
    runs = runs.assign(as_of=pd.to_datetime(runs["as_of"]).dt.date)
    matured = sorted(d for d in runs["as_of"].unique() if d + timedelta(days=horizon_days) <= end)
    if not matured:
        return pd.DataFrame(columns=columns)
    outcome = label_frame(world, feature_set, matured, Labelling(horizon_days))
    outcome = outcome[["account_id", "as_of", "label"]]
    rows = []
    for (as_of, version), run in runs[runs["as_of"].isin(matured)].groupby(
        ["as_of", "model_version"], sort=True
    ):
        run = run.merge(outcome, on=["account_id", "as_of"], how="left")
        y = run["label"].fillna(0).to_numpy(dtype="float64")
        base = float(y.mean()) if len(y) else float("nan")
        k = min(capacity_k, len(run))
        top = run.sort_values(["score", "account_id"], ascending=[False, True]).head(k)
        precision_k = float(top["label"].fillna(0).mean()) if k else float("nan")
        listed = run[run["on_list"].astype(bool)]
        precision_l = float(listed["label"].fillna(0).mean()) if len(listed) else float("nan")
        rows.append(
            {
                "as_of": as_of,
                "model_version": version,
                "scored": len(run),
                "base_rate": base,
                "top_k": k,
                "precision_at_k": precision_k,
                "lift_at_k": precision_k / base if base > 0 else float("nan"),
                "on_lists": len(listed),
                "precision_on_lists": precision_l,
                "lift_on_lists": precision_l / base if base > 0 else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def recommendation(
    drift: pd.DataFrame,
    outcomes: pd.DataFrame,
    record: ModelRecord | None,
    cfg: MonitorConfig,
) -> tuple[bool, list[str]]:
    """Whether to retrain, and the reasons, one line each."""
    why: list[str] = []
    over = drift[drift["psi"] >= cfg.psi_retrain]
    if len(over):
        names = ", ".join(f"{r.column} {r.psi:.2f}" for r in over.head(5).itertuples())
        why.append(f"PSI at or above {cfg.psi_retrain}: {names}")
    if len(outcomes) and record is not None and np.isfinite(record.promised_lift):
        hits = (outcomes["precision_at_k"] * outcomes["top_k"]).sum()
        picked = outcomes["top_k"].sum()
        positives = (outcomes["base_rate"] * outcomes["scored"]).sum()
        base = positives / outcomes["scored"].sum()
        lift = (hits / picked) / base if picked and base > 0 else float("nan")
        if np.isfinite(lift) and lift < cfg.lift_ratio_retrain * record.promised_lift:
            why.append(
                f"realised lift at capacity {lift:.2f} over {len(outcomes)} matured run(s) is"
                f" below {cfg.lift_ratio_retrain:.0%} of the backtest's {record.promised_lift:.2f}"
            )
    return bool(why), why


def dumps(ref: dict[str, Any]) -> str:
    return json.dumps(ref, indent=1, sort_keys=True) + "\n"


def load_reference(path: Path, dates: list[date], cfg: MonitorConfig) -> dict[str, Any] | None:
    """A cached reference, if it was built from the same months with the same settings."""
    if not path.is_file():
        return None
    ref: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    same = ref.get("dates") == [str(d) for d in dates] and ref.get("settings") == _settings(cfg)
    return ref if same else None


REFERENCE_ARTIFACT = "monitor/reference.json"
"""Where training logs the drift reference of its final fit months, beside the model."""
EARLIER_ARTIFACT = "monitor/earlier_references.json"
"""Where it logs the references of the fit months' first 1 .. n - 1 (`references_of`)."""


def logged_reference(
    record: ModelRecord, dates: list[date], cfg: MonitorConfig
) -> dict[str, Any] | None:
    """The reference training logged in the recorded version's run, if one covers the same
    months with the same settings: all the fit months, or (a run as of a date inside them) the
    first of them. A model logged before either was, or a large frame's earlier months, has
    none."""
    whole = len(dates) == len(record.fit_dates)
    uri = f"runs:/{record.run_id}/{REFERENCE_ARTIFACT if whole else EARLIER_ARTIFACT}"
    try:
        logged: Any = mlflow.artifacts.load_dict(uri)
    except (MlflowException, OSError, ValueError):
        return None
    wanted = {"dates": [str(d) for d in dates], "settings": _settings(cfg)}
    for ref in [logged] if whole else logged.get("references", []):
        if {key: ref.get(key) for key in wanted} == wanted:
            return dict(ref)
    return None


def training_reference(
    world: World | SparkWorld,
    model: PropensityModel,
    feature_set: FeatureSet,
    record: ModelRecord,
    cfg: MonitorConfig,
) -> dict[str, Any]:
    """The reference of the record's fit months that the world can see: the one training logged
    when it covers them with these settings (all of them, or their first few for a world cut
    off inside them), else built from the data (`reference`)."""
    usable = record.fit_dates_seen(world.cutoff)
    logged = logged_reference(record, usable, cfg)
    return logged if logged is not None else reference(world, model, feature_set, usable, cfg)
