"""Touches from the CRM by preset: a program world's touches written out as Salesforce Task and
Event records and as HubSpot engagements, mapped back by `salesforce-activity` and
`hubspot-engagements`, give the world's own touches (and a task the run created and a CSM
closed counts as one)."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from expansion_scorer.data.loading import open_world
from expansion_scorer.data.sources import load_sources, preset_text
from expansion_scorer.data.validation import validate
from tests.data.vendors import (
    write_hubspot,
    write_hubspot_engagements,
    write_salesforce,
    write_salesforce_activity,
)

START, UNTIL = date(2023, 10, 2), date(2023, 11, 6)
OUTCOMES = {"call": ["connected", "left voicemail"], "email": ["sent", "replied"],
            "meeting": [None]}  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A program world whose CSMs touched 40 accounts in five weeks, by call, email or meeting."""
    from expansion_scorer.data.synthetic import ProgramWorld

    out = tmp_path_factory.mktemp("touch_world")
    program = ProgramWorld(out, START, n_accounts=60, seed=5, months=14)
    accounts = pd.read_parquet(out / "accounts.parquet").head(40)
    rng = np.random.default_rng(2)
    channels = rng.choice(list(OUTCOMES), size=len(accounts))
    touches = pd.DataFrame(
        {
            "account_id": accounts["account_id"].to_numpy(),
            "touched_at": pd.Timestamp(START)
            + pd.to_timedelta(rng.integers(0, 34 * 24 * 60, len(accounts)), unit="min"),
            "csm": accounts["csm_owner"].to_numpy(),
            "motion": rng.choice(np.array(["seats", "plan", "cross_sell", None]), len(accounts)),
            "channel": channels,
            "outcome": [OUTCOMES[c][i % len(OUTCOMES[c])] for i, c in enumerate(channels)],
        }
    )
    program.advance(UNTIL, touches)
    return out


def _exports(world: Path, out: Path, presets: list[str]) -> Path:
    """The contract tables the presets do not map, as files beside the exports."""
    for path in world.glob("*.parquet"):
        if path.stem not in ("accounts", "touches", "truth"):
            shutil.copy(path, out / path.name)
    (out / "sources.yaml").write_text(preset_text(presets), encoding="utf-8")
    return out


def _touches(data: object) -> pd.DataFrame:
    world = open_world(data)  # type: ignore[arg-type]
    validate(world)
    frame = world.frame("SELECT * FROM touches")
    return frame.sort_values(["account_id", "touched_at", "channel"]).reset_index(drop=True)


def test_salesforce_tasks_and_events_map_back_to_the_worlds_touches(
    world: Path, tmp_path: Path
) -> None:
    # Given the world's touches as Task and Event records, with open, deleted and prospects'
    # tasks beside them, and a task the run created that its CSM closed
    ids = write_salesforce(world, tmp_path)
    closed = write_salesforce_activity(world, tmp_path, ids)
    sources = _exports(world, tmp_path, ["salesforce", "salesforce-activity"])

    # When the presets map them
    mapped = _touches(load_sources(sources / "sources.yaml", tmp_path))

    # Then they are the world's touches, and the closed task is one more
    own = _touches(world)
    expected = pd.concat([own, closed.astype(own.dtypes.to_dict())], ignore_index=True)
    expected = expected.sort_values(["account_id", "touched_at", "channel"])
    pd.testing.assert_frame_equal(mapped, expected.reset_index(drop=True))
    assert len(own) == 40 and set(own["channel"]) == set(OUTCOMES)


def test_hubspot_engagements_map_back_to_the_worlds_touches(world: Path, tmp_path: Path) -> None:
    # Given the world's touches as HubSpot calls, emails and meetings, and an archived note
    ids = write_hubspot(world, tmp_path)
    write_hubspot_engagements(world, tmp_path, ids)
    sources = _exports(world, tmp_path, ["hubspot", "hubspot-engagements"])

    # When the presets map them, then they are the world's touches
    mapped = _touches(load_sources(sources / "sources.yaml", tmp_path))
    pd.testing.assert_frame_equal(mapped, _touches(world))
