"""Loading what a command reads: the feature definitions (parsed, then their SQL bound against
empty contract tables) and every config beside them, cross-checked before any data is read.

It sits above the feature stage because binding a definition runs the stage's own SQL;
`config` holds the models and their validators, and reads nothing of the stages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from expansion_scorer.config import (
    FeatureSet,
    Settings,
    load_config,
    load_serving_config,
    load_training_config,
    override,
)
from expansion_scorer.errors import UserError
from expansion_scorer.features.build import check_definitions


def load_feature_set(path: Path | None = None) -> FeatureSet:
    """Parse the definitions, then check every feature's SQL binds against the base columns."""
    where = str(path or "features.yaml")
    features = load_config(FeatureSet, path, "features.yaml")
    check_definitions(features, where)
    return features


def load_settings(
    features: Path | None = None,
    training: Path | Literal[False] | None = None,
    serving: Path | Literal[False] | None = None,
    training_overrides: dict[str, object] | None = None,
) -> Settings:
    """Every config a command reads, validated and cross-checked before any data is: None
    loads the built-in file, False leaves the part out. Overrides (dotted keys of the training
    config) are validated like the file."""
    feature_set = load_feature_set(features)
    cfg = None if training is False else load_training_config(training)
    if cfg is not None and training_overrides:
        cfg = override(cfg, training_overrides)
    scoring = None if serving is False else load_serving_config(serving)
    try:
        return Settings(features=feature_set, training=cfg, serving=scoring)
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"].removeprefix("Value error, ")
        kind, _, rest = problem.partition(" config: ")
        path = training if kind == "training" else serving
        where = str(path) if path else f"built-in {kind}.yaml"
        hint = ""
        if kind == "training" and scoring is not None:
            hint = "; scoring reads the training config for its model: pass --training-config"
        raise UserError(
            f"{kind} config {where}: {rest} (features: {features or 'built-in features.yaml'})"
            + hint
        ) from None
