"""The control group's checks per period, on hand-made assignments: a fair draw passes, a worked
control group and a share that is not the configured one fail, in words."""

from __future__ import annotations

import numpy as np
import pandas as pd

from expansion_scorer.program.measure import control_checks


def _assignments(period: str, n: int, held_share: float) -> pd.DataFrame:
    held = round(n * held_share)
    return pd.DataFrame(
        {
            "period": period,
            "account_id": [f"{period}-{i}" for i in range(n)],
            "arm": ["holdout"] * held + ["listed"] * (n - held),
        }
    )


def test_a_worked_control_group_fails_and_a_fair_one_passes() -> None:
    # Given two quarters drawn at 10%, and CSMs who called a third of 2024Q3's held-out accounts
    randomized = pd.concat([_assignments("2024Q2", 2000, 0.1), _assignments("2024Q3", 2000, 0.1)])
    measured = randomized.assign(touched_while_drawn=False).reset_index(drop=True)
    q3_held = np.flatnonzero((measured["period"] == "2024Q3") & (measured["arm"] == "holdout"))
    measured.loc[q3_held[::3], "touched_while_drawn"] = True

    checks = control_checks(randomized, measured, 0.1, 0.1).set_index("period")

    assert checks.loc["2024Q2", "reliable"] and checks.loc["2024Q2", "check"] == ""
    assert not checks.loc["2024Q3", "reliable"]
    assert "34% of held-out accounts were touched while held out" in checks.loc["2024Q3", "check"]
    assert checks.loc["2024Q3", "sample_ratio_p"] > 0.001  # the draw itself was fair


def test_a_share_that_is_not_the_configured_fraction_fails_the_ratio_check() -> None:
    # Given a quarter drawn at 10% measured with a configured fraction of 20%
    randomized = _assignments("2024Q2", 2000, 0.1)
    measured = randomized.iloc[:0]  # nothing matured yet: the draw is checked all the same

    checks = control_checks(randomized, measured, 0.2, 0.1)

    row = checks.iloc[0]
    assert not row["reliable"] and row["sample_ratio_p"] < 1e-6
    assert "200 of 2,000 candidates held out (10.0%) where 20% were to be" in row["check"]
    assert np.isnan(row["holdout_touched"])  # no touches in the data: not a failure
