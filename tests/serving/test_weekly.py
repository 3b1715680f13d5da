"""The weekly run: history, triggers with reasons, a manifest, byte-identical re-runs, kills."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from expansion_scorer.settings import load_feature_set
from tests.helpers import history_table, run_cli

WEEK_1, WEEK_2 = "2024-09-01", "2024-09-08"


def _score(data: Path, out: Path, as_of: str, capsys: pytest.CaptureFixture[str]) -> str:
    code, stdout, err = run_cli(
        ["score", str(data), "--as-of", as_of, "--out", str(out), "--per-csm"], capsys
    )
    assert code == 0, err
    return stdout


def _files(out: Path) -> dict[str, bytes]:
    """Every published output (not the history, the lock or a stage), by relative path."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file()
        and p.name not in {"history.duckdb", ".lock"}
        and not p.relative_to(out).parts[0].startswith(".staging-")
    }


def _history(out: Path) -> pd.DataFrame:
    return history_table(out, "SELECT * FROM scores ORDER BY as_of, model_version, account_id")


def _deterministic(manifest: bytes) -> dict[str, object]:
    body = json.loads(manifest)
    del body["run"]
    return body


@pytest.fixture(scope="module")
def scored(
    small_world_dir: Path, trained_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """The weekly output after week 1, and after weeks 1 and 2, scored once for the module's
    tests; a test that writes works on a copy."""
    from expansion_scorer.cli import main

    root = tmp_path_factory.mktemp("scored")
    one, two = root / "one", root / "two"
    runs = [(one, WEEK_1), (two, WEEK_1), (two, WEEK_2)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{trained_store / 'mlflow.db'}")
        mp.chdir(root)
        for out, as_of in runs:
            said = io.StringIO()
            with contextlib.redirect_stdout(said):
                code = main(["score", str(small_world_dir), "--as-of", as_of, "--out", str(out),
                             "--per-csm"])  # fmt: skip
            assert code == 0
    assert f"since {WEEK_1}" in said.getvalue()  # the second week's run
    return one, two


@pytest.fixture
def two_weeks(scored: tuple[Path, Path], champion: Path, tmp_path: Path) -> Path:
    """A copy of the weekly output after two weeks, with the champion that scored them."""
    return Path(shutil.copytree(scored[1], tmp_path / "weekly"))


def test_second_week_fires_triggers_that_say_why_the_score_moved(two_weeks: Path) -> None:
    history = _history(two_weeks)
    week_2 = pd.read_csv(two_weeks / "triggers.csv")
    scores = pd.read_parquet(two_weeks / "scores.parquet")

    assert sorted(history["as_of"].astype(str).unique()) == [WEEK_1, WEEK_2]
    assert len(week_2) > 0
    moved = week_2[week_2["previous_score_pct"].notna()]
    assert len(moved) > 0
    # "score up 0.06 (44% → 50%): seats +4 pts, momentum +2 pts, ..."
    assert moved["why"].str.match(r"score (up|down) \d\.\d\d \(\d+% → \d+%\)").all()
    assert moved["why"].str.contains(r"[+-]\d+ pts").any()
    for r in moved.to_dict("records"):  # percentages and points, to one decimal
        assert abs(r["change_pts"] - (r["score_pct"] - r["previous_score_pct"])) <= 0.1 + 1e-9
    assert set(week_2["account_id"]) <= set(scores["account_id"])
    # the cooldown: an account that fired in week 1 fires again only if its score jumped
    fired_1 = history[(history["as_of"].astype(str) == WEEK_1) & history["fired"]]
    fired_1 = fired_1[["account_id", "score"]].rename(columns={"score": "score_1"})
    again = week_2.merge(fired_1, on="account_id")
    assert (again["score_pct"] / 100 - again["score_1"] >= 0.10 - 0.0005 - 1e-9).all()
    # the first week is the baseline: its hot accounts did not "enter" anything, only rules fire
    week_1 = history[history["as_of"].astype(str) == WEEK_1]
    assert (week_1["band"] == "hot").sum() > 0
    for kinds in week_1.loc[week_1["fired"], "trigger"]:
        assert all(kind.startswith("rule ") for kind in kinds.split("; ")), kinds
    assert week_2["trigger"].str.contains("entered|rise").any()
    html = (two_weeks / "report.html").read_text(encoding="utf-8")
    acting = int(week_2["act_this_week"].sum())
    assert f"Act this week: {acting} account" in html
    assert str(moved["why"].iloc[0]).split(":")[0] in html


def test_act_this_week_holds_at_most_each_csms_capacity_and_the_strongest_triggers(
    two_weeks: Path,
) -> None:
    # Given the second week's triggers, with a capacity of 20 accounts a CSM
    week_2 = pd.read_csv(two_weeks / "triggers.csv")
    capacity = 20

    # Then every fired account is listed once, and each CSM acts on at most their capacity
    assert week_2["account_id"].is_unique
    owners = week_2["csm_owner"].fillna("Unassigned")
    acting = week_2[week_2["act_this_week"]]
    assert acting.groupby(owners[week_2["act_this_week"]]).size().max() <= capacity
    assert len(acting) <= capacity * owners.nunique()
    # and a CSM with more fired than capacity acts on the strongest: a rule before a rank entry
    for owner, mine in week_2.groupby(owners):
        if owner == "Unassigned":  # nobody's to act on
            assert not mine["act_this_week"].any()
            continue
        if len(mine) <= capacity:
            assert mine["act_this_week"].all()
            continue
        assert mine["act_this_week"].sum() == capacity
        rule = mine["trigger"].str.contains("rule ")
        entry_only = ~rule & ~mine["trigger"].str.contains("rise")
        if rule.sum() >= capacity:
            assert not mine.loc[entry_only, "act_this_week"].any()


def test_the_first_weeks_act_this_week_fits_the_capacity(
    small_world_dir: Path, champion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "first"
    _score(small_world_dir, out, WEEK_1, capsys)
    fired = pd.read_csv(out / "triggers.csv")
    scores = pd.read_csv(out / "scores.csv")
    csms = scores["csm_owner"].nunique()  # accounts without a CSM are nobody's to act on

    assert len(fired) > 0
    assert fired["act_this_week"].sum() <= 20 * csms
    assert not fired.loc[fired["csm_owner"].isna(), "act_this_week"].any()
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count('<article class="card"') == fired["act_this_week"].sum()
    history = _history(out)
    # the cooldown starts only for the accounts a CSM was told to act on
    assert set(history.loc[history["fired"], "account_id"]) == set(
        fired.loc[fired["act_this_week"], "account_id"]
    )


def test_manifest_accounts_for_every_account_and_every_input(
    two_weeks: Path, small_world_dir: Path
) -> None:
    manifest = json.loads((two_weeks / "manifest.json").read_text(encoding="utf-8"))
    scores = pd.read_parquet(two_weeks / "scores.parquet")
    excluded = pd.read_csv(two_weeks / "excluded.csv")
    accounts = pd.read_parquet(small_world_dir / "accounts.parquet")
    existing = (pd.to_datetime(accounts["created_at"]) < pd.Timestamp(WEEK_2)).sum()

    counts = manifest["accounts"]
    assert counts["existing_before_as_of"] == existing == len(scores) + len(excluded)
    assert counts["eligible"] == counts["scored"] == len(scores)
    assert sum(counts["excluded_by_reason"].values()) == len(excluded)
    assert manifest["as_of"] == WEEK_2
    assert manifest["model"]["version"] == "expansion-propensity v1"
    usage = manifest["inputs"]["usage_events"]
    assert usage["rows"] == len(pd.read_parquet(small_world_dir / "usage_events.parquet"))
    assert 0 < usage["rows_before_as_of"] < usage["rows"]
    assert len(usage["sha256"]) == 64
    assert manifest["run"]["seconds"]["features_score_explain"] > 0
    assert str(small_world_dir) not in (two_weeks / "manifest.json").read_text(encoding="utf-8")


def test_rerunning_a_week_replaces_it_and_is_byte_identical(
    two_weeks: Path, small_world_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before, history_before = _files(two_weeks), _history(two_weeks)

    _score(small_world_dir, two_weeks, WEEK_2, capsys)

    after = _files(two_weeks)
    assert after.keys() == before.keys()
    for name in before:
        if name == "manifest.json":
            assert _deterministic(after[name]) == _deterministic(before[name])
        else:
            assert after[name] == before[name], name
    pd.testing.assert_frame_equal(_history(two_weeks), history_before)


KILLER = """
import os, signal, sys
import expansion_scorer.program.history as history
import expansion_scorer.outputs as output
from expansion_scorer.cli import main

point, real_replace, real_connect = sys.argv[1], os.replace, history._connect
published = []

def replace(src, dst):
    if point == "staging" and str(dst).endswith("COMMITTED"):
        os.kill(os.getpid(), signal.SIGKILL)  # the stage is written but not committed
    real_replace(src, dst)
    if point == "publishing" and ".staging-" in str(src) and "COMMITTED" not in str(dst):
        published.append(dst)
        if len(published) == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # two outputs renamed, the rest not

class Dying:
    def __init__(self, con):
        self.con = con
    def __getattr__(self, name):
        return getattr(self.con, name)
    def execute(self, sql, *args):
        if sql.startswith("INSERT INTO features"):
            os.kill(os.getpid(), signal.SIGKILL)  # inside the history transaction
        return self.con.execute(sql, *args)

def connect(path, read_only):
    con = real_connect(path, read_only)
    return con if read_only or point != "history" else Dying(con)

output.os.replace = replace
history._connect = connect
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("point", ["staging", "history", "publishing"])
def test_a_run_killed_while_writing_leaves_readable_outputs_and_the_next_run_completes(
    point: str,
    small_world_dir: Path,
    scored: tuple[Path, Path],
    champion: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = Path(shutil.copytree(scored[0], tmp_path / "weekly"))  # week 1 scored
    week_1, history_1 = _files(out), _history(out)
    clean = scored[1]  # weeks 1 and 2 scored without a kill

    args = ["score", str(small_world_dir), "--as-of", WEEK_2, "--out", str(out), "--per-csm"]
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, point, *args],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert killed.returncode == -9, killed.stderr
    if point in ("staging", "history"):  # nothing was published: week 1 is intact
        assert _files(out) == week_1
        pd.testing.assert_frame_equal(_history(out), history_1)
    for path in out.glob("*.parquet"):
        pd.read_parquet(path)  # every published file is whole, old or new
    for path in out.glob("*.csv"):
        pd.read_csv(path)
    _score(small_world_dir, out, WEEK_2, capsys)
    assert not list(out.glob(".staging-*"))
    assert _files(out).keys() == _files(clean).keys()
    for name, data in _files(clean).items():
        if name != "manifest.json":
            assert _files(out)[name] == data, name
    assert sorted(_history(out)["as_of"].astype(str).unique()) == [WEEK_1, WEEK_2]
    pd.testing.assert_frame_equal(_history(out), _history(clean))


def test_a_model_that_does_not_match_the_features_stops_the_run_and_writes_nothing(
    small_world_dir: Path, champion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = load_feature_set().model_dump()
    spec["features"] = [f for f in spec["features"] if f["name"] != "employee_count"]
    for f in spec["features"]:
        if f["name"] == "days_to_renewal":
            f["kind"] = "categorical"
    edited = tmp_path / "features.yaml"
    edited.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    out = tmp_path / "out"

    code, _, err = run_cli(
        ["score", str(small_world_dir), "--as-of", WEEK_1, "--out", str(out), "--features",
         str(edited)],
        capsys,
    )  # fmt: skip

    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "missing employee_count" in err and "mistyped days_to_renewal" in err
    assert not out.exists() or not any(out.iterdir())
    shutil.rmtree(out, ignore_errors=True)
