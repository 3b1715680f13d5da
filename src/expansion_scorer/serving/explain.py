"""SHAP contributions and the sentences a CSM reads, in the account's own numbers."""

from __future__ import annotations

import math
import string

import numpy as np
import pandas as pd
import shap

from expansion_scorer.config import FeatureSet
from expansion_scorer.training.model import PropensityModel


def contributions(model: PropensityModel, frame: pd.DataFrame) -> pd.DataFrame:
    """Per-account SHAP values (log-odds) of every model feature, exact TreeSHAP."""
    matrix = model.matrix(frame)
    values = shap.TreeExplainer(model.booster).shap_values(matrix)
    if isinstance(values, list):  # older shap returns one array per class
        values = values[-1]
    values = np.asarray(values)
    if values.ndim == 3:
        values = values[..., -1]
    return pd.DataFrame(values, columns=model.feature_names, index=frame.index)


class _Values(string.Formatter):
    """Formats a reason template; a missing value anywhere makes the whole sentence unusable."""

    def format_field(self, value: object, format_spec: str) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise ValueError("missing")
        return super().format_field(value, format_spec)


def render(template: str | None, fallback: str, row: dict[str, object]) -> str:
    if template is None:
        return fallback
    try:
        return _Values().format(template, **row)
    except (ValueError, KeyError, TypeError, IndexError):
        return fallback


def reasons(
    frame: pd.DataFrame, shap_values: pd.DataFrame, feature_set: FeatureSet, top: int
) -> pd.DataFrame:
    """`reason_1..top` (strongest positive drivers) and `reason_against` (strongest negative)."""
    defs = {f.name: f for f in feature_set.features}
    names = list(shap_values.columns)
    values = shap_values.to_numpy()
    order = np.argsort(-values, axis=1, kind="stable")
    rows: list[dict[str, object]] = [
        {str(k): v for k, v in r.items()} for r in frame.to_dict(orient="records")
    ]
    out: dict[str, list[str]] = {f"reason_{i + 1}": [] for i in range(top)}
    against: list[str] = []
    for i, row in enumerate(rows):
        picked = [j for j in order[i][:top] if values[i, j] > 0]
        for k in range(top):
            if k < len(picked):
                d = defs[names[picked[k]]]
                text = render(d.reason, d.description, row)
                out[f"reason_{k + 1}"].append(f"{text} (+{values[i, picked[k]]:.2f})")
            else:
                out[f"reason_{k + 1}"].append("")
        j = int(order[i][-1])
        if values[i, j] < 0:
            d = defs[names[j]]
            against.append(f"{render(d.reason, d.description, row)} ({values[i, j]:.2f})")
        else:
            against.append("")
    return pd.DataFrame({**out, "reason_against": against}, index=frame.index)
