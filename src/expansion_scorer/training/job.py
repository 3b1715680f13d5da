"""The training and promotion jobs: read the data, call the stages, log and register in MLflow.

Everything that can fail on the user's data (too short a window, a fold without an expansion)
fails before the MLflow run starts, so a failed training registers nothing.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import mlflow.artifacts
import mlflow.data.pandas_dataset
import pandas as pd
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from expansion_scorer import schemas
from expansion_scorer.config import Engine, FeatureSet, LightGBMParams, TrainingConfig
from expansion_scorer.data.loading import World
from expansion_scorer.data.sources import DataSource, data_root
from expansion_scorer.data.validation import validate
from expansion_scorer.errors import UserError
from expansion_scorer.features.catalogue import (
    Affinity,
    check_usable_events,
    fit_affinity,
    reading_nothing,
    resolve_plans,
)
from expansion_scorer.features.frame import FeatureFrame, Labelling, feature_frame, open_data
from expansion_scorer.features.snapshots import training_dates
from expansion_scorer.model.propensity import Choice, PropensityModel
from expansion_scorer.progress import Stages
from expansion_scorer.tracking import ModelRef, configure, experiment_id
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
from expansion_scorer.training.registry import (
    CHALLENGER,
    Decision,
    assign_new_version,
    contenders,
    decide,
    make_champion,
)
from expansion_scorer.training.train import (
    FoldFrames,
    Frames,
    Layout,
    fit,
    frame_for,
)

if TYPE_CHECKING:
    from expansion_scorer.features.spark import SparkWorld

TRUTH_FILE = "truth.parquet"


def load_world(
    data_dir: DataSource, cutoff: date | None, engine: Engine = Engine.DUCKDB
) -> World | SparkWorld:
    world = open_data(data_dir, engine, cutoff=cutoff)
    validate(world)
    return world


def training_set(
    world: World | SparkWorld,
    feature_set: FeatureSet,
    cfg: TrainingConfig,
    until: date | None,
    on: SparkWorld | None = None,
) -> FeatureFrame:
    """Point-in-time features and labels of every eligible (account, month start), computed
    by DuckDB over `world`, or by Spark over `on` (the same tables) when given."""
    dates = training_dates(world, cfg.horizon_days, cfg.min_history_days, until)
    if not dates:
        raise UserError(
            f"no snapshot month has a complete {cfg.horizon_days}-day label window before"
            f" {until or 'the end of the data'}; use more history or a shorter horizon"
        )
    check_usable_events(world, world.label("usage_events"), max(dates))
    motions = "motions" in cfg.learning.candidates  # the learner fits on each motion's label
    labelling = Labelling(cfg.horizon_days, cfg.label, motions=motions)
    return feature_frame(on or world, feature_set, dates, labelling)


def training_frame(
    world: World | SparkWorld,
    feature_set: FeatureSet,
    cfg: TrainingConfig,
    until: date | None,
    on: SparkWorld | None = None,
) -> pd.DataFrame:
    """`training_set` as one frame: the features with their labels."""
    return training_set(world, feature_set, cfg, until, on).labelled


def learnable(world: World | SparkWorld, feature_set: FeatureSet) -> FeatureSet:
    """The features a model learns from: all but those that name only what the data never
    holds (`expansion validate` lists them). Their values would measure missingness alone and
    speak, in a CSM's list, of products and events the company does not have."""
    unread = set(reading_nothing(world, feature_set))
    kept = [f for f in feature_set.features if f.name not in unread]
    return feature_set.model_copy(update={"features": kept}) if unread else feature_set


