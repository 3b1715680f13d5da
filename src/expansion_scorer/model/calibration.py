"""Raw scores to probabilities that mean what they say: the calibrator a delivered model carries.

A calibrator is fitted on predictions for rows the model was not fitted on (out of fold, or out
of time), so it corrects overconfidence and drift rather than learning the training rows again.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

EPS = 1e-6
TIE_BREAK = 1e-7
MIN_SLOPE = 0.05


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p / (1 - p))


class Calibrator:
    """Isotonic regression or Platt scaling of a score; learned state ends in `_`."""

    def __init__(self, method: Literal["isotonic", "platt"] = "isotonic") -> None:
        self.method = method

    def fit(self, raw: np.ndarray, y: np.ndarray, shift: np.ndarray | None = None) -> Calibrator:
        """`shift`: the part of logit(raw) that is a fixed offset (the seasons); Platt scaling
        rescales the rest and adds it back unscaled, so a calibration window drawn from one
        season does not shrink or move the others. Isotonic ignores it."""
        raw = np.asarray(raw, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if self.method == "isotonic":
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            iso.fit(raw, y)
            self.x_ = np.asarray(iso.X_thresholds_, dtype=np.float64)
            self.y_ = np.asarray(iso.y_thresholds_, dtype=np.float64)
        elif shift is None:
            lr = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(raw)[:, None], y)
            self.x_ = np.array([float(lr.coef_[0, 0])])
            self.y_ = np.array([float(lr.intercept_[0])])
        else:
            self.x_, self.y_ = _platt_with_offset(_logit(raw) - shift, np.asarray(shift), y)
        if self.method == "platt" and self.x_[0] < MIN_SLOPE:
            # A calibrator never reverses the model's order (a ranking that held-out rows read
            # backwards is the learner's problem): the slope stops at MIN_SLOPE and the
            # intercept is refitted under it.
            fixed = 0.0 if shift is None else np.asarray(shift, dtype=np.float64)
            z = MIN_SLOPE * (_logit(raw) - fixed) + fixed
            self.x_ = np.array([MIN_SLOPE])
            self.y_ = _intercept(z, y)
        return self

    def transform(self, raw: np.ndarray, shift: np.ndarray | None = None) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if self.method == "isotonic":
            # Within a flat isotonic step the booster's order is kept: a CSM list ranks by
            # this score, and ties would throw away what the booster knows.
            p = np.interp(raw, self.x_, self.y_) + TIE_BREAK * raw
        else:
            fixed = 0.0 if shift is None else np.asarray(shift, dtype=np.float64)
            z = _logit(raw) - fixed
            p = expit(self.x_[0] * z + self.y_[0] + fixed)
        # Isotonic steps can hit exactly 0 or 1; a probability a CSM reads never should.
        return np.clip(p, EPS, 1 - EPS)


def _intercept(offset: np.ndarray, y: np.ndarray, steps: int = 50) -> np.ndarray:
    """The intercept of a logistic regression of y with a fixed offset, by Newton's method."""
    b = 0.0
    for _ in range(steps):
        p = expit(offset + b)
        step = float((y - p).sum()) / max(float((p * (1 - p)).sum()), 1e-12)
        b += step
        if abs(step) < 1e-10:
            break
    return np.array([b])


def _platt_with_offset(
    z: np.ndarray, offset: np.ndarray, y: np.ndarray, steps: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression of y on z with a fixed offset, by Newton's method: (slope, intercept)."""
    design = np.column_stack([z, np.ones_like(z)])
    beta = np.array([1.0, 0.0])
    for _ in range(steps):
        p = expit(design @ beta + offset)
        w = np.maximum(p * (1 - p), 1e-12)
        hessian = design.T @ (design * w[:, None]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, design.T @ (y - p))
        beta = beta + step
        if np.abs(step).max() < 1e-10:
            break
    return np.array([beta[0]]), np.array([beta[1]])
