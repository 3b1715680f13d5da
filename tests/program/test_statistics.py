"""The measurement's statistics on simulated streams, where the truth is known by construction:
the always-valid interval under weekly looks, the adjusted effect, the sample-ratio test and the
plan's power."""

from __future__ import annotations

import numpy as np

from expansion_scorer.program import statistics as st

REPS = 10_000
WEEKS = 26
PER_WEEK = 200
HELD = 0.1


def _weekly_looks(
    rng: np.random.Generator, rate_listed: float, rate_held: float
) -> tuple[np.ndarray, np.ndarray]:
    """REPS programs, each read every week for WEEKS weeks: whether the always-valid interval
    and the fixed-horizon 95% interval excluded zero at any look."""
    n1 = rng.binomial(PER_WEEK, 1 - HELD, size=(REPS, WEEKS)).astype("float64")
    n0 = PER_WEEK - n1
    k1 = rng.binomial(n1.astype("int64"), rate_listed).astype("float64")
    k0 = rng.binomial(n0.astype("int64"), rate_held).astype("float64")
    c1, c0 = np.cumsum(n1, axis=1), np.cumsum(n0, axis=1)
    s1, s0 = np.cumsum(k1, axis=1), np.cumsum(k0, axis=1)
    # predictions from the weeks before only (none in the first): each arm's running rate
    with np.errstate(divide="ignore", invalid="ignore"):
        m1 = np.nan_to_num(np.c_[np.zeros(REPS), (s1 / c1)[:, :-1]])
        m0 = np.nan_to_num(np.c_[np.zeros(REPS), (s0 / c0)[:, :-1]])
    total = np.zeros((REPS, WEEKS))
    squares = np.zeros((REPS, WEEKS))
    for treated, y, count in ((True, 1.0, k1), (True, 0.0, n1 - k1), (False, 1.0, k0),
                              (False, 0.0, n0 - k0)):  # fmt: skip
        phi = st.pseudo_outcomes(np.full(m1.shape, y), np.full(m1.shape, treated), 1 - HELD, m1, m0)
        total += count * phi
        squares += count * phi**2
    n = np.arange(1, WEEKS + 1) * PER_WEEK
    _, low, high = st.confidence_sequence(
        np.broadcast_to(n, (REPS, WEEKS)),
        np.cumsum(total, axis=1),
        np.cumsum(squares, axis=1),
        alpha=0.05,
        planned=13 * PER_WEEK,
    )
    always = ((low > 0) | (high < 0)).any(axis=1)
    p1, p0 = s1 / c1, s0 / c0
    se = np.sqrt(p1 * (1 - p1) / c1 + p0 * (1 - p0) / c0)
    with np.errstate(divide="ignore", invalid="ignore"):
        fixed = (np.abs(p1 - p0) > 1.96 * se).any(axis=1)
    return always, fixed


def test_the_always_valid_interval_read_every_week_declares_a_null_effect_at_most_5_percent() -> (
    None
):
    # Given 4,000 programs that change nothing, 10% held out, read every week for half a year
    always, fixed = _weekly_looks(np.random.default_rng(7), 0.2, 0.2)

    # Then acting on the first week the always-valid interval excludes zero errs at most 5% of
    # the time, where acting on the fixed-horizon interval errs far more often
    assert always.mean() <= 0.05, always.mean()
    assert fixed.mean() > 0.15, fixed.mean()


def test_the_always_valid_interval_finds_a_real_effect() -> None:
    # Given programs that lift expansion from 20% to 30%: an interval that never excludes zero
    # would pass the test above, so it must find this one in nearly every program
    always, _ = _weekly_looks(np.random.default_rng(8), 0.3, 0.2)
    assert always.mean() > 0.95, always.mean()


def _experiments(rng: np.random.Generator, reps: int, n: int) -> tuple[np.ndarray, ...]:
    x = rng.normal(size=(reps, n, 2))
    treated = rng.random((reps, n)) < 0.7
    p = 1 / (1 + np.exp(-(-1.0 + 1.5 * x[..., 0] + 0.5 * x[..., 1] + 0.4 * treated)))
    y = (rng.random((reps, n)) < p).astype("float64")
    return x, treated, y


