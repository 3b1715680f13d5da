"""The pooled rate's intervals, on a hand-made program whose covariates explain a little of the
outcome (as in the program world, where the score at the draw explains about 6%): the interval
is the estimate plus and minus 1.96 bootstrap standard deviations, whose width moves far less
from one bootstrap seed to the next than percentiles' do, so a small real gain from the
adjustment is not lost to Monte Carlo noise."""

from __future__ import annotations

import numpy as np
import pandas as pd

from expansion_scorer.program.measure import ADJUSTED, _row, bootstrap


def _program(seed: int = 4, n: int = 1500) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    score = rng.beta(2, 4, n)
    held = rng.random(n) < 0.1
    expanded = (rng.random(n) < 0.05 + 0.9 * score + 0.05 * ~held).astype("int32")
    return pd.DataFrame(
        {
            "account_id": [f"a{i // 2}" for i in range(n)],  # two assignments an account
            "arm": np.where(held, "holdout", "listed"),
            "expanded": expanded,
            "expansion_arr": expanded * 1000.0,
            "score": score,
            "prior_expansions": rng.poisson(0.5, n),
            "arr_before": rng.lognormal(9, 1, n),
        }
    )


def test_the_rate_intervals_are_normal_from_the_bootstrap_standard_deviation() -> None:
    rows = _program()

    row = _row("pooled", "all", rows, seed=0, level=0.95)

    # symmetric about the estimate, for the plain and the adjusted effect alike
    for estimate, low, high in (("effect", "effect_low", "effect_high"),
                                ("adjusted_effect", "adjusted_low", "adjusted_high")):  # fmt: skip
        assert abs((row[estimate] - row[low]) - (row[high] - row[estimate])) < 1e-12
    # and the adjustment, which the score makes worth a little, narrows it
    assert row["adjusted_high"] - row["adjusted_low"] < row["effect_high"] - row["effect_low"]


def test_the_adjusted_width_moves_less_between_bootstrap_seeds_than_percentiles_do() -> None:
    rows = _program()
    wanted = {"plain": lambda d: d["expanded"], ADJUSTED: lambda d: d[f"expanded:{ADJUSTED}"]}

    def ratios(normal: tuple[str, ...]) -> np.ndarray:
        out = []
        for seed in range(12):
            b = bootstrap(rows, ["expanded"], wanted, seed, adjust=("expanded",), normal=normal)
            out.append((b[ADJUSTED][2] - b[ADJUSTED][1]) / (b["plain"][2] - b["plain"][1]))
        return np.array(out)

    normal, percentile = ratios(("plain", ADJUSTED)), ratios(())

    assert normal.std() < 0.75 * percentile.std(), (normal.std(), percentile.std())
    assert (normal < 1).all(), normal
