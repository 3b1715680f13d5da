"""The training and promotion jobs: read the data, call the stages, log and register in MLflow.

Everything that can fail on the user's data (too short a window, a fold without an expansion)
fails before the MLflow run starts, so a failed training registers nothing.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import mlflow
import mlflow.artifacts
import mlflow.data.pandas_dataset
import pandas as pd
from mlflow.models import infer_signature

from expansion_scorer.config import (
    Engine,
    FeatureSet,
    LightGBMParams,
    MonitorConfig,
    TrainingConfig,
)
from expansion_scorer.data.sources import DataSource
from expansion_scorer.features.catalogue import (
    Affinity,
)
from expansion_scorer.features.snapshots import month_starts
from expansion_scorer.jobs.promote import promote_job, say_decision
from expansion_scorer.model.propensity import Choice, PropensityModel
from expansion_scorer.progress import Stages
from expansion_scorer.serving.monitor import (
    EARLIER_ARTIFACT,
    REFERENCE_ARTIFACT,
    references_of,
)
from expansion_scorer.text import span
from expansion_scorer.tracking import (
    ModelRef,
    configure,
    experiment_id,
    flat_metrics,
    git_commit,
    requirements,
)
from expansion_scorer.training import report
from expansion_scorer.training.backtest import (
    MODEL,
    TRUTH_COLUMN,
    UNCALIBRATED,
    Backtest,
    Plan,
    backtest,
    check_folds,
    plan_backtest,
    random_split_auc,
)
from expansion_scorer.training.dataset import TrainingSet, fold_frames, prepare
from expansion_scorer.training.registry import (
    CHALLENGER,
    Decision,
    assign_new_version,
)
from expansion_scorer.training.train import (
    Layout,
    fit,
    frame_for,
)

SCORER_NAMES = {MODEL: "", UNCALIBRATED: "uncalibrated_", TRUTH_COLUMN: "bayes_"}
"""How MLflow names each scorer's metrics: the model's plain, the Bayes limit as `bayes_`."""


@dataclass
class TrainResult:
    run_id: str
    model_uri: str
    version: str
    alias: str
    metrics: dict[str, float]
    """Pooled test metrics of the delivered (calibrated) model."""
    bayes_auc: float | None
    backtest: Backtest
    final: Layout
    rows: int
    random_split_auc: float
    table: str
    margins: list[str]
    params: LightGBMParams
    leakage_alarm: bool
    """The random-split AUC exceeds the time-split AUC by more than the configured gap."""
    decision: Decision | None = None
    shrink: str = ""
    """What the backtest was shrunk from and to, and why; empty when it ran as configured."""
    learner: str = "single"
    """The learner the final fit's calibration months kept (`learning.candidates`)."""
    left_out: list[str] = field(default_factory=list)
    """Features left out of the model because they read nothing in this data."""
    choice: Choice | None = None
    """How every learner and calibration did on the final fit's held-out predictions."""

    @property
    def share_of_bayes(self) -> float | None:
        """(AUC - 0.5) / (Bayes AUC - 0.5): how much of the learnable signal the model finds."""
        if self.bayes_auc is None or self.bayes_auc <= 0.5:
            return None
        return (self.metrics["roc_auc"] - 0.5) / (self.bayes_auc - 0.5)


def _shrink_params(plan: Plan) -> dict[str, str]:
    """Whether the backtest was shrunk and, if it was, the one it was configured as."""
    if not plan.shrunk:
        return {"backtest_shrunk": "false"}
    c = plan.configured
    return {
        "backtest_shrunk": "true",
        "configured_folds": str(c.folds),
        "configured_test_months": str(c.test_months),
        "configured_calibration_months": str(c.calibration_months),
    }


@dataclass(frozen=True)
class Trained:
    """A trained model and everything measured on the way, before anything is logged."""

    model: PropensityModel
    backtest: Backtest
    plan: Plan
    """The backtest as run (`plan.cfg`), and what it was shrunk from when the history is short."""
    configured: TrainingConfig
    resolved: TrainingConfig
    """The configuration as run: the shrunk backtest and the tuned parameters, no trials."""
    params: LightGBMParams
    frame: pd.DataFrame
    """The final model's training frame (the simulator's truth dropped)."""
    dates: list[date]
    random_auc: float
    affinities: dict[int, Affinity]
    data: TrainingSet
    study: Any = None
    """The Optuna study, when tuned."""

    @property
    def bayes_auc(self) -> float | None:
        return self.backtest.pooled.get(TRUTH_COLUMN, {}).get("roc_auc")

    @property
    def leakage_alarm(self) -> bool:
        """The random-split AUC exceeds the time-split AUC by more than the configured gap."""
        gap = self.random_auc - self.backtest.pooled[MODEL]["roc_auc"]
        return gap > self.plan.cfg.backtest.random_split_alarm


