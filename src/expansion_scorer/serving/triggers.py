"""Which accounts a CSM should act on this week, and why their score moved.

An account fires when it enters the top band or its CSM's capacity list, when its score rises
by `score_rise` since the previous run, or while a trigger rule holds. The first run has no
previous one, so it is the baseline: only rules fire. The `why` of a trigger is
the change of each reason family's impact on the score since the previous run, in points, with
the feature of the leading family that moved most. A fired account stays quiet for
`cooldown_weeks` unless its score rises by `score_rise` again above where it fired.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from expansion_scorer.config import FeatureSet, TriggerConfig
from expansion_scorer.program.history import Past
from expansion_scorer.program.holdout import owners_of
from expansion_scorer.serving.explain import OPERATORS
from expansion_scorer.text import Columns, render_rows

TRIGGER_COLUMNS = [
    "as_of", "rank", "account_id", "account_name", "csm_owner", "act_this_week", "score",
    "previous_score", "change", "trigger", "why", "rules", "model_version",
]  # fmt: skip


def act_this_week(
    owners: pd.Series, tier: np.ndarray, change: np.ndarray, rank: np.ndarray, capacity: int
) -> np.ndarray:
    """Which fired accounts each CSM is told to act on: at most `capacity` a CSM, strongest first.

    Strength is the kind of trigger (`tier`, lower is stronger: a rule, a rise, then entering
    the top band or the capacity list), then the size of the rise, then the rank. An account
    without a CSM is nobody's to act on: it only "also fires", until it has an owner.
    """
    order = np.lexsort((rank, -np.nan_to_num(change, nan=0.0), tier))
    who = owners_of(owners).to_numpy()[order]
    place = pd.Series(who).groupby(who, sort=False).cumcount().to_numpy()
    act = np.zeros(len(order), dtype=bool)
    act[order] = (place < capacity) & owners.notna().to_numpy()[order]
    return act


def _value(v: float) -> str:
    if not np.isfinite(v):
        return "none"
    return f"{v:,.0f}" if abs(v) >= 10 or float(v).is_integer() else f"{v:.2f}"


def _feature_move(
    family: str, feature_set: FeatureSet, now: dict[str, float], before: dict[str, float]
) -> str:
    """The family's numeric feature with the largest relative change: 'active users 28d 12 → 26'."""
    best, best_size = "", 0.0
    for f in feature_set.features:
        if f.family != family or f.kind != "numeric" or f.name not in before:
            continue
        if not feature_set.speaks(f):
            continue
        a, b = float(before.get(f.name, np.nan)), float(now.get(f.name, np.nan))
        if not (np.isfinite(a) and np.isfinite(b)) or a == b:
            continue
        size = abs(b - a) / max(abs(a), 1e-9)
        if size > best_size:
            name = f.name.replace("_", " ")
            ratio = f" (x{b / a:.1f})" if a > 0 and b / a >= 2 else ""
            best, best_size = f"{name} {_value(a)} → {_value(b)}{ratio}", size
    return best


def _why(
    score: float,
    previous: float,
    moves: pd.Series,
    top: int,
    detail: str,
) -> str:
    if not np.isfinite(previous):
        head = f"first scored at {score:.0%}"
        order = moves.sort_values(ascending=False, kind="stable")
    else:
        change = score - previous
        word = "up" if change >= 0 else "down"
        head = f"score {word} {abs(change):.2f} ({previous:.0%} → {score:.0%})"
        order = moves.sort_values(ascending=change < 0, kind="stable")
    parts = [
        f"{str(fam).replace('_', ' ')} {pts:+.0f} pts" for fam, pts in order.head(top).items()
        if abs(pts) >= 0.5
    ]  # fmt: skip
    if detail:
        parts.append(detail)
    return f"{head}: {', '.join(parts)}" if parts else head


