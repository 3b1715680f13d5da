"""`expansion metrics`: NRR and GRR per month and trailing 12 months, as CSV and PNG."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from expansion_scorer.config import FeatureSet
from expansion_scorer.data.loading import open_world
from expansion_scorer.data.sources import DataSource
from expansion_scorer.data.validation import validate
from expansion_scorer.errors import UserError
from expansion_scorer.features.ledger import build_movements
from expansion_scorer.features.revenue import GROUPABLE, revenue_chart, revenue_table
from expansion_scorer.features.snapshots import data_span
from expansion_scorer.outputs import bytes_writer, csv_writer, write_outputs


@dataclass(frozen=True)
class MetricsResult:
    table: pd.DataFrame
    files: list[Path]


def metrics_job(
    data_dir: DataSource, out_dir: Path, feature_set: FeatureSet, by: str | None = None
) -> MetricsResult:
    if by is not None and by not in GROUPABLE:
        raise UserError(f"--by {by}: not a grouping column; use one of {', '.join(GROUPABLE)}")
    world = open_world(data_dir)
    validate(world)
    if world.consumption:
        raise UserError(
            f"{world.label('revenue')}: NRR is computed from subscriptions (contract ARR), and"
            " the data has a revenue table instead; export subscriptions to measure NRR"
        )
    row = world.con.execute("SELECT min(start_date) FROM subscriptions").fetchone()
    assert row is not None and row[0] is not None  # validation: subscriptions is not empty
    first = row[0]
    _, end = data_span(world)
    build_movements(world.con, feature_set)
    table = revenue_table(world.con, first, end, by)
    if table.empty:
        raise UserError(
            f"{world.label('subscriptions')}: no complete month of subscriptions to measure"
        )
    png = revenue_chart(table, by)
    name = f"nrr_by_{by}" if by else "nrr"
    files = write_outputs(
        out_dir,
        {f"{name}.csv": csv_writer(table), f"{name}.png": bytes_writer(png)},
    )
    return MetricsResult(table=table, files=files)


def say(result: MetricsResult, by: str | None) -> None:
    """What `metrics` prints: the latest trailing-twelve-month NRR and GRR, per group."""
    table = result.table
    key = by or "group"
    last = table[table["t12m_nrr"].notna()].groupby(key).tail(1)
    for row in last.to_dict("records"):
        who = "" if by is None else f"{row[key]}: "
        print(
            f"{who}12 months to {row['month']:%Y-%m}: NRR {row['t12m_nrr']:.1f}%,"
            f" GRR {row['t12m_grr']:.1f}% (starting ARR {row['t12m_starting_arr']:,.0f},"
            f" expansion {row['t12m_expansion_arr']:,.0f}, price uplift"
            f" {row['t12m_price_uplift_arr']:,.0f}, contraction {row['t12m_contraction_arr']:,.0f},"
            f" churned {row['t12m_churned_arr']:,.0f})"
        )
    for path in result.files:
        print(f"  {path}")