def train(data: TrainingSet, cfg: TrainingConfig) -> Trained:
    """Backtest, baselines, calibration, tuning and the final fit, on the training set alone:
    nothing is logged or registered (`log_and_register` does that)."""
    stages = Stages("train", ["backtest", "random-split check", "final fit"])
    frame, learn = data.frame, data.learn
    dates = sorted(frame["as_of"].unique())
    plan = plan_backtest(dates, cfg)
    configured, cfg = cfg, plan.cfg  # from here on, the backtest that fits the history
    folds, final_fit = plan.folds, plan.final
    check_folds(frame, [*folds, final_fit])
    frames, affinities = fold_frames(data.built, data.features, cfg, frame, [*folds, final_fit])
    params, study = cfg.lightgbm, None
    if cfg.tuning.trials > 0:
        from expansion_scorer.training.tuning import tune

        params, study = tune(frames, folds, learn, cfg)
    bt = backtest(frames, folds, learn, cfg, params)
    stages.done("backtest")
    frame = frame_for(frames, final_fit)  # the final model's features, from here on
    random_auc = random_split_auc(frame, dates, learn, cfg, params)
    stages.done("random-split check")
    final = fit(frame, final_fit, learn, cfg, params, only=bt.survivors)
    stages.done("final fit")
    final.plan_order = list(data.features.plan_order)
    if final_fit.index in affinities:
        final.affinity = affinities[final_fit.index].pairs
    resolved = TrainingConfig.model_validate(
        {**cfg.model_dump(), "lightgbm": params.model_dump(), "tuning": {**cfg.tuning.model_dump(),
         "trials": 0}}
    )  # fmt: skip
    return Trained(
        model=final,
        backtest=bt,
        plan=plan,
        configured=configured,
        resolved=resolved,
        params=params,
        frame=frame.drop(columns=[TRUTH_COLUMN], errors="ignore"),
        dates=dates,
        random_auc=random_auc,
        affinities=affinities,
        data=data,
        study=study,
    )


def train_job(
    data_dir: DataSource,
    cfg: TrainingConfig,
    feature_set: FeatureSet,
    until: date | None = None,
    config_text: str | None = None,
    promote: bool = False,
    engine: Engine = Engine.DUCKDB,
) -> TrainResult:
    """`prepare`, `train`, `log_and_register`, and the gate when asked."""
    made = Stages("train", ["training set"])
    data = prepare(data_dir, cfg, feature_set, until, engine)
    made.done("training set")
    result = log_and_register(train(data, cfg), config_text)
    if promote and result.alias == CHALLENGER:
        result.decision = promote_job(data_dir, cfg, until=until, world=data.world).decision
    return result


