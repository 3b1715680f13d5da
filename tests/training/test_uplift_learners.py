"""The uplift learners (`training/uplift_learners.py`), each held to the same checks, the doubly
robust score and value at capacity they are chosen and compared by, and the `learner:` setting.

The data here is a randomized trial drawn in the test: half the rows listed, an effect of
listing that is large for some accounts, nothing or harmful for others, and a chance to expand
that has nothing to do with it (as on the program world, the likeliest to expand are not the
ones a touch helps).
"""

from __future__ import annotations

from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest

from expansion_scorer.config import UPLIFT_LEARNERS, LightGBMParams, load_training_config
from expansion_scorer.errors import UserError
from expansion_scorer.model.uplift import LearnedUpliftModel, UpliftModel
from expansion_scorer.training.metrics import top_k_weights
from expansion_scorer.training.uplift_learners import (
    LEARNERS,
    RANDOM,
    capacity_weights,
    dr_scores,
    policy_values,
)
from tests.helpers import run_cli

PARAMS = LightGBMParams(n_estimators=80, learning_rate=0.05, num_leaves=4, min_child_samples=40)


def _trial(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Features, arm, outcome and the true effect of listing, per row."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.uniform(size=(n, 4)), columns=["tenure", "seats", "usage", "noise"])
    base = 0.15 + 0.5 * x["usage"].to_numpy()  # who expands anyway
    effect = np.where(x["tenure"] > 0.5, 0.3 * x["seats"], -0.08)  # whom a call helps
    treated = rng.uniform(size=n) < 0.5
    y = (rng.uniform(size=n) < np.clip(base + treated * effect, 0, 1)).astype("float64")
    return x, treated, y, effect


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_every_learner_finds_whom_a_touch_helps_on_accounts_it_never_saw(name: str) -> None:
    # Given a randomized trial to learn from and fresh accounts to rank
    x, treated, y, _ = _trial(6000, seed=1)
    fresh, _, _, effect = _trial(3000, seed=2)

    # When the learner fits and ranks the fresh accounts
    learner = LEARNERS[name]().fit(x, treated, y, float(treated.mean()), PARAMS, 0)
    said = learner.effect(fresh)

    # Then its estimates follow the true effect, and its capacity lists (10 of each 50) are
    # worth far more than a random pick's and than the likeliest to expand anyway
    assert said.shape == (len(fresh),) and np.isfinite(said).all()
    assert np.corrcoef(said, effect)[0, 1] > 0.6
    groups = np.arange(len(fresh)) // 50
    worth = (top_k_weights(said, groups, 10) * effect).sum()
    best = (top_k_weights(effect, groups, 10) * effect).sum()
    likeliest = (top_k_weights(fresh["usage"].to_numpy(), groups, 10) * effect).sum()
    assert worth > 0.8 * best and worth > likeliest + 0.5 * (best - likeliest)


def test_a_new_learner_is_a_class_and_a_config_value() -> None:
    assert set(LEARNERS) == set(UPLIFT_LEARNERS)
    assert all(LEARNERS[name].name == name for name in LEARNERS)


def test_the_doubly_robust_score_is_unbiased_whatever_the_outcome_models() -> None:
    # Given a trial and outcome models that are wrong (a constant) or right-ish
    x, treated, y, effect = _trial(200_000, seed=3)
    n = len(y)
    wrong = dr_scores(y, treated, np.full(n, 0.9), np.full(n, 0.1), float(treated.mean()))
    # Then both average to the true mean effect of listing
    assert abs(wrong.mean() - effect.mean()) < 0.01
    base = 0.15 + 0.5 * x["usage"].to_numpy()
    right = dr_scores(y, treated, base + effect, base, float(treated.mean()))
    assert abs(right.mean() - effect.mean()) < 0.01
    # and better outcome models make it less noisy
    assert right.std() < wrong.std()


def test_policy_values_take_k_per_group_and_bootstrap_over_accounts() -> None:
    # Given 40 groups (cohort x CSM) of 20 accounts with a known score and effect
    rng = np.random.default_rng(4)
    n = 800
    scores = pd.DataFrame(
        {
            "account_id": [f"A{i % 600}" for i in range(n)],  # some accounts in two cohorts
            "assigned_on": np.repeat(["2024-01-01", "2024-02-01"], n // 2),
            "csm_owner": np.tile(np.repeat([f"c{j}" for j in range(20)], 20), 2),
            "good": rng.normal(size=n),
        }
    )
    scores["bad"] = -scores["good"]
    scores["dr_score"] = scores["good"] + rng.normal(size=n)
    # When each ranking's capacity lists (5 per group) are valued
    values = policy_values(scores, ["good", "bad", RANDOM], 5, pairs=[("good", "bad")])
    # Then a random pick takes each row with chance 5/20, every ranking 5 per group
    np.testing.assert_allclose(capacity_weights(scores, RANDOM, 5), 0.25)
    assert capacity_weights(scores, "good", 5).sum() == 5 * 40
    # and each estimate is the sum of the scores it took, inside its interval
    take = capacity_weights(scores, "good", 5)
    assert values["good"].estimate == pytest.approx((take * scores["dr_score"]).sum())
    for value in values.values():
        assert value.low < value.estimate < value.high
    # a ranking by the score's sign is told apart from its opposite
    assert values["good - bad"].low > 0
    assert values["good - bad"].estimate == pytest.approx(
        values["good"].estimate - values["bad"].estimate
    )


def test_an_unknown_learner_stops_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for text, said in (
        ("target: uplift\nuplift: {learner: s}\n", "unknown uplift learner 's'"),
        ("target: uplift\nuplift: {candidates: [t, forest]}\n", "unknown uplift learner 'forest'"),
        ("target: uplift\nuplift: {candidates: [t, t]}\n", "each learner once"),
    ):
        config = tmp_path / "uplift.yaml"
        config.write_text(text, encoding="utf-8")
        with pytest.raises(UserError, match=said):
            load_training_config(config)
        out = tmp_path / "out"
        code, _, err = run_cli(["train", str(tmp_path), "--config", str(config),
                                "--program", str(out)], capsys)  # fmt: skip
        assert code == 2 and len(err.strip().splitlines()) == 1 and said in err, err
        assert not out.exists()
    for name in ("t", "x", "dr", "average", "auto"):
        config.write_text(f"target: uplift\nuplift: {{learner: {name}}}\n", encoding="utf-8")
        assert load_training_config(config).uplift.learner == name


@pytest.mark.parametrize("name", ["x", "dr", "average"])
def test_a_learned_uplift_model_ranks_by_its_learner_and_keeps_the_t_arms(name: str) -> None:
    # Given a learner and the T-learner fitted on the same trial
    x, treated, y, _ = _trial(3000, seed=5)
    share = float(treated.mean())
    learner = LEARNERS[name]().fit(x, treated, y, share, PARAMS, 0)
    arms = LEARNERS["t"]().fit(x, treated, y, share, PARAMS, 0)
    base = UpliftModel(arms.listed_, arms.holdout_, list(x.columns), {}, 90)

    # When they are delivered together and pickled as MLflow pickles a pyfunc
    model = cloudpickle.loads(cloudpickle.dumps(LearnedUpliftModel(base, name, learner.terms())))
    served = model.predict(None, x.head(200))

    # Then the uplift is the learner's effect and the chances are the T-learner's arms
    np.testing.assert_allclose(served["uplift"], learner.effect(x.head(200)))
    np.testing.assert_allclose(served["p_listed"], arms.arms(x.head(200))[0])
    np.testing.assert_allclose(served["p_holdout"], arms.arms(x.head(200))[1])
    assert not np.allclose(served["uplift"], served["p_listed"] - served["p_holdout"])
