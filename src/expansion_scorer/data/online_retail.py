"""Map the UCI Online Retail invoices (a real wholesaler's customers) into the data contract.

Customers become accounts, invoices become billed `revenue` (usage-based pricing: no
contracts) and invoice lines become usage events. Lines without a customer are dropped (they
cannot belong to an account); cancellations ("C" invoices) stay as negative revenue and as
`return_line` events. Nothing is derived from the whole period, so nothing leaks across time:
an account's `created_at` is its first invoice day.

Source: Chen, Sain and Guo (2012), UCI Machine Learning Repository dataset 352, CC BY 4.0.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from expansion_scorer.data.loading import sql_str
from expansion_scorer.errors import UserError

COLUMNS = ("InvoiceNo", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country")


def convert(source: Path, out_dir: Path) -> dict[str, int]:
    """Write accounts, revenue and usage_events as Parquet under `out_dir`; row counts back."""
    if not source.is_file():
        raise UserError(f"{source}: not found; pass the Online Retail parquet file with --source")
    con = duckdb.connect()
    src = f"read_parquet({sql_str(str(source))})"
    present = set(con.execute(f"SELECT * FROM {src} LIMIT 0").df().columns)
    missing = [c for c in COLUMNS if c not in present]
    if missing:
        raise UserError(f"{source}: missing column {missing[0]}; is this the Online Retail file?")
    out_dir.mkdir(parents=True, exist_ok=True)
    con.execute(
        f"""
        CREATE TEMP VIEW lines AS
        SELECT 'C' || CAST(CAST(CustomerID AS BIGINT) AS VARCHAR) AS account_id,
               InvoiceNo, Quantity, InvoiceDate, UnitPrice, Country
        FROM {src} WHERE CustomerID IS NOT NULL
        """
    )
    tables = {
        "accounts": """
            SELECT account_id, 'Customer ' || substr(account_id, 2) AS account_name,
                   CAST(min(InvoiceDate) AS DATE) AS created_at,
                   arg_min(Country, InvoiceDate) AS country
            FROM lines GROUP BY account_id ORDER BY account_id
        """,
        "revenue": """
            SELECT account_id, CAST(InvoiceDate AS DATE) AS date,
                   CAST(round(sum(Quantity * UnitPrice), 2) AS DECIMAL(18, 2)) AS amount
            FROM lines GROUP BY ALL HAVING sum(Quantity * UnitPrice) <> 0
            ORDER BY account_id, date
        """,
        "usage_events": """
            SELECT account_id, InvoiceDate AS timestamp,
                   CASE WHEN starts_with(InvoiceNo, 'C') THEN 'return_line' ELSE 'order_line' END
                       AS event,
                   abs(Quantity) AS quantity
            FROM lines WHERE Quantity <> 0
            ORDER BY account_id, timestamp, InvoiceNo
        """,
    }
    counts = {}
    for name, query in tables.items():
        path = out_dir / f"{name}.parquet"
        con.execute(f"COPY ({query}) TO {sql_str(str(path))} (FORMAT parquet)")
        row = con.execute(f"SELECT count(*) FROM read_parquet({sql_str(str(path))})").fetchone()
        counts[name] = int(row[0]) if row else 0
    return counts