def log_and_register(trained: Trained, config_text: str | None = None) -> TrainResult:
    """The run in MLflow (parameters, fold metrics, reports, the model card) and the model
    registered under the training config's name, as @champion when it is the first, else as
    @challenger."""
    bt, plan, final, params, study = (
        trained.backtest,
        trained.plan,
        trained.model,
        trained.params,
        trained.study,
    )
    cfg, configured, resolved = plan.cfg, trained.configured, trained.resolved
    folds, final_fit = plan.folds, plan.final
    data, dates, until = trained.frame, trained.dates, trained.data.until
    feature_set, affinities = trained.data.features, trained.affinities
    random_auc, bayes = trained.random_auc, trained.bayes_auc
    k = cfg.capacity.k
    table = report.fold_table(bt, k)
    margin_lines = report.margin_lines(bt)
    client = configure()
    exp = experiment_id(client, cfg.experiment)
    commit = git_commit()
    tags = {"mlflow.source.git.commit": commit}
    if plan.shrunk:
        tags["backtest_shrink"] = plan.message
    with mlflow.start_run(experiment_id=exp, tags=tags) as run:
        mlflow.log_params(
            {
                "horizon_days": cfg.horizon_days,
                "train_until": str(until) if until else "",
                "snapshot_dates": span(dates, ""),
                "test_dates": span([d for f in folds for d in f.test_dates], ""),
                "final_fit_dates": span(final_fit.fit_dates, ""),
                "final_calibration_dates": span(final_fit.calib_dates, ""),
                "snapshot_rows": len(data),
                "features": len(final.feature_names),
                "folds": len(folds),
                "test_months": cfg.test_months,
                "calibration_months": cfg.backtest.calibration_months,
                **_shrink_params(plan),
                "capacity_k": k,
                "calibration": cfg.backtest.calibration,
                "tuning_trials": cfg.tuning.trials,
                "seed": cfg.seed,
                "git_commit": commit,
                **{f"lgbm_{key}": v for key, v in params.model_dump().items()},
                "lgbm_best_iteration": final.rounds,
                "learner": final.learner,
                "learning_candidates": ",".join(cfg.learning.candidates),
                "learners_in_final_fit": ",".join(bt.survivors or ["all"]),
                "arrangement": cfg.backtest.arrangement,
                "calibration_kept": "" if final.choice is None else final.choice.calibration,
                "blend_weight": ""
                if final.choice is None or final.choice.blend_weight is None
                else final.choice.blend_weight,
                "blend_parts": ""
                if final.choice is None
                else ",".join(f"{k}={v:.1f}" for k, v in final.choice.blend_parts.items()),
            }
        )
        pooled = flat_metrics(bt.pooled, "test_", SCORER_NAMES)
        pooled["test_random_split_roc_auc"] = random_auc
        pooled["test_random_split_gap"] = random_auc - bt.pooled[MODEL]["roc_auc"]
        for baseline, gains in report.margins(bt).items():
            pooled.update({f"margin_over_{baseline}_{key}": v for key, v in gains.items()})
        if bayes is not None:
            pooled["test_auc_share_of_bayes"] = (bt.pooled[MODEL]["roc_auc"] - 0.5) / (bayes - 0.5)
        mlflow.log_metrics(pooled)
        for fold in bt.folds:
            layout = fold.layout
            with mlflow.start_run(experiment_id=exp, run_name=f"fold {layout.index}", nested=True):
                mlflow.log_params(
                    {
                        "fit_dates": span(layout.fit_dates, ""),
                        "calibration_dates": span(layout.calib_dates, ""),
                        "test_dates": span(layout.test_dates, ""),
                        "best_iteration": fold.best_iteration,
                        "learner": fold.learner,
                        "calibration_kept": "" if fold.choice is None else fold.choice.calibration,
                    }
                )
                mlflow.log_metrics(flat_metrics(fold.metrics, "", SCORER_NAMES))
        if study is not None:
            mlflow.log_dict(
                {"best": study.best_params, "trials": [t.params for t in study.trials]},
                "tuning/optuna.json",
            )
            mlflow.log_metric("tuning_best_valid_logloss", float(study.best_value))
        mlflow.log_input(
            mlflow.data.pandas_dataset.from_pandas(data, name="snapshots", targets="label"),
            context="training",
        )
        mlflow.log_dict(feature_set.model_dump(), "config/features.json")
        # the drift reference of the final fit months, so the weekly run reads it, not the data
        months = month_starts(min(final_fit.fit_dates), max(final_fit.fit_dates))
        fitted_on = data[pd.to_datetime(data["as_of"]).dt.date.isin(set(months))]
        drift, earlier = references_of(fitted_on, final, feature_set, months, MonitorConfig())
        mlflow.log_dict(drift, REFERENCE_ARTIFACT)
        if earlier is not None:
            mlflow.log_dict({"references": earlier}, EARLIER_ARTIFACT)
        if affinities:
            mlflow.log_dict(
                {
                    ("final fit" if i == 0 else f"fold {i}"): {
                        "pairs": a.pairs,
                        "evidence": a.evidence.round(4).to_dict(orient="records"),
                    }
                    for i, a in sorted(affinities.items())
                },
                "report/affinity.json",
            )
        mlflow.log_dict(configured.model_dump(), "config/training.json")
        mlflow.log_dict(resolved.model_dump(), "config/training_resolved.json")
        if config_text is not None:
            mlflow.log_text(config_text, "config/training.yaml")
        mlflow.log_text(table + "\n\n" + "\n".join(margin_lines) + "\n", "report/folds.txt")
        if final.offset is not None:  # the log-odds each month starts from, for the record
            mlflow.log_dict(
                {
                    "feature": final.offset.feature,
                    "shifts": {str(k): v for k, v in sorted(final.offset.shifts.items())},
                    "mean": final.offset.mean,
                },
                "report/season_offset.json",
            )
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            report.gains_chart(bt, out / "gain_lift.png", k)
            report.calibration_chart(bt, out / "calibration.png")
            report.importance_chart(final, out / "importance.png", data)
            report.shap_summary(final, data, out / "shap_summary.png", cfg.seed)
            bt.scores.drop(columns=[TRUTH_COLUMN], errors="ignore").to_parquet(
                out / "test_scores.parquet", index=False
            )
            mlflow.log_artifacts(tmp, "report")
        example = data[final.feature_names].head(20)
        signature = infer_signature(example, final.predict(None, example))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=final,
            signature=signature,
            input_example=example,
            registered_model_name=cfg.registered_model,
            pip_requirements=requirements(),
        )
        version = str(info.registered_model_version)
        alias = assign_new_version(client, cfg.registered_model, version)
        mlflow.set_tag("registered_alias", alias)
        mlflow.log_text(
            report.model_card(
                name=cfg.registered_model,
                version=version,
                run_id=run.info.run_id,
                data_window=f"snapshot dates {span(dates)}"
                + (f", data cut at {until}" if until else ""),
                rows=len(data),
                horizon_days=cfg.horizon_days,
                bt=bt,
                k=k,
                random_auc=random_auc,
                alias=alias,
                commit=commit,
                season_feature=None if final.offset is None else final.offset.feature,
                shrink=plan.change,
                choice=final.choice,
            ),
            "model_card.md",
        )
    result = TrainResult(
        run_id=run.info.run_id,
        model_uri=ModelRef(cfg.registered_model, version).uri,
        version=version,
        alias=alias,
        metrics=bt.pooled[MODEL],
        bayes_auc=bayes,
        backtest=bt,
        final=final_fit,
        rows=len(data),
        random_split_auc=random_auc,
        table=table,
        margins=margin_lines,
        params=params,
        leakage_alarm=trained.leakage_alarm,
        shrink=plan.message,
        learner=final.learner,
        left_out=trained.data.left_out,
        choice=final.choice,
    )
    return result


