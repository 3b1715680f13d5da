"""A spline logistic model (a GAM): each numeric feature through a piecewise-linear spline (on
the signed-log scale, knots at its quantiles), each categorical one-hot, one L2-penalised
logistic regression over them all.

A few thousand noisy labels are often learnt better by a smooth additive model than by trees,
and its explanation is exact by construction: the log-odds are the intercept plus one term per
feature, each term centred on its training mean, so a feature's contribution is its own term.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit
from threadpoolctl import threadpool_limits

from expansion_scorer.model.parts import prepare

CHUNK_ROWS = 200_000
"""Rows expanded into the spline basis at a time when predicting: the basis is wide."""


@dataclass(frozen=True)
class _Term:
    """The basis columns of one feature: how a value becomes them, and their scale."""

    feature: str
    kind: str
    """numeric or categorical"""
    lo: float = 0.0
    hi: float = 0.0
    fill: float = 0.0
    """The training median, for a missing value (its own indicator column says it is missing)."""
    knots: tuple[float, ...] = ()
    missing: bool = False
    """The training rows held missing values: the term has an indicator column for them."""
    linear: bool = True
    """The term has a linear column (not when every value seen in training is the same)."""
    levels: tuple[str, ...] = ()
    mean: tuple[float, ...] = ()
    scale: tuple[float, ...] = ()

    def raw(self, column: pd.Series) -> np.ndarray:
        """The unscaled basis columns of `column`: rows x columns."""
        if self.kind == "categorical":
            codes = pd.Categorical(column.astype("object"), categories=list(self.levels)).codes
            out = np.zeros((len(column), len(self.levels)), dtype="float64")
            seen = codes >= 0
            out[np.flatnonzero(seen), codes[seen]] = 1.0
            return out
        x = signed_log(column.to_numpy(dtype="float64"))
        gone = np.isnan(x)
        x = np.clip(np.where(gone, self.fill, x), self.lo, self.hi)
        parts = [x] if self.linear else []
        parts += [np.maximum(x - k, 0.0) for k in self.knots]
        if self.missing:
            parts.append(gone.astype("float64"))
        return np.column_stack(parts)

    def scaled(self, column: pd.Series) -> np.ndarray:
        return (self.raw(column) - np.asarray(self.mean)) / np.asarray(self.scale)


def signed_log(x: np.ndarray) -> np.ndarray:
    """sign(x) log(1 + |x|): counts, seats and revenue are heavy-tailed, and a spline's
    segments between quantile knots are straight on this scale, not on the raw one."""
    return np.sign(x) * np.log1p(np.abs(x))


def _numeric_term(name: str, x: np.ndarray, knots: int) -> _Term | None:
    """The term of a numeric feature from its training values on the signed-log scale."""
    seen = x[~np.isnan(x)]
    if len(np.unique(seen)) < 2:
        if len(seen) == len(x):
            return None
        return _Term(name, "numeric", missing=True, linear=False)
    lo, hi = (float(v) for v in np.quantile(seen, [0.01, 0.99]))
    if hi <= lo:  # most rows share one value: keep the whole range
        lo, hi = float(seen.min()), float(seen.max())
    clipped = np.clip(seen, lo, hi)
    inner = np.unique(np.quantile(clipped, np.linspace(0, 1, knots + 2)[1:-1]))
    return _Term(
        name,
        "numeric",
        lo=lo,
        hi=hi,
        fill=float(np.median(seen)),
        knots=tuple(float(k) for k in inner if lo < k < hi),
        missing=bool(np.isnan(x).any()),
    )


def _with_scale(term: _Term, column: pd.Series) -> _Term | None:
    raw = term.raw(column)
    mean, scale = raw.mean(axis=0), raw.std(axis=0)
    keep = scale > 1e-12
    if not keep.any():
        return None
    if not keep.all():  # a column constant in training (a knot past every value) carries nothing
        if term.kind == "categorical":
            term = replace(term, levels=tuple(np.asarray(term.levels)[keep]))
        else:
            first = int(term.linear)
            knots = keep[first : first + len(term.knots)]
            term = replace(
                term,
                linear=term.linear and bool(keep[0]),
                knots=tuple(k for k, kept in zip(term.knots, knots, strict=True) if kept),
                missing=term.missing and bool(keep[-1]),
            )
        return _with_scale(term, column)
    return replace(term, mean=tuple(mean), scale=tuple(scale))


def _loss(
    beta: np.ndarray, x: np.ndarray, y: np.ndarray, offset: np.ndarray, l2: float
) -> tuple[float, np.ndarray]:
    """Mean log loss plus l2 / 2 x |weights|^2 (the intercept, last, unpenalised), and its
    gradient. `x` is single precision: the basis is wide, and the weights need no more."""
    z = x @ beta[:-1].astype(np.float32) + beta[-1] + offset
    loss = float(np.mean(np.logaddexp(0.0, z) - y * z))
    residual = (expit(z) - y) / len(y)
    grad = np.append(x.T @ residual.astype(np.float32) + l2 * beta[:-1], residual.sum())
    return loss + 0.5 * l2 * float(beta[:-1] @ beta[:-1]), grad


def _solve(
    x: np.ndarray, y: np.ndarray, offset: np.ndarray, l2: float, start: np.ndarray
) -> np.ndarray:
    # One BLAS thread: L-BFGS-B updates vectors a few hundred long, thousands of times a fit,
    # and waking a second BLAS thread for each cost more than the whole update (about 5 ms a
    # step with two threads against 0.1 ms with one, on 2 cores), which made the optimiser's
    # bookkeeping as slow as the loss itself.
    with threadpool_limits(limits=1, user_api="blas"):
        found = minimize(
            _loss, start, args=(x, y, offset, l2), jac=True, method="L-BFGS-B",
            options={"maxiter": 150, "ftol": 1e-6},  # a penalised loss needs no finer optimum
        )  # fmt: skip
    return np.asarray(found.x, dtype=np.float64)


class SplineLogit:
    """A GAM on the model matrix of `numeric` and `categories` (learned state ends in `_`),
    its weights penalised by `l2` (`path` fits a grid of penalties at once)."""

    def __init__(
        self,
        numeric: list[str],
        categories: dict[str, list[str]],
        knots: int = 5,
        l2: float = 1e-2,
        max_rows: int = 200_000,
        seed: int = 7,
    ) -> None:
        self.numeric = numeric
        self.categories = categories
        self.knots = knots
        self.l2 = l2
        self.max_rows = max_rows
        self.seed = seed

    def _matrix(self, frame: pd.DataFrame) -> np.ndarray:
        x = prepare(frame, self.numeric, self.categories)
        if not self.terms_:
            return np.zeros((len(frame), 0), dtype=np.float32)
        return np.column_stack([t.scaled(x[t.feature]) for t in self.terms_]).astype(np.float32)

    def _basis(
        self, frame: pd.DataFrame, y: np.ndarray, offset: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The terms learnt from (a sample of) the rows, and their basis, labels and offset."""
        keep = np.arange(len(frame))
        if len(keep) > self.max_rows:  # a few hundred coefficients need no million rows
            rng = np.random.default_rng(self.seed)
            keep = np.sort(rng.choice(keep, self.max_rows, replace=False))
        frame = frame.iloc[keep]
        y = np.asarray(y, dtype="float64")[keep]
        off = np.zeros(len(y)) if offset is None else np.asarray(offset, "float64")[keep]
        x = prepare(frame, self.numeric, self.categories)
        terms: list[_Term] = []
        for name in self.numeric:
            term = _numeric_term(name, signed_log(x[name].to_numpy(dtype="float64")), self.knots)
            scaled = None if term is None else _with_scale(term, x[name])
            if scaled is not None:
                terms.append(scaled)
        for name, levels in self.categories.items():
            cat = _Term(name, "categorical", levels=tuple(levels))
            scaled = _with_scale(cat, x[name])
            if scaled is not None:
                terms.append(scaled)
        self.terms_ = terms
        return self._matrix(frame), y, off

    def _start(self, basis: np.ndarray, y: np.ndarray) -> np.ndarray:
        prior = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
        return np.append(np.zeros(basis.shape[1]), np.log(prior / (1 - prior)))

    def _set(self, beta: np.ndarray) -> None:
        self.coef_, self.intercept_ = beta[:-1], float(beta[-1])

    def fit(
        self, frame: pd.DataFrame, y: np.ndarray, offset: np.ndarray | None = None
    ) -> SplineLogit:
        basis, y, off = self._basis(frame, y, offset)
        self._set(_solve(basis, y, off, self.l2, self._start(basis, y)))
        return self

    def path(
        self,
        frame: pd.DataFrame,
        y: np.ndarray,
        offset: np.ndarray | None,
        grid: Sequence[float],
        held: pd.DataFrame,
        held_offset: np.ndarray | None = None,
    ) -> dict[float, np.ndarray]:
        """Fitted along the penalties of `grid`, strongest first and each starting from the
        last: the margins of `held` per penalty. The path stops once the held-out log loss has
        risen at two penalties in a row (the weak end is slow and rarely wins)."""
        basis, y, off = self._basis(frame, y, offset)
        other = self._matrix(held)
        held_y = held["label"].to_numpy(dtype="float64")
        shift = 0.0 if held_offset is None else held_offset
        beta = self._start(basis, y)
        out: dict[float, np.ndarray] = {}
        lowest, rises = np.inf, 0
        for l2 in sorted(grid, reverse=True):
            beta = _solve(basis, y, off, l2, beta)
            out[float(l2)] = margin = other @ beta[:-1].astype(np.float32) + beta[-1]
            z = margin + shift
            loss = float(np.mean(np.logaddexp(0.0, z) - held_y * z))
            lowest, rises = (loss, 0) if loss < lowest else (lowest, rises + 1)
            if rises == 2:
                break
        self._set(beta)
        return out

    def _terms(self, frame: pd.DataFrame) -> np.ndarray:
        """Rows x features: each feature's term in log-odds (centred on its training mean)."""
        out = np.zeros((len(frame), len(self.numeric) + len(self.categories)))
        names = [*self.numeric, *self.categories]
        for start in range(0, len(frame), CHUNK_ROWS):
            part = prepare(frame.iloc[start : start + CHUNK_ROWS], self.numeric, self.categories)
            at = 0
            for term in self.terms_:
                width = len(term.mean)
                out[start : start + len(part), names.index(term.feature)] = (
                    term.scaled(part[term.feature]) @ self.coef_[at : at + width]
                )
                at += width
        return out

    def margin(self, frame: pd.DataFrame) -> np.ndarray:
        """Log-odds before any offset: the intercept plus every feature's term."""
        return self.intercept_ + self._terms(frame).sum(axis=1)

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per row and feature, its term in log-odds; with `intercept_` they add up to `margin`."""
        return pd.DataFrame(
            self._terms(frame), columns=[*self.numeric, *self.categories], index=frame.index
        )