def fold_frames(
    built: FeatureFrame,
    feature_set: FeatureSet,
    cfg: TrainingConfig,
    frame: pd.DataFrame,
    layouts: Sequence[Layout],
) -> tuple[Frames, dict[int, Affinity]]:
    """`frame` for every layout, or with `affinity: learned` one frame per layout whose
    affinity is fitted on that layout's training snapshots only (and the fitted affinities).

    `built` is the training set `frame` comes from, for the same feature set.
    """
    if not feature_set.affinity_learned:
        return frame, {}
    data = built.affinity_data(cfg.horizon_days)
    keys = ["account_id", "as_of"]
    at = pd.MultiIndex.from_frame(frame[keys])
    names = [f.name for f in feature_set.features]
    columns: dict[int, dict[str, pd.Series]] = {}
    fitted: dict[int, Affinity] = {}
    for layout in layouts:
        fitted[layout.index] = affinity = fit_affinity(data, layout.fit_dates)
        own = feature_set.with_catalogue(affinity=affinity.pairs)
        values = built.evaluate(own).set_index(keys).reindex(at)
        columns[layout.index] = {
            name: pd.Series(values[name].to_numpy(), index=frame.index, name=name)
            for name in names
            if not values[name].reset_index(drop=True).equals(frame[name].reset_index(drop=True))
        }
    return FoldFrames(frame, columns), fitted


def with_truth(data_dir: DataSource, frame: pd.DataFrame, horizon_days: int) -> pd.DataFrame:
    """The frame with the simulator's true probability, when every snapshot has one."""
    root = data_root(data_dir)
    path = root / TRUTH_FILE if root is not None else None
    # the simulator's truth is for 90 days
    if path is None or not path.is_file() or horizon_days != 90:
        return frame
    truth = pd.read_parquet(path, columns=["account_id", "as_of", "p_expand"])
    truth["as_of"] = pd.to_datetime(truth["as_of"]).dt.date
    truth = truth.rename(columns={"p_expand": TRUTH_COLUMN})
    joined = frame.merge(truth, on=["account_id", "as_of"], how="left", validate="one_to_one")
    return joined if joined[TRUTH_COLUMN].notna().all() else frame


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


def _git_commit() -> str:
    for where in (Path.cwd(), Path(__file__).resolve().parent):
        try:
            out = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True
            )
            return out.stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            continue
    return "unknown"


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [
        f"{name}=={version(name)}"
        for name in ("mlflow", "lightgbm", "pandas", "numpy", "scikit-learn", "shap")
    ]


def _flat(metrics: dict[str, dict[str, float]], prefix: str) -> dict[str, float]:
    """MLflow metric names: the model's plain, each other scorer's under its name."""
    names = {MODEL: "", UNCALIBRATED: "uncalibrated_", TRUTH_COLUMN: "bayes_"}
    return {
        f"{prefix}{names.get(scorer, scorer + '_')}{key}": value
        for scorer, values in metrics.items()
        for key, value in values.items()
        if value == value  # MLflow rejects NaN in some stores; a missing metric says it
    }


def _span(dates: tuple[date, ...] | list[date]) -> str:
    return f"{min(dates)}..{max(dates)}" if dates else ""


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
class TrainingSet:
    """What a model is trained from, read once from the data."""

    built: FeatureFrame
    """The training set as built, whose features are evaluated again per fold's affinity."""
    frame: pd.DataFrame
    """Its features with their labels (and the simulator's truth, when it has one)."""
    features: FeatureSet
    """The definitions, with the plan order resolved from the data."""
    learn: FeatureSet
    """Those the model learns from (`learnable`)."""
    until: date | None = None

    @property
    def left_out(self) -> list[str]:
        """The features left out of the model because they read nothing in this data."""
        kept = {f.name for f in self.learn.features}
        return [f.name for f in self.features.features if f.name not in kept]


