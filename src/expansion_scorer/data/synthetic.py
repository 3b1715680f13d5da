"""A synthetic B2B SaaS world in the data contract, with the true expansion odds behind it.

Why: training, scoring and benchmarks need data whose mechanisms are known, including the
probability a perfect model would give, and which is dirty enough to exercise validation.

The world is a monthly simulation over all accounts at once. Latent state the files never show
(people wanting access, team growth, budget, engagement, frustration, need for each add-on)
drives contracts, usage, tickets and NPS. Accounts created up to three years before `start`
exist with their contract history; usage, tickets and NPS cover `[start, end)`, where `end` is
`months` months after `start`.

What downstream code can rely on:

- An expansion on day d: the account had ARR > 0 on d-1 and on d some product gained seats,
  moved to a higher plan (starter < team < business < enterprise), or started while absent on
  d-1. Renewal price uplifts (same product, plan and seats, new arr) are not expansions.
- Expansions take effect only on days 3..28 of a month, so a 90-day window from a month start
  holds exactly the expansions of that month and the next two, whatever the month lengths.
  An account never has a decrease (contraction, add-on drop, churn) and an expansion in the
  same month. Decreases fall on the renewal anniversary or, rarely, on any other day.
- Every subscription row has arr > 0; churn ends all of an account's rows and is final.
- `truth.parquet` holds, for every month start T with start < T < end and every account with
  created_at < T and ARR > 0 on T-1, `p_expand`: the probability, given the full latent state at
  T, of at least one expansion in [T, T + 90 days). Forward paths draw from their own random
  stream, so writing it never changes the other files.
- Usage rows come grouped by month, then by account, user and time. Some accounts use the
  product on a trial before their first subscription, some never subscribe, and about 0.3% of
  rows belong to free workspaces ("F00012") that are not in accounts.
"""

from __future__ import annotations

import pickle
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

PRODUCTS = ("Core", "Analytics", "Automation", "Integrations")
PLANS = ("starter", "team", "business", "enterprise")
SEAT_CAP = (10, 50, 250, 1_000_000)
API_LIMIT = (5_000.0, 50_000.0, 500_000.0, np.inf)  # calls per month
SEAT_PRICE = (240.0, 420.0, 780.0, 1200.0)  # list ARR per seat
ADDON_PRICE = (  # flat list ARR by the plan at purchase
    (1_200.0, 3_600.0, 12_000.0, 30_000.0),
    (900.0, 3_000.0, 9_000.0, 24_000.0),
    (1_500.0, 4_800.0, 15_000.0, 36_000.0),
)
EVENTS = (
    "login",
    "create_record",
    "comment",
    "share",
    "invite_user",
    "export_report",  # points to Analytics
    "schedule_task",  # points to Automation
    "api_call",  # points to Integrations; quantity counts calls
    "build_dashboard",  # Analytics owners only
    "run_workflow",  # Automation owners only
    "sync_connector",  # Integrations owners only
)
API_SLOT = 7
PRIORITIES = ("low", "normal", "high", "urgent")
SEGMENTS = ("SMB", "Mid-Market", "Enterprise")
INDUSTRIES = (
    "Software",
    "Financial Services",
    "Healthcare",
    "Retail",
    "Manufacturing",
    "Education",
    "Logistics",
    "Media",
    "Professional Services",
)
# Per industry: team growth shift, budget shift, need shift for each add-on, API intensity.
INDUSTRY_EFFECTS = (
    (0.008, 0.3, 0.3, 0.4, 1.0, 2.5),
    (0.002, 0.5, 0.9, 0.2, 0.3, 1.2),
    (0.000, 0.0, 0.4, -0.2, 0.2, 0.6),
    (-0.003, -0.2, 0.6, 0.3, 0.0, 1.0),
    (0.000, 0.0, -0.2, 0.9, 0.1, 0.8),
    (-0.004, -0.6, -0.3, -0.3, -0.5, 0.4),
    (0.002, -0.1, 0.0, 0.8, 0.5, 1.5),
    (0.004, 0.0, 0.5, 0.0, -0.2, 0.7),
    (0.003, 0.2, 0.2, 0.1, -0.3, 0.5),
)
COUNTRIES = (  # name, UTC offset in hours, share of accounts
    ("United States", -5.0, 0.34),
    ("United Kingdom", 0.0, 0.1),
    ("Germany", 1.0, 0.1),
    ("France", 1.0, 0.06),
    ("Netherlands", 1.0, 0.05),
    ("Switzerland", 1.0, 0.04),
    ("Brazil", -3.0, 0.06),
    ("Japan", 9.0, 0.05),
    ("Canada", -5.0, 0.06),
    ("Australia", 10.0, 0.04),
    ("Spain", 1.0, 0.03),
    ("India", 5.5, 0.04),
    ("Sweden", 1.0, 0.02),
    ("Poland", 1.0, 0.01),
)
CSMS = ("Alice Martin", "Bruno Costa", "Chloé Dubois", "Daniel Kim", "Eva Novak", "Farid Haddad")
NAME_HEADS = (
    "Acme", "Blue", "North", "Bright", "Summit", "Pioneer", "Atlas", "Nova", "Green", "Iron",
    "Silver", "Apex", "Harbor", "Maple", "Quantum", "Red", "Vertex", "Lumen", "Cedar", "Orbit",
)  # fmt: skip
NAME_TAILS = (
    "Analytics", "Logistics", "Systems", "Foods", "Health", "Labs", "Works", "Partners",
    "Capital", "Media", "Robotics", "Textiles", "Energy", "Software", "Retail", "Studios",
)  # fmt: skip
LEGAL_FORMS = ("Inc.", "LLC", "GmbH", "Ltd", "AG", "S.A.", "B.V.")
ODD_NAMES = (
    "Müller & Söhne",
    '"Best" Co',
    "O'Brien Logistics",
    "Smith, Jones & Partners",
    "Zürich Versicherungsdienst",
    "São Paulo Tecnologia Ltda",
    "東京データ株式会社",
    "Café Crème SARL",
    "D'Angelo Foods",
    "Łódź Software",
    "Peña, Ruiz y Asociados",
    'The "Quick" Fox Ltd',
    "Nguyễn Trading",
    "Ørsted & Co",
)
SEASON = (0.45, 0.1, 0.1, 0.0, 0.0, 0.0, 0.0, -0.6, 0.0, 0.2, 0.3, 0.35)  # Jan..Dec, logit
WEEKDAY = (1.0, 1.0, 1.0, 1.0, 0.9, 0.18, 0.12)  # Monday..Sunday activity factor
PRE_MONTHS = 36  # simulated before `start`, so the window opens on an installed base
TRUTH_PATHS = 16  # in antithetic pairs, see _truth
HORIZON_MONTHS = 3
TOUCH_MONTHS = 2  # a touch in month m changes the hazards of months m+1 and m+2
TOUCH_GAIN = 1.2  # log-odds a touch adds for an account that has fully seen value
TOUCH_TOO_EARLY = -0.8  # and what it costs in the first months of a contract
TOUCH_EARLY_MONTHS = 4
CONTRACT_SLACK = 0.15  # contraction seats: demand plus up to 15%
NO_DAY = np.iinfo(np.int64).max // 4  # "never" for day numbers
US_PER_DAY = 86_400_000_000
US_PER_HOUR = 3_600_000_000

State = dict[str, np.ndarray]
Log = list[tuple[np.ndarray, ...]]  # contract changes, see _log


@dataclass(frozen=True)
class Mechanisms:
    """How strongly each latent cause moves expansion, and how loudly usage reports it.

    The defaults are the world the project was written on: seats bought under pressure from
    people waiting for one and team growth, plan upgrades at the API and seat limits, add-ons from
    need that shows in the events pointing to them. `budget` is another causal structure:
    expansion led by budget, which only firmographics hint at, with weak usage signals.
    """

    seat_pressure: float = 7.0
    seat_growth: float = 25.0
    seat_budget: float = 0.4
    renewal: float = 1.0
    plan_api: float = 6.5
    plan_fill: float = 7.0
    plan_budget: float = 0.3
    cross_need: float = 1.1
    cross_engagement: float = 0.5
    cross_budget: float = 0.35
    signal: float = 1.0
    """Scales how much the events that point to an add-on follow the need for it."""
    invites: float = 1.0
    """Scales how much invites follow team growth and people waiting for a seat."""

    def scaled(self, rng: np.random.Generator, spread: float) -> Mechanisms:
        """Every strength times a log-normal factor drawn from `rng`."""
        names = [f.name for f in fields(self)]
        factors = rng.lognormal(0.0, spread, len(names))
        return replace(
            self, **{n: getattr(self, n) * f for n, f in zip(names, factors, strict=True)}
        )


