"""Sentences rendered in bulk are exactly the sentences rendered one account at a time."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from expansion_scorer.config import (
    FeatureSet,
    ServingConfig,
    load_serving_config,
    load_training_config,
)
from expansion_scorer.data.loading import open_world
from expansion_scorer.features.build import build_features
from expansion_scorer.features.ledger import build_expansions
from expansion_scorer.features.snapshots import build_entities
from expansion_scorer.model.loading import load_model
from expansion_scorer.model.parts import Contributions
from expansion_scorer.model.propensity import contributions
from expansion_scorer.serving.explain import (
    NO_MOTION,
    OPERATORS,
    family_points,
    motions,
    points_text,
    readiness,
    reasons,
    speak,
    speak_rows,
)
from expansion_scorer.settings import load_feature_set
from expansion_scorer.text import Columns, fill, fill_rows, render, render_rows
from expansion_scorer.training.dataset import training_frame

DATES = [date(2023, 11, 6), date(2024, 5, 6), date(2024, 9, 1)]
SHIPPED = [
    (Path("features/features.yaml"), Path("serving/default.yaml")),
    (Path("features/online_retail.yaml"), Path("serving/online_retail.yaml")),
]
FALLBACK = "<fallback>"


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as the row-by-row path gave them to Jinja."""
    return [{str(k): v for k, v in r.items()} for r in frame.to_dict(orient="records")]


def reasons_row_by_row(
    frame: pd.DataFrame,
    contrib: Contributions,
    points: pd.DataFrame,
    feature_set: FeatureSet,
    top: int,
) -> pd.DataFrame:
    """The reference: `reasons` as it was, one account at a time."""
    defs = {f.name: f for f in feature_set.features}
    columns = list(contrib.values.columns)
    context = feature_set.context_families
    fam_names = [f for f in points.columns if f not in context]
    members = [
        np.array(
            [
                columns.index(f.name)
                for f in feature_set.features
                if f.family == fam and f.name in columns and feature_set.speaks(f)
            ]
        )
        for fam in fam_names
    ]
    keep = [j for j, idx in enumerate(members) if len(idx)]
    fam_names, members = [fam_names[j] for j in keep], [members[j] for j in keep]
    fam_values = points[fam_names].to_numpy()
    shap_values = contrib.values.to_numpy()
    out: dict[str, list[str]] = {f"reason_{k + 1}": [] for k in range(top)}
    against: list[str] = []
    for i, row in enumerate(records(frame)):
        order = np.argsort(-fam_values[i], kind="stable")

        def sentence(j: int, sign: float, i: int = i, row: dict = row) -> str:
            idx = members[j]
            d = defs[columns[idx[np.argmax(sign * shap_values[i, idx])]]]
            return f"{speak(d, row)} ({points_text(fam_values[i, j])})"

        positive = [j for j in order[:top] if fam_values[i, j] >= 0.5]
        for k in range(top):
            out[f"reason_{k + 1}"].append(sentence(positive[k], 1.0) if k < len(positive) else "")
        worst = int(order[-1]) if len(order) else -1
        told = worst >= 0 and fam_values[i, worst] <= -0.5
        against.append(sentence(worst, -1.0) if told else "")
    return pd.DataFrame({**out, "reason_against": against}, index=frame.index)


def motions_row_by_row(
    frame: pd.DataFrame, points: pd.DataFrame, serving: ServingConfig
) -> pd.DataFrame:
    """The reference: `motions` as it was, one account at a time."""
    keys = list(serving.motions)
    strength = np.column_stack(
        [
            points[[f for f in serving.motions[k].families if f in points.columns]]
            .sum(axis=1)
            .to_numpy()
            for k in keys
        ]
    )
    best = strength.argmax(axis=1)
    chosen, labels, talking = [], [], []
    for i, row in enumerate(records(frame)):
        if strength[i, best[i]] < 0.5:
            chosen.append("")
            labels.append(NO_MOTION)
            talking.append([])
            continue
        key = keys[best[i]]
        motion = serving.motions[key]
        chosen.append(key)
        labels.append(render(motion.label, key.replace("_", "-").capitalize(), row))
        talking.append([t for t in (render(s, "", row) for s in motion.talking_points) if t])
    return pd.DataFrame(
        {"motion_key": chosen, "motion": labels, "talking_points": talking}, index=frame.index
    )


