"""The training set: the data read and validated once, and every eligible (account, month start)
with its point-in-time features and label, on DuckDB or Spark."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import pandas as pd

from expansion_scorer import schemas
from expansion_scorer.config import Engine, FeatureSet, TrainingConfig
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
from expansion_scorer.training.backtest import TRUTH_COLUMN
from expansion_scorer.training.train import FoldFrames, Frames, Layout

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
    world: World | SparkWorld
    """The data as read and validated, for a gate that follows on the same data."""
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
    return TrainingSet(built, frame, feature_set, learnable(world, feature_set), world, until)
