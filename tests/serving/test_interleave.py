"""Rankings compared on the book itself: interleaved weekly runs on the program world, measured.

The real loop (`program.simulation.run_program`): each week the scorer drafts every CSM's
capacity list from two rankings in turns and draws the holdout among the drafted accounts, CSMs
touch what they were shown, the world answers. Two worlds: one where touches change nothing, so
the two rankings' true values are equal (both zero) and `expansion measure` must not declare a
difference; one with strong touches and an uplift model learnt from the shared program, where
the measure must pick the ranking whose drafted accounts truly gain more from a call, as the
world's truth (`true_effect` per assignment) says.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

from expansion_scorer.data.synthetic import ProgramWorld
from expansion_scorer.program.interleave import coin, team_draft
from tests.conftest import made_once
from tests.helpers import history_table, run_cli, score_program

SHIPPED = Path(__file__).parents[2] / "serving" / "default.yaml"
MONTHLY = [f"2024-{m:02d}-0{1 + m % 5}" for m in range(1, 6)]
"""One weekly run a month: with a monthly holdout period, each one draws every candidate anew."""


@dataclass(frozen=True)
class Interleaved:
    out: Path
    world: Path
    config: Path
    truth: pd.DataFrame
    store: Path


def _serving(where: Path, **edit: object) -> Path:
    raw = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    raw.update(edit)
    path = where / "serving.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def _interleaved(
    tmp_path_factory: pytest.TempPathFactory, store: Path, name: str, strength: float
) -> Interleaved:
    """Five monthly runs interleaving score and expected ARR, in a program world of this
    `strength` (touches change nothing at 0), made once a run."""

    def run(root: Path) -> None:
        holdout = {"fraction": 0.5, "salt": name, "period": "month"}
        config = _serving(root, rank_by="interleave", compare=["score", "expected_arr"],
                          holdout=holdout)  # fmt: skip
        world = ProgramWorld(root / "world", date.fromisoformat(MONTHLY[0]), n_accounts=250,
                             seed=11, months=24, strength=strength)  # fmt: skip
        score_program(root, world, MONTHLY, config, store, compliance=0.9, seed=5)

    root = made_once(tmp_path_factory, f"interleave-{name}", run)
    truth = pd.read_parquet(root / "world" / "program_truth.parquet")
    return Interleaved(root / "weekly", root / "world", root / "serving.yaml", truth, store)


def _assignments(out: Path) -> pd.DataFrame:
    return history_table(out, "SELECT * FROM assignments")


def _measure(run: Interleaved, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
             *extra: str) -> tuple[str, dict[str, object]]:  # fmt: skip
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{run.store / 'mlflow.db'}")
    code, stdout, err = run_cli(
        ["measure", str(run.world), "--out", str(run.out), "--config", str(run.config), *extra],
        capsys,
    )
    assert code == 0, err
    name = "plan.json" if "--plan" in extra else "program.json"
    return stdout, json.loads((run.out / "measure" / name).read_text(encoding="utf-8"))


def _true_values(run: Interleaved) -> pd.Series:
    """Per ranking, the mean true expected effect of a touch on the accounts it drafted."""
    drafted = _assignments(run.out)[["account_id", "assigned_on", "drafted_by"]]
    drafted["assigned_on"] = pd.to_datetime(drafted["assigned_on"]).dt.date
    truth = run.truth.assign(assigned_on=pd.to_datetime(run.truth["assigned_on"]).dt.date)
    joined = truth.merge(drafted, on=["account_id", "assigned_on"])
    return joined.dropna(subset=["drafted_by"]).groupby("drafted_by")["true_effect"].mean()


@pytest.fixture(scope="module")
def equal(trained_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Interleaved:
    """A world where a touch changes nothing: every ranking's true value is zero."""
    return _interleaved(tmp_path_factory, trained_store, "equal", strength=0.0)


