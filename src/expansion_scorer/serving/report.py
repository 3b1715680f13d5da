"""`report.html`: one self-contained page a CSM can act on, with every data value escaped.

It opens on each reader's own work: a section per CSM starts with the accounts to act on this
week as cards (score, what fired and why, motion, reasons, the reason against, readiness and
talking points), then those that also fired beyond the CSM's capacity, then the whole book in
rank order, each account with the drivers of its score as a bar chart. Context families (the
calendar) move the score but are not drawn: nobody can act on them.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import jinja2
import pandas as pd

from expansion_scorer.program.holdout import UNASSIGNED

BAR_WIDTH = 110  # pixels for the largest impact on the chart, either side of the axis


def _chart(drivers: dict[str, float], context: frozenset[str]) -> list[dict[str, Any]]:
    """Bars for the families that moved the score by half a point or more, largest first."""
    items = sorted(
        ((k, v) for k, v in drivers.items() if abs(v) >= 0.5 and k not in context),
        key=lambda kv: -abs(kv[1]),
    )[:8]
    scale = max((abs(v) for _, v in items), default=1.0) or 1.0
    return [
        {
            "family": k.replace("_", " "),
            "points": v,
            "width": max(1.0, abs(v) / scale * BAR_WIDTH),
            "positive": v > 0,
        }
        for k, v in items
    ]


def _text(value: object) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def render_report(
    scores: pd.DataFrame,
    drivers: pd.DataFrame,
    excluded: pd.DataFrame,
    meta: dict[str, Any],
    triggers: pd.DataFrame | None = None,
    limit: int | None = None,
    context: frozenset[str] = frozenset(),
) -> str:
    """The page; with `limit`, each CSM's book, their "also fired" list and the not-scored list
    stop after that many rows and say how many more the CSV files hold. An account whose
    `placed_by` is uplift (the uplift ranking drafted it onto a list or ranked its book) shows
    its uplift reasons beside the reasons for its score; `meta["lists"]` says which ranking
    built the week's lists and why."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(
        resources.files("expansion_scorer")
        .joinpath("serving", "templates", "report.html.j2")
        .read_text(encoding="utf-8")
    )
    reason_cols = [c for c in scores.columns if c.startswith("reason_") and c[7:].isdigit()]
    uplift_cols = [c for c in scores.columns if c.startswith("uplift_reason_") and c[14:].isdigit()]
    family_cols = [c for c in drivers.columns if c != "account_id"]
    by_account = (
        drivers.set_index("account_id")[family_cols].to_dict(orient="index") if len(drivers) else {}
    )
    sections: dict[str, list[dict[str, Any]]] = {}
    for r in scores.to_dict(orient="records"):
        owner = _text(r["csm_owner"]) or UNASSIGNED
        # what a call changes, where the uplift ranking drafted or ranked the account
        by_uplift = r.get("placed_by") == "uplift" and bool(uplift_cols)
        sections.setdefault(owner, []).append(
            {
                "rank": int(r["rank"]),
                "account_id": _text(r["account_id"]),
                "account_name": _text(r["account_name"]),
                "score": float(r["score"]),
                "band": _text(r["band"]),
                "ready": r["readiness"] == "ready",
                "readiness_reason": _text(r["readiness_reason"]),
                "motion": _text(r["motion"]),
                "reasons": [_text(r[c]) for c in reason_cols if _text(r[c])],
                "against": _text(r["reason_against"]),
                "uplift_reasons": [_text(r[c]) for c in uplift_cols if _text(r[c])]
                if by_uplift
                else [],
                "uplift_against": _text(r.get("uplift_reason_against")) if by_uplift else "",
                "talking_points": list(r["talking_points"]),
                "chart": _chart(
                    {str(k): float(v) for k, v in by_account.get(r["account_id"], {}).items()},
                    context,
                ),
            }
        )
    account = {r["account_id"]: r for rows in sections.values() for r in rows}
    fired: list[dict[str, Any]] = [
        {
            "rank": int(t["rank"]),
            "account_id": _text(t["account_id"]),
            "account_name": _text(t["account_name"]),
            "csm_owner": _text(t["csm_owner"]) or UNASSIGNED,
            "score": float(t["score"]),
            "act": bool(t["act_this_week"]),
            "trigger": _text(t["trigger"]),
            "why": _text(t["why"]),
            "rules": _text(t["rules"]),
        }
        for t in (triggers.to_dict("records") if triggers is not None else [])
    ]
    ordered = []
    for owner, rows in sorted(
        sections.items(), key=lambda kv: (kv[0] == UNASSIGNED, kv[0].lower())
    ):
        mine = sorted((t for t in fired if t["csm_owner"] == owner), key=lambda t: t["rank"])
        cards = [{**account[t["account_id"]], **t} for t in mine if t["act"]]
        also = [t for t in mine if not t["act"]]
        ordered.append(
            {
                "owner": owner,
                "rows": sorted(rows, key=lambda r: r["rank"])[:limit],
                "total": len(rows),
                "cards": cards,
                "also": also[:limit],
                "also_total": len(also),
            }
        )
    not_scored = excluded[["account_id", "account_name", "excluded_reason"]]
    return template.render(
        sections=ordered,
        scored=len(scores),
        excluded=not_scored.head(limit if limit is not None else len(not_scored)).to_dict(
            "records"
        ),
        excluded_total=len(not_scored),
        bands=sorted(meta["bands"].items(), key=lambda kv: -kv[1]),
        band_counts=scores["band"].value_counts().to_dict(),
        not_ready=int((scores["readiness"] != "ready").sum()) if len(scores) else 0,
        meta=meta,
        acting=sum(1 for t in fired if t["act"]),
        also_fired=sum(1 for t in fired if not t["act"]),
        show_triggers=triggers is not None,
        previous_run=meta.get("previous_run", ""),
    )
