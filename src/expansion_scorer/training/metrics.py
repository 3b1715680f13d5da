"""What a data scientist judges a ranking by: discrimination, lift where CSMs work, calibration.

Lift and recall at k are computed per snapshot date, the list a CS team works from on that
date, and pooled over dates. Ties are shared fairly: a block of equal scores straddling the cut
contributes its mean label for the places it gets, so a yes/no rule is not flattered or
punished by the order its ties happen to be in.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

RELIABILITY_BINS = 10


def _expected_hits(y: np.ndarray, p: np.ndarray, k: int) -> float:
    """Positives expected in the top k by score when ties are broken at random."""
    if k <= 0 or len(y) == 0:
        return 0.0
    k = min(k, len(y))
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    cut = p_sorted[k - 1]
    above = p_sorted > cut
    tied = p_sorted == cut
    room = k - int(above.sum())
    return float(y_sorted[above].sum() + room * y_sorted[tied].mean())


def at_k(
    y: np.ndarray, p: np.ndarray, dates: np.ndarray, k: int | None, fraction: float = 0.0
) -> tuple[float, float]:
    """Lift and recall of the top k (or top `fraction`) per date, pooled over dates."""
    hits = picked = 0.0
    for d in np.unique(dates):
        rows = dates == d
        n = int(rows.sum())
        take = min(k, n) if k is not None else max(1, round(n * fraction))
        hits += _expected_hits(y[rows], p[rows], take)
        picked += take
    positives = float(y.sum())
    base = positives / len(y) if len(y) else float("nan")
    precision = hits / picked if picked else float("nan")
    lift = precision / base if base > 0 else float("nan")
    recall = hits / positives if positives > 0 else float("nan")
    return lift, recall


def reliability(y: np.ndarray, p: np.ndarray, bins: int = RELIABILITY_BINS) -> pd.DataFrame:
    """Mean score against observed rate in equal-count bins of the score."""
    order = np.argsort(p, kind="stable")
    groups = np.array_split(order, min(bins, len(p)))
    return pd.DataFrame(
        {
            "mean_score": [float(p[g].mean()) for g in groups if len(g)],
            "observed_rate": [float(y[g].mean()) for g in groups if len(g)],
            "rows": [len(g) for g in groups if len(g)],
        }
    )


def expected_calibration_error(y: np.ndarray, p: np.ndarray) -> float:
    """Row-weighted gap between mean score and observed rate over the reliability bins."""
    table = reliability(y, p)
    gap = (table["mean_score"] - table["observed_rate"]).abs()
    return float((gap * table["rows"]).sum() / table["rows"].sum())


def evaluate(y: np.ndarray, p: np.ndarray, dates: np.ndarray, k: int) -> dict[str, float]:
    """Every metric the report and the gate read, for one set of scored snapshots."""
    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(p, dtype=np.float64)
    dates = np.asarray(dates)
    lift_k, recall_k = at_k(y, p, dates, k)
    lift_decile, recall_decile = at_k(y, p, dates, None, 0.1)
    two = y.min() != y.max()
    return {
        "roc_auc": float(roc_auc_score(y, p)) if two else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if two else float("nan"),
        "lift_at_capacity": lift_k,
        "recall_at_capacity": recall_k,
        "lift_top_decile": lift_decile,
        "recall_top_decile": recall_decile,
        "brier": float(np.mean((p - y) ** 2)),
        "ece": expected_calibration_error(y, p),
        "base_rate": float(y.mean()),
        "rows": float(len(y)),
    }


def captured_arr(arr: np.ndarray, rank_by: np.ndarray, dates: np.ndarray, k: int) -> float:
    """Share of the expansion ARR that the top k per date, ranked by `rank_by`, account for."""
    total = float(arr.sum())
    if total <= 0:
        return float("nan")
    got = 0.0
    for d in np.unique(dates):
        rows = dates == d
        got += _expected_hits(arr[rows], rank_by[rows], min(k, int(rows.sum())))
    return got / total
