"""What a CS team would do without the model; the model has to beat every one of these.

- rule: the CS-platform rule, seat utilisation at or above a threshold or active users up by a
  fraction in 28 days (a yes/no score);
- logistic: logistic regression on the same features;
- recent: "expanded in the last 180 days" (a yes/no score).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from expansion_scorer.config import BaselineConfig, FeatureSet

NAMES = ("rule", "logistic", "recent")


def rule_score(frame: pd.DataFrame, cfg: BaselineConfig) -> np.ndarray:
    utilisation = pd.to_numeric(frame[cfg.utilisation_feature], errors="coerce")
    growth = pd.to_numeric(frame[cfg.growth_feature], errors="coerce")
    hit = (utilisation >= cfg.utilisation_at_least) | (growth >= cfg.growth_at_least)
    return hit.fillna(False).to_numpy(dtype="float64")


def recent_score(frame: pd.DataFrame, cfg: BaselineConfig) -> np.ndarray:
    days = pd.to_numeric(frame[cfg.recency_feature], errors="coerce")
    return (days <= cfg.recency_days).fillna(False).to_numpy(dtype="float64")


def _signed_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def logistic(feature_set: FeatureSet, seed: int) -> Pipeline:
    """Logistic regression with the preprocessing a careful analyst would give it."""
    numeric = [f.name for f in feature_set.features if f.kind == "numeric"]
    categorical = [f.name for f in feature_set.features if f.kind == "categorical"]
    columns = ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(
                    SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                    FunctionTransformer(_signed_log),
                    StandardScaler(copy=False),  # scales the transformer's fresh array in place
                ),
                numeric,
            ),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    OneHotEncoder(handle_unknown="ignore", min_frequency=20),
                ),
                categorical,
            ),
        ]
    )
    return make_pipeline(columns, LogisticRegression(max_iter=300, C=1.0, random_state=seed))


def logistic_frame(frame: pd.DataFrame, feature_set: FeatureSet) -> pd.DataFrame:
    """The features as the pipeline expects them: numbers as floats, categories as text.

    Single precision: a million rows of a hundred features and their missing-value indicators
    then fit in half the memory, and a logistic regression loses nothing it can use.
    """
    out = {}
    for f in feature_set.features:
        column = frame[f.name]
        if f.kind == "numeric":
            out[f.name] = pd.to_numeric(column, errors="coerce").astype("float32")
        else:
            out[f.name] = column.astype("object").where(column.notna(), None)
    return pd.DataFrame(out, index=frame.index)
