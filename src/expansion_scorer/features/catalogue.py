"""The company's own catalogue: plans, events and the affinity of events to products.

Definitions that say `plan_order: auto`, `events: auto` or `affinity: learned` take them from
the data instead of naming them, so the shipped features work on a company whose event, product
and plan names they have never seen.

The learned affinity links an event to the product whose purchase it announces. On a set of
training snapshots (an account at a month start, with its label window), for every product P
and every event E: among the active accounts that do not own P, how well E's share of the
account's events in the 28 days before the snapshot ranks those that then bought P within the
horizon above those that did not (ROC AUC). A share, not a count, so that busy accounts, which
buy everything more often, do not make every event point to every product. E points to the
product it ranks best, when that AUC reaches `MIN_AUC`, `MIN_Z` standard errors above chance, on at
least `MIN_PURCHASES` purchases.
It reads only the snapshots it is given and their label windows: a backtest fold fits it on its
training months, whose windows close before its calibration and test months begin.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

import duckdb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from expansion_scorer.config import FeatureDef, FeatureSet
from expansion_scorer.data.contract import held_on
from expansion_scorer.data.loading import AnyWorld
from expansion_scorer.errors import UserError
from expansion_scorer.features.ledger import plans_by_price
from expansion_scorer.features.snapshots import as_dates

MIN_PURCHASES = 5
"""Purchases of a product among the training snapshots below which it gets no affinity."""
MIN_AUC = 0.6
"""How much better than chance an event's share must rank the buyers of a product."""
MIN_Z = 3.0
"""And how many standard errors of a chance AUC above 0.5 (Hanley and McNeil's, under the null):
on few purchases an AUC of 0.6 is still noise."""
MAX_EVENTS = 200
"""The most frequent events considered for the affinity; rarer ones are left out."""


def resolve_plans(world: AnyWorld, features: FeatureSet) -> FeatureSet:
    """The definitions with `plan_order: auto` replaced by the data's plans, by price."""
    if not features.plan_order_auto:
        return features
    return features.with_catalogue(plan_order=plans_by_price(world))


def check_usable_events(world: AnyWorld, where: str, before: date) -> None:
    """Stop when no usage event of a known account is dated before `before`: every usage
    feature would read nothing, and a model fitted on the rest would not say so."""
    (row,) = world.rows(
        f"""
        SELECT count(*),
            count(*) FILTER (WHERE u.event IS NOT NULL AND u.timestamp < DATE '{before}'
                AND u.account_id IN (SELECT account_id FROM accounts)),
            count(*) FILTER (WHERE u.account_id IN (SELECT account_id FROM accounts))
        FROM usage_events u
        """
    )
    total, usable, known = (int(v) for v in row)
    if usable:
        return
    raise UserError(
        f"{where}: no usable usage event: {total:,} rows, {known:,} of them of accounts in"
        f" accounts, none of those with an event dated before {before} (the last snapshot);"
        " the features need your accounts' events before the dates they score: export them"
    )


@dataclass(frozen=True)
class AffinityData:
    """What the affinity is fitted on, for every entity (account, as_of) once."""

    keys: pd.DataFrame
    """account_id, as_of of each entity, in row order of the matrices below."""
    shares: np.ndarray
    """entities x events: the event's share of the account's events in the 28 days before."""
    events: list[str]
    active: np.ndarray
    """Entities with any event in those 28 days."""
    owned: np.ndarray
    """entities x products: the product is held on the day before as_of."""
    bought: np.ndarray
    """entities x products: a cross-sell of the product in [as_of, as_of + horizon)."""
    products: list[str]


