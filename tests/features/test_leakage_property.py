"""Leakage guard: whatever happens to rows dated on or after T, features as of T stay the same.

Hypothesis picks the as-of date and a random mix of deletions, edits and insertions of such
rows in every table (and new end dates on or after T for contracts open at T).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from expansion_scorer.config import FeatureSet
from expansion_scorer.data.loading import open_world
from expansion_scorer.data.synthetic import generate_world
from expansion_scorer.features.build import build_features
from expansion_scorer.features.ledger import build_expansions
from expansion_scorer.features.snapshots import build_entities
from expansion_scorer.settings import load_feature_set
from tests.helpers import DATED_BY

START = date(2023, 1, 1)


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    out = tmp_path_factory.mktemp("mini")
    generate_world(out, n_accounts=50, seed=3, months=10)
    tables = {name: pd.read_parquet(out / f"{name}.parquet") for name in DATED_BY}
    for name, col in DATED_BY.items():  # one representation of time: datetime64
        tables[name][col] = pd.to_datetime(tables[name][col])
    tables["subscriptions"]["end_date"] = pd.to_datetime(tables["subscriptions"]["end_date"])
    return tables


@pytest.fixture(scope="module")
def features() -> FeatureSet:
    return load_feature_set()


def _features(
    tables: dict[str, pd.DataFrame], features: FeatureSet, where: Path, as_of: date
) -> pd.DataFrame:
    where.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_parquet(where / f"{name}.parquet", index=False)
    world = open_world(where)
    build_entities(world.con, [as_of])
    build_expansions(world.con, features)
    return build_features(world.con, features, True, True)


def _perturb(
    tables: dict[str, pd.DataFrame], as_of: date, rng: np.random.Generator, p: dict[str, float]
) -> dict[str, pd.DataFrame]:
    cut = pd.Timestamp(as_of)
    out = {}
    for name, col in DATED_BY.items():
        frame = tables[name].copy()
        when = frame[col]
        future = np.flatnonzero(when >= cut)
        # move some future rows later still, and change their values
        moved = future[rng.random(len(future)) < p["edit"]]
        frame.loc[frame.index[moved], col] = when.iloc[moved] + pd.to_timedelta(
            rng.integers(0, 60, len(moved)), unit="D"
        )
        for numeric in ("quantity", "arr", "seats", "score", "employee_count"):
            if numeric in frame.columns and len(moved):
                values = frame[numeric].iloc[moved].to_numpy()[::-1]
                frame.loc[frame.index[moved], numeric] = values
        # insert copies of past rows, dated on or after T
        past = np.flatnonzero(when < cut)
        new = frame.iloc[rng.choice(past, int(len(past) * p["insert"]))].copy()
        new[col] = cut + pd.to_timedelta(rng.integers(0, 90 * 86400, len(new)), unit="s")
        if name == "accounts":
            new["account_id"] = [f"N{i:05d}" for i in range(len(new))]
        # delete some future rows
        drop = future[rng.random(len(future)) < p["delete"]]
        frame = pd.concat([frame.drop(index=frame.index[drop]), new], ignore_index=True)
        if name == "subscriptions":  # contracts open at T may end on any later day, or never
            ends = frame["end_date"]
            open_at_t = np.flatnonzero(((ends >= cut) & (frame["start_date"] < cut)).to_numpy())
            change = open_at_t[rng.random(len(open_at_t)) < p["edit"]]
            days = rng.integers(0, 400, len(change))
            new_end = cut + pd.to_timedelta(days, unit="D")
            frame.loc[frame.index[change], "end_date"] = new_end.where(days % 3 != 0, pd.NaT)
        out[name] = frame.sample(frac=1.0, random_state=int(rng.integers(1 << 30)))
    return out


@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    offset=st.integers(min_value=100, max_value=280),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
    delete=st.floats(0, 1),
    edit=st.floats(0, 1),
    insert=st.floats(0, 0.3),
)
def test_features_are_blind_to_the_future(
    mini: dict[str, pd.DataFrame],
    features: FeatureSet,
    tmp_path_factory: pytest.TempPathFactory,
    offset: int,
    seed: int,
    delete: float,
    edit: float,
    insert: float,
) -> None:
    as_of = START + timedelta(days=offset)
    root = tmp_path_factory.mktemp("leak")
    before = _features(mini, features, root / "as-is", as_of)
    rng = np.random.default_rng(seed)
    changed = _perturb(mini, as_of, rng, {"delete": delete, "edit": edit, "insert": insert})

    after = _features(changed, features, root / "changed", as_of)

    assert len(before) > 10
    pd.testing.assert_frame_equal(before, after)