def readiness_row_by_row(frame: pd.DataFrame, serving: ServingConfig) -> pd.DataFrame:
    """The reference: `readiness` as it was, one account at a time."""
    said: list[list[str]] = [[] for _ in range(len(frame))]
    rows = records(frame)
    for rule in serving.readiness:
        values = pd.to_numeric(frame[rule.feature], errors="coerce")
        fires = OPERATORS[rule.op](values, rule.value).fillna(False).to_numpy(dtype=bool)
        for i in np.flatnonzero(fires):
            said[i].append(render(rule.says, rule.name.replace("_", " "), rows[i]))
    return pd.DataFrame(
        {
            "readiness": ["not yet" if s else "ready" for s in said],
            "readiness_reason": ["; ".join(s) for s in said],
        },
        index=frame.index,
    )


def with_holes(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The frame, then copies of its rows with values taken away: each column missing in turn
    (NaN, None in text columns), everything missing at once, categories nobody has seen, and
    numbers at the edges a filter must tell apart (0.0 and -0.0, 1, exactly 2)."""
    rng = np.random.default_rng(seed)
    extra = []
    for column in frame.columns.drop(["account_id", "account_name", "csm_owner", "as_of"],
                                     errors="ignore"):  # fmt: skip
        holed = frame.iloc[rng.integers(0, len(frame), 3)].copy()
        holed[column] = None if frame[column].dtype.kind not in "fiub" else np.nan
        extra.append(holed)
    numeric = [c for c in frame.columns if frame[c].dtype.kind == "f"]
    texts = [c for c in frame.columns if frame[c].dtype.kind not in "fiub"]
    texts = [c for c in texts if c not in ("account_id", "account_name", "csm_owner")]
    empty = frame.iloc[:5].copy()
    empty[numeric] = np.nan
    for c in texts:
        empty[c] = None
    strange = frame.iloc[5:10].copy()
    for c in texts:
        strange[c] = ["Zeta", "", "data_export", "api_call", "plan_b"]
    edges = frame.iloc[10:14].copy()
    for c in numeric:
        edges[c] = [0.0, -0.0, 1.0, 2.0]
    out = pd.concat([frame, *extra, empty, strange, edges], ignore_index=True)
    out["account_id"] = [f"A{i:06d}" for i in range(len(out))]
    return out


@pytest.fixture(scope="module")
def worlds(world_dir: Path) -> dict[Path, pd.DataFrame]:
    """Per shipped feature file, the generated world's rows at three dates, with holes."""
    out = {}
    for features_path, _ in SHIPPED:
        features = load_feature_set(features_path)
        world = open_world(world_dir)
        build_entities(world.con, DATES)
        build_expansions(world.con, features)
        frame = build_features(
            world.con, features, world.has("support_tickets"), world.has("nps_responses")
        )
        frame["account_name"], frame["csm_owner"] = "Acme", "Dana"
        out[features_path] = with_holes(frame)
    return out


def shipped_templates(features_path: Path, serving_path: Path) -> list[tuple[str, str]]:
    """Every template a shipped file holds, with the name of where it is."""
    found: list[tuple[str, str]] = []
    for f in load_feature_set(features_path).features:
        for part in ("reason", "missing"):
            source = getattr(f, part)
            if isinstance(source, str):
                found.append((f"{f.name}.{part}", source))
    serving = load_serving_config(serving_path)
    for key, motion in serving.motions.items():
        found.append((f"motion {key}.label", motion.label))
        found += [(f"motion {key}.talking_points[{k}]", s)
                  for k, s in enumerate(motion.talking_points)]  # fmt: skip
    found += [(f"readiness {r.name}", r.says) for r in serving.readiness]
    if serving.triggers is not None:
        found += [(f"trigger rule {r.name}", r.says) for r in serving.triggers.rules]
    return found


@pytest.mark.parametrize(("features_path", "serving_path"), SHIPPED)
def test_every_shipped_template_renders_in_bulk_as_row_by_row(
    features_path: Path, serving_path: Path, worlds: dict[Path, pd.DataFrame]
) -> None:
    # Given every shipped template, and every account of a generated world at three dates,
    # with missing values, unseen categories and edge numbers
    frame = worlds[features_path]
    rows = records(frame)
    templates = shipped_templates(features_path, serving_path)
    assert len(templates) >= 10
    filled = fell_back = 0
    for where, source in templates:
        # When it is rendered in bulk over every account
        bulk = render_rows(source, FALLBACK, Columns(frame), np.arange(len(frame)))
        # Then each account gets exactly the string it got row by row, fallbacks included
        expected = [render(source, FALLBACK, row) for row in rows]
        assert bulk == expected, (where, next(
            (b, e) for b, e in zip(bulk, expected, strict=True) if b != e))  # fmt: skip
        filled += sum(t != FALLBACK for t in bulk)
        fell_back += sum(t == FALLBACK for t in bulk)
    assert filled > 1000 and fell_back > 50  # both paths were exercised


def test_every_feature_speaks_in_bulk_as_row_by_row(worlds: dict[Path, pd.DataFrame]) -> None:
    for features_path, _ in SHIPPED:
        # Given every feature that may speak, and every account, on record or not
        features = load_feature_set(features_path)
        frame = worlds[features_path]
        rows = records(frame)
        for f in features.features:
            # When its sentence is said for every account in bulk
            said = speak_rows(f, Columns(frame), np.arange(len(frame)))
            # Then it is what `speak` says for each account, its missing sentence included
            assert said == [speak(f, row) for row in rows], f.name


@pytest.mark.parametrize(
    "source",
    [
        "{{ plan|upper }} on {{ seats|round|int }} seats",  # filters the bulk plan leaves to Jinja
        "{{ plan ~ '!' }} {% for x in [1, 2] %}{{ x }}{% endfor %}",
        "{{ seats|num if seats > 10 else 'few' }} {{ -tenure_days|num }} {{ plan }}",
        "{% if plan is string and not seats < 5 %}{{ plan }}{% elif seats %}{{ seats }}{% endif %}",
        "{{ seats or 'none' }} {{ (seats / 2)|num(1) }} {{ seats * 2 - 1 }} {{ 1 }}",
    ],
)
def test_any_template_renders_in_bulk_as_row_by_row(
    source: str, worlds: dict[Path, pd.DataFrame]
) -> None:
    # Given templates beyond the shipped ones: filters, loops and expressions of every kind
    frame = worlds[SHIPPED[0][0]]
    rows = records(frame)
    # When each is filled in bulk, then it is what `fill` says, None where `fill` raises
    expected: list[str | None] = []
    for row in rows:
        try:
            expected.append(fill(source, row))
        except ValueError:
            expected.append(None)
    assert fill_rows(source, Columns(frame), np.arange(len(frame))) == expected
    assert any(t for t in expected)


def test_reasons_motions_readiness_in_bulk_are_the_row_by_row_ones(
    champion: Path, world_dir: Path
) -> None:
    # Given the champion the CLI trains, and its training snapshots with holes
    model, _ = load_model("models:/expansion-propensity@champion")
    features, serving = load_feature_set(), load_serving_config()
    snapshots = training_frame(open_world(world_dir), features, load_training_config(), None)
    snapshots["account_name"], snapshots["csm_owner"] = "Acme", "Dana"
    frame = with_holes(snapshots.drop(columns=["label"], errors="ignore"))
    scores = model.predict_proba(frame)
    contrib = contributions(model, frame)
    points = family_points(contrib, features, scores, 1 / (1 + np.exp(-contrib.base_logit)))
    # and the same with points and SHAP values rounded, so that families and features tie
    tied = Contributions(values=contrib.values.round(1), base_logit=contrib.base_logit)
    for c, p in ((contrib, points), (tied, points.round(0))):
        # When the list is explained in bulk
        got = (reasons(frame, c, p, features, serving.reasons), motions(frame, p, serving))
        # Then every reason, motion, talking point and readiness is the row-by-row one
        pd.testing.assert_frame_equal(
            got[0], reasons_row_by_row(frame, c, p, features, serving.reasons)
        )
        pd.testing.assert_frame_equal(got[1], motions_row_by_row(frame, p, serving))
    pd.testing.assert_frame_equal(readiness(frame, serving), readiness_row_by_row(frame, serving))
    said = reasons(frame, contrib, points, features, serving.reasons)
    assert (said["reason_1"] != "").mean() > 0.5 and (said["reason_against"] != "").any()
    assert readiness(frame, serving)["readiness"].eq("not yet").any()
