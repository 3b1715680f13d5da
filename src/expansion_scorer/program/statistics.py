"""The statistics of the program's measurement, over plain arrays: the covariate-adjusted effect,
the always-valid confidence sequence, the sample-ratio check and the power plan.

- Adjusted effect (Lin 2013): one least-squares fit per arm of the outcome on covariates known
  at the draw, centred on the pooled mean; the effect is the difference of the two fits at that
  mean. It is unbiased in large samples whatever the covariates, and never less precise than the
  difference in means asymptotically: CUPED and CUPAC are the same idea.
- Confidence sequence (Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas, "Time-uniform central
  limit theory and asymptotic confidence sequences", 2023): an interval for the mean of
  augmented inverse-probability-weighted pseudo-outcomes (with the known chance of being
  listed, and per-arm fits made only from earlier cohorts), whose coverage holds at every look
  at once, so reading it every week and acting on the first exclusion of zero keeps the error
  rate at the level.
- Sample ratio: a chi-square test of the held-out count against the configured fraction.
- Plan: the smallest effect detectable with 80% power at a two-sided 5% level, and the fraction
  that brings a target effect within reach.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

SRM_P = 0.001
"""A sample-ratio p-value below this fails the check."""
POWER = 0.8
PLAN_ALPHA = 0.05


def centred(x: np.ndarray) -> np.ndarray:
    """Covariates (rows x k) centred and scaled, with constant columns dropped: the fit is the
    same, the normal equations better conditioned."""
    x = np.array(x, dtype="float64").reshape(len(x), -1)
    missing = ~np.isfinite(x)
    if missing.any():  # a covariate unknown for a row: the column's mean, which moves nothing
        x[missing] = np.nan
        with warnings.catch_warnings():  # a column with no value at all: filled with 0
            warnings.simplefilter("ignore", RuntimeWarning)
            fill = np.nan_to_num(np.nanmean(x, axis=0))
        x[missing] = np.take(fill, np.nonzero(missing)[1])
    sd = x.std(axis=0)
    keep = np.isfinite(sd) & (sd > 1e-12)
    return (x[:, keep] - x[:, keep].mean(axis=0)) / sd[keep]


def design_products(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per row, the products a weighted least-squares fit needs: z_i z_j (i <= j) and z_i y, where
    z = (1, x). Summed over any set of rows (with weights) they give X'WX and X'Wy."""
    z = np.column_stack([np.ones(len(x)), x])
    i, j = np.triu_indices(z.shape[1])
    return np.column_stack([z[:, i] * z[:, j], z * y[:, None]])


RIDGE = 1e-9
"""Added to each covariate's diagonal, relative to the weight: a covariate constant within an
arm leaves the fit solvable (its slope near zero) and changes nothing else measurably."""


