"""The feature stage as one call: from a world and snapshot dates to frames, on either engine.

`feature_frame` decides who is eligible at each date, derives the ARR ledger, computes every
feature and, given a horizon, the labels, and returns them. Train, score, monitor, the recipes
and the benchmarks call it; the temp tables (DuckDB) and views (Spark) the steps hand each other
stay inside the engines' modules and this one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import pandas as pd

from expansion_scorer.config import Engine, FeatureSet
from expansion_scorer.data.loading import World, open_world
from expansion_scorer.data.sources import DataSource
from expansion_scorer.features import build, ledger, snapshots
from expansion_scorer.features.snapshots import STATUS_COLUMNS, Labelling

if TYPE_CHECKING:
    from expansion_scorer.features.catalogue import AffinityData
    from expansion_scorer.features.spark import SparkWorld


@dataclass(frozen=True)
class FeatureFrame:
    features: pd.DataFrame
    """One row per eligible (account, as_of): account_id, as_of, then every feature in
    definition order; ordered by as_of, account_id."""
    status: pd.DataFrame
    """Every account at each date: account_id, as_of, crm_id, account_name, csm_owner and
    excluded_reason (missing when the account is eligible)."""
    labels: pd.DataFrame | None = None
    """Given a horizon: account_id, as_of, label and expansion_arr of every eligible pair."""
    _world: World | SparkWorld | None = field(default=None, repr=False, compare=False)
    _build: int = field(default=0, repr=False, compare=False)

    @property
    def labelled(self) -> pd.DataFrame:
        """The features with their labels, one row per eligible (account, as_of)."""
        if self.labels is None:
            raise ValueError("this frame was built without a horizon; pass labelling=")
        return self.features.merge(
            self.labels, on=["account_id", "as_of"], how="inner", validate="one_to_one"
        )

    def status_on(self, as_of: date) -> pd.DataFrame:
        """Every account with why it cannot be scored as of `as_of` (missing when it can)."""
        rows = self.status[self.status["as_of"] == as_of]
        return rows[STATUS_COLUMNS].reset_index(drop=True)

    def _current(self) -> World | SparkWorld:
        """The world whose temp tables (or views) still hold this frame's steps."""
        world = self._world
        if world is None or _LATEST.get(_key(world)) != self._build:
            raise ValueError("the world has built another feature frame since this one")
        return world

    def evaluate(self, feature_set: FeatureSet) -> pd.DataFrame:
        """The features of other definitions (a fitted affinity, say) at the same pairs, from
        the usage aggregates already computed: the usage log is not read again."""
        world = self._current()
        if not isinstance(world, World):
            from expansion_scorer.features import spark

            return spark.evaluate_features(world, feature_set)
        return build.evaluate_features(
            world.con, feature_set, world.has("support_tickets"), world.has("nps_responses")
        )

    def affinity_data(self, horizon_days: int) -> AffinityData:
        """What an affinity is fitted from: event shares, owned and bought products per pair
        (built with every event tracked, `affinity: learned`)."""
        from expansion_scorer.features.catalogue import affinity_data

        return affinity_data(self._current().frame, horizon_days)


_LATEST: dict[int, int] = {}
"""Per DuckDB connection or Spark session, the number of the last frame built on it: an older
frame's temp tables are gone, and evaluating it again would read the newer one's."""


def _key(world: World | SparkWorld) -> int:
    return id(world.con) if isinstance(world, World) else id(world.spark)


def _built(world: World | SparkWorld) -> int:
    """Count one more frame built on the world's connection or session; its number."""
    _LATEST[_key(world)] = number = _LATEST.get(_key(world), 0) + 1
    return number


def open_data(data: DataSource, engine: Engine, cutoff: date | None = None) -> World | SparkWorld:
    """The tables a job reads, on its engine: DuckDB views, or (`Engine.SPARK`) a Spark
    session's, from a local folder or a URI; nothing else is opened on the driver."""
    if engine is Engine.SPARK:
        from expansion_scorer.features.spark import open_spark_world

        return open_spark_world(data, cutoff=cutoff)
    return open_world(data, cutoff=cutoff)


At = Sequence[date] | pd.DataFrame
"""Snapshot dates (every eligible account at each), or (account_id, as_of) pairs (those of
them that are eligible then)."""


def feature_frame(
    world: World | SparkWorld,
    feature_set: FeatureSet,
    at: At,
    labelling: Labelling | None = None,
) -> FeatureFrame:
    """Eligibility, features and (given `labelling`) labels of every account at each date.

    Everything computed as of a date reads only rows dated before it. On Spark the rows are
    computed there and collected; the frames are the same as DuckDB's.
    """
    if not isinstance(world, World):
        from expansion_scorer.features import spark

        if isinstance(at, pd.DataFrame):
            raise ValueError("the Spark engine builds frames of snapshot dates only")
        features, status, labels = spark.feature_frame(world, feature_set, list(at), labelling)
        return FeatureFrame(features, status, labels, world, _built(world))
    con = world.con
    _entities(world, at)
    ledger.build_expansions(con, feature_set)
    features = build.build_features(
        con, feature_set, world.has("support_tickets"), world.has("nps_responses")
    )
    labels = None
    if labelling is not None:
        labels = snapshots.labels(con, labelling.horizon_days, labelling.label, labelling.motions)
    return FeatureFrame(features, snapshots.statuses(con), labels, world, _built(world))


def label_frame(
    world: World | SparkWorld, feature_set: FeatureSet, at: At, labelling: Labelling
) -> pd.DataFrame:
    """The labels alone of every account eligible at each date (what happened next), without
    computing features: account_id, as_of, label, expansion_arr."""
    _built(world)  # the entities of an earlier frame are replaced
    if not isinstance(world, World):
        from expansion_scorer.features import spark

        if isinstance(at, pd.DataFrame):
            raise ValueError("the Spark engine builds frames of snapshot dates only")
        return spark.label_frame(world, feature_set, list(at), labelling)
    _entities(world, at)
    ledger.build_movements(world.con, feature_set)
    return snapshots.labels(world.con, labelling.horizon_days, labelling.label)


def _entities(world: World, at: At) -> None:
    if isinstance(at, pd.DataFrame):
        snapshots.build_entities(world.con, [], pairs=at)
    else:
        snapshots.build_entities(world.con, list(at))
