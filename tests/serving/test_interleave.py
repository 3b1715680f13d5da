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
import pandas as pd
import pytest
import yaml

from expansion_scorer.cli import main
from expansion_scorer.data.synthetic import ProgramWorld
from expansion_scorer.program.simulation import run_program
from expansion_scorer.settings import load_feature_set
from tests.conftest import Program, made_once
from tests.helpers import run_cli

SHIPPED = Path(__file__).parents[2] / "serving" / "default.yaml"
MONTHLY = [f"2024-{m:02d}-0{1 + m % 5}" for m in range(1, 10)]
"""One weekly run a month: with a monthly holdout period, each one draws every candidate anew."""
UPLIFT = """\
target: uplift
experiment: uplift
uplift:
  learner: t
  folds: 1
  test_cohorts: 2
  min_per_arm: 30
  lightgbm: {n_estimators: 60, learning_rate: 0.05, num_leaves: 4, min_child_samples: 15}
"""


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
    root: Path, store: Path, config: Path, strength: float, n_accounts: int, seed: int
) -> None:
    """An interleaved program, monthly, in a program world of this `strength`."""
    out = root / "weekly"
    world = ProgramWorld(root / "world", date.fromisoformat(MONTHLY[0]), n_accounts=n_accounts,
                         seed=seed, months=24, strength=strength)  # fmt: skip

    def score(as_of: date) -> None:
        args = ["score", str(world.out), "--as-of", str(as_of), "--out", str(out), "--per-csm",
                "--config", str(config)]  # fmt: skip
        assert main(args) == 0

    weeks = [date.fromisoformat(w) for w in MONTHLY]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
        mp.chdir(root)
        run_program(world, weeks, score, out, load_feature_set(), compliance=0.9, seed=5)


def _assignments(out: Path) -> pd.DataFrame:
    con = duckdb.connect(str(out / "history.duckdb"), read_only=True)
    try:
        return con.execute("SELECT * FROM assignments").df()
    finally:
        con.close()


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
    """Nine monthly runs interleaving score and expected ARR in a world where a touch changes
    nothing: every ranking's true value is zero."""

    def run(root: Path) -> None:
        holdout = {"fraction": 0.5, "salt": "equal", "period": "month"}
        config = _serving(root, rank_by="interleave", compare=["score", "expected_arr"],
                          holdout=holdout)  # fmt: skip
        _interleaved(root, trained_store, config, strength=0.0, n_accounts=250, seed=11)

    root = made_once(tmp_path_factory, "interleave-equal", run)
    truth = pd.read_parquet(root / "world" / "program_truth.parquet")
    return Interleaved(root / "weekly", root / "world", root / "serving.yaml", truth,
                       trained_store)  # fmt: skip