DEFAULT_MECHANISMS = Mechanisms()
STRUCTURES = {
    "usage": DEFAULT_MECHANISMS,
    "budget": Mechanisms(
        seat_pressure=2.5,
        seat_growth=10.0,
        seat_budget=1.6,
        plan_api=2.5,
        plan_fill=3.0,
        plan_budget=1.2,
        cross_need=0.5,
        cross_budget=1.0,
        signal=0.35,
        invites=0.35,
    ),
    "renewal": Mechanisms(seat_pressure=4.0, seat_growth=12.0, renewal=3.0, plan_api=4.0),
}
"""Causal structures by name: `usage` (the default), `budget`, `renewal` (expansion bunches in the
three months before each contract's anniversary)."""


@dataclass(frozen=True)
class Catalogue:
    """The names a company gives its products, plans and events, in the generator's slots.

    Products: the core seat product, then three add-ons. Plans: four tiers, cheapest first.
    Events: a session event every active day, four everyday actions, invites, one event pointing
    to each add-on (the third counts API calls in `quantity`), then one event per add-on that
    only its owners use.
    """

    products: tuple[str, ...] = PRODUCTS
    plans: tuple[str, ...] = PLANS
    events: tuple[str, ...] = EVENTS
    mechanisms: Mechanisms = DEFAULT_MECHANISMS

    @staticmethod
    def of(kind: str, seed: int, structure: str = "usage") -> Catalogue:
        """`default` names with the structure's mechanisms as they are, or `random` ones."""
        if structure not in STRUCTURES:
            raise ValueError(f"structure {structure!r}: use one of {', '.join(STRUCTURES)}")
        if kind == "random":
            return Catalogue.drawn(seed, structure)
        if kind != "default":
            raise ValueError(f"catalogue {kind!r}: use default or random")
        return Catalogue(mechanisms=STRUCTURES[structure])

    @staticmethod
    def drawn(seed: int, structure: str = "usage") -> Catalogue:
        """Names, and the strength of each mechanism, drawn from the seed (its own stream)."""
        rng = np.random.default_rng([seed, 0x636174])  # "cat"
        words = rng.permutation(CATALOGUE_WORDS)
        products = tuple(str(w) for w in words[:4])
        tiers = PLAN_LADDERS[int(rng.integers(len(PLAN_LADDERS)))]
        verbs = [str(v) for v in rng.permutation(EVENT_VERBS)]
        nouns = [str(n) for n in rng.permutation(EVENT_NOUNS)]
        events = tuple(f"{v}_{n}" for v, n in zip(verbs, nouns, strict=False))[: len(EVENTS)]
        mechanisms = STRUCTURES[structure].scaled(rng, 0.3)
        return Catalogue(products, tiers, events, mechanisms)


CATALOGUE_WORDS = (
    "Beacon", "Canvas", "Relay", "Forge", "Harbor", "Pulse", "Vault", "Orbit", "Ledger", "Signal",
    "Compass", "Atlas", "Prism", "Anchor", "Quill", "Summit", "Cascade", "Lattice", "Keystone",
)  # fmt: skip
PLAN_LADDERS = (
    ("basic", "plus", "pro", "ultimate"),
    ("bronze", "silver", "gold", "platinum"),
    ("solo", "crew", "company", "global"),
    ("free-tier", "growth", "scale", "premier"),
)
EVENT_VERBS = (
    "open", "edit", "post", "review", "send", "pin", "tag", "draft", "approve", "archive", "sync",
    "trigger", "publish", "assign", "merge",
)  # fmt: skip
EVENT_NOUNS = (
    "workspace", "card", "note", "board", "thread", "ticket", "asset", "form", "query", "pipeline",
    "widget", "digest", "flow", "hook", "report",
)  # fmt: skip


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40.0, 40.0)))


def _seat_cap(plan: np.ndarray) -> np.ndarray:
    return np.asarray(SEAT_CAP, dtype=np.int64)[plan]


def _plan_for_seats(seats: np.ndarray) -> np.ndarray:
    """Smallest plan whose seat cap holds `seats`."""
    return np.searchsorted(np.asarray(SEAT_CAP), seats, side="left")


def _nice_seats(seats: np.ndarray) -> np.ndarray:
    """Round seat counts up the way sales quotes them (5s above 20, 10s above 100)."""
    step = np.select([seats > 100, seats > 20], [10, 5], 1)
    return (np.ceil(seats / step) * step).astype(np.int64)


def _users(st: State) -> np.ndarray:
    """People with access: demand, capped at seats plus ~10% soft overage (15 on a trial)."""
    capped = np.where(st["active"], np.minimum(st["D"], 1.1 * st["S"]), np.minimum(st["D"], 15.0))
    return np.maximum(1.0, np.floor(capped))


def _api_ratio(st: State, plan: np.ndarray) -> np.ndarray:
    """Expected monthly API calls over the plan's limit (0 on enterprise, which is unlimited)."""
    calls = np.minimum(st["D"], 1.1 * st["S"]) * st["api"] * np.exp(0.5 * st["need"][:, 2])
    return calls / np.asarray(API_LIMIT)[plan]


# --- Dynamics shared by the world and the truth paths: keep them free of world-only state. ---


def _expansion_hazards(
    st: State, i: int, cal_month: int, mech: Mechanisms = DEFAULT_MECHANISMS
) -> tuple[np.ndarray, ...]:
    """Chances of a seat add, a plan upgrade and each cross-sell in month i, from its start."""
    act = st["active"]
    pressure = np.clip(st["D"] / np.maximum(st["S"], 1) - 1.0, -0.5, 0.6)
    to_renewal = (st["m0"] - i) % 12
    renewal = np.select([to_renewal == 0, to_renewal <= 2], [0.4, 0.8], 0.0)
    season = SEASON[cal_month] + _touch_shift(st, i)
    seat_logit = (
        -4.1
        + mech.seat_pressure * pressure
        + mech.seat_growth * st["g"]
        + mech.seat_budget * st["b"]
        + mech.renewal * renewal
        + season
    )
    h_seat = np.where(act, _sigmoid(seat_logit), 0.0)
    fill = st["S"] / _seat_cap(st["plan"])
    plan_logit = (
        -5.6
        + mech.plan_api * np.clip(_api_ratio(st, st["plan"]) - 0.7, 0.0, 1.0)
        + mech.plan_fill * np.clip(fill - 0.8, 0.0, 0.3)
        + mech.plan_budget * st["b"]
        + season
    )
    h_plan = np.where(act & (st["plan"] < 3), _sigmoid(plan_logit), 0.0)
    shared = mech.cross_engagement * st["e"] + mech.cross_budget * st["b"] + 0.25 * st["plan"]
    shared = shared + season
    h_cross = np.where(
        act[:, None] & ~st["owned"],
        _sigmoid(-5.3 + mech.cross_need * st["need"] + shared[:, None]),
        0.0,
    )
    return h_seat, h_plan, h_cross


def _touch_shift(st: State, i: int) -> np.ndarray | float:
    """The log-odds the last touch adds to every expansion hazard of month i (0 with no program)."""
    if "tau" not in st:
        return 0.0
    since = i - st["touched"]
    return np.where((since >= 1) & (since <= TOUCH_MONTHS), st["tau"], 0.0)


def _touch_effect(st: State, i: int, strength: float) -> np.ndarray:
    """What a CSM's touch just before month i would add to each account's expansion log-odds.

    A conversation helps an account that has seen value (engagement and people using the seats
    it pays for), and helps less the more the account is already short of seats, since it
    would buy them anyway. It hurts when it comes too early: in the first months of the
    contract, or before the account has seen value (low engagement, seats left unused), when it
    reads as a vendor ask. `strength` scales every effect.
    """
    seats = np.maximum(st["S"], 1)
    used = np.minimum(st["D"], 1.1 * st["S"]) / seats
    seen = np.clip(0.8 * st["e"] + 4.0 * (used - 0.8), -1.0, 1.0)
    anyway = np.clip((st["D"] / seats - 1.0) / 0.3, 0.0, 1.0)
    early = (i - st["m0"]) < TOUCH_EARLY_MONTHS
    return strength * np.where(early, TOUCH_TOO_EARLY, TOUCH_GAIN * seen * (1.0 - anyway))


