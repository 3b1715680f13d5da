"""Declarative usage windows: each measure matches a plain recount of the raw events, and a bad
definition stops at load with one line naming it."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from expansion_scorer.config import FeatureSet, UsageWindow
from expansion_scorer.data.loading import open_world
from expansion_scorer.errors import UserError
from expansion_scorer.features.build import prepare_usage
from expansion_scorer.features.ledger import build_expansions
from expansion_scorer.features.snapshots import build_entities
from expansion_scorer.settings import load_feature_set
from tests.helpers import run_cli, write_tables

WINDOWS = {
    "q_28": UsageWindow(days=28),
    "q_7_off_3": UsageWindow(days=7, offset=3),
    "n_export_28": UsageWindow(measure="count", days=28, event=["export_report"]),
    "users_1": UsageWindow(measure="users", days=1),
    "users_28": UsageWindow(measure="users", days=28),
    "users_28_off_90": UsageWindow(measure="users", days=28, offset=90),
    "users_api_60": UsageWindow(measure="users", days=60, event=["api_call", "login"]),
    "events_14": UsageWindow(measure="events", days=14),
    "days_30_off_30": UsageWindow(measure="days", days=30, offset=30),
    "user_days_28": UsageWindow(measure="user_days", days=28),
    "dau_slope_91": UsageWindow(measure="user_days", days=91, stat="slope"),
    "q_slope_28_off_7": UsageWindow(days=28, offset=7, stat="slope"),
    "n_share_slope_35": UsageWindow(measure="count", days=35, event="share", stat="slope"),
    "days_slope_14": UsageWindow(measure="days", days=14, stat="slope"),
}
AS_OF = [date(2023, 9, 4), date(2024, 2, 29), date(2024, 7, 1)]


def _recount(events: pd.DataFrame, entities: pd.DataFrame) -> pd.DataFrame:
    """Each window recounted from the raw events, entity by entity: slow and obvious."""
    events = events.assign(day=pd.to_datetime(events["timestamp"]).dt.normalize())
    by_account = dict(tuple(events.groupby("account_id")))
    rows = []
    for account_id, as_of in entities.itertuples(index=False):
        mine = by_account.get(account_id, events.iloc[:0])
        row: dict[str, object] = {"account_id": account_id, "as_of": as_of}
        for name, w in WINDOWS.items():
            end = pd.Timestamp(as_of) - pd.Timedelta(days=w.offset)
            seen = mine[(mine["day"] >= end - pd.Timedelta(days=w.days)) & (mine["day"] < end)]
            if w.event is not None:
                seen = seen[seen["event"].isin(w.event)]
            measure = {
                "sum": lambda s: s["quantity"].sum(),
                "count": len,
                "users": lambda s: s["user_id"].nunique(),
                "events": lambda s: s["event"].nunique(),
                "days": lambda s: s["day"].nunique(),
                "user_days": lambda s: len(s[["user_id", "day"]].drop_duplicates()),
            }[w.measure]
            if w.stat == "total":
                row[name] = measure(seen)
                continue
            # a straight line fitted to the daily values, zero on days without use, per week
            days = pd.date_range(end - pd.Timedelta(days=w.days), periods=w.days)
            by_day = dict(tuple(seen.groupby("day")))
            daily = [measure(by_day[d]) if d in by_day else 0 for d in days]
            row[name] = 7 * np.polyfit(np.arange(w.days), np.asarray(daily, float), 1)[0]
        rows.append(row)
    return pd.DataFrame(rows)


def test_every_window_measure_matches_a_plain_recount(small_world_dir: Path) -> None:
    # Given a generated world and windows of every measure, filter and offset
    features = load_feature_set().model_copy(update={"windows": WINDOWS})
    world = open_world(small_world_dir)
    build_entities(world.con, AS_OF)
    entities = world.con.execute("SELECT account_id, as_of FROM entities").df()
    sample = entities.groupby("as_of").head(25).reset_index(drop=True)
    events = pd.read_parquet(small_world_dir / "usage_events.parquet")

    # When the pipeline computes them
    prepare_usage(world.con, features)
    ours = world.con.execute(f"SELECT account_id, as_of, {', '.join(WINDOWS)} FROM usage_agg").df()

    # Then they equal the recount, and the windows are not trivially empty
    expected = _recount(events, sample)
    got = sample.merge(ours, on=["account_id", "as_of"], how="left")
    for name, w in WINDOWS.items():
        if w.stat == "slope":
            assert np.allclose(got[name], expected[name], rtol=1e-9, atol=1e-12), name
            assert (expected[name] > 0).any() and (expected[name] < 0).any(), name
            continue
        assert got[name].astype(float).tolist() == expected[name].astype(float).tolist(), name
        assert expected[name].astype(float).sum() > 0, name


CATALOGUE = [
    "login", "create_record", "comment", "share", "invite_user", "export_report", "schedule_task",
    "api_call", "build_dashboard", "run_workflow", "sync_connector",
]  # fmt: skip


def _definitions(tmp_path: Path, change: dict[str, object]) -> Path:
    raw = yaml.safe_load((Path(__file__).parents[2] / "features" / "features.yaml").read_text())
    # a named catalogue, so an event typo fails at load (with `events: auto` it is `expansion
    # validate` that says a window names an event the data never holds)
    raw["events"] = CATALOGUE
    target = next(f for f in raw["features"] if f["name"] == "seat_utilisation")
    target.update(change)
    path = tmp_path / "features.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"sql": "active_users_28d / seets"}, "seets"),
        ({"sql": "(SELECT max(arr) FROM contracts)"}, "contracts"),
        ({"window": {"days": 0}}, "window.days"),
        ({"window": {"days": 28, "offset": -1}}, "window.offset"),
        ({"window": {"days": 28, "event": "exprot_report"}}, "exprot_report"),
        ({"window": {"days": 28, "measure": "median"}}, "window.measure"),
        ({"window": {"days": 28, "measure": "users", "stat": "slope"}}, "stat slope needs"),
    ],
)
def test_a_bad_definition_fails_at_load_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, object], says: str
) -> None:
    path = _definitions(tmp_path, change)

    with pytest.raises(UserError) as raised:
        load_feature_set(path)
    assert "seat_utilisation" in str(raised.value)
    assert says in str(raised.value)
    assert "\n" not in str(raised.value)

    code, _, stderr = run_cli(["validate", str(tmp_path), "--features", str(path)], capsys)
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and "seat_utilisation" in stderr


def test_a_new_windowed_feature_needs_no_code(world_dir: Path, tmp_path: Path) -> None:
    # Given one added definition: exports by people in the last 14 days, a week ago
    raw = yaml.safe_load((Path(__file__).parents[2] / "features" / "features.yaml").read_text())
    raw["features"].append(
        {
            "name": "exporters_14d_last_week",
            "family": "depth",
            "description": "people who exported in the 14 days to a week ago",
            "window": {"measure": "users", "days": 14, "offset": 7, "event": "export_report"},
        }
    )
    path = tmp_path / "features.yaml"
    path.write_text(yaml.safe_dump(raw))
    features: FeatureSet = load_feature_set(path)

    # When the pipeline runs, then the feature is computed and varies across accounts
    world = open_world(world_dir)
    build_entities(world.con, [date(2024, 3, 4)])
    build_expansions(world.con, features)
    from expansion_scorer.features.build import build_features

    frame = build_features(world.con, features, True, True)
    assert frame["exporters_14d_last_week"].nunique() > 3


def test_events_outside_the_catalogue_are_counted_not_errors(
    tiny_tables: dict[str, pd.DataFrame], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    usage = tiny_tables["usage_events"]
    usage.loc[1, "event"] = "teleport"
    usage.loc[2, "event"] = "teleport"
    data = write_tables(tmp_path / "data", tiny_tables)
    # definitions that name their catalogue (the shipped ones take every event of the data)
    listed = tmp_path / "features.yaml"
    shipped = Path(__file__).parents[2] / "features" / "features.yaml"
    listed.write_text(
        shipped.read_text().replace("\nevents: auto\n", f"\nevents: [{', '.join(CATALOGUE)}]\n")
    )

    code, stdout, _ = run_cli(["validate", str(data), "--features", str(listed)], capsys)

    assert code == 0
    assert "2 rows with 1 events outside the catalogue (teleport 2)" in stdout
