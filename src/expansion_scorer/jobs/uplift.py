"""`expansion train --program OUT` with `target: uplift`: the uplift model's job.

Reads the randomized assignments of the weekly history under OUT, keeps the listed and held-out
ones whose horizon has closed in the data, computes each one's features as of the day it was
drawn with the same feature pipeline as the training snapshots, and its outcome as
`expansion measure` reads it. Everything that can fail on the user's data fails before the
MLflow run starts, so a refused training registers nothing.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.artifacts
import mlflow.data.pandas_dataset
import pandas as pd
from mlflow.models import infer_signature

from expansion_scorer.config import FeatureSet, TrainingConfig
from expansion_scorer.data.loading import open_world
from expansion_scorer.data.sources import DataSource
from expansion_scorer.errors import UserError
from expansion_scorer.features.catalogue import for_model
from expansion_scorer.features.frame import feature_frame
from expansion_scorer.features.snapshots import as_dates
from expansion_scorer.jobs.promote import PromoteResult, record_gate, settled
from expansion_scorer.model.propensity import PropensityModel
from expansion_scorer.program.history import HISTORY_FILE, randomized_assignments
from expansion_scorer.program.holdout import HOLDOUT, LISTED
from expansion_scorer.program.outcomes import outcomes
from expansion_scorer.text import span
from expansion_scorer.tracking import (
    ModelRef,
    alias_uri,
    configure,
    experiment_id,
    flat_metrics,
    git_commit,
    requirements,
)
from expansion_scorer.training.registry import (
    CHAMPION,
    Decision,
    assign_new_version,
    contenders,
)
from expansion_scorer.training.uplift import (
    ORACLE,
    OUTCOME,
    PROPENSITY,
    UPLIFT,
    CohortFold,
    UpliftBacktest,
    backtest_uplift,
    check_arms,
    plan_cohort_folds,
    table,
)
from expansion_scorer.training.uplift_learners import (
    PROPENSITY_X_EFFECT,
    RANDOM,
    Choice,
    PolicyValue,
    fit_learned,
    policy_values,
)

PROGRAM_TRUTH = "program_truth.parquet"
"""The simulator's per-assignment truth (program.simulation): the oracle, when present."""