def _decrease_odds(st: State, i: int) -> State:
    """Chances of churn, of taking a contraction and of each add-on drop in month i."""
    act = st["active"]
    renew = act & ((i - st["m0"]) % 12 == 0)
    mid = act & ~renew
    util = st["D"] / np.maximum(st["S"], 1)
    churn_renew = -2.4 - 0.9 * st["e"] + 0.9 * st["f"] - 0.3 * st["b"]
    churn_renew -= 2.0 * np.clip(util - 0.8, -0.5, 0.3)
    churn_mid = -6.5 - 0.5 * st["e"] + 0.7 * st["f"]
    p_churn = np.where(renew, _sigmoid(churn_renew), np.where(mid, _sigmoid(churn_mid), 0.0))
    p_contract = _sigmoid(-1.4 + 6.0 * (0.85 - util) - 0.3 * st["b"])
    drop_logit = np.where(
        renew[:, None], -2.6 - 0.9 * st["need"] - 0.5 * st["e"][:, None], -7.2 - 0.6 * st["need"]
    )
    p_drop = np.where(st["owned"] & act[:, None], _sigmoid(drop_logit), 0.0)
    return {"renew": renew, "p_churn": p_churn, "p_contract": p_contract, "p_drop": p_drop}


def _draw_decreases(st: State, i: int, rng: np.random.Generator) -> State:
    """Churn, seat contraction, plan downgrade and add-on drops in month i, mostly at renewal."""
    n = len(st["D"])
    u = rng.random((n, 4))
    u_drop = rng.random((n, 3))
    odds = _decrease_odds(st, i)
    renew = odds["renew"]
    churn = u[:, 0] < odds["p_churn"]
    new_seats = np.maximum(1, np.ceil(st["D"] * (1.0 + CONTRACT_SLACK * u[:, 2]))).astype(np.int64)
    contract = renew & ~churn & (u[:, 1] < odds["p_contract"]) & (new_seats < st["S"])
    lower = np.maximum(st["plan"] - 1, 0)
    down = (
        contract
        & (st["plan"] > 0)
        & (new_seats <= _seat_cap(lower))
        & (_api_ratio(st, lower) < 0.6)
        & (u[:, 3] < 0.35)
    )
    drop = ~churn[:, None] & (u_drop < odds["p_drop"])
    return {
        "renew": renew,
        "churn": churn,
        "contract": contract,
        "seats": np.where(contract, new_seats, st["S"]),
        "plan": np.where(down, st["plan"] - 1, st["plan"]),
        "drop": drop,
        "any": churn | contract | drop.any(axis=1),
    }


def _p_any_decrease(st: State, i: int) -> np.ndarray:
    """The chance `_draw_decreases` reports any decrease in month i, in closed form."""
    odds = _decrease_odds(st, i)
    # new seats ceil(D * (1 + slack * u)) fall below S exactly when u <= ((S - 1) / D - 1) / slack
    shrinks = np.clip(((st["S"] - 1) / st["D"] - 1.0) / CONTRACT_SLACK, 0.0, 1.0)
    p_contract = np.where(odds["renew"], odds["p_contract"] * shrinks, 0.0)
    p_keep = (1.0 - p_contract) * np.prod(1.0 - odds["p_drop"], axis=1)
    return odds["p_churn"] + (1.0 - odds["p_churn"]) * (1.0 - p_keep)


def _apply_decreases(st: State, dec: State) -> None:
    st["active"] = st["active"] & ~dec["churn"]
    st["S"] = dec["seats"]
    st["plan"] = dec["plan"]
    st["owned"] = st["owned"] & ~dec["drop"]


def _evolve(
    st: State, rng: np.random.Generator, mask: np.ndarray | None = None, z: np.ndarray | None = None
) -> None:
    """Move the latent factors one month on; `mask` limits it to accounts that exist.

    `z` (rows x 7 standard normals) replaces the draws from `rng` when given.
    """
    if z is None:
        z = rng.standard_normal((len(st["D"]), 7))
    g = st["gmean"] + 0.85 * (st["g"] - st["gmean"]) + 0.006 * z[:, 0]
    demand = np.clip(st["D"] * np.exp(g + 0.02 * z[:, 1]), 1.0, 2500.0)
    e = st["emean"] + 0.8 * (st["e"] - st["emean"]) + 0.3 * z[:, 2]
    act = st["active"]
    blocked = np.where(act, np.maximum(st["D"] - 1.1 * st["S"], 0.0) / st["D"], 0.0)
    over = np.where(act, np.clip(_api_ratio(st, st["plan"]) - 1.0, 0.0, 2.0), 0.0)
    f = 0.75 * st["f"] + 0.25 * (st["fbase"] + 2.0 * blocked + 0.6 * over) + 0.25 * z[:, 3]
    need = st["need"] + 0.1 * z[:, 4:7]
    if mask is None:
        mask = np.ones(len(g), dtype=bool)
    st["g"] = np.where(mask, g, st["g"])
    st["D"] = np.where(mask, demand, st["D"])
    st["e"] = np.where(mask, e, st["e"])
    st["f"] = np.where(mask, f, st["f"])
    st["need"] = np.where(mask[:, None], need, st["need"])


def _quiet(h_seat: np.ndarray, h_plan: np.ndarray, h_cross: np.ndarray) -> np.ndarray:
    """The chance of no expansion in a month, from its hazards."""
    return (1.0 - h_seat) * (1.0 - h_plan) * np.prod(1.0 - h_cross, axis=1)


