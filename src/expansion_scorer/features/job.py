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
