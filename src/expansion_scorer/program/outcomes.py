"""What happened to each matured assignment: whether the account expanded within its horizon
from the day it was drawn, by how much, and (where the data has `touches`) whether it was
touched within a week of being listed and at all while its arm held. Read from the ARR ledger of
the data as it is now. Beside them, what was known of the account at the draw, for the adjusted
effect: its ARR the day before and its expansions in the year before (rows dated strictly
before the draw only).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from expansion_scorer.config import FeatureSet
from expansion_scorer.data.loading import open_world
from expansion_scorer.data.sources import DataSource
from expansion_scorer.data.validation import validate
from expansion_scorer.features.frame import Labelling, label_frame
from expansion_scorer.features.ledger import EXPANSION_KINDS
from expansion_scorer.features.snapshots import book_arr, data_span
from expansion_scorer.program.holdout import period_end

TOUCH_DAYS = 7
"""A listed account complies when it is touched within this many days of being listed."""
PRIOR_DAYS = 365
"""The window before the draw whose expansions are a covariate of the adjusted effect."""


def outcomes(
    data_dir: DataSource, feature_set: FeatureSet, assignments: pd.DataFrame
) -> tuple[pd.DataFrame, date, float]:
    """The matured assignments with `expanded` and `expansion_arr` within their horizon, the
    covariates `arr_before` and `prior_expansions`, the end of the data, and the ARR of the book
    on the first matured cohort's date."""
    world = open_world(data_dir)
    validate(world, feature_set.events)
    _, end = data_span(world)
    rows = assignments.copy()
    rows["assigned_on"] = pd.to_datetime(rows["assigned_on"]).dt.date
    closes = pd.to_datetime(rows["assigned_on"]) + pd.to_timedelta(rows["horizon_days"], unit="D")
    matured = rows[(closes <= pd.Timestamp(end)).to_numpy()].reset_index(drop=True)
    if matured.empty:
        return matured.assign(expanded=pd.Series(dtype="int32")), end, 0.0
    pairs = matured.rename(columns={"assigned_on": "as_of"})
    found = []
    eligible = pd.DataFrame(columns=["account_id", "as_of"])
    for horizon in sorted(set(matured["horizon_days"].astype(int))):
        part = matured[matured["horizon_days"].astype(int) == horizon]
        y = label_frame(world, feature_set, pairs, Labelling(horizon))
        eligible = y[["account_id", "as_of"]]  # the same pairs at every horizon
        found.append(
            part.merge(
                y.rename(columns={"as_of": "assigned_on", "label": "expanded"}),
                on=["account_id", "assigned_on"],
                how="left",
            )
        )
    measured = pd.concat(found, ignore_index=True)
    known = world.con.execute(
        f"""SELECT e.account_id, CAST(e.as_of AS DATE) AS assigned_on,
            any_value(e.arr_before) AS arr_before, count(m.day) AS prior_expansions
        FROM entities e LEFT JOIN movements m ON m.account_id = e.account_id
         AND m.day < e.as_of AND m.day >= e.as_of - {PRIOR_DAYS}
         AND m.kind IN {EXPANSION_KINDS} AND m.arr_delta > 0
        GROUP BY ALL"""
    ).df()
    known["assigned_on"] = pd.to_datetime(known["assigned_on"]).dt.date
    measured = measured.merge(known, on=["account_id", "assigned_on"], how="left")
    first = min(matured["assigned_on"])
    book = book_arr(world.con, first)
    # an assigned account that is no longer eligible on its own date (a corrected export)
    # has no outcome: it counts as not expanded rather than silently leaving its arm
    measured["expanded"] = measured["expanded"].fillna(0).astype("int32")
    measured["expansion_arr"] = measured["expansion_arr"].fillna(0.0).astype("float64")
    if world.has("touches"):
        world.con.execute("SELECT 1").fetchall()  # finish any open result before registering
        world.con.register("eligible_pairs", eligible)
        horizon = int(matured["horizon_days"].max())
        touched = world.con.execute(
            f"""SELECT e.account_id, CAST(e.as_of AS DATE) AS as_of,
                min(CAST(t.touched_at AS DATE) - CAST(e.as_of AS DATE)) AS first_day
            FROM eligible_pairs e JOIN touches t
            ON t.account_id = e.account_id AND CAST(t.touched_at AS DATE) >= CAST(e.as_of AS DATE)
            AND CAST(t.touched_at AS DATE) < CAST(e.as_of AS DATE) + {horizon}
            GROUP BY ALL"""
        ).df()
        world.con.unregister("eligible_pairs")
        first_touch = dict(
            zip(
                zip(touched["account_id"], pd.to_datetime(touched["as_of"]).dt.date, strict=True),
                touched["first_day"].astype("int64"),
                strict=True,
            )
        )
        keys = zip(measured["account_id"], measured["assigned_on"], strict=True)
        day = np.array([first_touch.get(k, -1) for k in keys], dtype="int64")
        measured["touched"] = (day >= 0) & (day < TOUCH_DAYS)
        # touched while its arm held (within its horizon and before its period ended): for a
        # held-out account, a broken control group; a touch once the next period has drawn it
        # again is that period's program, not contamination
        held_for = np.array(
            [(period_end(str(p)) - d).days
             for p, d in zip(measured["period"], measured["assigned_on"], strict=True)],
            dtype="int64",
        )  # fmt: skip
        measured["touched_while_drawn"] = (day >= 0) & (
            day < np.minimum(measured["horizon_days"].to_numpy("int64"), held_for)
        )
    return measured, end, book
