"""What happened to each matured assignment: whether the account expanded within its horizon
from the day it was drawn, by how much, and (where the data has `touches`) whether it was
touched within a week of being listed. Read from the ARR ledger of the data as it is now.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from expansion_scorer.config import FeatureSet
from expansion_scorer.data.loading import open_world
from expansion_scorer.data.sources import DataSource
from expansion_scorer.data.validation import validate
from expansion_scorer.features.frame import Labelling, label_frame
from expansion_scorer.features.snapshots import book_arr, data_span

TOUCH_DAYS = 7
"""A listed account complies when it is touched within this many days of being listed."""


def outcomes(
    data_dir: DataSource, feature_set: FeatureSet, assignments: pd.DataFrame
) -> tuple[pd.DataFrame, date, float]:
    """The matured assignments with `expanded` and `expansion_arr` within their horizon, the end
    of the data, and the ARR of the book on the first matured cohort's date."""
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
    first = min(matured["assigned_on"])
    book = book_arr(world.con, first)
    # an assigned account that is no longer eligible on its own date (a corrected export)
    # has no outcome: it counts as not expanded rather than silently leaving its arm
    measured["expanded"] = measured["expanded"].fillna(0).astype("int32")
    measured["expansion_arr"] = measured["expansion_arr"].fillna(0.0).astype("float64")
    if world.has("touches"):
        world.con.execute("SELECT 1").fetchall()  # finish any open result before registering
        world.con.register("eligible_pairs", eligible)
        touched = world.con.execute(
            f"""SELECT DISTINCT e.account_id, CAST(e.as_of AS DATE) AS as_of
            FROM eligible_pairs e JOIN touches t
            ON t.account_id = e.account_id AND CAST(t.touched_at AS DATE) >= CAST(e.as_of AS DATE)
            AND CAST(t.touched_at AS DATE) < CAST(e.as_of AS DATE) + {TOUCH_DAYS}"""
        ).df()
        world.con.unregister("eligible_pairs")
        touched["as_of"] = pd.to_datetime(touched["as_of"]).dt.date
        keys = set(zip(touched["account_id"], touched["as_of"], strict=True))
        measured["touched"] = [
            (a, d) in keys
            for a, d in zip(measured["account_id"], measured["assigned_on"], strict=True)
        ]
    return measured, end, book
