"""The recency / frequency / monetary logistic regression: the classic retail baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

RFM = {
    "recency": "days_since_billing",
    "frequency": "billing_days_365d",
    "monetary": "arr_now",
}


def rfm_matrix(frame: pd.DataFrame) -> np.ndarray:
    """Days since the last invoice (365 when none in a year), invoice days in a year, run-rate."""
    recency = pd.to_numeric(frame[RFM["recency"]], errors="coerce").fillna(365.0)
    frequency = pd.to_numeric(frame[RFM["frequency"]], errors="coerce").fillna(0.0)
    monetary = pd.to_numeric(frame[RFM["monetary"]], errors="coerce").fillna(0.0).clip(lower=0)
    return np.column_stack([recency, frequency, monetary]).astype("float64")


def rfm_model(seed: int) -> Pipeline:
    return make_pipeline(
        FunctionTransformer(np.log1p), StandardScaler(), LogisticRegression(random_state=seed)
    )