def fit_from_products(sums: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """From summed `design_products` (..., m) with k regressors plus the intercept: the fitted
    coefficients (..., k+1) and the weighted mean of z (..., k+1); NaN where the weight is 0."""
    d = k + 1
    i, j = np.triu_indices(d)
    n_pairs = len(i)
    xtx = np.zeros((*sums.shape[:-1], d, d))
    xtx[..., i, j] = sums[..., :n_pairs]
    xtx[..., j, i] = sums[..., :n_pairs]
    xty = sums[..., n_pairs:]
    n = xtx[..., 0, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = xtx[..., 0, :] / n[..., None]
    scale = np.where(n > 0, n, 1.0)
    solvable = xtx.copy()
    steps = np.arange(1, d)
    solvable[..., steps, steps] += RIDGE * scale[..., None]
    solvable[..., 0, 0] = scale  # an empty arm: solvable, and masked below
    beta = np.linalg.solve(solvable, xty[..., None])[..., 0]
    beta[n <= 0] = np.nan
    return beta, mean


def lin_effect(listed: np.ndarray, held: np.ndarray, k: int) -> np.ndarray:
    """The adjusted effect from each arm's summed products (..., m): the two arms' fits evaluated
    at the pooled covariate mean."""
    b1, m1 = fit_from_products(listed, k)
    b0, m0 = fit_from_products(held, k)
    n1, n0 = listed[..., :1], held[..., :1]
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (m1 * n1 + m0 * n0) / (n1 + n0)
    return np.einsum("...i,...i->...", b1 - b0, pooled)


def arm_fits(x: np.ndarray, y: np.ndarray, treated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares coefficients (1, x) of each arm (listed, held out): what the adjustment and
    the confidence sequence's predictions use."""
    out = []
    for arm in (treated, ~treated):
        sums = design_products(x[arm], y[arm]).sum(axis=0)
        out.append(fit_from_products(sums, x.shape[1])[0])
    return out[0], out[1]


def residual_variance(x: np.ndarray, y: np.ndarray, treated: np.ndarray) -> float:
    """The outcome's variance left once each arm's fit on the covariates is taken out."""
    b1, b0 = arm_fits(x, y, treated)
    z = np.column_stack([np.ones(len(x)), x])
    fitted = np.where(treated, z @ b1, z @ b0)
    return float(np.mean((y - fitted) ** 2))


def pseudo_outcomes(
    y: np.ndarray, treated: np.ndarray, p_listed: float, m_listed: np.ndarray, m_held: np.ndarray
) -> np.ndarray:
    """Augmented inverse-probability-weighted terms whose mean is the intent-to-treat effect
    whatever the predictions `m_*`, as long as they were made before the outcome was seen."""
    t = treated.astype("float64")
    return (
        m_listed - m_held + t * (y - m_listed) / p_listed - (1 - t) * (y - m_held) / (1 - p_listed)
    )


def rho(alpha: float, planned: float) -> float:
    """The confidence sequence's tuning: narrowest near `planned` observations."""
    two_log = -2 * math.log(alpha)
    return math.sqrt((two_log + math.log(two_log + 1)) / max(planned, 1.0))


def confidence_sequence(
    n: np.ndarray, total: np.ndarray, squares: np.ndarray, alpha: float, planned: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The asymptotic confidence sequence at each look, from the running count, sum and sum of
    squares of the pseudo-outcomes: estimate, low, high. Valid at all looks at once."""
    n = np.asarray(n, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = total / n
        sd = np.sqrt(np.maximum(squares / n - mean**2, 0.0))
        r2 = rho(alpha, planned) ** 2
        half = sd * np.sqrt(2 * (n * r2 + 1) / (n**2 * r2) * np.log(np.sqrt(n * r2 + 1) / alpha))
    return mean, mean - half, mean + half


def verdict(low: float, high: float) -> str:
    """The reading of an always-valid interval, in the words the report uses."""
    if low > 0:
        return "shown to work"
    if high < 0:
        return "shown not to work"
    return "cannot tell yet"


def sample_ratio_p(n_held: int, n_total: int, fraction: float) -> float:
    """Chi-square test (one degree of freedom) of the held-out count against the configured
    fraction; a p-value below `SRM_P` says the draw, or what happened to its rows, is broken."""
    if n_total == 0 or not 0 < fraction < 1:
        return float("nan")
    expected = np.array([n_total * fraction, n_total * (1 - fraction)])
    chi2 = float((((np.array([n_held, n_total - n_held]) - expected) ** 2) / expected).sum())
    return float(stats.chi2.sf(chi2, 1))


def two_sided_z(level: float) -> float:
    """The normal quantile of a two-sided interval at `level` (1.96 at 95%)."""
    return float(stats.norm.ppf(1 - (1 - level) / 2))


def z_power(power: float = POWER) -> float:
    """The normal quantile at the power (0.84 at 80%): what a plan adds to an interval's
    half-width so the estimate clears it that often."""
    return float(stats.norm.ppf(power))


def z_total(alpha: float = PLAN_ALPHA, power: float = POWER) -> float:
    return float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))


def detectable(variance: float, n: float, fraction: float) -> float:
    """The smallest effect detected with 80% power at 5% two-sided by n compared assignments of
    which `fraction` are held out, for an outcome of this variance."""
    if n <= 0 or not 0 < fraction < 1:
        return float("inf")
    return z_total() * math.sqrt(variance / (n * fraction * (1 - fraction)))


@dataclass(frozen=True)
class Needed:
    fraction: float | None
    """The holdout fraction for new assignments that detects the target; None: none up to 0.5
    does, or the data in hand already does."""
    already: bool
    """The assignments already matured detect the target at the current fraction."""


def fraction_needed(
    variance: float, target: float, n_have: float, f_have: float, n_new: float
) -> Needed:
    """The fraction of `n_new` new assignments to hold out, on top of `n_have` matured ones held
    out at `f_have`, to detect `target` with 80% power at 5% two-sided."""
    information = (z_total() / target) ** 2 * variance  # n f (1 - f) that is needed
    have = n_have * f_have * (1 - f_have)
    if have >= information:
        return Needed(None, True)
    if n_new <= 0:
        return Needed(None, False)
    c = (information - have) / n_new
    if c > 0.25:
        return Needed(None, False)
    return Needed((1 - math.sqrt(1 - 4 * c)) / 2, False)
