"""Raw booster scores to probabilities that mean what they say, fitted on later snapshots.

The calibrator is always fitted on snapshots the booster never saw and whose dates follow the
booster's training window (out of time), so it corrects drift as well as overconfidence.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

EPS = 1e-6
TIE_BREAK = 1e-7


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p / (1 - p))


class Calibrator:
    """Isotonic regression or Platt scaling of a score; learned state ends in `_`."""

    def __init__(self, method: Literal["isotonic", "platt"] = "isotonic") -> None:
        self.method = method

    def fit(self, raw: np.ndarray, y: np.ndarray) -> Calibrator:
        raw = np.asarray(raw, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if self.method == "isotonic":
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            iso.fit(raw, y)
            self.x_ = np.asarray(iso.X_thresholds_, dtype=np.float64)
            self.y_ = np.asarray(iso.y_thresholds_, dtype=np.float64)
        else:
            lr = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(raw)[:, None], y)
            self.x_ = np.array([float(lr.coef_[0, 0])])
            self.y_ = np.array([float(lr.intercept_[0])])
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if self.method == "isotonic":
            # Within a flat isotonic step the booster's order is kept: a CSM list ranks by
            # this score, and ties would throw away what the booster knows.
            p = np.interp(raw, self.x_, self.y_) + TIE_BREAK * raw
        else:
            p = 1.0 / (1.0 + np.exp(-(self.x_[0] * _logit(raw) + self.y_[0])))
        # Isotonic steps can hit exactly 0 or 1; a probability a CSM reads never should.
        return np.clip(p, EPS, 1 - EPS)