@pytest.fixture(scope="module")
def uplift_store(
    program: Program, trained_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A store with the propensity champion and an uplift champion learnt from the shared
    program's randomized holdout."""

    def train(root: Path) -> None:
        shutil.copy(trained_store / "mlflow.db", root / "mlflow.db")
        (root / "uplift.yaml").write_text(UPLIFT, encoding="utf-8")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
            mp.chdir(root)
            args = ["train", str(program.world), "--config", str(root / "uplift.yaml"),
                    "--program", str(program.out)]  # fmt: skip
            assert main(args) == 0

    return made_once(tmp_path_factory, "interleave-uplift-store", train)


@pytest.fixture(scope="module")
def strong(uplift_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Interleaved:
    """Nine monthly runs interleaving uplift and score in a world of strong touches."""

    def run(root: Path) -> None:
        holdout = {"fraction": 0.5, "salt": "strong", "period": "month"}
        config = _serving(root, rank_by="interleave", compare=["score", "uplift"],
                          holdout=holdout)  # fmt: skip
        _interleaved(root, uplift_store, config, strength=STRONG, n_accounts=250, seed=11)

    root = made_once(tmp_path_factory, "interleave-strong", run)
    truth = pd.read_parquet(root / "world" / "program_truth.parquet")
    return Interleaved(root / "weekly", root / "world", root / "serving.yaml", truth,
                       uplift_store)  # fmt: skip


STRONG = 6.0
"""What a touch changes, scaled: strong enough for nine months of a small book to show which
ranking drafts the accounts it helps."""


def test_in_a_world_where_the_rankings_are_equal_measure_declares_no_difference(
    equal: Interleaved, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given nine interleaved months where a touch changes nothing
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


def test_measure_picks_the_ranking_whose_drafted_accounts_a_call_truly_helps_more(
    strong: Interleaved,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given nine interleaved months of strong touches, and the world's truth of what a touch
    # changes for every account each ranking drafted
    true = _true_values(strong)
    better, worse = true.idxmax(), true.idxmin()
    assert set(true.index) == {"score", "uplift"}

    # When the program is measured
    stdout, summary = _measure(strong, capsys, monkeypatch)

    # Then the measure shows the truly better ranking better, on its always-valid interval
    compare = summary["compare"]
    assert isinstance(compare, dict)
    assert compare["better"] == better, (compare["says"], true.to_dict())
    assert compare["says"].startswith(f"{better} is shown better than {worse}")
    low, high = compare["always_valid_low"], compare["always_valid_high"]
    assert (low > 0) if better == "score" else (high < 0)  # score minus uplift
    assert f"rankings: {better} is shown better" in stdout

    # And the last week's report shows what a call changes for the accounts uplift drafted,
    # and not for those the score drafted
    assigned = _assignments(strong.out)
    last = assigned[(pd.to_datetime(assigned["assigned_on"]).dt.date == date(2024, 9, 5))
                    & (assigned["arm"] == "listed")]  # fmt: skip
    html = (strong.out / "report.html").read_text(encoding="utf-8")
    blocks = {chunk.split('"', 1)[0]: chunk
              for chunk in html.split('<tr class="account"')[1:]
              for chunk in [chunk.split('data-account="', 1)[1]]}  # fmt: skip
    said = {a: "What a call changes" in blocks[a] for a in last["account_id"]}
    by = dict(zip(last["account_id"], last["drafted_by"], strict=True))
    assert not [a for a, shown in said.items() if shown and by[a] != "uplift"]
    uplift_drafted = [said[a] for a in said if by[a] == "uplift"]
    assert uplift_drafted and sum(uplift_drafted) > len(uplift_drafted) / 2

    # And the plan says how long telling them apart takes on this book
    stdout, plan = _measure(strong, capsys, monkeypatch, "--plan")
    told = plan["compare"]
    assert isinstance(told, dict)
    assert told["always_valid_assignments"] > told["fixed_horizon_assignments"] > 0
    assert told["weeks"] is not None and "randomized assignments" in stdout

    # And the next week, with rank_by auto, the better ranking orders the lists, a share of
    # CSMs still interleaved, and the report says so
    out = tmp_path / "weekly"
    shutil.copytree(strong.out, out)
    auto = _serving(tmp_path, rank_by="auto", compare=["score", "uplift"], interleave_share=0.5,
                    holdout={"fraction": 0.5, "salt": "strong", "period": "month"})  # fmt: skip
    code, _, err = run_cli(
        ["score", str(strong.world), "--as-of", "2024-10-07", "--out", str(out), "--config",
         str(auto)],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    lists = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["lists"]
    assert lists["ranked_by"] == better and lists["rank_by"] == "auto"
    assert 0 < lists["interleaved_csms"] < lists["csms"]
    html = (out / "report.html").read_text(encoding="utf-8")
    assert f"ranked by {better} (rank_by: auto): expansion measure" in html
    assert "Which ranking finds the accounts a call changes more?" in html


def test_held_out_accounts_stay_off_every_csm_output_under_interleaving(
    equal: Interleaved,
) -> None:
    # Given the last interleaved week's outputs and its recorded arms
    out = equal.out
    scores = pd.read_csv(out / "scores.csv")
    held = set(scores.loc[scores["arm"] == "holdout", "account_id"])
    assigned = _assignments(out)
    last = assigned[pd.to_datetime(assigned["assigned_on"]).dt.date == date(2024, 9, 5)]
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