def _oracle(data_dir: DataSource, rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` with the true expected effect of a touch per assignment, when the data has it:
    the simulator's `true_effect` (`p_touched - p_untouched` at the first month start after
    the draw, both chances kept from the world and its flipped replay by `run_program`).
    Without it (data that is not a simulated program, or one written before the chances were
    kept) there is no oracle: a realised effect or a `p_expand` that already holds the touch
    would rank by noise."""
    if not isinstance(data_dir, Path):
        return rows
    path = data_dir / PROGRAM_TRUTH
    if not path.is_file():
        return rows
    keys = ["account_id", "assigned_on"]
    truth = pd.read_parquet(path)
    if "true_effect" not in truth.columns:
        return rows
    truth = as_dates(truth[[*keys, "true_effect"]], "assigned_on")
    truth["account_id"] = truth["account_id"].astype(str)
    joined = rows.merge(truth.rename(columns={"true_effect": ORACLE}), on=keys, how="left")
    return joined if joined[ORACLE].notna().all() else rows


def matured_assignments(
    data_dir: DataSource, program: Path, feature_set: FeatureSet
) -> pd.DataFrame:
    """The listed and held-out assignments of the history under `program` whose horizon has
    closed in the data, with whether each expanded within it (as `expansion measure` reads it)
    and the propensity score it was drawn with."""
    _, randomized = randomized_assignments(
        program,
        "target: uplift learns from the weekly runs' holdout: pass --program the output root"
        " `expansion score` writes to",
        "target: uplift needs a control group: score weekly with holdout.fraction above 0"
        " (serving config)",
    )
    measured, _, _ = outcomes(data_dir, feature_set, randomized)
    return measured.rename(columns={"score": PROPENSITY})


def scored_catalogue(feature_set: FeatureSet, propensity: str) -> FeatureSet:
    """The definitions as the weekly run scores with them: where they leave the affinity or the
    plan order to the data, the propensity champion's (`serving` reads them from it), so the
    uplift model learns from the features it will be given."""
    if not (feature_set.affinity_learned or feature_set.plan_order_auto):
        return feature_set
    uri = alias_uri(propensity, CHAMPION)
    configure()
    try:
        model = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    except (mlflow.exceptions.MlflowException, OSError):
        raise UserError(
            f"target: uplift reads the features as {uri} scores them (its learned affinity and"
            " plan order), and none loads; train the propensity model first"
        ) from None
    if not isinstance(model, PropensityModel):
        raise UserError(f"{uri} is not a propensity model; register one under that name")
    return for_model(feature_set, model.affinity, model.plan_order)


def with_features(
    data_dir: DataSource,
    matured: pd.DataFrame,
    feature_set: FeatureSet,
    propensity: str = "expansion-propensity",
) -> pd.DataFrame:
    """Each assignment with its features as of the day it was drawn, computed by the feature
    pipeline of the training snapshots with the catalogue the weekly run scored with, and the
    oracle when the data has one."""
    feature_set = scored_catalogue(feature_set, propensity)
    keep = ["account_id", "assigned_on", "period", "arm", "csm_owner", "horizon_days",
            PROPENSITY, OUTCOME, "expansion_arr"]  # fmt: skip
    if matured.empty:
        return matured.reindex(columns=keep)
    world = open_world(data_dir)
    pairs = matured.rename(columns={"assigned_on": "as_of"})
    features = feature_frame(world, feature_set, pairs).features
    features = features.rename(columns={"as_of": "assigned_on"})
    # an assignment whose account is not eligible on its own date (a corrected export) has no
    # features: it cannot be learnt from, and leaves both the fit and the backtest
    rows = matured[keep].merge(features, on=["account_id", "assigned_on"], how="inner")
    return _oracle(data_dir, rows).sort_values(["assigned_on", "account_id"],
                                                     ignore_index=True)  # fmt: skip


def uplift_frame(
    data_dir: DataSource,
    program: Path,
    feature_set: FeatureSet,
    propensity: str = "expansion-propensity",
) -> pd.DataFrame:
    """Per matured listed or held-out assignment: its features as of the day it was drawn, the
    propensity score it was drawn with, whether it expanded within the horizon, and the oracle
    when the data has one."""
    return with_features(data_dir, matured_assignments(data_dir, program, feature_set),
                         feature_set, propensity)  # fmt: skip


def _plan(frame: pd.DataFrame, cfg: TrainingConfig) -> tuple[list[CohortFold], CohortFold, int]:
    """The cohort folds the rows hold, checked for enough of each arm; or a one-line refusal."""
    cohorts = sorted(frame["assigned_on"].unique())
    horizon = int(frame["horizon_days"].max())
    folds, final = plan_cohort_folds(cohorts, horizon, cfg)
    check_arms(frame, [*folds, final], cfg)
    return folds, final, horizon


@dataclass
class UpliftResult:
    learner: str
    values: dict[str, PolicyValue]
    """Per ranking (and uplift - propensity), its doubly robust value at capacity on the test
    cohorts with a 95% bootstrap interval over accounts."""
    run_id: str
    model_uri: str
    version: str
    alias: str
    backtest: UpliftBacktest
    folds: list[CohortFold]
    final: CohortFold
    rows: int
    table: str


VALUED = [UPLIFT, PROPENSITY, PROPENSITY_X_EFFECT, RANDOM]
"""The rankings whose value at capacity training estimates: the uplift model, the propensity
score, the propensity times the average effect the training cohorts measured, a random pick."""


def value_lines(
    values: dict[str, PolicyValue], k: int, bt: UpliftBacktest, choice: Choice
) -> list[str]:
    """The doubly robust value of each ranking's capacity lists on the test cohorts, in words."""
    said = {UPLIFT: "uplift", PROPENSITY: "propensity", PROPENSITY_X_EFFECT:
            "propensity x measured average effect", RANDOM: "random pick"}  # fmt: skip
    lines = [
        f"value at capacity on the test cohorts (doubly robust estimate of the expansions the"
        f" {k} per CSM and cohort add; 95% bootstrap interval over accounts):"
    ]
    lines += [f"  {said[name]:38} {values[name].says()}" for name in VALUED]
    gap = values[f"{UPLIFT} - {PROPENSITY}"]
    verdict = (
        "uplift is shown better" if gap.low > 0 else
        "propensity is shown better" if gap.high < 0 else "the evidence cannot tell them apart"
    )  # fmt: skip
    lines.append(f"  {'uplift - propensity':38} {gap.says()}: {verdict}")
    chosen = "/".join(f.choice.learner for f in bt.folds)
    inner = ", ".join(f"{n} {v:+.1f}" for n, v in choice.values.items())
    how = (
        "as configured" if choice.given
        else f"chosen on {choice.inner_folds} inner cohort folds: {inner}" if inner
        else "the first candidate: no inner cohort fold could be fitted"
    )  # fmt: skip
    lines.append(f"learner: {choice.learner} ({how}); the backtest folds used {chosen}")
    return lines


def uplift_job(
    data_dir: DataSource,
    program: Path | None,
    cfg: TrainingConfig,
    feature_set: FeatureSet,
    config_text: str | None = None,
) -> UpliftResult:
    """Backtest the uplift learner (`uplift.learner`, chosen per fit on inner cohort folds
    with `auto`) on time folds of assignment cohorts against ranking by propensity, with each
    ranking's doubly robust value at capacity and its interval; fit it on every matured cohort,
    log it and register it under its own name."""
    if program is None:
        raise UserError(
            "target: uplift learns from the weekly runs' holdout: pass --program OUT, the output"
            " root `expansion score` writes to every week"
        )
    matured = matured_assignments(data_dir, program, feature_set)
    if matured.empty:
        raise UserError(
            f"target: uplift found no randomized assignment whose horizon has closed in the"
            f" data ({program / HISTORY_FILE}); it needs at least {cfg.uplift.min_cohorts}"
            " matured cohorts: train again once their horizon has passed"
        )
    _plan(matured, cfg)  # refuse before any feature is computed
    frame = with_features(data_dir, matured, feature_set, cfg.registered_model)
    folds, final, horizon = _plan(frame, cfg)  # again: accounts without features have left
    cohorts = sorted(frame["assigned_on"].unique())
    bt = backtest_uplift(frame, folds, feature_set, cfg)
    model, choice = fit_learned(frame, feature_set, cfg)
    k = cfg.uplift.accounts_per_csm
    values = policy_values(bt.scores, VALUED, k, seed=cfg.seed, pairs=[(UPLIFT, PROPENSITY)])
    text = "\n".join([table(bt, k), *value_lines(values, k, bt, choice)])
    name = cfg.uplift.registered_model
    data = frame.drop(columns=[ORACLE], errors="ignore")

    client = configure()
    exp = experiment_id(client, cfg.experiment)
    commit = git_commit()
    with mlflow.start_run(
        experiment_id=exp, tags={"mlflow.source.git.commit": commit, "target": "uplift"}
    ) as run:
        mlflow.log_params(
            {
                "target": "uplift",
                "learner": choice.learner,
                "learner_setting": cfg.uplift.learner,
                "fold_learners": "/".join(f.choice.learner for f in bt.folds),
                "program": str(program),
                "horizon_days": horizon,
                "cohorts": span(cohorts, ""),
                "test_cohorts": span([d for f in folds for d in f.test], ""),
                "assignments": len(frame),
                "listed": int((frame["arm"] == LISTED).sum()),
                "holdout": int((frame["arm"] == HOLDOUT).sum()),
                "features": len(model.feature_names),
                "folds": len(folds),
                "capacity_per_csm": k,
                "seed": cfg.seed,
                "git_commit": commit,
                **{f"lgbm_{key}": v for key, v in cfg.uplift.lightgbm.model_dump().items()},
            }
        )
        pooled = flat_metrics(bt.pooled, "test_")
        for key in ("qini", "incremental_at_capacity"):
            gain = bt.pooled[UPLIFT][key] - bt.pooled[PROPENSITY][key]
            pooled[f"margin_over_propensity_{key}"] = gain
        for ranking, value in values.items():
            key = "value_" + ranking.replace(" - ", "_minus_")
            pooled[f"test_{key}"] = value.estimate
            pooled[f"test_{key}_low"] = value.low
            pooled[f"test_{key}_high"] = value.high
        for candidate, worth in choice.values.items():
            pooled[f"inner_value_{candidate}"] = worth
        mlflow.log_metrics({k_: v for k_, v in pooled.items() if v == v})
        for fold in bt.folds:
            with mlflow.start_run(experiment_id=exp, run_name=fold.fold.name, nested=True):
                mlflow.log_params(
                    {
                        "train_cohorts": span(fold.fold.train, ""),
                        "test_cohorts": span(fold.fold.test, ""),
                    }
                )
                mlflow.log_metrics(flat_metrics(fold.metrics, ""))
        mlflow.log_input(
            mlflow.data.pandas_dataset.from_pandas(data, name="assignments", targets=OUTCOME),
            context="training",
        )
        mlflow.log_dict(feature_set.model_dump(), "config/features.json")
        mlflow.log_dict(cfg.model_dump(), "config/training.json")
        mlflow.log_dict(cfg.model_dump(), "config/training_resolved.json")
        if config_text is not None:
            mlflow.log_text(config_text, "config/training.yaml")
        mlflow.log_text(text + "\n", "report/folds.txt")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "test_scores.parquet"
            bt.scores.drop(columns=[ORACLE], errors="ignore").to_parquet(path, index=False)
            mlflow.log_artifact(str(path), "report")
        example = data[model.feature_names].head(20)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=model,
            signature=infer_signature(example, model.predict(None, example)),
            input_example=example,
            registered_model_name=name,
            pip_requirements=requirements(),
        )
        version = str(info.registered_model_version)
        alias = assign_new_version(client, name, version)
        mlflow.set_tag("registered_alias", alias)
    return UpliftResult(
        learner=choice.learner,
        values=values,
        run_id=run.info.run_id,
        model_uri=ModelRef(name, version).uri,
        version=version,
        alias=alias,
        backtest=bt,
        folds=folds,
        final=final,
        rows=len(frame),
        table=text,
    )


def promote_uplift_job(
    data_dir: DataSource, program: Path | None, cfg: TrainingConfig, force: bool = False
) -> PromoteResult:
    """The propensity model's alias flow for the uplift model: refit the challenger's and the
    champion's recipes on the same cohort folds of the same history and move `champion` when
    the doubly robust value of the challenger's capacity lists on the test cohorts is above the
    champion's with the 95% interval of the difference above 0 (or when forced); when the
    interval holds 0 the evidence cannot tell them apart and the champion stays."""
    client = configure()
    name = cfg.uplift.registered_model
    found = contenders(client, name, "train one first (`expansion train`)")
    if found.settled is not None:
        return settled(found)
    challenger, champion = found.pair
    if program is None:
        raise UserError(
            "promoting an uplift model refits both on the weekly runs' holdout: pass --program"
            " OUT, the output root `expansion score` writes to"
        )
    metrics: dict[str, dict[str, float]] = {}
    frames: dict[str, pd.DataFrame] = {}
    scored: dict[str, pd.DataFrame] = {}
    folds: list[CohortFold] = []
    for role, version in (("challenger", challenger), ("champion", champion)):
        run_id = client.get_model_version(name, version).run_id
        recipe = TrainingConfig.model_validate(
            mlflow.artifacts.load_dict(f"runs:/{run_id}/config/training_resolved.json")
        )
        features = FeatureSet.model_validate(
            mlflow.artifacts.load_dict(f"runs:/{run_id}/config/features.json")
        )
        same = TrainingConfig.model_validate(
            {**recipe.model_dump(), "uplift": {**recipe.uplift.model_dump(),
             **cfg.uplift.model_dump(include={"folds", "test_cohorts", "accounts_per_csm"})}}
        )  # fmt: skip
        key = features.model_dump_json()
        if key not in frames:
            frames[key] = uplift_frame(data_dir, program, features, cfg.registered_model)
        frame = frames[key]
        folds, _, _ = _plan(frame, same)
        bt = backtest_uplift(frame, folds, features, same)
        metrics[role] = dict(bt.pooled[UPLIFT])
        scored[role] = bt.scores[["account_id", "assigned_on", "csm_owner", UPLIFT, "dr_score"]]
    keys = ["account_id", "assigned_on", "csm_owner"]
    both = scored["challenger"].merge(scored["champion"], on=keys, suffixes=("_a", "_b"))
    both = both.assign(challenger=both[f"{UPLIFT}_a"], champion=both[f"{UPLIFT}_b"],
                       dr_score=(both["dr_score_a"] + both["dr_score_b"]) / 2)  # fmt: skip
    k = cfg.uplift.accounts_per_csm
    values = policy_values(both, ["challenger", "champion"], k, seed=cfg.seed,
                           pairs=[("challenger", "champion")])  # fmt: skip
    for role in ("challenger", "champion"):
        v = values[role]
        metrics[role].update(value_at_capacity=v.estimate, value_low=v.low, value_high=v.high)
    gap = values["challenger - champion"]
    numbers = (
        f"value at capacity (doubly robust, expansions the {k} per CSM and cohort add)"
        f" {values['challenger'].says()} vs {values['champion'].says()}, difference"
        f" {gap.says()} (95% bootstrap over accounts); incremental expansions realised"
        f" {metrics['challenger']['incremental_at_capacity']:.1f} vs"
        f" {metrics['champion']['incremental_at_capacity']:.1f}"
    )
    if gap.low > 0:
        decision = Decision(True, f"challenger is shown better: {numbers}", False,
                            *metrics.values())  # fmt: skip
    elif force:
        decision = Decision(True, f"forced despite the gate: {numbers}", True, *metrics.values())
    else:
        why = (
            "the champion is shown better" if gap.high < 0
            else "the evidence cannot tell them apart, so the champion stays"
        )  # fmt: skip
        decision = Decision(False, f"refused ({why}): {numbers}", False, *metrics.values())
    test_dates = [d for f in folds for d in f.test]
    params = {"model": name, "challenger_version": challenger, "champion_version": champion,
              "gate_test_cohorts": span(test_dates, ""), "force": force}  # fmt: skip
    run_id = record_gate(client, cfg.experiment, name, (challenger, champion), decision,
                         params, metrics)  # fmt: skip
    return PromoteResult(decision, challenger, champion, test_dates, run_id)


def say(result: UpliftResult) -> None:
    """What `train` prints for the uplift model: its rows, folds, the rankings compared and the
    registered version."""
    final = result.final
    print(
        f"uplift ({result.learner} learner): {result.rows:,} matured listed and held-out"
        f" assignments in {len(final.train)} cohorts ({final.train[0]}..{final.train[-1]});"
        f" {len(result.folds)} time folds by cohort"
    )
    print(result.table)
    pooled = result.backtest.pooled
    up, prop = pooled["uplift"], pooled["propensity"]
    print(
        f"pooled test: Qini {up['qini']:.4f} ranked by uplift against {prop['qini']:.4f} by"
        f" propensity; incremental expansions at capacity {up['incremental_at_capacity']:.1f}"
        f" against {prop['incremental_at_capacity']:.1f}"
    )
    if "oracle" in pooled:
        print(f"the true effect as a ranking (oracle): Qini {pooled['oracle']['qini']:.4f}")
    print(f"registered {result.model_uri} as @{result.alias} (run {result.run_id})")
