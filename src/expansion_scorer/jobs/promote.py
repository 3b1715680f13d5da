"""`expansion promote`: compare @challenger with @champion on the same latest folds, move
@champion when the challenger earns it, and say why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import mlflow
import mlflow.artifacts
from mlflow.tracking import MlflowClient

from expansion_scorer.config import FeatureSet, TrainingConfig
from expansion_scorer.data.loading import World
from expansion_scorer.data.sources import DataSource
from expansion_scorer.errors import UserError
from expansion_scorer.text import span
from expansion_scorer.tracking import configure, experiment_id, flat_metrics
from expansion_scorer.training.backtest import MODEL, backtest, plan_backtest
from expansion_scorer.training.dataset import fold_frames, learnable, load_world, training_set
from expansion_scorer.training.registry import (
    Contenders,
    Decision,
    contenders,
    decide,
    make_champion,
)
from expansion_scorer.training.train import Frames, Layout

if TYPE_CHECKING:
    from expansion_scorer.features.spark import SparkWorld


@dataclass
class PromoteResult:
    decision: Decision
    challenger_version: str
    champion_version: str | None
    test_dates: list[date]
    run_id: str | None


def _recipe(
    client: MlflowClient, name: str, version: str, cfg: TrainingConfig
) -> tuple[TrainingConfig, FeatureSet]:
    """The training config and features a registered version was made with, on cfg's folds."""
    run_id = client.get_model_version(name, version).run_id
    logged = mlflow.artifacts.load_dict(f"runs:/{run_id}/config/training_resolved.json")
    # A model logged before the learners were chosen was one booster: refit it as one.
    logged.setdefault("learning", {"candidates": ["single"]})
    stored = TrainingConfig.model_validate(logged)
    features = FeatureSet.model_validate(
        mlflow.artifacts.load_dict(f"runs:/{run_id}/config/features.json")
    )
    if stored.horizon_days != cfg.horizon_days:
        raise UserError(
            f"{name} v{version} predicts {stored.horizon_days} days ahead, not"
            f" {cfg.horizon_days}; models of different horizons cannot be compared: use --force"
        )
    same_folds = TrainingConfig.model_validate(
        {
            **stored.model_dump(),
            "capacity": cfg.capacity.model_dump(),
            "test_months": cfg.test_months,
            "backtest": {
                **stored.backtest.model_dump(),
                "folds": cfg.backtest.folds,
                "calibration_months": cfg.backtest.calibration_months,
            },
        }
    )
    return same_folds, features


def promote_job(
    data_dir: DataSource,
    cfg: TrainingConfig,
    until: date | None = None,
    force: bool = False,
    world: World | SparkWorld | None = None,
) -> PromoteResult:
    """Compare challenger and champion on the same latest folds; move `champion` if it earns it.
    `world`: the data already read and validated (by `train --promote`), else read here."""
    client = configure()
    name = cfg.registered_model
    found = contenders(client, name, "train a model first (`expansion train`)")
    if found.settled is not None:
        return settled(found)
    challenger, champion = found.pair

    if world is None:
        world = load_world(data_dir, cutoff=until)
    recipes = {
        "challenger": _recipe(client, name, challenger, cfg),
        "champion": _recipe(client, name, champion, cfg),
    }
    built: dict[str, tuple[list[Layout], Frames]] = {}
    metrics: dict[str, dict[str, float]] = {}
    test_dates: list[date] = []
    for role, (recipe, features) in recipes.items():
        key = features.model_dump_json()
        if key not in built:
            made = training_set(world, features, recipe, until)
            frame = made.labelled
            # the same shrink as training on this history, so a short one can be gated too
            folds = plan_backtest(sorted(frame["as_of"].unique()), cfg).folds[-cfg.gate.folds :]
            built[key] = folds, fold_frames(made, features, recipe, frame, folds)[0]
        folds, frames = built[key]
        test_dates = [d for f in folds for d in f.test_dates]
        learn = learnable(world, features)
        bt = backtest(frames, folds, learn, recipe, recipe.lightgbm, with_baselines=False)
        metrics[role] = bt.pooled[MODEL]
    decision = decide(metrics["challenger"], metrics["champion"], cfg.gate, force)

    params = {
        "challenger_version": challenger,
        "champion_version": champion,
        "gate_test_dates": span(test_dates, ""),
        "lift_margin": cfg.gate.lift_margin,
        "ece_tolerance": cfg.gate.ece_tolerance,
        "capacity_k": cfg.capacity.k,
        "force": force,
    }
    run_id = record_gate(client, cfg.experiment, name, (challenger, champion), decision,
                         params, metrics)  # fmt: skip
    return PromoteResult(decision, challenger, champion, test_dates, run_id)


def settled(found: Contenders) -> PromoteResult:
    """The result when there was no champion to compare with (`contenders` promoted)."""
    assert found.settled is not None
    return PromoteResult(found.settled, found.challenger, found.champion, [], None)


def record_gate(
    client: MlflowClient,
    experiment: str,
    name: str,
    versions: tuple[str, str],
    decision: Decision,
    params: dict[str, object],
    metrics: dict[str, dict[str, float]],
) -> str:
    """The gate's MLflow run (its parameters, each role's metrics and the decision), the
    versions' tags, and @champion moved when the challenger earned it; the run's id."""
    challenger, champion = versions
    exp = experiment_id(client, experiment)
    with mlflow.start_run(experiment_id=exp, run_name=f"gate v{challenger} vs v{champion}") as run:
        mlflow.log_params(params)
        mlflow.log_metrics(flat_metrics(metrics, ""))
        mlflow.set_tags(
            {
                "gate_decision": "promoted" if decision.promote else "refused",
                "gate_forced": str(decision.forced).lower(),
                "gate_reason": decision.reason,
            }
        )
    for version in versions:
        client.set_model_version_tag(name, version, "last_gate_run", run.info.run_id)
    client.set_model_version_tag(
        name, challenger, "gate_decision", "promoted" if decision.promote else "refused"
    )
    if decision.promote:
        make_champion(client, name, challenger)
    return str(run.info.run_id)


def say_decision(decision: Decision) -> None:
    """The gate's verdict and its reason, in one line."""
    verdict = "promoted to @champion" if decision.promote else "stays @challenger"
    print(f"gate: {verdict}; {decision.reason}")


def say(result: PromoteResult, target: str) -> None:
    """What `promote` prints: what was compared on which months or cohorts, and the verdict."""
    if result.test_dates:
        print(
            f"compared v{result.challenger_version} (@challenger) with"
            f" v{result.champion_version} (@champion) on test"
            f" {'cohorts' if target == 'uplift' else 'months'}"
            f" {result.test_dates[0]}..{result.test_dates[-1]}"
        )
    say_decision(result.decision)