def prepare(
    data_dir: DataSource,
    cfg: TrainingConfig,
    feature_set: FeatureSet,
    until: date | None = None,
    engine: Engine = Engine.DUCKDB,
) -> TrainingSet:
    """Read and validate the data, and build the training set on the engine.

    With `Engine.SPARK` Spark builds the training set (eligibility, ledger, features, labels)
    and the model trains on the collected frame; validation runs there too.
    """
    cfg.check_against(feature_set)  # the CLI's Settings checked this at load; a caller in code
    world = load_world(data_dir, cutoff=until, engine=engine)
    feature_set = resolve_plans(world, feature_set)  # one plan order, kept with the model
    built = training_set(world, feature_set, cfg, until)
    frame = with_truth(data_dir, built.labelled, cfg.horizon_days)
    schemas.check(schemas.training_schema(feature_set), frame)  # before anything is logged
    return TrainingSet(built, frame, feature_set, learnable(world, feature_set), until)


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
        result.decision = promote_job(data_dir, cfg, until=until).decision
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
    commit = _git_commit()
    tags = {"mlflow.source.git.commit": commit}
    if plan.shrunk:
        tags["backtest_shrink"] = plan.message
    with mlflow.start_run(experiment_id=exp, tags=tags) as run:
        mlflow.log_params(
            {
                "horizon_days": cfg.horizon_days,
                "train_until": str(until) if until else "",
                "snapshot_dates": _span(dates),
                "test_dates": _span([d for f in folds for d in f.test_dates]),
                "final_fit_dates": _span(final_fit.fit_dates),
                "final_calibration_dates": _span(final_fit.calib_dates),
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
                "learners_after_first_fold": ",".join(bt.survivors or ["all"]),
                "arrangement": cfg.backtest.arrangement,
                "calibration_kept": "" if final.choice is None else final.choice.calibration,
                "blend_weight": ""
                if final.choice is None or final.choice.blend_weight is None
                else final.choice.blend_weight,
            }
        )
        pooled = _flat(bt.pooled, "test_")
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
                        "fit_dates": _span(layout.fit_dates),
                        "calibration_dates": _span(layout.calib_dates),
                        "test_dates": _span(layout.test_dates),
                        "best_iteration": fold.best_iteration,
                        "learner": fold.learner,
                        "calibration_kept": "" if fold.choice is None else fold.choice.calibration,
                    }
                )
                mlflow.log_metrics(_flat(fold.metrics, ""))
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
            pip_requirements=_requirements(),
        )
        version = str(info.registered_model_version)
        alias = assign_new_version(client, cfg.registered_model, version)
        mlflow.set_tag("registered_alias", alias)
        mlflow.log_text(
            report.model_card(
                name=cfg.registered_model,
                version=version,
                run_id=run.info.run_id,
                data_window=f"snapshot dates {_span(dates)}"
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
) -> PromoteResult:
    """Compare challenger and champion on the same latest folds; move `champion` if it earns it."""
    client = configure()
    name = cfg.registered_model
    found = contenders(client, name, "train a model first (`expansion train`)")
    if found.settled is not None:
        return PromoteResult(found.settled, found.challenger, found.champion, [], None)
    challenger, champion = found.challenger, found.champion
    assert champion is not None  # without one, `contenders` settled it

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

    exp = experiment_id(client, cfg.experiment)
    with mlflow.start_run(experiment_id=exp, run_name=f"gate v{challenger} vs v{champion}") as run:
        mlflow.log_params(
            {
                "challenger_version": challenger,
                "champion_version": champion,
                "gate_test_dates": _span(test_dates),
                "lift_margin": cfg.gate.lift_margin,
                "ece_tolerance": cfg.gate.ece_tolerance,
                "capacity_k": cfg.capacity.k,
                "force": force,
            }
        )
        mlflow.log_metrics(
            {
                f"{role}_{key}": value
                for role, values in metrics.items()
                for key, value in values.items()
                if value == value
            }
        )
        mlflow.set_tags(
            {
                "gate_decision": "promoted" if decision.promote else "refused",
                "gate_forced": str(decision.forced).lower(),
                "gate_reason": decision.reason,
            }
        )
    for version in (challenger, champion):
        client.set_model_version_tag(name, version, "last_gate_run", run.info.run_id)
    client.set_model_version_tag(
        name, challenger, "gate_decision", "promoted" if decision.promote else "refused"
    )
    if decision.promote:
        make_champion(client, name, challenger)
    return PromoteResult(decision, challenger, champion, test_dates, run.info.run_id)
