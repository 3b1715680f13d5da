"""Which calibrator, if any, a model earns: methods compared by cross-validated log loss.

Cross-fitted predictions come in blocks of consecutive months; there each calibrator is fitted on
the other blocks and scored on the one left out, because the delivered model meets months its
calibrator was not fitted on. A correction that holds only on average over the blocks (a base
rate too low in one block and too high in the next) wins a random split of accounts and loses
on every month after it.

The calibrator itself (`Calibrator`) lives with the delivered model in `expansion_scorer.model`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from expansion_scorer.model.calibration import EPS, Calibrator

__all__ = ["Calibrator", "choose_calibration"]

CV_FOLDS = 5


def _losses(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.asarray(-(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _clearly_better(gain: np.ndarray, codes: np.ndarray) -> bool:
    """The per-row loss `gain` over the raw probability is positive beyond two standard errors,
    accounts (`codes`) as the units: a calibrator fitted on noise does not pass."""
    per_group = np.bincount(codes, weights=gain)
    n = len(per_group)
    if n < 2:
        return False
    mean = per_group.mean()
    return bool(mean > 2 * per_group.std(ddof=1) / np.sqrt(n))


def choose_calibration(
    raw: np.ndarray,
    y: np.ndarray,
    shift: np.ndarray | None,
    methods: Sequence[str],
    groups: np.ndarray,
    seed: int,
    blocks: np.ndarray | None = None,
) -> tuple[str, dict[str, float]]:
    """The method with the lowest cross-validated log loss among `none` and those that beat it
    by more than two standard errors (accounts, `groups`, as the units); and every method's
    loss. The folds are the time `blocks` when there are two or more (each left out in turn),
    else groups of accounts. A calibrator has to earn its place: on a tie, or a gain within
    the noise, none is kept."""
    raw = np.asarray(raw, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    _, codes = np.unique(groups, return_inverse=True)
    if blocks is not None and len(np.unique(blocks)) > 1:
        _, fold = np.unique(blocks, return_inverse=True)
    else:
        fold = np.random.default_rng(seed).permutation(codes.max() + 1)[codes] % CV_FOLDS
    plain = _losses(raw, y)
    losses: dict[str, float] = {"none": float(plain.mean())}
    best = "none"
    for method in (m for m in methods if m != "none"):
        predicted = np.empty(len(y))
        for k in range(int(fold.max()) + 1):
            out, fit = fold == k, fold != k
            if not out.any():
                continue
            if not 0 < y[fit].sum() < fit.sum():
                predicted[out] = raw[out]
                continue
            part = None if shift is None else shift[fit]
            cal = Calibrator(method).fit(raw[fit], y[fit], part)  # type: ignore[arg-type]
            predicted[out] = cal.transform(raw[out], None if shift is None else shift[out])
        own = _losses(predicted, y)
        losses[method] = float(own.mean())
        if losses[method] < losses[best] and _clearly_better(plain - own, codes):
            best = method
    return best, losses