def find_triggers(
    scores: pd.DataFrame,
    drivers: pd.DataFrame,
    frame: pd.DataFrame,
    past: Past,
    cfg: TriggerConfig,
    feature_set: FeatureSet,
    as_of: date,
    capacity: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The fired triggers with why and `act_this_week` (at most `capacity` a CSM), and per
    scored account `fired` (told to act this week: its cooldown starts) and `trigger` (the kinds).

    `scores` holds account_id, account_name, csm_owner, rank, score, band, on_list and
    model_version; `drivers` the points per family; `frame` the features, one row per account.
    """
    prev = past.scores.set_index("account_id")
    ids = scores["account_id"]
    prev_score = ids.map(prev["score"]).astype("float64").to_numpy()
    prev_band = ids.map(prev["band"])
    prev_list = ids.map(prev["on_list"]).astype("boolean").fillna(False).to_numpy(dtype=bool)
    first = np.isnan(prev_score)
    score = scores["score"].to_numpy(dtype="float64")
    change = score - prev_score

    # The first run is the baseline: with no earlier run nothing has entered anything (every
    # top-band account would fire), so only rules fire. Later, a new account can enter.
    has_past = past.as_of is not None
    entered_band = (
        has_past
        & (scores["band"] == cfg.top_band).to_numpy()
        & (first | (prev_band != cfg.top_band).to_numpy())
    )
    entered_list = has_past & scores["on_list"].to_numpy(dtype=bool) & ~prev_list
    rise = np.nan_to_num(change, nan=0.0) >= cfg.score_rise - 1e-12

    features = frame.set_index("account_id").loc[ids]
    table = Columns(features.reset_index())
    rule_hits: list[list[str]] = [[] for _ in range(len(scores))]
    rule_says: list[list[str]] = [[] for _ in range(len(scores))]
    for rule in cfg.rules:
        values = pd.to_numeric(features[rule.feature], errors="coerce")
        holds = np.flatnonzero(
            OPERATORS[rule.op](values, rule.value).fillna(False).to_numpy(dtype=bool)
        )
        said = render_rows(rule.says, rule.name.replace("_", " "), table, holds)
        for hit, text in zip(holds, said, strict=True):
            rule_hits[hit].append(rule.name)
            rule_says[hit].append(text)

    fired_at = ids.map(past.last_fired.set_index("account_id")["fired_score"]).astype("float64")
    in_cooldown = fired_at.notna().to_numpy()
    jumped = score - np.nan_to_num(fired_at.to_numpy(), nan=0.0) >= cfg.score_rise - 1e-12

    kinds: list[str] = []
    for i in range(len(scores)):
        k: list[str] = []
        if entered_band[i]:
            k.append(f"entered {cfg.top_band}")
        if entered_list[i]:
            k.append("entered capacity list")
        if rise[i]:
            k.append("rise")
        k += [f"rule {name}" for name in rule_hits[i]]
        kinds.append("; ".join(k))
    candidate = np.array([bool(k) for k in kinds])
    fired = candidate & (~in_cooldown | jumped)
    has_rule = np.array([bool(h) for h in rule_hits])
    tier = np.select([has_rule, rise, entered_band], [0, 1, 2], default=3)
    act = np.zeros(len(scores), dtype=bool)
    act[fired] = act_this_week(
        scores.loc[fired, "csm_owner"],
        tier[fired],
        change[fired],
        scores.loc[fired, "rank"].to_numpy(),
        capacity,
    )

    context = feature_set.context_families
    told = [c for c in drivers.columns if c != "account_id" and c not in context]
    now_points = drivers.set_index("account_id")[told]
    before_points = past.drivers.set_index("account_id").reindex(columns=now_points.columns)
    before_features = past.features.set_index("account_id")
    why: list[str] = []
    for n in np.flatnonzero(fired):
        i = int(n)
        acc = ids.iloc[i]
        now = now_points.loc[acc].astype("float64")
        moves = now if first[i] else now - before_points.loc[acc].fillna(0.0).astype("float64")
        detail = ""
        if not first[i] and acc in before_features.index:
            lead = moves.sort_values(ascending=bool(change[i] < 0), kind="stable").index[0]
            detail = _feature_move(
                str(lead),
                feature_set,
                {
                    str(k): v
                    for k in table.frame.columns
                    if isinstance(v := table[k][i], int | float)
                },
                before_features.loc[acc].astype("float64").to_dict(),
            )
        why.append(_why(score[i], prev_score[i], moves, cfg.families, detail))

    out = scores.loc[fired, ["rank", "account_id", "account_name", "csm_owner", "score"]].copy()
    out.insert(0, "as_of", as_of)
    out.insert(5, "act_this_week", act[fired])
    out["previous_score"] = prev_score[fired]
    out["change"] = np.round(change[fired], 6)
    out["trigger"] = [kinds[i] for i in np.flatnonzero(fired)]
    out["why"] = why
    out["rules"] = ["; ".join(rule_says[i]) for i in np.flatnonzero(fired)]
    out["model_version"] = scores.loc[fired, "model_version"]
    # The cooldown starts when a CSM is told to act: an account that only "also fired" may
    # come back next week.
    state = pd.DataFrame({"account_id": ids, "fired": act, "trigger": kinds})
    return out[TRIGGER_COLUMNS].reset_index(drop=True), state
