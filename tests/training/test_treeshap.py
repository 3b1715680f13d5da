"""Every TreeSHAP method the scorer may pick equals shap.TreeExplainer, the reference."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import shap

from expansion_scorer.config import TrainingConfig, load_training_config
from expansion_scorer.data.loading import open_world
from expansion_scorer.jobs.train import train_job
from expansion_scorer.model import treeshap
from expansion_scorer.model.loading import load_model
from expansion_scorer.model.propensity import PropensityModel, contributions
from expansion_scorer.serving.explain import family_points
from expansion_scorer.settings import load_feature_set
from expansion_scorer.training.dataset import training_frame
from tests.helpers import new_store, run_cli

TOLERANCE = 1e-5  # log-odds: far below what moves a family's rounded point
LARGE = Path(__file__).parents[2] / "training" / "large.yaml"


def reference(booster: lgb.Booster, matrix: pd.DataFrame) -> tuple[np.ndarray, float]:
    explainer = shap.TreeExplainer(booster)
    values = np.asarray(explainer.shap_values(matrix))
    return values, float(np.ravel(explainer.expected_value)[-1])


def categorical_splits(booster: lgb.Booster) -> int:
    def count(node: dict) -> int:
        if "leaf_value" in node:
            return 0
        here = int(node["decision_type"] == "==")
        return here + count(node["left_child"]) + count(node["right_child"])

    return sum(count(t["tree_structure"]) for t in booster.dump_model()["tree_info"])


@pytest.fixture(scope="module")
def snapshots(small_world_dir: Path) -> pd.DataFrame:
    """Every training snapshot of the shared world: real feature values, missing ones included."""
    return training_frame(
        open_world(small_world_dir), load_feature_set(), load_training_config(), None
    )


@pytest.fixture(scope="module")
def large_store(
    small_world_dir: Path, empty_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A store holding a champion trained with training/large.yaml."""
    root = tmp_path_factory.mktemp("large")
    cfg = load_training_config(LARGE)
    # as conftest's; its booster alone, as TreeSHAP is under test here (on this small world the
    # large config's learner search keeps the gam, which has no trees)
    raw = cfg.model_dump()
    cfg = TrainingConfig.model_validate(
        {**raw, "test_months": 4, "learning": {**raw["learning"], "candidates": ["single"]}}
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", new_store(empty_store, root))
        mp.chdir(root)
        train_job(small_world_dir, cfg, load_feature_set())
    yield root


@pytest.fixture(params=["default", "large"])
def cli_model(
    request: pytest.FixtureRequest, trained_store: Path, monkeypatch: pytest.MonkeyPatch
) -> PropensityModel:
    """The champion the CLI trains with the default config, then with training/large.yaml."""
    store = trained_store if request.param == "default" else request.getfixturevalue("large_store")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    model, _ = load_model("models:/expansion-propensity@champion")
    return model


def test_every_method_equals_the_reference_on_the_models_the_cli_trains(
    cli_model: PropensityModel, snapshots: pd.DataFrame
) -> None:
    # given a model the CLI trained, with categorical splits, and snapshots with missing values
    booster, matrix = cli_model.booster, cli_model.matrix(snapshots)
    assert categorical_splits(booster) > 0
    assert matrix.isna().any().sum() >= 5
    expected_values, expected_base = reference(booster, matrix)
    for method in treeshap.METHODS:
        # when the method explains every snapshot
        values, base = treeshap.shap_values(booster, matrix, method)
        # then each value is the reference's, and so is the base
        assert np.abs(values - expected_values).max() <= TOLERANCE, method
        assert base == pytest.approx(expected_base, abs=TOLERANCE), method


def test_the_fastest_exact_method_explains_the_models_the_cli_trains(
    cli_model: PropensityModel,
) -> None:
    assert treeshap.method_for(cli_model.booster) == treeshap.LEAF_PATTERNS


def test_family_points_are_the_same_whichever_method_with_the_season_offset(
    cli_model: PropensityModel, snapshots: pd.DataFrame
) -> None:
    # given a model whose booster starts from the season offset
    assert cli_model.offset is not None
    frame = snapshots.head(400)
    scores = cli_model.predict_proba(frame)
    features = load_feature_set()
    points = {}
    for method in treeshap.METHODS:
        # when each method explains the accounts
        contrib = contributions(cli_model, frame, method)
        # then values and base add up to the score's log-odds, offset included
        # (the model's own log-odds: the booster's margin plus the offset, or its blend with the
        # gam; not the log-odds of a rounded probability)
        logit = cli_model.logit(frame, cli_model.shift(frame))
        total = contrib.values.sum(axis=1).to_numpy() + contrib.base_logit
        assert np.abs(total - logit).max() < 1e-9, method
        base = 1 / (1 + np.exp(-contrib.base_logit))
        points[method] = family_points(contrib, features, scores, base)
    # and the family points a CSM reads are identical
    fast, ref = points[treeshap.LEAF_PATTERNS], points[treeshap.PRED_CONTRIB]
    # to a billionth of a point, or of the point total where points run into tens
    np.testing.assert_allclose(fast.to_numpy(), ref.to_numpy(), rtol=1e-9, atol=1e-9)
    pd.testing.assert_frame_equal(fast.round(2), ref.round(2))


def small_world(rows: int = 4000, seed: int = 3) -> tuple[pd.DataFrame, np.ndarray]:
    """Numbers with missing values and zeros, a categorical with missing values, a label."""
    rng = np.random.default_rng(seed)
    colour = pd.Categorical(rng.choice(["red", "green", "blue", "grey", "teal"], rows))
    x = pd.DataFrame(
        {
            "usage": np.where(rng.random(rows) < 0.2, np.nan, rng.normal(size=rows)),
            "seats": np.where(rng.random(rows) < 0.3, 0.0, rng.integers(1, 50, rows)),
            "tenure": rng.exponential(12, rows),
            "colour": colour,
        }
    )
    usage = np.nan_to_num(x["usage"].to_numpy(), nan=-1.0)
    logit = usage + 0.05 * x["seats"] - 0.1 * x["tenure"] + 1.5 * (colour == "teal")
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return x, y


@pytest.mark.parametrize(
    "params",
    [
        {},  # missing values go their learned way (missing_type NaN)
        {"zero_as_missing": True},  # zeros are missing (missing_type Zero)
        {"use_missing": False},  # missing is zero (missing_type None)
        {"max_cat_to_onehot": 8},  # one-vs-rest categorical splits
    ],
)
def test_leaf_patterns_follow_lightgbm_splits_and_missing_value_rules(params: dict) -> None:
    # given a booster trained on a small world with the given missing-value handling
    x, y = small_world()
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 15, "min_child_samples": 20, "verbose": -1,
         "seed": 1, **params},
        lgb.Dataset(x, y, categorical_feature=["colour"]),
        num_boost_round=40,
    )  # fmt: skip
    # and accounts with missing values where training had none, and categories never seen
    score, _ = small_world(rows=2000, seed=4)
    score.loc[::7, "tenure"] = np.nan
    score["colour"] = score["colour"].cat.add_categories("mauve")
    score.loc[::11, "colour"] = "mauve"
    score.loc[::13, "colour"] = np.nan
    score["colour"] = pd.Categorical(score["colour"], categories=["blue", "green", "grey"])
    assert categorical_splits(booster) > 0
    # when leaf patterns explain them
    assert treeshap.method_for(booster) == treeshap.LEAF_PATTERNS
    values, base = treeshap.shap_values(booster, score)
    # then they are the reference's
    expected_values, expected_base = reference(booster, score)
    assert np.abs(values - expected_values).max() <= TOLERANCE
    assert base == pytest.approx(expected_base, abs=TOLERANCE)


def test_a_booster_leaf_patterns_cannot_evaluate_gets_pred_contrib() -> None:
    # given a booster with linear trees, which leaf patterns do not evaluate
    x, y = small_world()
    booster = lgb.train(
        {"objective": "binary", "linear_tree": True, "verbose": -1, "seed": 1},
        lgb.Dataset(x.drop(columns="colour"), y),
        num_boost_round=5,
    )
    # then LightGBM's own TreeSHAP is picked, and forcing leaf patterns is refused
    assert treeshap.method_for(booster) == treeshap.PRED_CONTRIB
    with pytest.raises(ValueError, match="not exact"):
        treeshap.shap_values(booster, x.drop(columns="colour"), treeshap.LEAF_PATTERNS)


def test_the_manifest_names_the_method_the_run_explained_with(
    small_world_dir: Path, champion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, _, err = run_cli(
        ["score", str(small_world_dir), "--as-of", "2024-09-01", "--out", str(out)], capsys
    )
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["explainer"] == treeshap.LEAF_PATTERNS
