"""The week's tables as people read them: one text cell of talking points, percentages and
whole money in the spreadsheets, and one list a CSM."""

from __future__ import annotations

import re
import unicodedata

import pandas as pd

from expansion_scorer.config import ServingConfig
from expansion_scorer.program.holdout import owners_of
from expansion_scorer.serving.scoring import score_columns


def flat(scores: pd.DataFrame, serving: ServingConfig) -> pd.DataFrame:
    """The score list with talking points as one text cell, for CSV and Parquet."""
    out = scores[score_columns(serving)].copy()
    out["talking_points"] = out["talking_points"].map(lambda t: " | ".join(t))
    return out


def for_people(table: pd.DataFrame) -> pd.DataFrame:
    """A table as a CSM reads it in a spreadsheet: scores as percentages with one decimal
    (`score_pct`), changes in points (`change_pts`), money in whole units. The Parquet files
    and the history keep full precision."""
    out = table.copy()
    for col in ("score", "previous_score"):
        if col in out:
            out[col] = (pd.to_numeric(out[col]) * 100).round(1)
    if "change" in out:
        out["change"] = (pd.to_numeric(out["change"]) * 100).round(1)
    for col in ("expected_expansion_arr", "expected_incremental_arr"):
        if col in out:
            out[col] = pd.to_numeric(out[col]).round(0).astype("Int64")
    if "uplift" in out:
        out["uplift"] = (pd.to_numeric(out["uplift"]) * 100).round(1)
    return out.rename(
        columns={"score": "score_pct", "previous_score": "previous_score_pct",
                 "change": "change_pts", "uplift": "uplift_pts"}
    )  # fmt: skip


def per_csm(
    scores: pd.DataFrame, capacity: int, every: pd.Series | None = None
) -> dict[str, pd.DataFrame]:
    """Each CSM's list: their top `capacity` accounts in rank order; file names are slugs.

    `every` names the CSMs who get a file even with nothing listed this week (all of their
    accounts held out), so that last week's list is replaced, not left in place.
    """
    owners = owners_of(scores["csm_owner"])
    named = owners if every is None else owners_of(every)
    lists: dict[str, pd.DataFrame] = {}
    for owner in sorted(set(named) | set(owners)):
        ascii_name = unicodedata.normalize("NFKD", owner).encode("ascii", "ignore").decode()
        slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-") or "csm"
        name, n = f"{slug}.csv", 2
        while name in lists:
            name, n = f"{slug}-{n}.csv", n + 1
        lists[name] = scores[owners == owner].head(capacity)
    return lists