def affinity_data(
    query: duckdb.DuckDBPyConnection | Callable[[str], pd.DataFrame], horizon_days: int
) -> AffinityData:
    """What an affinity is fitted from, read with `query` (DuckDB SQL, run by either engine;
    a connection runs it there) from `entities`, `movements` and `event_agg` (prepared with
    every event tracked)."""
    if isinstance(query, duckdb.DuckDBPyConnection):
        con = query

        def query(sql: str) -> pd.DataFrame:
            return con.execute(sql).df()

    keys = query("SELECT account_id, as_of FROM entities ORDER BY as_of, account_id")
    keys = as_dates(keys)
    index = pd.MultiIndex.from_frame(keys)
    counts = as_dates(
        query(
            f"""
            WITH top AS (
                SELECT event FROM event_agg GROUP BY event ORDER BY sum(n) DESC, event
                LIMIT {MAX_EVENTS}
            )
            SELECT account_id, as_of, event, n FROM event_agg
            WHERE n > 0 AND event IN (SELECT event FROM top)
            """
        )
    )
    totals = as_dates(
        query(
            "SELECT account_id, as_of, sum(n) AS n FROM event_agg WHERE n > 0"
            " GROUP BY account_id, as_of"
        )
    )
    pivot = counts.pivot_table(
        index=["account_id", "as_of"], columns="event", values="n", aggfunc="sum", fill_value=0
    )
    total = totals.set_index(["account_id", "as_of"])["n"].reindex(index).fillna(0).to_numpy()
    events = [str(e) for e in pivot.columns]
    matrix = pivot.reindex(index, fill_value=0).to_numpy(dtype="float64")
    shares = np.divide(
        matrix, total[:, None], out=np.zeros_like(matrix), where=total[:, None] > 0
    ).astype("float32")
    held = as_dates(
        query(
            f"""
            SELECT DISTINCT e.account_id, e.as_of, s.product FROM entities e
            JOIN subscriptions s ON s.account_id = e.account_id
             AND {held_on("s", "e.as_of - 1")}
            """
        )
    )
    sold = as_dates(
        query(
            f"""
            SELECT DISTINCT e.account_id, e.as_of, m.product FROM entities e
            JOIN movements m ON m.account_id = e.account_id AND m.kind = 'cross_sell'
             AND m.day >= e.as_of AND m.day < e.as_of + {int(horizon_days)}
            """
        )
    )
    products = sorted({str(p) for p in [*held["product"], *sold["product"]] if p is not None})

    def flags(rows: pd.DataFrame) -> np.ndarray:
        rows = rows.assign(flag=True)
        table = rows.pivot_table(
            index=["account_id", "as_of"], columns="product", values="flag", aggfunc="any"
        )
        table = table.reindex(index=index, columns=products)
        return table.fillna(False).to_numpy(dtype=bool)

    return AffinityData(
        keys=as_dates(keys),
        shares=shares,
        events=events,
        active=total > 0,
        owned=flags(held),
        bought=flags(sold),
        products=products,
    )


@dataclass(frozen=True)
class Affinity:
    """The fitted affinity: event -> product, and the evidence for every pair considered."""

    pairs: dict[str, str]
    evidence: pd.DataFrame
    """event, product, purchases, auc, z: every (event, product) the fit scored."""


def fit_affinity(data: AffinityData, dates: Sequence[date]) -> Affinity:
    """The affinity fitted on the entities dated `dates` (see the module's docstring)."""
    rows = data.keys["as_of"].isin(set(dates)).to_numpy() & data.active
    scored = []
    for j, product in enumerate(data.products):
        at_risk = rows & ~data.owned[:, j]
        y = data.bought[at_risk, j]
        purchases = int(y.sum())
        if purchases < MIN_PURCHASES or purchases == len(y):
            continue
        shares = data.shares[at_risk]
        others = len(y) - purchases
        chance = float(np.sqrt((purchases + others + 1) / (12.0 * purchases * others)))
        for i, event in enumerate(data.events):
            x = shares[:, i]
            auc = float(roc_auc_score(y, x)) if x.max() > x.min() else 0.5
            scored.append((event, product, purchases, auc, (auc - 0.5) / chance))
    evidence = pd.DataFrame(scored, columns=["event", "product", "purchases", "auc", "z"])
    best = evidence.sort_values(["auc", "product"], ascending=[False, True])
    best = best[(best["auc"] >= MIN_AUC) & (best["z"] >= MIN_Z)].drop_duplicates("event")
    pairs = dict(sorted(zip(best["event"], best["product"], strict=True)))
    return Affinity(pairs=pairs, evidence=evidence)


def for_model(
    features: FeatureSet, affinity: dict[str, str] | None, plans: list[str] | None
) -> FeatureSet:
    """The definitions a model is scored with: its fitted affinity and plan order where the
    definitions leave them to the data (models trained before them have neither)."""
    return features.with_catalogue(
        plan_order=plans if features.plan_order_auto and plans else None,
        affinity=affinity if features.affinity_learned and affinity is not None else None,
    )