def _truth(
    st: State,
    i: int,
    cal0: int,
    rng: np.random.Generator,
    day: int,
    strength: float = 1.0,
    mech: Mechanisms = DEFAULT_MECHANISMS,
) -> tuple[np.ndarray, ...]:
    """Accounts active at the start of month i, the day, and their P(expansion in months
    i..i+2); with a program, also that chance had a CSM touched the account just before.

    Rao-Blackwellised: each path multiplies the monthly no-expansion chances instead of drawing
    them and evolves as if none happened, which is exactly the conditioning the product needs.
    The last month's decreases are not drawn either: only whether one happens matters there, so
    its chance enters the product. Most of the remaining spread comes from the latent factors'
    monthly noise, so paths come in antithetic pairs (noise z and -z): each path is still a
    draw of the same process, and 16 paths estimate p as precisely as 64 independent ones did.
    A touch changes no decrease and no latent factor, so the touched chance rides the same paths.
    """
    idx = np.flatnonzero(st["active"])
    now = {key: value[idx] for key, value in st.items()}
    path = {key: np.repeat(value, TRUTH_PATHS, axis=0) for key, value in now.items()}
    touched = None
    if "tau" in st:
        touched = {
            "touched": np.full(len(path["tau"]), i - 1),
            "tau": np.repeat(_touch_effect(now, i, strength), TRUTH_PATHS),
        }
    none_yet = np.ones(len(idx) * TRUTH_PATHS)
    none_if_touched = none_yet.copy()
    for j in range(HORIZON_MONTHS):
        quiet = _quiet(*_expansion_hazards(path, i + j, (cal0 + i + j) % 12, mech))
        quiet_touched = quiet
        if touched is not None:
            hazards = _expansion_hazards({**path, **touched}, i + j, (cal0 + i + j) % 12, mech)
            quiet_touched = _quiet(*hazards)
        if j == HORIZON_MONTHS - 1:
            p_any = _p_any_decrease(path, i + j)
            none_yet *= p_any + (1.0 - p_any) * quiet
            none_if_touched *= p_any + (1.0 - p_any) * quiet_touched
        else:
            dec = _draw_decreases(path, i + j, rng)
            none_yet *= np.where(dec["any"], 1.0, quiet)
            none_if_touched *= np.where(dec["any"], 1.0, quiet_touched)
            _apply_decreases(path, dec)
            half = rng.standard_normal((len(idx), (TRUTH_PATHS + 1) // 2, 7))
            z = np.concatenate([half, -half], axis=1)[:, :TRUTH_PATHS]
            _evolve(path, rng, z=z.reshape(-1, 7))
    p = 1.0 - none_yet.reshape(len(idx), TRUTH_PATHS).mean(axis=1)
    out = (idx, np.full(len(idx), day), p)
    if touched is None:
        return out
    return (*out, 1.0 - none_if_touched.reshape(len(idx), TRUTH_PATHS).mean(axis=1))


# --- Setting up the world. ---


def _month_starts(start: date, months: int) -> tuple[np.ndarray, int]:
    """Day numbers of the simulated month starts (plus the end) and calendar month of the first."""
    first = np.datetime64(start, "M") - PRE_MONTHS
    starts = (first + np.arange(PRE_MONTHS + months + 1)).astype("datetime64[D]")
    return starts.astype(np.int64), int(first.astype(np.int64) % 12)


def _day_of_month(days: np.ndarray) -> np.ndarray:
    """1-based day of month of day numbers (1 for NO_DAY)."""
    d = np.where(days < NO_DAY, days, 0).astype("datetime64[D]")
    return (d - d.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1


def _draw_accounts(rng: np.random.Generator, n: int, ms: np.ndarray) -> State:
    """Firmographics, latent traits and lifecycle dates; firmographics only partly tell traits."""
    seg = rng.choice(3, size=n, p=[0.55, 0.32, 0.13])
    industry = rng.choice(len(INDUSTRIES), size=n)
    country = rng.choice(len(COUNTRIES), size=n, p=[c[2] for c in COUNTRIES])
    emp_median = np.array([30.0, 350.0, 3000.0])[seg]
    employees = np.maximum(2, np.round(emp_median * rng.lognormal(0.0, 0.6, n))).astype(np.int64)
    adoption = np.array([0.2, 0.06, 0.025])[seg] * rng.lognormal(0.0, 0.5, n)
    effects = np.asarray(INDUSTRY_EFFECTS)[industry]

    installed = rng.random(n) < 0.4
    lo = np.where(installed, ms[0], ms[PRE_MONTHS])
    hi = np.where(installed, ms[PRE_MONTHS], ms[-1] - 10)
    created = lo + np.floor(rng.random(n) * (hi - lo)).astype(np.int64)
    trial = rng.random(n) < 0.12
    converts = ~trial | (rng.random(n) < 0.75)
    lag = np.where(trial, rng.integers(14, 36, n), np.minimum(rng.geometric(0.45, n) - 1, 20))
    sub_day = np.where(converts & (created + lag < ms[-1]), created + lag, NO_DAY)
    gmean = rng.normal(0.008, 0.016, n) + effects[:, 0] + 0.004 * (seg == 0)
    mid_disc, ent_disc = rng.uniform(0.85, 1.0, n), rng.uniform(0.65, 0.9, n)
    return {
        "seg": seg,
        "industry": industry,
        "country": country,
        "employees": employees,
        "created": created,
        "sub_day": sub_day,
        "usage_end": np.where(converts, NO_DAY, created + lag),
        "c0": np.searchsorted(ms, created, side="right") - 1,
        "m0": np.searchsorted(ms, sub_day, side="right") - 1,
        "dom": _day_of_month(sub_day),
        "D": np.clip(employees * adoption, 1.0, 1500.0),
        "gmean": np.clip(gmean, -0.04, 0.06),
        "b": rng.normal(0.0, 1.0, n) + 0.3 * seg + effects[:, 1],
        "emean": rng.normal(0.0, 0.6, n),
        "fbase": rng.normal(-0.3, 0.5, n),
        "need": rng.normal(0.0, 1.0, (n, 3)) + effects[:, 2:5],
        "api": rng.lognormal(np.log(140.0), 1.1, n) * effects[:, 5],
        "disc": np.select([seg == 0, seg == 1], [1.0, mid_disc], ent_disc),
        "tz": np.array([c[1] for c in COUNTRIES])[country],
    }


def _initial_state(acc: State, rng: np.random.Generator) -> State:
    n = len(acc["D"])
    return {
        "D": acc["D"].copy(),
        "g": acc["gmean"] + rng.normal(0.0, 0.01, n),
        "e": acc["emean"] + rng.normal(0.0, 0.3, n),
        "f": acc["fbase"].copy(),
        "need": acc["need"].copy(),
        "S": np.zeros(n, dtype=np.int64),
        "plan": np.zeros(n, dtype=np.int64),
        "owned": np.zeros((n, 3), dtype=bool),
        "active": np.zeros(n, dtype=bool),
        "gmean": acc["gmean"],
        "emean": acc["emean"],
        "fbase": acc["fbase"],
        "b": acc["b"],
        "api": acc["api"],
        "m0": acc["m0"],
    }


def _free_workspaces(rng: np.random.Generator, n_accounts: int, ms: np.ndarray) -> State:
    """Free workspaces: a few people each, light usage, never in accounts."""
    k = max(2, round(0.08 * n_accounts))
    prob = np.zeros((k, len(EVENTS)))
    prob[:, :8] = (1.0, 0.5, 0.2, 0.1, 0.03, 0.04, 0.02, 0.03)
    lam = np.zeros((k, len(EVENTS)))
    lam[:, :7] = (0.3, 1.0, 0.5, 0.2, 0.1, 0.3, 0.2)
    return {
        "idx": np.arange(k),
        "key": 10_000_000 + np.arange(k),
        "uoff": np.zeros(k, dtype=np.int64),
        "users": rng.integers(1, 5, k),
        "base": rng.normal(-1.8, 0.4, k),
        "prob": prob,
        "lam": lam,
        "api_calls": np.full(k, 300.0),
        "api_limit": np.full(k, API_LIMIT[0]),
        "tz": rng.choice([c[1] for c in COUNTRIES], size=k),
        "created": ms[0] + np.floor(rng.random(k) * (ms[-1] - 15 - ms[0])).astype(np.int64),
    }


# --- Contracts: a log of changes, turned into segments at the end. ---


def _log(
    parts: Log,
    acc: np.ndarray,
    product: int,
    day: np.ndarray,
    *,
    plan: np.ndarray | int = -1,
    seats: np.ndarray | int = -1,
    arr: np.ndarray | float = 0.0,
    end: bool = False,
) -> None:
    """Record changes: a row opens a segment on `day`; an `end` row only closes the open one."""
    k = len(acc)
    if k:
        columns = (product, day, int(end), plan, seats, np.round(arr, 2))
        parts.append((acc, *(np.broadcast_to(c, k) for c in columns)))


def _core_arr(
    seats: np.ndarray, plan: np.ndarray, disc: np.ndarray, mult: np.ndarray | float
) -> np.ndarray:
    return seats * np.asarray(SEAT_PRICE)[plan] * disc * mult


def _start_contracts(
    st: State, money: State, acc: State, i: int, rng: np.random.Generator, log: Log
) -> None:
    """First subscriptions of month i: seats near current demand, a plan that fits, some add-ons."""
    new = np.flatnonzero(acc["m0"] == i)
    k = len(new)
    seats = np.maximum(1, np.round(st["D"][new] * rng.uniform(0.85, 1.15, k))).astype(np.int64)
    seats = np.where(seats > 20, _nice_seats(seats), seats)
    plan = _plan_for_seats(seats)
    plan = np.minimum(3, plan + (rng.random(k) < _sigmoid(st["b"][new] - 1.8)))
    sub = {"D": st["D"][new], "S": seats, "api": st["api"][new], "need": st["need"][new]}
    for _ in range(2):  # room for the API traffic they expect
        plan = np.where(_api_ratio(sub, plan) > 0.9, np.minimum(plan + 1, 3), plan)
    owned = rng.random((k, 3)) < _sigmoid(st["need"][new] - 2.0 + 0.3 * st["b"][new, None])
    st["S"][new], st["plan"][new], st["owned"][new] = seats, plan, owned
    day = acc["sub_day"][new]
    _log(log, new, 0, day, plan=plan, seats=seats, arr=_core_arr(seats, plan, acc["disc"][new], 1))
    for j in range(3):
        rows = owned[:, j]
        price = np.round(np.asarray(ADDON_PRICE[j])[plan[rows]] * acc["disc"][new[rows]], 2)
        money["addon_arr"][new[rows], j] = price
        _log(log, new[rows], j + 1, day[rows], arr=price)


def _world_month(
    st: State, money: State, acc: State, i: int, ms: np.ndarray, cal0: int,
    rng: np.random.Generator, log: Log, mech: Mechanisms = DEFAULT_MECHANISMS,
) -> np.ndarray:  # fmt: skip
    """Draw, log and apply month i's contract changes; return each account's churn day."""
    n = len(st["D"])
    m_start, dim = ms[i], ms[i + 1] - ms[i]
    h_seat, h_plan, h_cross = _expansion_hazards(st, i, (cal0 + i) % 12, mech)
    dec = _draw_decreases(st, i, rng)
    renew, churn = dec["renew"], dec["churn"]
    r_day = m_start + np.minimum(acc["dom"], dim) - 1
    dec_day = np.where(renew, r_day, m_start + rng.integers(0, dim, n))
    uplift = renew & ~churn & (rng.random(n) < 0.6)
    mult = np.where(uplift, rng.uniform(1.03, 1.07, n), 1.0)

    u = rng.random((n, 5))
    calm = ~dec["any"]
    seat_up = calm & (u[:, 0] < h_seat)
    plan_up = calm & (u[:, 1] < h_plan)
    cross = calm[:, None] & (u[:, 2:] < h_cross)
    target = _nice_seats(np.ceil(st["D"] * rng.uniform(1.05, 1.3, n)))
    new_seats = np.where(seat_up, np.maximum(st["S"] + 1, target), st["S"])
    new_plan = np.maximum(np.where(plan_up, st["plan"] + 1, st["plan"]), _plan_for_seats(new_seats))
    core_up = seat_up | plan_up
    e_core = m_start + rng.integers(2, 28, n)  # days 3..28
    e_cross = m_start + rng.integers(2, 28, (n, 3))

    ended = np.flatnonzero(churn)
    _log(log, ended, 0, dec_day[ended], end=True)
    for j in range(3):
        rows = ended[st["owned"][ended, j]]
        _log(log, rows, j + 1, dec_day[rows], end=True)
        rows = np.flatnonzero(dec["drop"][:, j])
        _log(log, rows, j + 1, dec_day[rows], end=True)

    # Core changes at renewal and Core expansions, in day order; on the same day they merge.
    disc, old_mult = acc["disc"], money["mult"]
    new_mult = old_mult * mult
    at_renewal = renew & ~churn & (dec["contract"] | uplift)
    expanded_before = core_up & (e_core < r_day)
    rows = np.flatnonzero(at_renewal & ~(core_up & (e_core == r_day)))
    seats_r = np.where(expanded_before, new_seats, dec["seats"])[rows]
    plan_r = np.where(expanded_before, new_plan, dec["plan"])[rows]
    arr_r = _core_arr(seats_r, plan_r, disc[rows], new_mult[rows])
    _log(log, rows, 0, r_day[rows], plan=plan_r, seats=seats_r, arr=arr_r)
    rows = np.flatnonzero(core_up)
    mult_e = np.where(at_renewal & (e_core >= r_day), new_mult, old_mult)[rows]
    arr_e = _core_arr(new_seats[rows], new_plan[rows], disc[rows], mult_e)
    _log(log, rows, 0, e_core[rows], plan=new_plan[rows], seats=new_seats[rows], arr=arr_e)

    kept = st["owned"] & ~dec["drop"]
    lifted = uplift[:, None] & kept
    addon_arr = np.where(
        lifted, np.round(money["addon_arr"] * mult[:, None], 2), money["addon_arr"]
    )
    for j in range(3):
        rows = np.flatnonzero(lifted[:, j])
        _log(log, rows, j + 1, r_day[rows], arr=addon_arr[rows, j])
        rows = np.flatnonzero(cross[:, j])
        list_price = np.asarray(ADDON_PRICE[j])[st["plan"][rows]]
        addon_arr[rows, j] = np.round(list_price * disc[rows] * old_mult[rows], 2)
        _log(log, rows, j + 1, e_cross[rows, j], arr=addon_arr[rows, j])

    money["mult"], money["addon_arr"] = new_mult, addon_arr
    _apply_decreases(st, dec)
    st["S"] = np.where(core_up, new_seats, st["S"])
    st["plan"] = np.where(core_up, new_plan, st["plan"])
    st["owned"] = st["owned"] | cross
    return np.where(churn, dec_day, NO_DAY)


def _subscriptions_table(log: Log, ids: pa.Array, catalogue: Catalogue) -> pa.Table:
    """Contract segments from the change log: each opening row lasts until the next change."""
    empty = (np.zeros(0, np.int64),) * 6 + (np.zeros(0),)
    cols = [np.concatenate(part) for part in zip(empty, *log, strict=True)]
    alphabetical = np.argsort(np.argsort(catalogue.products))[cols[1]]
    order = np.lexsort((cols[2], alphabetical, cols[0]))
    acc, product, day, end, plan, seats, arr = (c[order] for c in cols)
    closes = np.r_[(acc[1:] == acc[:-1]) & (product[1:] == product[:-1]), False]
    next_day = np.r_[day[1:], 0]
    keep = end == 0
    addon = product[keep] != 0
    return pa.table(
        {
            "account_id": pc.take(ids, pa.array(acc[keep])),
            "product": pc.take(pa.array(catalogue.products), pa.array(product[keep])),
            "plan": pc.take(pa.array(catalogue.plans), pa.array(plan[keep], mask=addon)),
            "seats": pa.array(seats[keep], pa.int64(), mask=addon),
            "arr": pa.array(arr[keep], pa.float64()),
            "start_date": pa.array(day[keep].astype("datetime64[D]")),
            "end_date": pa.array(next_day[keep].astype("datetime64[D]"), mask=~closes[keep]),
        }
    )


# --- What the product and the support desk see. ---


def _usage_params(st: State, acc: State, mech: Mechanisms = DEFAULT_MECHANISMS) -> State:
    """Per-account daily activity and event propensities for a month, from the latent state."""
    n = len(st["D"])
    act = st["active"]
    users = _users(st)
    e, need = st["e"], st["need"]
    base = -1.45 + 0.9 * e
    # Someone invites a teammate when the team grows or people wait for a seat.
    waiting = np.where(act, np.maximum(st["D"] - st["S"], 0.0), 0.0)
    grow, wait = mech.invites * 1.5, mech.invites * 0.4  # exactly 1.5 and 0.4 by default
    invites = 0.15 + grow * np.maximum(st["g"], 0.0) * st["D"] + wait * waiting
    active_days = users * 22.0 * 0.75 * _sigmoid(base)
    owned = st["owned"] & act[:, None]
    prob = np.zeros((n, len(EVENTS)))
    prob[:, 0] = 1.0
    prob[:, 1] = _sigmoid(0.2 + 0.5 * e)
    prob[:, 2] = _sigmoid(-0.8 + 0.5 * e)
    prob[:, 3] = _sigmoid(-1.8 + 0.4 * e)
    prob[:, 4] = np.clip(invites / active_days, 0.0, 0.5)
    signal = mech.signal
    prob[:, 5] = _sigmoid(-2.9 + signal * 0.9 * need[:, 0])
    prob[:, 6] = _sigmoid(-3.1 + signal * 0.9 * need[:, 1])
    prob[:, 7] = _sigmoid(-2.2 + signal * 0.8 * need[:, 2])
    prob[:, 8] = owned[:, 0] * _sigmoid(-2.2 + signal * 0.6 * need[:, 0])
    prob[:, 9] = owned[:, 1] * _sigmoid(-2.0 + signal * 0.6 * need[:, 1])
    prob[:, 10] = owned[:, 2] * _sigmoid(-1.8 + signal * 0.6 * need[:, 2])
    lam = np.zeros((n, len(EVENTS)))  # quantity is 1 + Poisson(lam); api_call is set apart
    lam[:, :7] = (0.5, 0.0, 1.2, 0.3, 0.2, 0.8, 0.5)
    lam[:, 1] = 2.0 * np.exp(0.3 * e)
    lam[:, 8:] = (1.0, 2.0, 4.0)
    return {
        "users": users.astype(np.int64),
        "base": base,
        "prob": prob,
        "lam": lam,
        "api_calls": users * st["api"] * np.exp(0.5 * need[:, 2]),
        "api_limit": np.asarray(API_LIMIT)[np.where(act, st["plan"], 0)],
        "tz": acc["tz"],
    }


def _user_effect(key: np.ndarray, uid: np.ndarray, salt: int) -> np.ndarray:
    """A stable per-user activity shift (power users vs occasional ones) from a splitmix64 hash."""
    x = (key.astype(np.uint64) << np.uint64(24)) ^ uid.astype(np.uint64) ^ np.uint64(salt)
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    u = ((x >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53
    return 0.7 * np.log(u / (1.0 - u))


def _ragged(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For consecutive blocks of the given sizes: each element's block and position in it."""
    owner = np.repeat(np.arange(len(sizes)), sizes)
    pos = np.arange(len(owner)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return owner, pos


def _active_days(
    rng: np.random.Generator,
    m_start: int,
    p_user: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    user_ent: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Each user is active on each day of their entity's window [lo, hi) with chance p_user
    times the weekday factor; returns (user, day) pairs ordered by user, then day.

    Draws on a dense users x month-days grid, in blocks of users: one uniform per cell and no
    per-cell index arithmetic, which is what made this costly at low activity.
    """
    days = int(hi.max(initial=0))
    weekday = np.asarray(WEEKDAY)[(m_start + np.arange(days) + 3) % 7]  # day 0 was a Thursday
    weekday = weekday.astype(np.float32)
    p_user = p_user.astype(np.float32)
    block = 8192  # users; the buffers stay in cache and are reused, not reallocated
    draw = np.empty((block, days), np.float32)
    chance = np.empty((block, days), np.float32)
    on = np.empty((block, days), bool)
    users, found_days = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for first in range(0, len(p_user), block):
        k = min(block, len(p_user) - first)
        rng.random(dtype=np.float32, out=draw[:k])
        np.multiply(p_user[first : first + k, None], weekday, out=chance[:k])
        np.less(draw[:k], chance[:k], out=on[:k])
        user, day = np.nonzero(on[:k])
        user += first
        ent = user_ent[user]
        inside = (day >= lo[ent]) & (day < hi[ent])
        users.append(user[inside])
        found_days.append(day[inside])
    return np.concatenate(users), np.concatenate(found_days)


def _usage_month(
    rng: np.random.Generator,
    m_start: int,
    ent: State,
    ids: pa.Array,
    salt: int,
    activity: float = 1.0,
    events: tuple[str, ...] = EVENTS,
) -> pa.Table:
    """One row per (user, active day, event) of the month for the given entities, vectorised.

    Entities are accounts or free workspaces, active on month days [lo, hi).
    """
    user_ent, slot = _ragged(ent["users"])
    uid = ent["uoff"][user_ent] + slot
    p_user = _sigmoid(ent["base"][user_ent] + _user_effect(ent["key"][user_ent], uid, salt))
    ud_user, ud_day = _active_days(rng, m_start, p_user * activity, ent["lo"], ent["hi"], user_ent)
    ud_ent = user_ent[ud_user]
    prob = ent["prob"].astype(np.float32)[ud_ent]
    done = rng.random(prob.shape, dtype=np.float32) < prob
    hit, event = np.nonzero(done)
    per_ud = done.sum(axis=1)
    row_ent, row_user, row_day = ud_ent[hit], ud_user[hit], ud_day[hit]

    qty = 1 + rng.poisson(ent["lam"].ravel()[row_ent * len(EVENTS) + event])
    api = np.flatnonzero(event == API_SLOT)
    k = len(ent["users"])
    api_ent = row_ent[api]
    share = (ent["hi"] - ent["lo"]) / ent["days"]
    per_row = ent["api_calls"] * share / np.maximum(np.bincount(api_ent, minlength=k), 1)
    calls = np.maximum(1.0, np.round(per_row[api_ent] * rng.lognormal(-0.245, 0.7, len(api))))
    total = np.bincount(api_ent, weights=calls, minlength=k)
    at_limit = np.minimum(1.0, ent["api_limit"] / np.maximum(total, 1.0))  # excess is rejected
    qty[api] = np.maximum(1, np.floor(calls * at_limit[api_ent]))

    # A session per user-day: login first, the other events in order a few minutes apart.
    session = np.mod(rng.normal(13.5, 3.0, len(ud_ent)) - ent["tz"][ud_ent], 24.0)
    session = np.where(session > 22.5, session - 22.5, session)
    elapsed = np.cumsum(rng.exponential(6e8, len(hit)))
    some = per_ud > 0
    elapsed -= np.repeat(elapsed[(np.cumsum(per_ud) - per_ud)[some]], per_ud[some])
    micros = np.minimum(session[hit] * US_PER_HOUR + elapsed, US_PER_DAY - 1).astype(np.int64)

    ent_ids = pc.take(ids, pa.array(ent["idx"]))
    user_ids = pc.binary_join_element_wise(
        pc.take(ent_ids, pa.array(user_ent)),
        pc.utf8_lpad(pc.cast(pa.array(uid), pa.string()), width=4, padding="0"),
        "-u",
    )
    stamp = (m_start + row_day) * US_PER_DAY + micros
    return pa.table(
        {
            "account_id": pc.take(ent_ids, pa.array(row_ent)),
            "user_id": pc.take(user_ids, pa.array(row_user)),
            "timestamp": pa.array(stamp.view("datetime64[us]")),
            "event": pc.take(pa.array(events), pa.array(event)),
            "quantity": pa.array(qty, pa.int64()),
        }
    )


def _stamps(
    rng: np.random.Generator, m_start: int, ent: State, who: np.ndarray, hours: tuple[float, float]
) -> np.ndarray:
    """Microsecond timestamps on a random day of each entity's window, in local office hours."""
    day = ent["lo"][who] + np.floor(rng.random(len(who)) * (ent["hi"] - ent["lo"])[who])
    hour = np.mod(rng.uniform(*hours, len(who)) - ent["tz"][who], 24.0)
    return (m_start + day.astype(np.int64)) * US_PER_DAY + (hour * US_PER_HOUR).astype(np.int64)


def _tickets_nps(
    rng: np.random.Generator, m_start: int, ent: State, st: State, pick: np.ndarray
) -> tuple[State, State]:
    """The month's tickets and NPS answers: frustration raises tickets, urgency and detractors."""
    e, f = st["e"][pick], st["f"][pick]
    share = (ent["hi"] - ent["lo"]) / ent["days"]
    size = ent["users"].astype(np.float64)
    who = np.repeat(
        np.arange(len(pick)), rng.poisson(0.05 * size**0.6 * np.exp(0.8 * f - 0.2 * e) * share)
    )
    urgent = np.clip(0.04 * np.exp(0.9 * f[who]), 0.0, 0.5)
    u = rng.random(len(who))
    priority = np.select([u < urgent, u < urgent + 0.18, u < 0.7], [3, 2, 1], 0)
    tickets = {"acc": pick[who], "ts": _stamps(rng, m_start, ent, who, (8.0, 18.5)), "v": priority}
    who = np.repeat(np.arange(len(pick)), rng.poisson(0.025 * size**0.5 * share))
    score = 7.6 + 1.2 * e[who] - 1.4 * f[who] + rng.normal(0.0, 1.6, len(who))
    score = np.clip(np.round(score), 0, 10).astype(np.int64)
    nps = {"acc": pick[who], "ts": _stamps(rng, m_start, ent, who, (7.0, 22.0)), "v": score}
    return tickets, nps


def _month_entities(
    params: State, pick: np.ndarray, lo: np.ndarray, hi: np.ndarray, days: int, uoff: np.ndarray
) -> State:
    """The month's usage inputs for the accounts in `pick`, active on month days [lo, hi)."""
    ent = {key: value[pick] for key, value in params.items()}
    ent.update(
        idx=pick, key=pick, uoff=np.floor(uoff[pick]).astype(np.int64), lo=lo[pick], hi=hi[pick]
    )
    ent["days"] = np.full(len(pick), days)
    return ent


# --- The other tables. ---


def _account_names(rng: np.random.Generator, n: int) -> list[str]:
    """CRM-style names: legal forms after commas, quotes, apostrophes, non-ASCII, stray spaces."""
    kind = rng.random(n)
    head = rng.choice(NAME_HEADS, n)
    tail = rng.choice(NAME_TAILS, n)
    form = rng.choice(LEGAL_FORMS, n)
    odd = rng.choice(ODD_NAMES, n)
    pad = rng.random(n)
    names = []
    for j in range(n):
        if kind[j] < 0.14:
            name = str(odd[j])
        elif kind[j] < 0.34:
            name = f"{head[j]} {tail[j]}, {form[j]}"
        elif kind[j] < 0.7:
            name = f"{head[j]} {tail[j]} {form[j]}"
        else:
            name = f"{head[j]} {tail[j]}"
        if pad[j] < 0.015:
            name = " " + name
        elif pad[j] < 0.03:
            name = name + " "
        names.append(name)
    return names


def _accounts_table(rng: np.random.Generator, acc: State, ids: pa.Array) -> pa.Table:
    """The CRM export: ~15% of industry, employee_count and country missing, some segments off."""
    n = len(acc["created"])
    missing = rng.random((n, 4)) < (0.15, 0.15, 0.15, 0.05)
    mislabel = rng.random(n) < 0.08
    seg = np.where(mislabel, np.clip(acc["seg"] + rng.choice([-1, 1], n), 0, 2), acc["seg"])
    csm = rng.integers(0, len(CSMS), n)
    no_csm = rng.random(n) < 0.03
    country_names = pa.array([c[0] for c in COUNTRIES])
    return pa.table(
        {
            "account_id": ids,
            "account_name": pa.array(_account_names(rng, n), pa.string()),
            "created_at": pa.array(acc["created"].astype("datetime64[D]")),
            "industry": pc.take(
                pa.array(INDUSTRIES), pa.array(acc["industry"], mask=missing[:, 0])
            ),
            "employee_count": pa.array(acc["employees"], pa.int64(), mask=missing[:, 1]),
            "country": pc.take(country_names, pa.array(acc["country"], mask=missing[:, 2])),
            "segment": pc.take(pa.array(SEGMENTS), pa.array(seg, mask=missing[:, 3])),
            "csm_owner": pc.take(pa.array(CSMS), pa.array(csm, mask=no_csm)),
        }
    )


def _dated_table(
    parts: list[State], ids: pa.Array, stamp: str, name: str, labels: pa.Array | None
) -> pa.Table:
    """Tickets or NPS answers sorted by account and time; `labels` names coded values."""
    acc = np.concatenate([p["acc"] for p in parts])
    ts = np.concatenate([p["ts"] for p in parts])
    val = np.concatenate([p["v"] for p in parts])
    order = np.lexsort((val, ts, acc))
    column = pa.array(val[order], pa.int64())
    if labels is not None:
        column = pc.take(labels, column)
    return pa.table(
        {
            "account_id": pc.take(ids, pa.array(acc[order])),
            stamp: pa.array(ts[order].view("datetime64[us]")),
            name: column,
        }
    )


def _truth_table(truth: list[tuple[np.ndarray, ...]], ids: pa.Array, program: bool) -> pa.Table:
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64)) + (np.zeros(0),) * (1 + program)
    acc, day, *p = (np.concatenate(c) for c in zip(empty, *truth, strict=True))
    order = np.lexsort((day, acc))
    columns = {
        "account_id": pc.take(ids, pa.array(acc[order], pa.int64())),
        "as_of": pa.array(day[order].astype("datetime64[D]")),
        "p_expand": pa.array(p[0][order], pa.float64()),
    }
    if program:
        columns["p_touched"] = pa.array(p[1][order], pa.float64())
    return pa.table(columns)


USAGE_SCHEMA = pa.schema(
    [
        ("account_id", pa.string()),
        ("user_id", pa.string()),
        ("timestamp", pa.timestamp("us")),
        ("event", pa.string()),
        ("quantity", pa.int64()),
    ]
)


def _check_arguments(n_accounts: int, start: date, months: int, activity: float) -> None:
    if start.day != 1:
        raise ValueError(f"start {start} must be the first day of a month")
    if not 0 < activity <= 1:
        raise ValueError(f"activity ({activity}) must be in (0, 1]")
    if n_accounts < 1 or months < 1:
        raise ValueError(f"n_accounts ({n_accounts}) and months ({months}) must be at least 1")


class _Simulation:
    """The world's state between months, and one month's step of it.

    With `program`, CSM touches change the expansion hazards (see `_touch_effect`), the truth
    gains `p_touched`, and tickets, NPS answers and the accounts table draw from streams of
    their own, so that whatever a touch changes in one account leaves every other account's
    draws as they were: two runs that differ only in some accounts' touches differ only in those
    accounts, which is how a program's true effect is known per account.
    """

    def __init__(
        self,
        n_accounts: int,
        seed: int,
        start: date,
        months: int,
        activity: float,
        program: bool,
        strength: float = 1.0,
        catalogue: Catalogue | None = None,
    ) -> None:
        _check_arguments(n_accounts, start, months, activity)
        self.catalogue = catalogue or Catalogue()
        self.mech = self.catalogue.mechanisms
        self.rng = np.random.default_rng(seed)
        self.truth_rng = np.random.default_rng([seed, 0x7472757468])  # its own stream: "truth"
        self.usage_rng = np.random.default_rng([seed, 0x7573616765])  # and usage its own: "usage"
        # without a program, tickets, NPS and the accounts table share the world's stream
        self.desk_rng = np.random.default_rng([seed, 0x6465736B]) if program else self.rng
        self.ms, self.cal0 = _month_starts(start, months)
        self.acc = _draw_accounts(self.rng, n_accounts, self.ms)
        self.st = _initial_state(self.acc, self.rng)
        self.free = _free_workspaces(self.rng, n_accounts, self.ms)
        self.salt = int(self.rng.integers(0, 2**62))
        self.ids = pa.array([f"A{j:06d}" for j in range(n_accounts)], pa.string())
        self.free_ids = pa.array([f"F{j:05d}" for j in range(len(self.free["idx"]))], pa.string())
        self.money = {"mult": np.ones(n_accounts), "addon_arr": np.zeros((n_accounts, 3))}
        self.uoff = np.zeros(n_accounts)  # user-id offset: people leave, newcomers get new ids
        self.usage_end = self.acc["usage_end"].copy()
        self.activity = activity
        self.program = program
        self.strength = strength
        if program:
            self.st["touched"] = np.full(n_accounts, -100, dtype=np.int64)  # month of last touch
            self.st["tau"] = np.zeros(n_accounts)
        self.log: Log = []
        self.truth: list[tuple[np.ndarray, ...]] = []
        self.tickets: list[State] = []
        self.nps: list[State] = []
        self.i = 0  # the next month to simulate

    @property
    def n_months(self) -> int:
        return len(self.ms) - 1

    def touch(self, accounts: np.ndarray, month: int) -> None:
        """Touches made in month `month` (the last simulated one): they change the next months."""
        if self.i != month + 1:
            raise ValueError("a touch takes effect from the month after it: touch first")
        st = self.st
        tau = _touch_effect(st, self.i, self.strength)
        st["touched"][accounts] = month
        st["tau"][accounts] = tau[accounts]

    def month(self) -> pa.Table | None:
        """Simulate month `i` and move on; return its usage rows (None before `start`)."""
        i, st, acc, ms = self.i, self.st, self.acc, self.ms
        m_start, days = int(ms[i]), int(ms[i + 1] - ms[i])
        if i > PRE_MONTHS:
            truth = _truth(st, i, self.cal0, self.truth_rng, m_start, self.strength, self.mech)
            self.truth.append(truth)
        params = _usage_params(st, acc, self.mech)  # usage follows the state at the month start
        churned = _world_month(st, self.money, acc, i, ms, self.cal0, self.rng, self.log, self.mech)
        self.usage_end = np.minimum(self.usage_end, churned)
        _start_contracts(st, self.money, acc, i, self.rng, self.log)
        table = None
        if i >= PRE_MONTHS:
            lo = np.clip(acc["created"] - m_start, 0, days)
            hi = np.clip(self.usage_end - m_start, 0, days)
            pick = np.flatnonzero(hi > lo)
            ent = _month_entities(params, pick, lo, hi, days, self.uoff)
            free = self.free
            f_pick = np.flatnonzero(free["created"] < m_start + days)
            f_ent = {key: value[f_pick] for key, value in free.items()}
            f_ent["lo"] = np.clip(f_ent["created"] - m_start, 0, days)
            f_ent["hi"] = f_ent["days"] = np.full(len(f_pick), days)
            rng, salt, activity = self.usage_rng, self.salt, self.activity
            events = self.catalogue.events
            table = pa.concat_tables(
                [
                    _usage_month(rng, m_start, ent, self.ids, salt, activity, events),
                    _usage_month(rng, m_start, f_ent, self.free_ids, salt, activity, events),
                ]
            )
            month_tickets, month_nps = _tickets_nps(self.desk_rng, m_start, ent, st, pick)
            self.tickets.append(month_tickets)
            self.nps.append(month_nps)
        created = acc["c0"] <= i
        self.uoff = np.where(created, self.uoff + 0.012 * _users(st), 0.0)
        st["active"] = st["active"] | (acc["m0"] == i)
        _evolve(st, self.rng, created)
        self.i += 1
        return table

    def accounts_table(self) -> pa.Table:
        return _accounts_table(self.desk_rng, self.acc, self.ids)

    def tables(self, accounts: pa.Table) -> dict[str, pa.Table]:
        """Every table but usage, as simulated so far."""
        return {
            "accounts": accounts,
            "subscriptions": _subscriptions_table(self.log, self.ids, self.catalogue),
            "support_tickets": _dated_table(
                self.tickets, self.ids, "created_at", "priority", pa.array(PRIORITIES)
            ),
            "nps_responses": _dated_table(self.nps, self.ids, "responded_at", "score", None),
            "truth": _truth_table(self.truth, self.ids, self.program),
        }


def _usage_writer(path: Path) -> pq.ParquetWriter:
    return pq.ParquetWriter(
        path,
        USAGE_SCHEMA,
        use_dictionary=["account_id", "user_id", "event"],
        column_encoding={"timestamp": "DELTA_BINARY_PACKED", "quantity": "DELTA_BINARY_PACKED"},
    )


def generate_world(
    out_dir: Path,
    n_accounts: int = 1000,
    seed: int = 0,
    start: date = date(2023, 1, 1),
    months: int = 30,
    activity: float = 1.0,
    catalogue: Catalogue | None = None,
) -> dict[str, int]:
    """Write the contract tables and truth.parquet of a simulated world; return row counts.

    The same arguments give byte-identical files. `activity` (0 to 1] thins how often users show
    up in the usage log, for large worlds of a given event volume; it changes no contract,
    ticket, NPS or truth row, since usage only reports the latent state. `catalogue` renames
    products, plans and events and sets the strength of each mechanism (`Catalogue.drawn`).
    """
    sim = _Simulation(n_accounts, seed, start, months, activity, False, catalogue=catalogue)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_usage = 0
    # Encoding one month overlaps with simulating the next; writes stay in month order.
    with _usage_writer(out / "usage_events.parquet") as writer, ThreadPoolExecutor(1) as pool:
        pending: Future[None] | None = None
        while sim.i < sim.n_months:
            table = sim.month()
            if table is None:
                continue
            if pending is not None:
                pending.result()
            pending = pool.submit(writer.write_table, table)
            n_usage += table.num_rows
        if pending is not None:
            pending.result()
    tables = sim.tables(sim.accounts_table())
    for name, table in tables.items():
        pq.write_table(table, out / f"{name}.parquet")
    counts = {name: table.num_rows for name, table in tables.items()}
    counts["usage_events"] = n_usage
    return counts


# --- A world that answers an expansion program, a week at a time. ---

SIMULATION_FILE = "simulation.pkl"


class ProgramWorld:
    """A simulated world advanced week by week, in which CSMs' touches change what happens.

    `ProgramWorld(out, program_start=...)` writes the world up to the program's start; each
    `advance(until, touches)` records what CSMs did (a frame with `account_id`, `touched_at`
    and, optionally, `csm`, `motion`, `channel`, `outcome`) and simulates every month that
    starts before `until`, then rewrites the tables in `out`, with the touches as its `touches`
    table. The world is simulated a month at a time, so its files may run a few weeks past
    `until`: a scorer reads them as of `until`, and a touch changes only the months after its
    own, which no earlier file shows. `truth.parquet` has `p_touched` beside `p_expand`.
    `strength` scales what a touch changes (1: the default mechanism, 0: touches do nothing).
    Worlds with a program differ from `generate_world`'s for the same seed (see `_Simulation`);
    the same arguments and touches give the same files.
    """

    def __init__(
        self,
        out_dir: Path,
        program_start: date,
        n_accounts: int = 1000,
        seed: int = 0,
        start: date = date(2023, 1, 1),
        months: int = 30,
        activity: float = 1.0,
        strength: float = 1.0,
        catalogue: Catalogue | None = None,
    ) -> None:
        self.out = Path(out_dir)
        self._args = {"program_start": program_start, "n_accounts": n_accounts, "seed": seed,
                      "start": start, "months": months, "activity": activity,
                      "strength": strength, "catalogue": catalogue}  # fmt: skip
        self._sim = _Simulation(
            n_accounts, seed, start, months, activity, True, strength, catalogue
        )
        if not start < program_start <= self.end:
            raise ValueError(f"program start {program_start} must be in ({start}, {self.end}]")
        self._accounts = self._sim.accounts_table()
        self._usage: list[pa.Table] = []
        self._touches: list[pa.Table] = []
        self._waiting: list[tuple[np.ndarray, np.ndarray]] = []  # (accounts, month) to apply
        self.out.mkdir(parents=True, exist_ok=True)
        self.advance(program_start)

    @property
    def end(self) -> date:
        """The day after the last simulated day of the whole world."""
        return _day(int(self._sim.ms[-1]))

    @property
    def simulated_until(self) -> date:
        """The day after the last day the files cover."""
        return _day(int(self._sim.ms[self._sim.i]))

    def advance(self, until: date, touches: object = None) -> None:
        """Record `touches` (all dated before `until`), simulate the months that start before
        `until` and rewrite the files."""
        if until > self.end:
            raise ValueError(f"{until} is past the end of the world ({self.end})")
        sim = self._sim
        if touches is not None:
            self._record(touches, until)
        stop = _day_number(until)
        while sim.i < sim.n_months and sim.ms[sim.i] < stop:
            self._apply_waiting()
            table = sim.month()
            if table is not None:
                self._usage.append(table)
        self._write()

    def replay(self, out_dir: Path, touches: object) -> ProgramWorld:
        """The same world from its program's start with other touches, run to its end."""
        other = ProgramWorld(out_dir, **self._args)  # type: ignore[arg-type]
        other.advance(other.end, touches)
        return other

    def save(self) -> Path:
        """Keep the simulation beside its files, for `ProgramWorld.resume`."""
        path = self.out / SIMULATION_FILE
        with path.open("wb") as handle:
            pickle.dump(self, handle, protocol=pickle.HIGHEST_PROTOCOL)
        return path

    @staticmethod
    def resume(out_dir: Path) -> ProgramWorld:
        path = Path(out_dir) / SIMULATION_FILE
        with path.open("rb") as handle:
            world = pickle.load(handle)
        if not isinstance(world, ProgramWorld):
            raise ValueError(f"{path} does not hold a program world")
        world.out = Path(out_dir)
        return world

    def _record(self, touches: object, until: date) -> None:
        table = _touch_table(touches)
        if table.num_rows == 0:
            return
        sim = self._sim
        known = pc.index_in(table["account_id"], value_set=sim.ids)
        if known.null_count:
            bad = table["account_id"][int(pc.index(pc.is_null(known), True).as_py())]
            raise ValueError(f"touch of {bad}, which is not an account of this world")
        days = pc.cast(pc.cast(table["touched_at"], pa.timestamp("us")), pa.int64()).to_numpy()
        days = days // US_PER_DAY
        if days.max() >= _day_number(until):
            raise ValueError(f"a touch dated on or after {until}: touches happen before it")
        month = np.searchsorted(sim.ms, days, side="right") - 1
        # a touch changes the months after its own: the month after it must still be ahead
        if month.min() < sim.i - 1:
            first = _day(int(sim.ms[sim.i - 1]))
            raise ValueError(f"a touch dated before {first} comes after the world moved on")
        self._waiting.append((known.to_numpy(zero_copy_only=False), month))
        self._touches.append(table)

    def _apply_waiting(self) -> None:
        sim = self._sim
        due = sim.i - 1
        rest = []
        for accounts, month in self._waiting:
            now = month == due
            if now.any():
                sim.touch(accounts[now], due)
            if (~now).any():
                rest.append((accounts[~now], month[~now]))
        self._waiting = rest

    def _write(self) -> None:
        for name, table in self._sim.tables(self._accounts).items():
            pq.write_table(table, self.out / f"{name}.parquet")
        usage = pa.concat_tables(self._usage) if self._usage else USAGE_SCHEMA.empty_table()
        with _usage_writer(self.out / "usage_events.parquet") as writer:
            writer.write_table(usage)
        if self._touches:  # the contract reads no touches file as no touches
            pq.write_table(pa.concat_tables(self._touches), self.out / "touches.parquet")


TOUCH_SCHEMA = pa.schema(
    [
        ("account_id", pa.string()),
        ("touched_at", pa.timestamp("us")),
        ("csm", pa.string()),
        ("motion", pa.string()),
        ("channel", pa.string()),
        ("outcome", pa.string()),
    ]
)


def _touch_table(touches: object) -> pa.Table:
    """Touches as given (a pandas frame or an Arrow table), in the contract's columns."""
    table = touches if isinstance(touches, pa.Table) else pa.Table.from_pandas(touches)
    columns = []
    for field in TOUCH_SCHEMA:
        if field.name in table.column_names:
            columns.append(pc.cast(table[field.name], field.type))
        elif field.name in ("account_id", "touched_at"):
            raise ValueError(f"touches need a {field.name} column")
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=TOUCH_SCHEMA)


def _day(number: int) -> date:
    return np.datetime64(number, "D").astype(date)


def _day_number(day: date) -> int:
    return int(np.datetime64(day, "D").astype(np.int64))
