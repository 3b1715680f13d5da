"""The expansion program, measured: a holdout drawn in the weekly run, touches, and the lift.

Two simulated quarters: the scorer runs with a holdout, CSMs touch what they were shown (with
less than full compliance), the world responds with a known, heterogeneous effect, and
`expansion measure` must find it, with an interval that covers the truth.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml

from expansion_scorer.program.holdout import draws, period_of
from tests.conftest import PROGRAM_WEEKS as WEEKS
from tests.conftest import Program
from tests.helpers import history_table, run_cli


def _config(tmp_path: Path, holdout: str, program: dict[str, object] | None = None) -> Path:
    """The shipped serving config with its `holdout:` replaced (a YAML flow mapping), and keys
    of its `program:` changed."""
    text = (Path(__file__).parents[2] / "serving" / "default.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    raw["holdout"] = yaml.safe_load(holdout)
    raw["program"].update(program or {})
    config = tmp_path / "serving.yaml"
    config.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return config


def _score(
    data: Path, out: Path, as_of: str, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        ["score", str(data), "--as-of", as_of, "--out", str(out), "--per-csm", "--config",
         str(config)],
        capsys,
    )  # fmt: skip
    assert code == 0, err


def _assignments(out: Path) -> pd.DataFrame:
    return history_table(out, "SELECT * FROM assignments ORDER BY period, account_id")


def test_the_holdout_is_drawn_once_a_period_and_never_shown_to_a_csm(
    program: Program, champion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = program.out
    assigned = _assignments(out)

    # one arm per account and period, listed and held out drawn by the salted hash
    assert not assigned.duplicated(["period", "account_id"]).any()
    assert set(assigned["period"]) == {"2024Q2", "2024Q3"}
    assert set(assigned["arm"]) == {"listed", "holdout", "backfill"}
    drawn = assigned[assigned["arm"] != "backfill"]
    for period, part in drawn.groupby("period"):
        u = draws(part["account_id"], "test", str(period))
        assert ((u < 0.5) == (part["arm"] == "holdout")).all()
    # the last week's held-out accounts are in scores (arm holdout) but on nothing a CSM reads
    scores = pd.read_csv(out / "scores.csv")
    held = set(scores.loc[scores["arm"] == "holdout", "account_id"])
    recorded = set(assigned.loc[(assigned["period"] == "2024Q3") & (assigned["arm"] == "holdout"),
                                "account_id"])  # fmt: skip
    assert held and held <= recorded
    assert not held & set(pd.read_csv(out / "triggers.csv")["account_id"])
    for path in (out / "per_csm").glob("*.csv"):
        assert not held & set(pd.read_csv(path)["account_id"])
    html = (out / "report.html").read_text(encoding="utf-8")
    assert not [a for a in held if a in html]
    assert f"{len(held)} held out as this period" in html
    assert set(scores["arm"]) <= {"listed", "holdout", "backfill", "none"}

    # a re-run of an earlier week never re-draws or rewrites an assignment
    rerun = tmp_path / "rerun"
    shutil.copytree(out, rerun)
    before = _assignments(rerun)
    _score(program.world, rerun, WEEKS[1], _config(tmp_path, "{fraction: 0.5, salt: other}"),
           capsys)  # fmt: skip
    after = _assignments(rerun)
    pd.testing.assert_frame_equal(before, after)
    assert period_of(pd.Timestamp(WEEKS[2]).date(), "quarter") == "2024Q3"


def test_measure_finds_the_programs_effect_within_its_interval(
    program: Program, champion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "weekly"
    shutil.copytree(program.out, out)
    # Given a world that answered the program, and the truth of what each touch changed
    data, config, truth = program.world, program.config, program.truth
    true_effect = truth["effect"].mean()
    assert true_effect > 0.05
    assert (truth["effect"] < 0).any()  # a touch that comes too early costs an expansion
    touched = pd.read_parquet(data / "touches.parquet")
    periods = [period_of(t.date(), "quarter") for t in touched["touched_at"]]
    held = truth[truth["arm"] == "holdout"]
    assert not set(zip(touched["account_id"], periods, strict=True)) & set(
        zip(held["account_id"], held["period"], strict=True)
    )  # a held-out account is never touched in its period
    assert "p_touched" in pd.read_parquet(data / "truth.parquet").columns

    # When the program is measured
    code, stdout, err = run_cli(
        ["measure", str(data), "--out", str(out), "--config", str(config)], capsys
    )

    # Then the pooled intent-to-treat effect's interval covers the truth and excludes zero
    assert code == 0, err
    summary = json.loads((out / "measure" / "program.json").read_text(encoding="utf-8"))
    pooled = summary["pooled"]
    assert pooled["effect_low"] <= true_effect <= pooled["effect_high"], (pooled, true_effect)
    assert pooled["effect_low"] > 0
    assert summary["cohorts_matured"] == 4
    assert summary["incremental_expansion_arr"] > 0 and summary["nrr_points"] > 0
    # touches: the listed accounts comply at about the simulated rate, the held-out never
    touched = summary["compliance"]
    assert 0.6 <= touched["listed_touched"] <= 0.95 and touched["holdout_touched"] == 0
    assert touched["complier_effect_low"] <= touched["complier_effect"] <= touched[
        "complier_effect_high"]  # fmt: skip
    table = pd.read_csv(out / "measure" / "program.csv")
    assert set(table["scope"]) >= {"pooled", "cohort", "band", "motion", "csm_owner"}
    small = table[table["note"].fillna("").str.startswith("too few")]
    assert small["effect"].isna().all()  # a group too small to say is said, not a number
    assert (out / "measure" / "program.png").stat().st_size > 10_000
    assert "effect" in stdout
    # the program's health per quarter: money from the ledger, coverage, follow-through, lift
    health = {h["quarter"]: h for h in summary["health"]}
    assert {"2024Q2", "2024Q3"} <= set(health)
    for q in ("2024Q2", "2024Q3"):
        h = health[q]
        assert h["nrr"] > 0 and h["grr"] <= 100 and h["expansions"] > 0
        assert 0 < h["flagged_share"] <= 1 and h["median_weeks_ahead"] >= 0
        assert 0.6 <= h["follow_through"] <= 0.95
        assert h["lift_interval"][0] <= h["lift"] <= h["lift_interval"][1]
    # the effect adjusted for what was known at the draw covers the truth too, beside the plain
    assert pooled["adjusted_low"] <= true_effect <= pooled["adjusted_high"], pooled
    assert pooled["adjusted_low"] > 0 and summary["adjusted_for"]
    periods = table[table["scope"] == "period"]
    assert periods["adjusted_effect"].notna().all() and len(periods) == 2
    # the always-valid interval, one look per matured cohort, is wider than the fixed-horizon
    # one it must stay valid beside, and says the program works
    always = summary["always_valid"]
    assert [look["n"] for look in always["looks"]] == sorted(look["n"] for look in always["looks"])
    assert len(always["looks"]) == 4 and always["verdict"] == "shown to work"
    assert always["low"] < pooled["effect_low"] and always["high"] > pooled["effect_high"]
    assert "fixed-horizon" in summary["interval"] and "fixed-horizon" in stdout
    # a fair draw passes its checks; the plan reads the next four quarters
    assert summary["reliable"] and not summary["warnings"]
    assert {c["period"] for c in summary["checks"]} == {"2024Q2", "2024Q3"}
    assert all(c["sample_ratio_p"] > 0.001 for c in summary["checks"])
    plan = summary["plan"]
    detectable = [q["detectable"] for q in plan["quarters"]]
    assert len(detectable) == 4 and detectable == sorted(detectable, reverse=True)
    assert plan["candidates_per_quarter"] > 0 and "adjusted" in plan["variance_from"]
    # and the next weekly report says whether the program is working
    _score(data, out, WEEKS[-1], config, capsys)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Is the program working?" in html
    assert f"{100 * pooled['effect']:+.1f} points" in html
    assert '<table class="health">' in html and "2024Q3" in html
    assert "<strong>Shown to work</strong>: the always-valid 95% interval" in html
    assert "95% fixed-horizon interval" in html
    assert f"{100 * pooled['adjusted_effect']:+.1f} points" in html
    assert '<table class="checks">' in html and "Plan: about" in html
    assert "is unreliable" not in html and "unreliable:" not in html


def test_a_thinned_arm_fails_the_ratio_check_and_the_report_says_so(
    program: Program, champion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a history whose held-out accounts of 2024Q3 lost two in three after the draw (a
    # filter applied to one arm)
    out = tmp_path / "weekly"
    shutil.copytree(program.out, out)
    con = duckdb.connect(str(out / "history.duckdb"))
    try:
        held = con.execute(
            "SELECT account_id FROM assignments WHERE period = '2024Q3' AND arm = 'holdout'"
            " ORDER BY account_id"
        ).df()["account_id"]
        dropped = [a for i, a in enumerate(held) if i % 3 != 0]
        con.execute(
            "DELETE FROM assignments WHERE period = '2024Q3' AND arm = 'holdout'"
            " AND list_contains(?, account_id)",
            [dropped],
        )
    finally:
        con.close()

    # When the program is measured
    code, stdout, err = run_cli(
        ["measure", str(program.world), "--out", str(out), "--config", str(program.config)],
        capsys,
    )

    # Then it still answers, and says the quarter's estimate, and the pooled one, are unreliable
    assert code == 0, err
    assert "warning: the 2024Q3 estimate is unreliable" in stdout and "sample ratio" in stdout
    summary = json.loads((out / "measure" / "program.json").read_text(encoding="utf-8"))
    checks = {c["period"]: c for c in summary["checks"]}
    assert checks["2024Q3"]["sample_ratio_p"] < 0.001 and not checks["2024Q3"]["reliable"]
    assert checks["2024Q2"]["reliable"] and not summary["reliable"]
    assert summary["pooled"]["reliable"] is False and "2024Q3" in summary["pooled"]["check"]
    table = pd.read_csv(out / "measure" / "program.csv")
    row = table[(table["scope"] == "period") & (table["group"] == "2024Q3")].iloc[0]
    assert not row["reliable"] and "sample ratio" in row["check"]
    # and so does the next weekly report
    _score(program.world, out, WEEKS[-1], program.config, capsys)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "the 2024Q3 estimate is unreliable" in html and "unreliable: " in html


def test_the_plan_says_when_the_answer_will_come(
    program: Program, champion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "weekly"
    shutil.copytree(program.out, out)
    # Given matured cohorts: the plan from their adjusted variance, and nothing else written
    code, stdout, err = run_cli(
        ["measure", str(program.world), "--out", str(out), "--plan", "--config",
         str(program.config)],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in (out / "measure").iterdir()) == ["plan.json"]
    plan = json.loads((out / "measure" / "plan.json").read_text(encoding="utf-8"))
    assert plan["matured"] > 0 and plan["fraction"] == 0.5 and "smallest effect" in stdout
    # a larger target is within reach at a fraction no larger than needed; a tiny one is not
    for detect, reachable in ((0.2, True), (0.001, False)):
        config = _config(tmp_path, "{fraction: 0.5, salt: test}", {"detect": detect})
        code, stdout, err = run_cli(
            ["measure", str(program.world), "--out", str(out), "--plan", "--config",
             str(config)],
            capsys,
        )  # fmt: skip
        assert code == 0, err
        plan = json.loads((out / "measure" / "plan.json").read_text(encoding="utf-8"))
        assert (plan["fraction_needed"] is not None or plan["already_detectable"]) == reachable
    # and the report shows the latest plan
    _score(program.world, out, WEEKS[-1], program.config, capsys)
    assert "Plan: about" in (out / "report.html").read_text(encoding="utf-8")


def test_measure_without_a_history_or_a_holdout_is_one_line(
    small_world_dir: Path, champion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        ["measure", str(small_world_dir), "--out", str(tmp_path / "none")], capsys
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no weekly history" in err

    config = _config(tmp_path, "{fraction: 0}")
    _score(small_world_dir, tmp_path / "off", WEEKS[0], config, capsys)
    assert _assignments(tmp_path / "off").empty
    code, _, err = run_cli(
        ["measure", str(small_world_dir), "--out", str(tmp_path / "off")], capsys
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no account has been held" in err

    # the plan, before any cohort has matured: from the configuration and the data's base rate
    code, stdout, err = run_cli(
        ["measure", str(small_world_dir), "--out", str(tmp_path / "off"), "--plan"], capsys
    )
    assert code == 0, err
    plan = json.loads((tmp_path / "off" / "measure" / "plan.json").read_text(encoding="utf-8"))
    assert plan["matured"] == 0 and "base rate" in plan["variance_from"]
    quarters = plan["quarters"]
    assert plan["fraction"] == 0.1 and quarters[0]["detectable"] > quarters[3]["detectable"] > 0
    assert plan["candidates_per_quarter"] > 0 and "to detect 0.030" in stdout

    # bad input for the plan: one line, exit code 2, nothing written
    empty = tmp_path / "empty"
    for program, says in (
        ({}, "no weekly run to plan from"),
        ({"detect": 1.5}, "program.detect"),
        ({"confidence": 0}, "program.confidence"),
    ):
        config = _config(tmp_path, "{}", program)
        code, _, err = run_cli(
            ["measure", str(small_world_dir), "--plan", "--out", str(empty), "--config",
             str(config)],
            capsys,
        )  # fmt: skip
        assert code == 2 and len(err.strip().splitlines()) == 1 and says in err, err
        assert not empty.exists()

    bad = _config(tmp_path, "{fraction: 0.7}")
    code, _, err = run_cli(
        ["score", str(small_world_dir), "--as-of", WEEKS[0], "--out", str(tmp_path / "bad"),
         "--config", str(bad)],
        capsys,
    )  # fmt: skip
    assert code == 2 and "holdout.fraction" in err and not (tmp_path / "bad").exists()


def test_a_touch_of_an_unknown_account_or_from_the_future_is_one_line(
    small_world_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:

    for case, row in {
        "unknown": {"account_id": "NOPE", "touched_at": pd.Timestamp("2024-03-01")},
        "future": {"account_id": "A000001", "touched_at": pd.Timestamp("2031-01-01")},
    }.items():
        data = tmp_path / case
        shutil.copytree(small_world_dir, data)
        pd.DataFrame([row]).to_parquet(data / "touches.parquet", index=False)
        code, _, err = run_cli(["validate", str(data)], capsys)
        assert code == 2, err
        assert len(err.strip().splitlines()) == 1 and "touches.parquet" in err
        assert ("not in accounts" if case == "unknown" else "after the newest") in err