def _names_absent(f: FeatureDef, features: FeatureSet, known: set[str]) -> list[str]:
    """The names `f` reads that the data never holds, when it reads nothing for them (nothing
    it names is in the data, or none of the products or plans its sql names is); else []."""
    quoted = set(re.findall(r"'([^']+)'", f.sql))  # the products and plans its sql names
    literals = set(quoted)
    if f.window is not None and f.window.event:
        literals |= set(f.window.event)
    for name, w in features.windows.items():  # and the events of the windows it reads
        if w.event and re.search(rf"\b{name}\b", f.sql):
            literals |= set(w.event)
    named = sorted(literals - known)
    if named and (not literals & known or (quoted and not quoted & known)):
        return named
    return []


def reading_nothing(world: AnyWorld, features: FeatureSet) -> list[str]:
    """The features that name only what the data never holds (`catalogue`'s warnings): a
    model does not learn from them, since their values measure nothing but missingness."""
    events, products, plans = _data_names(world, features)
    known = set(events) | set(products) | set(plans)
    return [f.name for f in features.features if _names_absent(f, features, known)]


def _data_names(world: AnyWorld, features: FeatureSet) -> tuple[list[str], list[str], list[str]]:
    """The events (most frequent first), products and plans the data holds."""

    def names(sql: str) -> list[str]:
        return [str(r[0]) for r in world.rows(sql) if r[0] is not None]

    events = names(
        "SELECT CAST(event AS VARCHAR) FROM raw_usage_events GROUP BY 1 ORDER BY count(*) DESC"
    )
    products, plans = [], []
    by_price = features.plan_order_auto
    if world.has("subscriptions"):
        products = names("SELECT DISTINCT product FROM subscriptions ORDER BY 1")
        plans = (
            plans_by_price(world)
            if by_price
            else names("SELECT DISTINCT plan FROM subscriptions ORDER BY 1")
        )
    return events, products, plans


def catalogue(world: AnyWorld, features: FeatureSet) -> tuple[list[str], list[str]]:
    """What the data names (events, products, plans), and each feature definition that names
    something the data never holds, so reads nothing: a company's own names are not ours."""
    events, products, plans = _data_names(world, features)
    by_price = features.plan_order_auto
    found = [
        f"events ({len(events)}): {', '.join(events[:12])}{', ...' if len(events) > 12 else ''}",
        f"products ({len(products)}): {', '.join(products)}",
        f"plans ({len(plans)}{', by ARR per seat, lowest first' if by_price else ''}):"
        f" {', '.join(plans)}",
    ]
    if features.affinity_learned:
        found.append("affinity: learned from the training snapshots when a model is trained")
    known = set(events) | set(products) | set(plans)
    unread = []
    listed = [] if isinstance(features.plan_order, str) else features.plan_order
    order = [p for p in listed if p not in plans]
    if plans and order:
        unread.append(f"plan_order names {', '.join(order)}, which no subscription holds")
    beyond = [p for p in plans if p not in listed]
    if beyond and not by_price:
        unread.append(
            f"plans {', '.join(beyond)} are not in plan_order: upgrades to or from them are"
            " not seen as plan moves; add them to plan_order, lowest first"
        )
    for f in features.features:
        named = _names_absent(f, features, known)
        if named:
            unread.append(
                f"feature {f.name} names {', '.join(named)}, which the data never holds:"
                " it reads nothing; rename them in the feature definitions"
            )
    for name, w in features.windows.items():
        if w.event and not set(w.event) & set(events):
            unread.append(
                f"window {name} counts {', '.join(w.event)}, which the usage log never holds"
            )
    for plan, limits in features.plan_limits.items():
        absent = sorted({plan} - set(plans) | set(limits) - set(events))
        if absent:
            unread.append(
                f"plan_limits {plan}: {', '.join(absent)} not in the data, so plan_limit_use"
                " reads nothing from it; name your plans and metered events, or drop it"
            )
    for event, product in features.affinity_pairs.items():
        if event not in events or (products and product not in products):
            unread.append(f"affinity {event} -> {product}: not in the data ({event!r} or"
                          f" {product!r} missing)")  # fmt: skip
    return found, unread
