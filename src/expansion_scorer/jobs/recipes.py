"""Recipes: end-to-end runs on real data, from the raw export to a scored, compared model.

`online_retail_job` maps the UCI Online Retail invoices into the contract, trains and
backtests the model with the usual rolling folds (every test snapshot strictly after the
snapshots its model was fitted on), scores the customers as of the day after the data ends, and
compares the model with a recency / frequency / monetary logistic regression fitted on the same
folds' training snapshots and tested on the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path

import pandas as pd

from expansion_scorer.data.online_retail import convert
from expansion_scorer.features.snapshots import data_span
from expansion_scorer.jobs.score import score_job
from expansion_scorer.jobs.train import TrainResult, train_job
from expansion_scorer.jobs.train import say as say_training
from expansion_scorer.outputs import csv_writer, write_outputs
from expansion_scorer.settings import load_settings
from expansion_scorer.training.backtest import MODEL
from expansion_scorer.training.dataset import load_world, training_frame
from expansion_scorer.training.metrics import evaluate
from expansion_scorer.training.rfm import rfm_matrix, rfm_model
from expansion_scorer.training.train import rows_of


def _config(name: str) -> Path:
    return Path(str(resources.files("expansion_scorer").joinpath("defaults", name)))


@dataclass(frozen=True)
class RecipeResult:
    counts: dict[str, int]
    training: TrainResult
    comparison: pd.DataFrame
    """Per fold and pooled: ROC AUC and top-decile lift of the model and of RFM."""
    as_of: date
    files: list[Path]


def online_retail_job(source: Path, out_dir: Path) -> RecipeResult:
    data = out_dir / "data"
    settings = load_settings(
        _config("online_retail_features.yaml"),
        _config("online_retail_training.yaml"),
        _config("online_retail_serving.yaml"),
    )
    features, cfg, serving = settings.features, settings.training, settings.serving
    assert cfg is not None and serving is not None
    counts = convert(source, data)
    trained = train_job(data, cfg, features)

    frame = training_frame(load_world(data, None), features, cfg, None)
    scores = trained.backtest.scores.copy()
    scores["rfm"] = float("nan")
    for fold in trained.backtest.folds:
        past = rows_of(frame, [*fold.layout.fit_dates, *fold.layout.calib_dates])
        test = rows_of(frame, fold.layout.test_dates)
        model = rfm_model(cfg.seed).fit(rfm_matrix(past), past["label"].to_numpy())
        predicted = pd.DataFrame(
            {
                "account_id": test["account_id"].to_numpy(),
                "as_of": test["as_of"].to_numpy(),
                "rfm_p": model.predict_proba(rfm_matrix(test))[:, 1],
            }
        )
        scores = scores.merge(predicted, on=["account_id", "as_of"], how="left")
        scores["rfm"] = scores["rfm"].fillna(scores.pop("rfm_p"))
    comparison = _compare(scores, trained, cfg.capacity.k)

    _, end = data_span(load_world(data, None))
    as_of = date(end.year, end.month, 1)  # the month's run, on the newest data
    scored = score_job(
        data,
        as_of,
        out_dir / "scores",
        features,
        serving,
        model_uri=trained.model_uri,
    )
    files = write_outputs(out_dir, {"comparison.csv": csv_writer(comparison)})
    return RecipeResult(counts, trained, comparison, as_of, [*files, *scored.files])


def _compare(scores: pd.DataFrame, trained: TrainResult, k: int) -> pd.DataFrame:
    rows = []
    parts = [(f"fold {f.layout.index}", f.layout.test_dates) for f in trained.backtest.folds]
    for name, dates in [*parts, ("pooled", tuple(scores["as_of"].unique()))]:
        part = scores[scores["as_of"].isin(dates)]
        y, when = part["label"].to_numpy(), part["as_of"].to_numpy()
        for scorer, label in ((MODEL, "model"), ("rfm", "RFM logistic regression")):
            m = evaluate(y, part[scorer].to_numpy(), when, k)
            rows.append(
                {
                    "fold": name,
                    "scorer": label,
                    "test_from": min(dates),
                    "test_to": max(dates),
                    "rows": int(m["rows"]),
                    "base_rate": round(m["base_rate"], 4),
                    "roc_auc": round(m["roc_auc"], 4),
                    "lift_top_decile": round(m["lift_top_decile"], 3),
                }
            )
    return pd.DataFrame(rows)


def say(result: RecipeResult, out: Path) -> None:
    """What `online-retail` prints: the tables made, training, the comparison with RFM and
    the files."""
    print(", ".join(f"{name} {n:,}" for name, n in result.counts.items()) + f" in {out / 'data'}")
    say_training(result.training)
    print("model against a recency/frequency/monetary logistic regression, same folds and rows:")
    print(result.comparison.to_string(index=False))
    print(f"scored as of {result.as_of}:")
    for path in result.files:
        print(f"  {path}")
