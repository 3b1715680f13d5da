"""The promotion gate against a real SQLite MLflow store: it promotes better, refuses worse."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from expansion_scorer.jobs.promote import promote_job
from expansion_scorer.jobs.train import train_job
from expansion_scorer.settings import load_feature_set
from expansion_scorer.tracking import configure
from tests.helpers import run_cli
from tests.training.test_train import small_config


def _aliases() -> dict[str, str]:
    model = configure().get_registered_model("expansion-propensity")
    return {alias: str(version) for alias, version in model.aliases.items()}


def _gate_runs() -> list[mlflow.entities.Run]:
    client = configure()
    exp = client.get_experiment_by_name("expansion-scorer")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], "tags.gate_decision != ''")
    return sorted(runs, key=lambda r: r.info.start_time)


def test_gate_promotes_a_better_challenger_and_refuses_a_worse_one(
    small_world_dir: Path, mlflow_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    features = load_feature_set()
    good = small_config(gate=small_config().gate.model_copy(update={"folds": 1}))
    # A model that may not split at all (no leaf can hold enough rows): it knows nothing.
    weak = good.model_copy(
        update={
            "lightgbm": good.lightgbm.model_copy(
                update={"n_estimators": 1, "num_leaves": 2, "min_child_samples": 1_000_000}
            ),
            # that booster alone: the gam would learn what the booster may not
            "learning": good.learning.model_copy(update={"candidates": ["single"]}),
        }
    )

    # Given a weak first model, which becomes the champion
    first = train_job(small_world_dir, weak, features)
    assert first.alias == "champion"

    # When a better model is trained with the gate straight after training
    second = train_job(small_world_dir, good, features, promote=True)

    # Then it is registered as the challenger and promoted, with the decision and numbers logged
    assert second.alias == "challenger"
    assert second.decision is not None and second.decision.promote
    assert not second.decision.forced
    assert _aliases() == {"champion": second.version}
    run = _gate_runs()[-1]
    assert run.data.tags["gate_decision"] == "promoted"
    lifts = run.data.metrics
    assert lifts["challenger_lift_at_capacity"] > lifts["champion_lift_at_capacity"] + 0.05
    assert {"challenger_ece", "champion_ece"} <= set(lifts)

    # When a worse model comes next, the gate refuses it and the champion stays
    third = train_job(small_world_dir, weak, features)
    code, out, err = run_cli(["promote", str(small_world_dir)], capsys)
    assert code == 0, err
    assert "refused" in out and "stays @challenger" in out
    assert _aliases() == {"champion": second.version, "challenger": third.version}
    assert _gate_runs()[-1].data.tags["gate_decision"] == "refused"

    # And --force overrides the gate and says so in the log
    result = promote_job(small_world_dir, good, force=True)
    assert result.decision.promote and result.decision.forced
    assert "forced" in result.decision.reason
    assert _aliases() == {"champion": third.version}
    tags = _gate_runs()[-1].data.tags
    assert tags["gate_forced"] == "true" and tags["gate_reason"].startswith("forced")


def test_promote_without_a_challenger_says_what_to_do(
    world_dir: Path, mlflow_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["promote", str(world_dir)], capsys)

    assert code == 2
    assert "train a model first" in err and len(err.strip().splitlines()) == 1
