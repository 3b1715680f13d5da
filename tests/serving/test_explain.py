"""Reasons, motion, readiness and talking points, as a CSM reads them."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from expansion_scorer.config import load_serving_config
from expansion_scorer.serving.explain import NO_MOTION, motions, readiness
from expansion_scorer.serving.lists import per_csm
from expansion_scorer.settings import load_feature_set
from expansion_scorer.text import render
from tests.helpers import run_cli

AS_OF = "2024-09-01"


@pytest.fixture
def scored(
    small_world_dir: Path, champion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Path:
    out = tmp_path / "out"
    code, _, err = run_cli(
        ["score", str(small_world_dir), "--as-of", AS_OF, "--out", str(out), "--per-csm"], capsys
    )
    assert code == 0, err
    return out


def test_family_impacts_add_up_to_the_score_above_base(scored: Path) -> None:
    scores = pd.read_parquet(scored / "scores.parquet")
    drivers = pd.read_parquet(scored / "drivers.parquet")
    assert drivers["account_id"].tolist() == scores["account_id"].tolist()
    total = drivers.drop(columns="account_id").sum(axis=1).to_numpy() / 100
    above_base = scores["score"].to_numpy() - total
    # every account shares the same base score: impacts explain all of the rest
    assert np.ptp(above_base) < 0.01
    assert 0 < above_base[0] < 1


def test_reasons_are_the_strongest_families_with_their_signed_impact(scored: Path) -> None:
    scores = pd.read_parquet(scored / "scores.parquet")
    top = scores.head(10)  # the top of the list, whatever band calibration puts it in
    assert len(top) > 0
    for r in top.to_dict("records"):
        impacts = [
            float(r[c].rsplit("(", 1)[1].split(" pt")[0]) for c in ("reason_1", "reason_2",
            "reason_3") if r[c]
        ]  # fmt: skip
        assert impacts and impacts == sorted(impacts, reverse=True) and impacts[-1] > 0
        if r["reason_against"]:
            assert float(r["reason_against"].rsplit("(", 1)[1].split(" pt")[0]) < 0
        assert r["motion"]
    # reasons speak in the account's numbers, e.g. "48 of 50 seats in use (96%)" or "356 people
    # used it in 90 days on 340 seats (105%)", whichever seat feature the learner kept leads
    seats = r"\d+ of \d+ seats in use \(\d+%\)|\d+ people used it in 90 days on \d+ seats \(\d+%\)"
    assert scores["reason_1"].str.contains(seats).any()


def test_ready_accounts_rank_before_not_yet_within_a_band(scored: Path) -> None:
    scores = pd.read_parquet(scored / "scores.parquet")
    assert set(scores["readiness"]) <= {"ready", "not yet"}
    for _, band in scores.groupby("band", sort=False):
        flags = (band["readiness"] == "not yet").tolist()
        assert flags == sorted(flags)
        for part in (band[band["readiness"] == "ready"], band[band["readiness"] == "not yet"]):
            assert part["score"].is_monotonic_decreasing
    not_yet = scores[scores["readiness"] == "not yet"]
    assert (not_yet["readiness_reason"].str.len() > 0).all()


def test_per_csm_files_hold_each_csms_capacity(scored: Path) -> None:
    scores = pd.read_csv(scored / "scores.csv")
    files = sorted((scored / "per_csm").glob("*.csv"))
    owners = scores["csm_owner"].fillna("Unassigned")
    assert len(files) == owners.nunique()
    capacity = load_serving_config().accounts_per_csm
    for path in files:
        rows = pd.read_csv(path)
        owner = rows["csm_owner"].fillna("Unassigned").unique()
        assert len(owner) == 1
        # the CSM's first accounts outside the control group (held-out places are backfilled)
        expected = scores[(owners == owner[0]) & (scores["arm"] != "holdout")].head(capacity)
        assert "arm" not in rows.columns
        assert rows["account_id"].tolist() == expected["account_id"].tolist()


def _frame(**values: object) -> pd.DataFrame:
    base = {
        "tenure_days": 400.0, "events_change_28d": 0.1, "urgent_tickets_30d": 0.0,
        "nps_last": 9.0, "active_users_28d": 48.0, "seats": 50.0, "invites_28d": 6.0,
        "plan": "team", "plan_limit_use": 0.92, "top_unowned_fit": "Analytics",
        "top_unowned_fit_event": "export_report", "unowned_fit_events_28d": 310.0,
    }  # fmt: skip
    base.update(values)
    return pd.DataFrame([base])


def test_readiness_names_every_reason_to_wait_in_the_accounts_numbers() -> None:
    serving = load_serving_config()
    young = readiness(_frame(tenure_days=30.0, urgent_tickets_30d=2.0, nps_last=4.0), serving)
    assert young["readiness"].tolist() == ["not yet"]
    text = young["readiness_reason"].iloc[0]
    assert "a customer for 30 days" in text
    assert "2 urgent tickets in the last 30 days" in text
    assert "latest NPS 4 (detractor)" in text
    ready = readiness(_frame(nps_last=float("nan")), serving)
    assert ready["readiness"].tolist() == ["ready"] and ready["readiness_reason"].iloc[0] == ""


@pytest.mark.parametrize(
    ("family", "motion", "phrase"),
    [
        ("seats", "Add seats", "48 people used the product in the last 28 days on 50 seats"),
        ("plan", "Upgrade plan", "92% of what the team plan includes"),
        ("whitespace", "Cross-sell Analytics", "310 reports exported in 28 days"),
    ],
)
def test_motion_follows_the_strongest_families(family: str, motion: str, phrase: str) -> None:
    families = ["seats", "momentum", "plan", "whitespace", "support"]
    points = pd.DataFrame([[9.0 if f == family else 1.0 for f in families]], columns=families)

    chosen = motions(_frame(), points, load_serving_config())

    assert chosen["motion"].iloc[0] == motion
    assert any(phrase in t for t in chosen["talking_points"].iloc[0])


def test_no_motion_when_nothing_pushes_the_score_up() -> None:
    points = pd.DataFrame(
        [[-3.0, 0.1, -1.0, 0.0]], columns=["seats", "momentum", "plan", "whitespace"]
    )
    chosen = motions(_frame(), points, load_serving_config())
    assert chosen["motion"].iloc[0] == NO_MOTION and chosen["talking_points"].iloc[0] == []


def test_reason_templates_fall_back_when_a_value_is_missing() -> None:
    d = {f.name: f for f in load_feature_set().features}["seat_utilisation"]
    full = {"active_users_28d": 48, "seats": 50, "seat_utilisation": 0.96,
            "seat_utilisation_90d_ago": 0.8}  # fmt: skip
    assert render(d.reason, d.description, full) == (
        "48 of 50 seats in use (96%), up from 80% a quarter ago"
    )
    no_history = {**full, "seat_utilisation_90d_ago": math.nan}
    assert render(d.reason, d.description, no_history) == "48 of 50 seats in use (96%)"
    assert render(d.reason, d.description, {**full, "seats": math.nan}) == d.description


def test_per_csm_slugs_are_safe_and_distinct() -> None:
    scores = pd.DataFrame(
        {"csm_owner": ["Chloé Dubois", "chloe dubois", "../etc", None], "account_id": list("abcd")}
    )
    names = sorted(per_csm(scores, 5))
    assert names == ["chloe-dubois-2.csv", "chloe-dubois.csv", "etc.csv", "unassigned.csv"]


def test_family_points_add_up_to_the_score_minus_the_calibrated_base_rate(
    scored: Path, small_world_dir: Path, champion: Path
) -> None:
    # Given the champion and the scores it gave, with their family points
    from expansion_scorer.data.loading import open_world
    from expansion_scorer.features.build import build_features
    from expansion_scorer.features.ledger import build_expansions
    from expansion_scorer.features.snapshots import build_entities
    from expansion_scorer.model.loading import load_model
    from expansion_scorer.model.propensity import contributions
    from expansion_scorer.serving.scoring import _delivered_base

    model, _ = load_model("models:/expansion-propensity@champion")
    scores = pd.read_parquet(scored / "scores.parquet")
    drivers = pd.read_parquet(scored / "drivers.parquet")
    world = open_world(small_world_dir, cutoff=date.fromisoformat(AS_OF))
    build_entities(world.con, [date.fromisoformat(AS_OF)])
    build_expansions(world.con, load_feature_set())
    frame = build_features(world.con, load_feature_set(), True, True)
    base_logit = contributions(model, frame.head(5)).base_logit

    # When the base rate is what the model delivers for an account with no information: through
    # its calibrator when one earned its place (a calibrated base is also tested in
    # tests/training/test_learning.py), else the raw base
    raw = 1 / (1 + np.exp(-base_logit))
    calibrated = _delivered_base(model, base_logit)
    if model.calibrator is not None:
        assert abs(calibrated - raw) > 1e-3  # calibration moves it: the two bases differ
    else:
        assert calibrated == pytest.approx(raw, abs=1e-12)

    # Then every account's points add up to its score minus that calibrated base
    total = drivers.drop(columns="account_id").sum(axis=1).to_numpy() / 100
    np.testing.assert_allclose(scores["score"].to_numpy() - total, calibrated, atol=0.002)
