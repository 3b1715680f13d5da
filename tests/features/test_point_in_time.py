"""Features as of T never read a row dated on or after T: changing the future changes nothing."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from expansion_scorer.data.loading import open_world
from expansion_scorer.features.build import build_features
from expansion_scorer.features.ledger import build_expansions
from expansion_scorer.features.snapshots import build_entities
from expansion_scorer.settings import load_feature_set
from tests.helpers import rewrite_future


def _features(data: Path, dates: list[date]) -> pd.DataFrame:
    world = open_world(data)  # no cutoff: the SQL itself must respect each as_of
    build_entities(world.con, dates)
    build_expansions(world.con, load_feature_set())
    return build_features(world.con, load_feature_set(), True, True)


@pytest.mark.parametrize("mode", ["drop", "scramble"])
def test_features_ignore_rows_dated_on_or_after_as_of(
    small_world_dir: Path, tmp_path: Path, mode: str
) -> None:
    as_of = date(2024, 3, 1)
    before = _features(small_world_dir, [as_of])
    changed = rewrite_future(small_world_dir, tmp_path / mode, str(as_of), mode)

    after = _features(changed, [as_of])

    assert len(before) > 50
    pd.testing.assert_frame_equal(before, after)


def test_the_future_really_differs(small_world_dir: Path, tmp_path: Path) -> None:
    """Guard for the test above: the rewrite must change what a later as-of date sees."""
    changed = rewrite_future(small_world_dir, tmp_path / "s", "2024-03-01", "scramble")
    later = [date(2024, 6, 1)]
    assert not _features(small_world_dir, later).equals(_features(changed, later))