def test_the_adjusted_effect_is_the_fully_interacted_regressions_and_more_precise() -> None:
    rng = np.random.default_rng(3)
    x, treated, y = _experiments(rng, 400, 600)

    adjusted, plain = [], []
    for r in range(len(y)):
        xc = st.centred(x[r])
        listed = st.design_products(xc[treated[r]], y[r][treated[r]]).sum(axis=0)
        held = st.design_products(xc[~treated[r]], y[r][~treated[r]]).sum(axis=0)
        adjusted.append(float(st.lin_effect(listed, held, 2)))
        plain.append(y[r][treated[r]].mean() - y[r][~treated[r]].mean())
        if r < 5:  # the coefficient of the arm in y ~ 1 + T + Xc + T Xc (Lin 2013)
            t = treated[r].astype("float64")
            design = np.column_stack([np.ones(len(t)), t, xc, t[:, None] * xc])
            coef = np.linalg.lstsq(design, y[r], rcond=None)[0]
            assert abs(coef[1] - adjusted[-1]) < 1e-9

    # the same truth on average (the effect of the arm averaged over the covariates)
    truth_x = rng.normal(size=(200_000, 2))
    logit = -1.0 + 1.5 * truth_x[:, 0] + 0.5 * truth_x[:, 1]
    truth = np.mean(1 / (1 + np.exp(-(logit + 0.4))) - 1 / (1 + np.exp(-logit)))
    assert abs(np.mean(adjusted) - truth) < 0.01 and abs(np.mean(plain) - truth) < 0.01
    # and a spread the covariates shrink well below the difference in means'
    assert np.std(adjusted) < 0.9 * np.std(plain), (np.std(adjusted), np.std(plain))


def test_the_sample_ratio_check_fails_a_thinned_arm_only() -> None:
    rng = np.random.default_rng(5)
    drawn = rng.random((2000, 3000)) < 0.1
    held = drawn.sum(axis=1)
    p = np.array([st.sample_ratio_p(int(h), 3000, 0.1) for h in held])
    assert (p < st.SRM_P).mean() < 0.005  # a fair draw fails about 1 in 1,000 times

    # one held-out account in three dropped after the draw
    thinned = held - rng.binomial(held, 1 / 3)
    p = np.array([st.sample_ratio_p(int(h), int(3000 - (o - h)), 0.1)
                  for h, o in zip(thinned, held, strict=True)])  # fmt: skip
    assert (p < st.SRM_P).mean() > 0.9


def test_the_plans_detectable_effect_is_detected_80_percent_of_the_time() -> None:
    # Given a base rate of 20%, 2,000 assignments, 10% held out
    rng = np.random.default_rng(11)
    n, f, rate = 2000, 0.1, 0.2
    effect = st.detectable(rate * (1 - rate), n, f)
    assert 0.05 < effect < 0.15

    # When 4,000 experiments run with exactly that effect
    n0 = int(n * f)
    k1 = rng.binomial(n - n0, rate + effect, size=REPS) / (n - n0)
    k0 = rng.binomial(n0, rate, size=REPS) / n0
    se = np.sqrt(k1 * (1 - k1) / (n - n0) + k0 * (1 - k0) / n0)

    # Then a two-sided 5% test finds it about 80% of the time
    assert 0.75 < ((k1 - k0) / se > 1.96).mean() < 0.86

    # and the fraction it asks for brings a target within reach, or says none can
    needed = st.fraction_needed(0.16, 0.05, 0, 0.1, 3000)
    assert needed.fraction is not None
    assert abs(st.detectable(0.16, 3000, needed.fraction) - 0.05) < 1e-9
    assert st.fraction_needed(0.16, 0.005, 0, 0.1, 3000).fraction is None
    assert st.fraction_needed(0.16, 0.05, 100_000, 0.1, 3000).already
