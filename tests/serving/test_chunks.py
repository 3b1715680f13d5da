"""Scoring in chunks (how a million accounts fit in memory) gives the one-pass result."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd

from expansion_scorer.config import load_serving_config
from expansion_scorer.data.loading import open_world
from expansion_scorer.features.catalogue import for_model
from expansion_scorer.model.loading import load_model
from expansion_scorer.serving.scoring import score_features, score_frame
from expansion_scorer.settings import load_feature_set

AS_OF = date(2024, 9, 1)


def test_chunked_scores_and_explanations_equal_one_pass(
    small_world_dir: Path, champion: Path
) -> None:
    model, version = load_model("models:/expansion-propensity@champion")
    # the definitions as the model scores with them (its learned affinity), as the job does
    features = for_model(load_feature_set(), model.affinity, model.plan_order)
    serving = load_serving_config()
    whole = score_frame(
        open_world(small_world_dir, cutoff=AS_OF), AS_OF, model, features, serving, version
    )
    frame = whole.features.sample(frac=1.0, random_state=2).reset_index(drop=True)

    scores, drivers, _ = score_features(
        frame, model, features, serving, version, AS_OF, chunk_rows=17
    )
    plain, no_drivers, _ = score_features(
        frame, model, features, serving, version, AS_OF, explain=False, chunk_rows=50
    )

    pd.testing.assert_frame_equal(scores, whole.scores)
    pd.testing.assert_frame_equal(drivers, whole.drivers)
    # without explanations: the same scores and bands, no reasons, no drivers
    by_id = plain.set_index("account_id").loc[whole.scores["account_id"]]
    assert (by_id["score"].to_numpy() == whole.scores["score"].to_numpy()).all()
    assert (plain["reason_1"] == "").all() and list(no_drivers.columns) == ["account_id"]
