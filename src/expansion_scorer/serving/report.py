"""`report.html`: one self-contained page a CSM can read, with every data value escaped."""

from __future__ import annotations

from importlib import resources

import jinja2
import pandas as pd


def render_report(scores: pd.DataFrame, excluded: pd.DataFrame, meta: dict[str, object]) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(
        resources.files("expansion_scorer")
        .joinpath("serving", "templates", "report.html.j2")
        .read_text(encoding="utf-8")
    )
    reason_cols = [c for c in scores.columns if c.startswith("reason_") and c != "reason_against"]
    rows = [
        {
            "rank": int(r["rank"]),
            "account_id": str(r["account_id"]),
            "account_name": str(r["account_name"]),
            "csm_owner": "" if pd.isna(r["csm_owner"]) else str(r["csm_owner"]),
            "score": float(r["score"]),
            "band": str(r["band"]),
            "reasons": [str(r[c]) for c in reason_cols if r[c]],
            "against": str(r["reason_against"]),
        }
        for r in scores.to_dict(orient="records")
    ]
    excluded_rows = excluded[["account_id", "account_name", "excluded_reason"]].to_dict(
        orient="records"
    )
    bands = scores["band"].value_counts().to_dict()
    return template.render(rows=rows, excluded=excluded_rows, meta=meta, bands=bands)
