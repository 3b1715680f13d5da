"""The learners the trainer chooses among on held-out predictions, how the gam, the blend and a
combined model explain, and the calibration that has to earn its place."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from expansion_scorer.config import LabelConfig, LearningConfig, Strength
from expansion_scorer.data.loading import open_world
from expansion_scorer.features.ledger import EXPANSION_KINDS
from expansion_scorer.features.snapshots import motion_label
from expansion_scorer.model.calibration import Calibrator
from expansion_scorer.model.parts import any_of
from expansion_scorer.model.propensity import Choice, contributions
from expansion_scorer.serving.explain import family_points
from expansion_scorer.serving.scoring import _delivered_base
from expansion_scorer.settings import load_feature_set
from expansion_scorer.training import train as train_module
from expansion_scorer.training.backtest import _survivors, final_layout, plan_folds
from expansion_scorer.training.calibration import choose_calibration
from expansion_scorer.training.dataset import training_frame
from expansion_scorer.training.train import fit, fit_all, purged_blocks
from tests.helpers import run_cli
from tests.training.test_train import small_config


@pytest.fixture(scope="module")
def frame(small_world_dir: Path) -> pd.DataFrame:
    cfg = small_config(learning=LearningConfig())  # every learner: the motion labels too
    return training_frame(open_world(small_world_dir), load_feature_set(), cfg, None)


def learning(*candidates: str) -> LearningConfig:
    return LearningConfig(candidates=list(candidates))


def test_the_frame_carries_one_label_per_motion_that_add_up_to_the_label(
    frame: pd.DataFrame,
) -> None:
    per_motion = frame[[motion_label(m) for m in EXPANSION_KINDS]]
    # any expansion is an expansion of at least one motion, and only then
    assert (per_motion.max(axis=1) == frame["label"]).all()
    assert (per_motion.sum() > 0).all()


def test_the_choice_reads_calibration_months_never_the_test_fold(frame: pd.DataFrame) -> None:
    # Given the first fold of the backtest and every learner
    cfg = small_config(learning=learning("single", "regularised", "motions"))
    fold = plan_folds(sorted(frame["as_of"].unique()), cfg)[0]
    chosen = fit(frame, fold, load_feature_set(), cfg)

    # When the test months' outcomes are turned upside down
    test = frame["as_of"].isin(set(fold.test_dates))
    flipped = frame.copy()
    for column in ["label", *(motion_label(m) for m in EXPANSION_KINDS)]:
        flipped.loc[test, column] = 1 - flipped.loc[test, column]
    again = fit(flipped, fold, load_feature_set(), cfg)

    # Then the same learner wins with the same calibration AUCs, and scores the same
    assert chosen.choice is not None and again.choice is not None
    assert chosen.choice is not None and again.choice is not None
    assert {**chosen.choice.__dict__, "seconds": {}} == {**again.choice.__dict__, "seconds": {}}
    tried = {*chosen.choice.calibration_auc, *chosen.choice.skipped}
    assert tried == {n for n, _, _ in cfg.learning.learners()}
    at = frame[test]
    np.testing.assert_array_equal(chosen.predict_proba(at), again.predict_proba(at))


def test_the_kept_learner_has_the_best_calibration_auc(frame: pd.DataFrame) -> None:
    every = LearningConfig(candidates=["single", "regularised", "motions"], simpler_confidence=None)
    cfg = small_config(learning=every)
    fold = plan_folds(sorted(frame["as_of"].unique()), cfg)[0]
    model = fit(frame, fold, load_feature_set(), cfg)
    assert model.choice is not None and model.choice.preferred == ""
    aucs = model.choice.calibration_auc
    assert model.learner == max(aucs, key=aucs.__getitem__)
    names = [h.name for h in model.heads]
    motions = model.learner.startswith("motions")
    assert names == ["any"] or (motions and set(names) <= set(EXPANSION_KINDS))


def test_a_motions_model_is_the_chance_of_any_motion_and_explains_as_its_parts(
    frame: pd.DataFrame,
) -> None:
    # Given a model of one booster per motion
    cfg = small_config(learning=learning("motions"))
    fold = plan_folds(sorted(frame["as_of"].unique()), cfg)[0]
    model = fit(frame, fold, load_feature_set(), cfg)
    # (a motion with fewer than learning.min_positives expansions on these rows is left out)
    assert model.learner.startswith("motions") and len(model.heads) >= 2
    rows = frame[frame["as_of"].isin(set(fold.test_dates))].head(200)

    # Then its raw probability is 1 - prod(1 - p) over the motions' own probabilities
    x = model.matrix(rows)
    parts = np.stack([1 / (1 + np.exp(-h.margin(x, rows))) for h in model.heads])
    np.testing.assert_allclose(model.raw_proba(rows), any_of(parts), rtol=1e-12)
    assert (model.raw_proba(rows) >= parts.max(axis=0) - 1e-12).all()

    # And each account's family points add up to its score minus the calibrated base rate
    contrib = contributions(model, rows)
    score = model.predict_proba(rows)
    base = _delivered_base(model, contrib.base_logit)
    points = family_points(contrib, load_feature_set(), score, base)
    np.testing.assert_allclose(points.sum(axis=1) / 100, score - base, atol=1e-9)
    # and a family's sign follows the motions' own SHAP values (positive weights)
    assert (np.sign(points.sum(axis=1)) == np.sign(score - base)).all()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="heads are fitted side by side on 2+ cores")
def test_heads_fitted_side_by_side_make_no_lightgbm_dataset_in_their_threads(
    frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    # LightGBM keeps one process-wide thread count that a dataset made without `num_threads`
    # resets; made inside a head's thread it raced the other heads' training (a segfault)
    made_in: list[str] = []
    construct = lgb.Dataset.construct

    def recorded(self: lgb.Dataset) -> lgb.Dataset:
        if self._handle is None:  # made now, not asked again for one made before
            made_in.append(threading.current_thread().name)
        return construct(self)

    monkeypatch.setattr(lgb.Dataset, "construct", recorded)
    cfg = small_config(learning=learning("motions"))
    fold = plan_folds(sorted(frame["as_of"].unique()), cfg)[0]

    model = fit(frame, fold, load_feature_set(), cfg)

    assert len(model.heads) >= 2  # the heads were fitted side by side
    assert made_in and set(made_in) == {threading.main_thread().name}


def test_motions_is_not_tried_when_the_label_is_one_motion(small_world_dir: Path) -> None:
    cfg = small_config(label=LabelConfig(motion="seats"), learning=learning("single", "motions"))
    frame = training_frame(open_world(small_world_dir), load_feature_set(), cfg, None)
    fold = plan_folds(sorted(frame["as_of"].unique()), cfg)[0]
    model = fit(frame, fold, load_feature_set(), cfg)
    assert model.choice is not None and model.learner == "single"
    assert "one motion (seats)" in model.choice.skipped["motions"]


def test_every_learner_is_tried_at_every_strength() -> None:
    two = [Strength(leaves=7, rows_per_leaf=0.1), Strength(leaves=3, rows_per_leaf=0.3)]
    names = [name for name, _, _ in LearningConfig(strengths=two).learners()]
    assert names == ["single", "regularised 7/10%", "regularised 3/30%", "motions 7/10%",
                     "motions 3/30%"]  # fmt: skip
    assert {"gam", "blend"} <= set(LearningConfig().candidates)  # one learner each, as named


def test_a_learner_named_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match="twice"):
        LearningConfig(candidates=["single", "single"])
    with pytest.raises(ValidationError, match="each leaves and rows_per_leaf once"):
        faster = Strength(leaves=3, rows_per_leaf=0.3, learning_rate=0.1)
        LearningConfig(strengths=[Strength(leaves=3, rows_per_leaf=0.3), faster])


def test_a_strength_takes_its_own_step_or_the_boosters() -> None:
    params = small_config().lightgbm
    own = train_module.regularised(params, Strength(leaves=3, rows_per_leaf=0.3,
                                                    learning_rate=0.2), positives=1000)  # fmt: skip
    assert (own.num_leaves, own.min_child_samples, own.learning_rate) == (3, 300, 0.2)
    same = train_module.regularised(params, Strength(leaves=3, rows_per_leaf=0.3), 1000)
    assert same.learning_rate == params.learning_rate != 0.2


@pytest.mark.parametrize("kind", ["gam", "blend"])
def test_the_gam_and_the_blend_explain_exactly_in_family_points(
    frame: pd.DataFrame, kind: str
) -> None:
    # Given the gam and the blend of the best booster with it, fitted on a fold
    cfg = small_config(learning=LearningConfig(candidates=["single", "gam", "blend"]))
    fold = plan_folds(sorted(frame["as_of"].unique()), cfg)[0]
    model = fit_all(frame, fold, load_feature_set(), cfg).kinds[kind]
    rows = frame[frame["as_of"].isin(set(fold.test_dates))].head(300)

    # Then its log-odds are the base plus each feature's contribution, exactly
    contrib = contributions(model, rows)
    logit = contrib.values.sum(axis=1).to_numpy() + contrib.base_logit
    np.testing.assert_allclose(logit, model.logit(rows, model.shift(rows)), atol=1e-9)
    assert (model.weight == 0.0) if kind == "gam" else (0.0 <= model.weight <= 1.0)
    # and a CSM's family points add up to the delivered score minus the calibrated base rate
    score = model.predict_proba(rows)
    base = _delivered_base(model, contrib.base_logit)
    points = family_points(contrib, load_feature_set(), score, base)
    np.testing.assert_allclose(points.sum(axis=1) / 100, score - base, atol=1e-9)
    # and so they do through a Platt calibrator, which moves the base
    raw = model.raw_proba(rows)
    model.calibrator = Calibrator("platt").fit(raw**2, rows["label"].to_numpy(), model.shift(rows))
    score = model.predict_proba(rows)
    base = _delivered_base(model, contrib.base_logit)
    assert abs(base - 1 / (1 + np.exp(-contrib.base_logit))) > 1e-3
    points = family_points(contrib, load_feature_set(), score, base)
    np.testing.assert_allclose(points.sum(axis=1) / 100, score - base, atol=1e-9)


def test_a_blend_weighs_the_two_best_boosters_and_the_gam_and_explains_exactly(
    frame: pd.DataFrame,
) -> None:
    # Given two booster learners, the gam and the blend, fitted on a fold
    cfg = small_config(learning=LearningConfig(candidates=["single", "regularised", "gam", "blend"],
                                               halving_margin=None))  # fmt: skip
    fold = plan_folds(sorted(frame["as_of"].unique()), cfg)[0]
    fitted = fit_all(frame, fold, load_feature_set(), cfg)
    choice = fitted.model.choice
    assert choice is not None

    # Then the blend's shares name the best booster, the other and the gam, adding up to 1
    boosters = {k: v for k, v in choice.calibration_auc.items() if k not in ("gam", "blend")}
    best = max(boosters, key=boosters.__getitem__)
    assert list(choice.blend_parts) == [best, *(set(boosters) - {best}), "gam"]
    assert sum(choice.blend_parts.values()) == pytest.approx(1.0)
    assert choice.blend_weight == choice.blend_parts[best]
    # and the shares tried keep a partner's share at 0 on a tie, with none at all without one
    assert train_module.blend_weights(3)[:11] == train_module.blend_weights(2)
    assert {p for _, p in train_module.blend_weights(2)} == {0.0}

    # When the partner has a share (set here, whatever this small fold chose)
    blend = fitted.kinds["blend"]
    if blend.partner is None:
        other = next(iter(set(boosters) - {best}))
        only = small_config(learning=learning(other.split(" ")[0]))
        blend.partner = fit_all(frame, fold, load_feature_set(), only).model
    blend.weight, blend.partner_weight = 0.4, 0.3
    rows = frame[frame["as_of"].isin(set(fold.test_dates))].head(300)

    # Then its log-odds are the three parts' at their shares
    shift = blend.shift(rows)
    assert blend.gam is not None and blend.partner is not None
    parts = (
        0.3 * (blend.gam.margin(rows) + shift)
        + 0.4 * blend.boosted_logit(rows, shift)
        + 0.3 * blend.partner.boosted_logit(rows, blend.partner.shift(rows))
    )
    np.testing.assert_allclose(blend.logit(rows, shift), parts, atol=1e-9)
    # and they are the base plus each feature's contribution, exactly, in family points too
    contrib = contributions(blend, rows)
    logit = contrib.values.sum(axis=1).to_numpy() + contrib.base_logit
    np.testing.assert_allclose(logit, parts, atol=1e-9)
    score = blend.predict_proba(rows)
    base = _delivered_base(blend, contrib.base_logit)
    points = family_points(contrib, load_feature_set(), score, base)
    np.testing.assert_allclose(points.sum(axis=1) / 100, score - base, atol=1e-9)
    assert blend.rounds >= blend.partner.rounds


def test_cross_fitting_decides_on_out_of_fold_rows_and_fits_on_every_month(
    frame: pd.DataFrame,
) -> None:
    # Given the final layout of a cross-fitted backtest
    cfg = small_config(learning=learning("single", "gam", "blend"))
    dates = sorted(frame["as_of"].unique())
    layout = final_layout(dates, cfg)
    assert layout.fit_dates == tuple(dates) and layout.calib_dates == ()

    # When the model is fitted
    model = fit(frame, layout, load_feature_set(), cfg)

    # Then its choice was made on every held-out block's rows, each predicted from months one
    # horizon away, and its calibration is the one that won there (none competing)
    assert model.choice is not None and model.choice.arrangement == "crossfit"
    held = purged_blocks(layout.fit_dates, cfg.horizon_days, cfg.backtest.crossfit_blocks)
    blocks = [b for _, b in held]
    assert model.choice.held_rows == int(frame["as_of"].isin({d for b in blocks for d in b}).sum())
    losses = model.choice.calibration_loss
    assert "none" in losses and model.choice.calibration == min(losses, key=losses.__getitem__)
    assert (model.calibrator is None) == (model.choice.calibration == "none")
    # and a booster refitted on every month keeps the mean of its blocks' early-stopped rounds
    assert model.rounds > 0 or model.learner == "gam"


def test_only_the_kept_learner_is_refitted_on_every_month(
    frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two boosters, each fitted on every held-out block (no halving)
    cfg = small_config(learning=LearningConfig(candidates=["single", "regularised"],
                                               halving_margin=None))  # fmt: skip
    layout = final_layout(sorted(frame["as_of"].unique()), cfg)
    refits: list[int] = []
    real = train_module.fit_rounds

    def counted(*args: Any, **kwargs: Any) -> Any:  # the real fit, its rounds noted
        refits.append(args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "fit_rounds", counted)

    # When the layout is fitted
    model = fit(frame, layout, load_feature_set(), cfg)

    # Then both were scored on the held-out blocks, but only the kept one was refitted on
    # every month, for its blocks' mean rounds
    assert model.choice is not None and len(model.choice.calibration_auc) == 2
    assert refits == [model.rounds]


def test_a_calibrator_is_kept_only_when_it_beats_the_raw_probability() -> None:
    rng = np.random.default_rng(0)
    truth = rng.beta(1, 4, 20_000)
    y = (rng.random(20_000) < truth).astype(float)
    groups = np.arange(20_000) % 2_000
    logit = np.log(truth / (1 - truth))

    # An honest probability keeps none; an overconfident one is calibrated
    honest, _ = choose_calibration(truth, y, None, ["none", "platt", "isotonic"], groups, 7)
    assert honest == "none"
    loud = 1 / (1 + np.exp(-3 * logit))
    method, losses = choose_calibration(loud, y, None, ["none", "platt"], groups, 7)
    assert method == "platt" and losses["platt"] < losses["none"]
    # and a score that reads backwards is never reversed by the calibrator
    backwards = Calibrator("platt").fit(truth, 1 - y)
    out = backwards.transform(np.array([0.1, 0.5, 0.9]))
    assert out[0] <= out[1] <= out[2]


def test_a_calibrator_that_does_not_carry_over_to_other_months_is_refused() -> None:
    rng = np.random.default_rng(1)
    n = 30_000
    truth = rng.beta(1, 4, n)
    y = (rng.random(n) < truth).astype(float)
    groups = np.arange(n) % 3_000
    blocks = np.arange(n) * 3 // n
    logit = np.log(truth / (1 - truth))

    # A score too high in two blocks of months and too low in the third: a random split of
    # accounts finds a correction on average, and leaving each block out shows it fails there
    drifting = 1 / (1 + np.exp(-(logit + np.where(blocks == 2, -0.6, 0.6))))
    pooled, _ = choose_calibration(drifting, y, None, ["none", "platt"], groups, 7)
    assert pooled == "platt"
    by_month, losses = choose_calibration(drifting, y, None, ["none", "platt"], groups, 7, blocks)
    assert by_month == "none" and losses["platt"] > losses["none"]
    # while an overconfident score is calibrated whichever months the calibrator is fitted on
    loud = 1 / (1 + np.exp(-3 * logit))
    assert choose_calibration(loud, y, None, ["none", "platt"], groups, 7, blocks)[0] == "platt"


def test_a_blend_without_its_parts_or_an_unknown_name_is_refused() -> None:
    with pytest.raises(ValidationError, match="blend mixes the best booster with the gam"):
        LearningConfig(candidates=["single", "blend"])
    with pytest.raises(ValidationError, match="blend mixes"):
        LearningConfig(candidates=["gam", "blend"])
    with pytest.raises(ValidationError):
        LearningConfig(candidates=["single", "forest"])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("block", "said"),
    [
        ("learning: {candidates: [single, forest]}", "learning.candidates"),
        ("learning: {candidates: [single, blend]}", "blend mixes the best booster with the gam"),
        ("backtest: {calibration: [none, beta]}", "backtest.calibration"),
    ],
)
def test_a_bad_learning_block_is_one_line_before_any_data_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], block: str, said: str
) -> None:
    config = tmp_path / "training.yaml"
    config.write_text(block + "\n")
    code, out, err = run_cli(
        ["train", str(tmp_path / "no-such-data"), "--config", str(config)], capsys
    )
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and said in lines[0], err
    assert "no-such-data" not in lines[0] and "Traceback" not in err


def test_after_each_fold_only_its_best_boosters_the_gam_and_the_blend_go_on() -> None:
    # Given the first fold's held-out ROC AUCs
    cfg = small_config(learning=LearningConfig(halving_margin=0.01))
    aucs = {"single": 0.705, "regularised 7/10%": 0.712, "motions 3/30%": 0.695, "gam": 0.69,
            "blend": 0.715}  # fmt: skip
    choice = Choice("blend", aucs, {})

    # Then the boosters within the margin of the best booster, the gam and the blend go on
    assert _survivors(choice, cfg) == ["single", "regularised 7/10%", "gam", "blend"]
    # and the next fold, which fitted only those, narrows them again on its own evidence
    second = Choice("blend", {"single": 0.72, "regularised 7/10%": 0.705, "gam": 0.70,
                              "blend": 0.725}, {})  # fmt: skip
    assert _survivors(second, cfg) == ["single", "gam", "blend"]
    # and without a margin every learner is fitted on every layout
    every = small_config(learning=LearningConfig(halving_margin=None))
    assert _survivors(choice, every) is None
