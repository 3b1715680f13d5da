"""`expansion train --program OUT` with `target: uplift`: learnt from the weekly holdout.

A program of four weekly runs over two quarters with half the candidates held out, in a world
that answers the touches week by week (the shared `program` fixture), then the uplift model
trained, backtested against the propensity ranking, registered under its own name, and refused
on too little randomization.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from expansion_scorer.jobs.uplift import uplift_frame
from expansion_scorer.model.uplift import UpliftModel
from expansion_scorer.settings import load_feature_set
from expansion_scorer.tracking import configure
from tests.conftest import PROGRAM_WEEKS as WEEKS
from tests.conftest import Program
from tests.helpers import run_cli

UPLIFT = """\
target: uplift
uplift:
  folds: 1
  test_cohorts: 2
  min_per_arm: 30
  lightgbm: {n_estimators: 60, learning_rate: 0.05, num_leaves: 4, min_child_samples: 15}
"""


@pytest.fixture(scope="module")
def responded(program: Program) -> tuple[Path, Path]:
    """The world after a program of four weekly runs (holdout 0.5), and the output root."""
    return program.world, program.out


@pytest.fixture(scope="module")
def frame(responded: tuple[Path, Path], trained_store: Path) -> pd.DataFrame:
    """The uplift training frame, its features read as the champion that scored the weeks
    reads them (its learned affinity)."""
    data, out = responded
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{trained_store / 'mlflow.db'}")
        return uplift_frame(data, out, load_feature_set())


def _config(where: Path, text: str = UPLIFT) -> Path:
    path = where / "uplift.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_uplift_is_backtested_registered_under_its_own_name_and_ranks_the_list(
    responded: tuple[Path, Path],
    frame: pd.DataFrame,
    trained_store: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, out = responded
    # Given a copy of the store that holds the propensity champion (uplift runs in an
    # experiment of their own, so their artifacts stay beside the copy)
    (tmp_path / "store").mkdir()
    shutil.copy(trained_store / "mlflow.db", tmp_path / "store" / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    config = _config(tmp_path, UPLIFT + "experiment: uplift\n")

    # When the uplift model is trained on the program's matured cohorts
    args = ["train", str(data), "--config", str(config), "--program", str(out)]
    code, stdout, err = run_cli(args, capsys)

    # Then the console compares it with the propensity ranking and the oracle on the test fold
    assert code == 0, err
    assert "fold 1 2024-07-01..2024-08-05" in stdout and "pooled test: Qini" in stdout
    assert "oracle" in stdout and "registered models:/expansion-uplift/1 as @champion" in stdout

    # And the run holds each ranking's Qini and incremental expansions at capacity
    client = configure()
    version = client.get_model_version_by_alias("expansion-uplift", "champion")
    run = client.get_run(version.run_id)
    for key in (
        "test_uplift_qini", "test_propensity_qini", "test_oracle_qini",
        "test_uplift_incremental_at_capacity", "test_propensity_incremental_at_capacity",
        "margin_over_propensity_qini", "test_all_listed", "test_all_holdout",
    ):  # fmt: skip
        assert key in run.data.metrics, key
    # the simulator's true effect, as a ranking, finds more than a ranking by noise would
    assert run.data.metrics["test_oracle_qini"] > 0.01
    # and each ranking's doubly robust value at capacity with its interval, the learner's name
    m = run.data.metrics
    for ranking in ("uplift", "propensity", "propensity_x_effect", "random",
                    "uplift_minus_propensity"):  # fmt: skip
        assert m[f"test_value_{ranking}_low"] <= m[f"test_value_{ranking}"], ranking
        assert m[f"test_value_{ranking}"] <= m[f"test_value_{ranking}_high"], ranking
    assert "value at capacity on the test cohorts" in stdout and "uplift - propensity" in stdout
    assert run.data.params["learner"] in {"t", "x", "dr", "average"}
    assert f"uplift ({run.data.params['learner']} learner)" in stdout
    assert run.data.params["target"] == "uplift" and run.inputs.dataset_inputs
    folds = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    assert [f.data.params["train_cohorts"] for f in folds] == ["2024-04-01..2024-04-01"]
    # the uplift gate has nothing to compare the champion with yet
    promote = ["promote", str(data), "--config", str(config), "--program", str(out)]
    code, _, err = run_cli(promote, capsys)
    assert code == 2 and "expansion-uplift has no @challenger" in err
    # and a challenger trained the same way cannot be shown better: the champion stays
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    code, stdout, err = run_cli(promote, capsys)
    assert code == 0, err
    assert "the evidence cannot tell them apart, so the champion stays" in stdout
    assert "difference +0.0 [+0.0, +0.0]" in stdout
    assert str(client.get_model_version_by_alias("expansion-uplift", "champion").version) == "1"
    # the propensity model is left as it was
    assert str(client.get_model_version_by_alias("expansion-propensity", "champion").version) == "1"
    assert len(client.search_model_versions("name = 'expansion-propensity'")) == 1

    # And the pyfunc serves the uplift as the difference of the two arms' probabilities
    model = mlflow.pyfunc.load_model("models:/expansion-uplift@champion")
    wrapper = model.unwrap_python_model()
    assert isinstance(wrapper, UpliftModel)
    served = model.predict(frame[wrapper.feature_names].head(30))
    if run.data.params["learner"] == "t":  # the T-learner's uplift is its arms' difference
        np.testing.assert_allclose(served["uplift"], served["p_listed"] - served["p_holdout"])
    else:  # another learner ranks; the chances stay the T-learner's arms
        np.testing.assert_allclose(served["uplift"], wrapper.uplift(frame.head(30)))
        listed, held = wrapper.arms(frame.head(30))
        np.testing.assert_allclose(served["p_listed"] - served["p_holdout"], listed - held)
    assert served["uplift"].std() > 0, "a model that cannot tell accounts apart"

    # When the weekly run ranks by uplift
    raw = yaml.safe_load((Path(__file__).parents[2] / "serving" / "default.yaml").read_text())
    serving = tmp_path / "serving.yaml"
    serving.write_text(yaml.safe_dump({**raw, "rank_by": "uplift"}), encoding="utf-8")
    week = ["score", str(data), "--as-of", "2024-09-02", "--config", str(serving)]
    code, stdout, err = run_cli([*week, "--out", str(tmp_path / "ranked")], capsys)

    # Then the list holds the uplift and the incremental ARR it is ordered by
    assert code == 0, err
    scores = pd.read_parquet(tmp_path / "ranked" / "scores.parquet")
    size = scores["expected_expansion_arr"] / scores["score"]
    np.testing.assert_allclose(scores["expected_incremental_arr"], scores["uplift"] * size)
    assert scores["expected_incremental_arr"].is_monotonic_decreasing
    assert scores["rank"].tolist() == list(range(1, len(scores) + 1))
    # and reasons that say, in the account's numbers, what makes a touch matter, in points of
    # uplift that add up with the rest to the uplift above its base
    said = scores["uplift_reason_1"]
    assert said.str.len().gt(0).mean() > 0.3
    assert said[said != ""].str.contains(r"\([+]\d+ pts?\)$").all()
    manifest = (tmp_path / "ranked" / "manifest.json").read_text(encoding="utf-8")
    assert "expansion-uplift v1" in manifest
    people = pd.read_csv(tmp_path / "ranked" / "scores.csv")
    assert {"uplift_pts", "expected_incremental_arr", "uplift_reason_against"} <= set(people)

    # And interleaved with the score ranking, each CSM's list is drafted from both in turns,
    # and the report shows what a call changes (the uplift reasons) where uplift placed the
    # account, and says how the lists were built
    serving.write_text(
        yaml.safe_dump({**raw, "rank_by": "interleave", "compare": ["uplift", "score"]}),
        encoding="utf-8",
    )
    code, _, err = run_cli([*week, "--out", str(tmp_path / "interleaved")], capsys)
    assert code == 0, err
    manifest = (tmp_path / "interleaved" / "manifest.json").read_text(encoding="utf-8")
    lists = json.loads(manifest)["lists"]
    assert lists["drafted"]["uplift"] > 0 and lists["drafted"]["score"] > 0
    html = (tmp_path / "interleaved" / "report.html").read_text(encoding="utf-8")
    assert "drafted in turns from the uplift and the score ranking" in html
    assert "What a call changes" in html

    # And without an uplift model under that name, the run stops in one line, writing nothing
    serving.write_text(
        yaml.safe_dump({**raw, "rank_by": "uplift", "uplift_model": "models:/nope@champion"}),
        encoding="utf-8",
    )
    code, _, err = run_cli([*week, "--out", str(tmp_path / "none")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "rank_by: uplift, but no uplift model loads from models:/nope@champion" in err
    assert not (tmp_path / "none").exists()


def test_each_assignment_is_learnt_from_its_features_as_of_the_day_it_was_drawn(
    responded: tuple[Path, Path], frame: pd.DataFrame
) -> None:
    _, out = responded

    # Then only listed and held-out assignments whose horizon closed, one row each
    assert set(frame["arm"]) == {"listed", "holdout"}
    assert not frame.duplicated(["account_id", "assigned_on"]).any()
    assert sorted(map(str, frame["assigned_on"].unique())) == WEEKS
    # and the first cohort's features are those the weekly run scored it with: the touches
    # and the expansions they caused afterwards change nothing dated before the draw
    con = duckdb.connect(str(out / "history.duckdb"), read_only=True)
    try:
        scored = con.execute(
            "SELECT account_id, feature, value FROM features WHERE as_of = DATE '2024-04-01'"
        ).df()
    finally:
        con.close()
    first = frame[frame["assigned_on"].astype(str) == WEEKS[0]]
    seen = scored.pivot(index="account_id", columns="feature", values="value")
    numeric = [c for c in seen.columns if c in first.columns]
    assert len(numeric) > 20
    mine = first.set_index("account_id")[numeric].astype("float64")
    pd.testing.assert_frame_equal(
        mine.sort_index(), seen.loc[mine.index, numeric].sort_index(), check_names=False
    )


def test_too_little_randomization_stops_in_one_line_and_registers_nothing(
    responded: tuple[Path, Path],
    mlflow_store: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, out = responded

    def train(program: Path | None, text: str = UPLIFT) -> str:
        args = ["train", str(data), "--config", str(_config(tmp_path, text))]
        code, _, err = run_cli([*args, *(["--program", str(program)] if program else [])], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        return err

    # no output root, or one without a history
    assert "pass --program OUT" in train(None)
    assert "no weekly history" in train(tmp_path / "nowhere")
    # one matured cohort: the later assignments removed from a copy of the history
    early = tmp_path / "early"
    shutil.copytree(out, early)
    con = duckdb.connect(str(early / "history.duckdb"))
    con.execute("DELETE FROM assignments WHERE assigned_on > DATE '2024-04-01'")
    con.close()
    err = train(early)
    assert "found 1 matured randomized cohorts (2024-04-01..2024-04-01)" in err
    assert "needs at least 3" in err
    # too few accounts per arm for what the config asks
    err = train(out, UPLIFT.replace("min_per_arm: 30", "min_per_arm: 500"))
    assert "listed and" in err and "held-out assignments" in err and "at least 500" in err
    # nothing was registered
    assert not configure().search_registered_models()


def test_the_oracle_is_the_true_effect_of_a_touch_touched_or_not(
    program: Program, frame: pd.DataFrame
) -> None:
    # Given the program's truth, with the untouched chance kept from the flipped replay
    truth = program.truth
    assert {"p_touched", "p_untouched", "true_effect"} <= set(truth.columns)
    known = truth.dropna(subset=["p_untouched"])
    assert len(known) > 0.95 * len(truth)
    np.testing.assert_allclose(known["true_effect"], known["p_touched"] - known["p_untouched"])
    # Then a listed account's effect is no longer 0 because its CSM touched it: listed and
    # held-out accounts were drawn alike, so their true effects look alike
    listed = known[known["arm"] == "listed"]["true_effect"]
    held = known[known["arm"] == "holdout"]["true_effect"]
    assert (listed.abs() > 1e-6).mean() > 0.9 and (held.abs() > 1e-6).mean() > 0.9
    assert abs(listed.mean() - held.mean()) < 3 * np.hypot(listed.sem(), held.sem())
    # and the realised effect of the program follows the true one (70-90% of it is worked)
    assert truth["effect"].mean() > 0 and truth["true_effect"].mean() > 0
    # and the uplift frame ranks by it
    assert np.isfinite(frame["oracle"]).all() and frame["oracle"].std() > 0