def say(result: TrainResult) -> None:
    """What `train` prints: the backtest, the learners, calibration, the leakage check, the
    registered version and the gate when it ran."""
    m = result.metrics
    bt = result.backtest
    final = result.final
    if result.shrink:
        print(result.shrink)
    decided = (
        f"calibrated on {final.calib_dates[0]}..{final.calib_dates[-1]}"
        if final.calib_dates
        else "its learner and calibration chosen on out-of-fold predictions inside those months"
    )
    print(
        f"snapshots: {result.rows:,} rows; {len(bt.folds)} rolling test folds, final model"
        f" trained on {final.fit_dates[0]}..{final.fit_dates[-1]}, {decided}"
    )
    if result.left_out:
        print(
            "left out of the model, reading nothing in this data:"
            f" {', '.join(sorted(result.left_out))} (`expansion validate` lists them)"
        )
    print(result.table)
    for line in result.margins:
        print(line)
    print(
        f"learner kept on held-out predictions: {result.learner} for the final model"
        f" (folds: {', '.join(f.learner for f in bt.folds)})"
    )
    for line in report.learner_summary(bt, result.choice):
        print(line)
    uncal = bt.pooled["model_uncalibrated"]
    print(
        f"pooled test: ROC AUC {m['roc_auc']:.3f}, PR AUC {m['pr_auc']:.3f},"
        f" lift at capacity {m['lift_at_capacity']:.2f} (recall {m['recall_at_capacity']:.1%}),"
        f" top-decile lift {m['lift_top_decile']:.2f}, base rate {m['base_rate']:.1%}"
    )
    print(
        f"calibration: Brier {uncal['brier']:.4f} -> {m['brier']:.4f},"
        f" ECE {uncal['ece']:.4f} -> {m['ece']:.4f} (before -> after calibration)"
    )
    gap = result.random_split_auc - m["roc_auc"]
    verdict = (
        "ALARM: a gap this large means leakage or drift; check features for the future"
        if result.leakage_alarm
        else "no leakage or drift alarm"
    )
    print(
        f"random-split ROC AUC {result.random_split_auc:.3f} vs time-split {m['roc_auc']:.3f}"
        f" (gap {gap:+.3f}): {verdict}"
    )
    if result.bayes_auc is not None:
        share = result.share_of_bayes
        reach = f"; the model reaches {share:.0%} of the gap above 0.5" if share is not None else ""
        print(f"Bayes-limit ROC AUC on the same test snapshots: {result.bayes_auc:.3f}{reach}")
    print(f"registered {result.model_uri} as @{result.alias} (run {result.run_id})")
    if result.decision is not None:
        say_decision(result.decision)