@pytest.fixture(scope="module")
def strong(trained_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Interleaved:
    """A world of strong touches."""
    return _interleaved(tmp_path_factory, trained_store, "strong", strength=6.0)


def test_in_a_world_where_the_rankings_are_equal_measure_declares_no_difference(
    equal: Interleaved, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given five interleaved months where a touch changes nothing
    assigned = _assignments(equal.out)
    drafted = assigned["drafted_by"].value_counts()
    assert set(drafted.index) == {"score", "expected_arr"}
    assert abs(drafted["score"] - drafted["expected_arr"]) <= 0.1 * drafted.sum()
    assert equal.truth["true_effect"].abs().max() < 1e-9

    # When the program is measured
    stdout, summary = _measure(equal, capsys, monkeypatch)

    # Then each ranking's drafted accounts are measured, and no difference is declared
    compare = summary["compare"]
    assert isinstance(compare, dict)
    assert compare["better"] is None and compare["says"].startswith("cannot tell yet")
    assert compare["always_valid_low"] < 0 < compare["always_valid_high"]
    for name in ("score", "expected_arr"):
        mine = compare["per_ranking"][name]
        assert mine["n_listed"] > 100 and mine["n_holdout"] > 100
        assert mine["always_valid"]["low"] < 0 < mine["always_valid"]["high"]
    assert "rankings: cannot tell yet" in stdout
    table = pd.read_csv(equal.out / "measure" / "program.csv")
    rows = table[table["scope"] == "ranking"]
    assert list(rows["group"]) == ["score", "expected_arr", "score - expected_arr"]
    low, high = rows.iloc[2][["effect_low", "effect_high"]]
    assert low < rows.iloc[2]["effect"] < high


def _redrafted(run: Interleaved, where: Path) -> Interleaved:
    """A copy of the run's output root whose recorded lists are drafted again, each from two
    rankings of known and far apart true value: the world's true effect of a touch (`oracle`)
    and its reverse (`reverse`), in turns (`team_draft`, the week's coin). Both are fixed
    before any outcome (the truth at the draw), and the holdout the weekly run drew is kept, so
    this is an interleaving experiment like the weekly run's, between rankings whose true
    values differ by far more than the weekly run's own rankings do."""
    out = where / "weekly"
    shutil.copytree(run.out, out)
    truth = run.truth.assign(assigned_on=pd.to_datetime(run.truth["assigned_on"]).dt.date)
    effect = dict(zip(zip(truth["account_id"], truth["assigned_on"], strict=True),
                      truth["true_effect"], strict=True))  # fmt: skip
    assigned = _assignments(out)
    assigned["assigned_on"] = pd.to_datetime(assigned["assigned_on"]).dt.date
    drafted = assigned[assigned["drafted_by"].notna()]
    rows = []
    for (day, csm), part in drafted.groupby(["assigned_on", "csm_owner"], sort=True):
        true = np.array([effect.get((a, day), 0.0) for a in part["account_id"]])
        best = np.argsort(-true, kind="stable")
        first = "oracle" if coin("redraft", day) < 0.5 else "reverse"
        draft = team_draft(pd.Series([csm] * len(part)), {"oracle": best, "reverse": best[::-1]},
                           "oracle", len(part), {csm}, first)  # fmt: skip
        rows.append(part[["period", "account_id"]].assign(drafted_by=draft.drafted_by))
    con = duckdb.connect(str(out / "history.duckdb"))
    try:
        con.register("redrafted", pd.concat(rows, ignore_index=True))
        con.execute(
            "UPDATE assignments SET drafted_by = r.drafted_by FROM redrafted r"
            " WHERE assignments.period = r.period AND assignments.account_id = r.account_id"
        )
    finally:
        con.close()
    config = _serving(where, holdout={"fraction": 0.5, "salt": "strong", "period": "month"})
    return Interleaved(out, run.world, config, run.truth, run.store)


def test_measure_picks_the_ranking_whose_drafted_accounts_a_call_truly_helps_more(
    strong: Interleaved,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given five interleaved months of strong touches, the weekly run's own two rankings are
    # too close in true value for so small a book to tell apart
    true = _true_values(strong)
    assert set(true.index) == {"score", "expected_arr"}
    assert abs(true["score"] - true["expected_arr"]) < 0.1

    # When the program is measured, the measure never names the truly worse one better
    stdout, summary = _measure(strong, capsys, monkeypatch)
    compare = summary["compare"]
    assert isinstance(compare, dict)
    assert compare["better"] in (None, true.idxmax()), (compare["says"], true.to_dict())
    assert "rankings: " in stdout

    # And with the same lists drafted from two rankings far apart in true value (the world's
    # true effect of a touch against its reverse), the measure shows the truly better better
    redrafted = _redrafted(strong, tmp_path)
    true = _true_values(redrafted)
    assert true["oracle"] - true["reverse"] > 0.3
    stdout, summary = _measure(redrafted, capsys, monkeypatch)
    compare = summary["compare"]
    assert isinstance(compare, dict)
    assert compare["better"] == "oracle", (compare["says"], true.to_dict())
    assert compare["says"].startswith("oracle is shown better than reverse")
    first = compare["rankings"][0]
    low, high = compare["always_valid_low"], compare["always_valid_high"]
    assert (low > 0) if first == "oracle" else (high < 0)
    assert compare["difference_low"] <= compare["difference"] <= compare["difference_high"]
    assert "rankings: oracle is shown better" in stdout

    # And the plan says how long telling the weekly run's rankings apart takes on this book
    stdout, plan = _measure(strong, capsys, monkeypatch, "--plan")
    told = plan["compare"]
    assert isinstance(told, dict)
    assert told["always_valid_assignments"] > told["fixed_horizon_assignments"] > 0
    assert told["weeks"] is not None and "randomized assignments" in stdout

    # And the next week, with rank_by auto, the lists are interleaved until one is shown
    # better, and the report says why
    out = tmp_path / "auto"
    shutil.copytree(strong.out, out)
    _measure(Interleaved(out, strong.world, strong.config, strong.truth, strong.store), capsys,
             monkeypatch)  # fmt: skip
    auto = _serving(tmp_path, rank_by="auto", compare=["score", "expected_arr"],
                    holdout={"fraction": 0.5, "salt": "strong", "period": "month"})  # fmt: skip
    code, _, err = run_cli(
        ["score", str(strong.world), "--as-of", "2024-07-01", "--out", str(out), "--config",
         str(auto)],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    lists = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["lists"]
    measured = json.loads((out / "measure" / "program.json").read_text(encoding="utf-8"))
    better = measured["compare"]["better"]
    assert lists["rank_by"] == "auto" and lists["ranked_by"] == (better or "score")
    html = (out / "report.html").read_text(encoding="utf-8")
    if better is None:
        assert lists["interleaved_csms"] == lists["csms"]
        assert "(rank_by: auto): expansion measure cannot tell them apart yet" in html
    assert "Which ranking finds the accounts a call changes more?" in html


def test_held_out_accounts_stay_off_every_csm_output_under_interleaving(
    equal: Interleaved,
) -> None:
    # Given the last interleaved week's outputs and its recorded arms
    out = equal.out
    scores = pd.read_csv(out / "scores.csv")
    held = set(scores.loc[scores["arm"] == "holdout", "account_id"])
    assigned = _assignments(out)
    last = assigned[pd.to_datetime(assigned["assigned_on"]).dt.date == date(2024, 5, 1)]
    assert held and held <= set(last.loc[last["arm"] == "holdout", "account_id"])
    # held-out accounts were drafted like any other: by either ranking
    assert set(last.loc[last["arm"] == "holdout", "drafted_by"].dropna()) == {
        "score", "expected_arr"}  # fmt: skip

    # Then none is on a list, a trigger, a CSM's file or the report
    assert not held & set(pd.read_csv(out / "triggers.csv")["account_id"])
    files = list((out / "per_csm").glob("*.csv"))
    assert files
    for path in files:
        assert not held & set(pd.read_csv(path)["account_id"])
    html = (out / "report.html").read_text(encoding="utf-8")
    assert not [a for a in held if a in html]
    # and the report says how the week's lists were built, the manifest records the coin
    assert "drafted in turns from the score and the expected_arr ranking" in html
    lists = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["lists"]
    assert lists["first"] in {"score", "expected_arr"} and 0 <= lists["coin"] < 1
    assert lists["interleaved_csms"] == lists["csms"]
    assert abs(lists["drafted"]["score"] - lists["drafted"]["expected_arr"]) <= lists["csms"]


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        ({"rank_by": "luck"}, "rank_by: Input should be"),
        ({"rank_by": "interleave"}, "rank_by: interleave compares two rankings"),
        ({"rank_by": "interleave", "compare": ["uplift"]}, "compares two rankings"),
        ({"rank_by": "auto", "compare": ["uplift", "uplift"]}, "compare names uplift twice"),
        ({"rank_by": "interleave", "compare": ["uplift", "luck"]}, "compare.1: Input should be"),
        ({"rank_by": "score", "compare": ["uplift", "score"]}, "compare is read with rank_by"),
        ({"rank_by": "interleave", "compare": ["uplift", "score"], "holdout": {"fraction": 0}},
         "set holdout.fraction above 0"),
        ({"rank_by": "interleave", "compare": ["uplift", "score"],
          "uplift_model": "models:/nope@champion"},
         "rank_by: interleave compares uplift, but no uplift model loads from models:/nope"),
    ],
)  # fmt: skip
def test_a_bad_comparison_is_one_line_exit_2_and_nothing_written(
    edit: dict[str, object],
    says: str,
    world_dir: Path,
    champion: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = _serving(tmp_path, **edit)
    for command in (["score", "--as-of", MONTHLY[0]], ["measure"]):
        out = tmp_path / "out"
        code, _, err = run_cli(
            [command[0], str(world_dir), *command[1:], "--out", str(out), "--config", str(config)],
            capsys,
        )
        if "uplift_model" in edit and command[0] == "measure":
            continue  # measure reads no model
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert says in err and "Traceback" not in err, err
        assert not out.exists()
