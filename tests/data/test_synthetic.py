"""The synthetic world: reproducible, in the contract, dirty, and with a truth that holds up.

Every check reads the written files back with DuckDB and recomputes what it needs (eligibility,
expansion events, utilisation) from the contract definitions, never from the generator's code.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from expansion_scorer.data import synthetic
from expansion_scorer.data.synthetic import generate_world

FILES = ("accounts", "subscriptions", "usage_events", "support_tickets", "nps_responses", "truth")
START = date(2023, 1, 1)
SMALL = {"n_accounts": 150, "seed": 7, "start": START, "months": 18}
LARGE = {"n_accounts": 600, "seed": 1, "start": START, "months": 18}
END = date(2024, 7, 1)  # START + 18 months, exclusive

PLAN_RANK = "(VALUES ('starter', 0), ('team', 1), ('business', 2), ('enterprise', 3)) r(plan, rank)"
HELD_ON = "s.start_date <= {day} AND (s.end_date IS NULL OR s.end_date > {day})"

# Expansion days per the contract: ARR on d-1, and on d a product gained seats, a higher plan,
# or started while absent on d-1.
EXPANSIONS = f"""
CREATE TABLE expansions AS
WITH subs AS (SELECT s.*, r.rank FROM subscriptions s LEFT JOIN {PLAN_RANK} USING (plan)),
days AS (SELECT DISTINCT account_id, start_date AS day FROM subs),
after AS (
    SELECT c.account_id, c.day, s.product, s.seats, s.rank
    FROM days c JOIN subs s ON s.account_id = c.account_id AND {HELD_ON.format(day="c.day")}),
before AS (
    SELECT c.account_id, c.day, s.product, s.seats, s.rank, s.arr
    FROM days c JOIN subs s ON s.account_id = c.account_id AND {HELD_ON.format(day="c.day - 1")}),
paying AS (SELECT account_id, day FROM before GROUP BY ALL HAVING sum(arr) > 0)
SELECT DISTINCT a.account_id, a.day
FROM after a JOIN paying USING (account_id, day)
LEFT JOIN before b USING (account_id, day, product)
WHERE b.product IS NULL OR a.seats > b.seats OR a.rank > b.rank
"""

# Truth rows whose 90-day window closes inside the data, with the realised label.
LABELS = f"""
CREATE TABLE labels AS
SELECT t.account_id, t.as_of, t.p_expand,
       EXISTS (SELECT 1 FROM expansions x WHERE x.account_id = t.account_id
               AND x.day >= t.as_of AND x.day < t.as_of + 90) AS y
FROM truth t WHERE t.as_of + 90 <= DATE '{END}'
"""


def _open(path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for name in FILES:
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path / name}.parquet')")
    con.execute(EXPANSIONS)
    con.execute(LABELS)
    return con


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> float:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    out = tmp_path_factory.mktemp("small")
    return out, generate_world(out, **SMALL)


@pytest.fixture(scope="module")
def con(small: tuple[Path, dict[str, int]]) -> duckdb.DuckDBPyConnection:
    return _open(small[0])


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    """Enough account-months for rates to be estimated to a couple of points."""
    out = tmp_path_factory.mktemp("large")
    generate_world(out, **LARGE)
    return _open(out)


def test_same_arguments_give_byte_identical_files(small, tmp_path):
    first, _ = small
    generate_world(tmp_path / "again", **SMALL)
    generate_world(tmp_path / "other", **{**SMALL, "seed": 8})
    for name in FILES:
        file = f"{name}.parquet"
        assert (tmp_path / "again" / file).read_bytes() == (first / file).read_bytes(), name
        assert (tmp_path / "other" / file).read_bytes() != (first / file).read_bytes(), name


def test_truth_draws_do_not_touch_the_world(small, tmp_path, monkeypatch):
    """Changing how truth is estimated changes truth.parquet and nothing else."""
    first, _ = small
    monkeypatch.setattr(synthetic, "TRUTH_PATHS", 5)
    generate_world(tmp_path, **SMALL)
    for name in FILES:
        same = (tmp_path / f"{name}.parquet").read_bytes() == (
            first / f"{name}.parquet"
        ).read_bytes()
        assert same == (name != "truth"), name


def test_returned_counts_are_the_rows_written(small):
    out, counts = small
    assert set(counts) == set(FILES)
    for name in FILES:
        assert counts[name] == pq.ParquetFile(out / f"{name}.parquet").metadata.num_rows > 0


def test_columns_and_types_follow_the_contract(small):
    out, _ = small
    expected = {
        "accounts": [
            ("account_id", pa.string()),
            ("account_name", pa.string()),
            ("created_at", pa.date32()),
            ("industry", pa.string()),
            ("employee_count", pa.int64()),
            ("country", pa.string()),
            ("segment", pa.string()),
            ("csm_owner", pa.string()),
        ],
        "subscriptions": [
            ("account_id", pa.string()),
            ("product", pa.string()),
            ("plan", pa.string()),
            ("seats", pa.int64()),
            ("arr", pa.float64()),
            ("start_date", pa.date32()),
            ("end_date", pa.date32()),
        ],
        "usage_events": [
            ("account_id", pa.string()),
            ("user_id", pa.string()),
            ("timestamp", pa.timestamp("us")),
            ("event", pa.string()),
            ("quantity", pa.int64()),
        ],
        "support_tickets": [
            ("account_id", pa.string()),
            ("created_at", pa.timestamp("us")),
            ("priority", pa.string()),
        ],
        "nps_responses": [
            ("account_id", pa.string()),
            ("responded_at", pa.timestamp("us")),
            ("score", pa.int64()),
        ],
        "truth": [("account_id", pa.string()), ("as_of", pa.date32()), ("p_expand", pa.float64())],
    }
    for name, columns in expected.items():
        schema = pq.read_schema(out / f"{name}.parquet")
        assert [(f.name, f.type) for f in schema] == columns, name


def test_accounts_have_unique_ids_and_known_categories(con):
    ids = [r[0] for r in con.execute("SELECT account_id FROM accounts").fetchall()]
    assert len(ids) == len(set(ids)) == SMALL["n_accounts"]
    assert all(re.fullmatch(r"A\d{6}", i) for i in ids)
    segments = {r[0] for r in con.execute("SELECT DISTINCT segment FROM accounts").fetchall()}
    assert segments == {"SMB", "Mid-Market", "Enterprise", None}
    assert 5 <= _one(con, "SELECT count(DISTINCT csm_owner) FROM accounts") <= 8


def test_subscriptions_are_non_overlapping_contract_segments(con):
    assert _one(con, "SELECT count(*) FROM subscriptions WHERE end_date <= start_date") == 0
    assert _one(con, "SELECT min(arr) FROM subscriptions") > 0
    core_ok = """SELECT bool_and(CASE WHEN product = 'Core'
            THEN plan IN ('starter', 'team', 'business', 'enterprise') AND seats >= 1
            ELSE plan IS NULL AND seats IS NULL
                 AND product IN ('Analytics', 'Automation', 'Integrations') END)
        FROM subscriptions"""
    assert _one(con, core_ok)
    caps = """SELECT count(*) FROM subscriptions WHERE (plan = 'starter' AND seats > 10)
        OR (plan = 'team' AND seats > 50) OR (plan = 'business' AND seats > 250)"""
    assert _one(con, caps) == 0
    overlaps = """SELECT count(*) FROM (
        SELECT start_date, lag(coalesce(end_date, DATE '9999-12-31'))
            OVER (PARTITION BY account_id, product ORDER BY start_date) AS prev_end
        FROM subscriptions) WHERE prev_end > start_date"""
    assert _one(con, overlaps) == 0
    orphans = "SELECT count(*) FROM subscriptions ANTI JOIN accounts USING (account_id)"
    assert _one(con, orphans) == 0


def test_usage_rows_are_daily_counts_per_user_and_event(con):
    events = {r[0] for r in con.execute("SELECT DISTINCT event FROM usage_events").fetchall()}
    assert events == set(synthetic.EVENTS)
    assert _one(con, "SELECT min(quantity) FROM usage_events") >= 1
    assert _one(con, f"SELECT min(timestamp) >= DATE '{START}' FROM usage_events")
    assert _one(con, f"SELECT max(timestamp) < DATE '{END}' FROM usage_events")
    dupes = """SELECT count(*) FROM (SELECT user_id, timestamp::DATE, event FROM usage_events
        GROUP BY ALL HAVING count(*) > 1)"""
    assert _one(con, dupes) == 0
    bad_user = (
        "SELECT count(*) FROM usage_events WHERE NOT starts_with(user_id, account_id || '-u')"
    )
    assert _one(con, bad_user) == 0
    # API calls are counted in bulk: far more per row than clicks.
    assert _one(con, "SELECT avg(quantity) FROM usage_events WHERE event = 'api_call'") > 20


def test_tickets_nps_and_truth_values_are_in_range(con):
    priorities = {
        r[0] for r in con.execute("SELECT DISTINCT priority FROM support_tickets").fetchall()
    }
    assert priorities == {"low", "normal", "high", "urgent"}
    assert _one(con, "SELECT min(score) >= 0 AND max(score) <= 10 FROM nps_responses")
    assert _one(con, "SELECT bool_and(day(as_of) = 1) FROM truth")
    assert _one(con, "SELECT min(p_expand) >= 0 AND max(p_expand) <= 1 FROM truth")


def test_exports_are_dirty_like_real_ones(con):
    for column in ("industry", "employee_count", "country"):
        share = _one(con, f"SELECT avg(({column} IS NULL)::INT) FROM accounts")
        assert 0.07 <= share <= 0.25, column
    assert _one(con, "SELECT count(*) FROM accounts WHERE segment IS NULL") > 0
    assert _one(con, "SELECT count(*) FROM accounts WHERE csm_owner IS NULL") > 0
    names = [r[0] for r in con.execute("SELECT account_name FROM accounts").fetchall()]
    assert any("," in n for n in names)
    assert any('"' in n for n in names)
    assert any("'" in n for n in names)
    assert any(not n.isascii() for n in names)
    assert any(n != n.strip() for n in names)


def test_free_workspaces_are_a_small_share_of_usage_and_not_accounts(con):
    free = """SELECT avg((account_id NOT IN (FROM accounts SELECT account_id))::INT),
        bool_and(regexp_full_match(account_id, 'F\\d{5}'))
            FILTER (WHERE account_id NOT IN (FROM accounts SELECT account_id))
        FROM usage_events"""
    share, ids_ok = con.execute(free).fetchone()
    assert 0.001 <= share <= 0.01
    assert ids_ok


def test_truth_covers_exactly_the_eligible_account_months(con):
    eligible = f"""
    CREATE TABLE eligible AS
    WITH months AS (
        SELECT CAST(unnest(generate_series(DATE '2023-02-01', DATE '2024-06-01',
                                           INTERVAL 1 MONTH)) AS DATE) AS as_of)
    SELECT a.account_id, m.as_of
    FROM accounts a JOIN months m ON a.created_at < m.as_of
    JOIN subscriptions s ON s.account_id = a.account_id AND {HELD_ON.format(day="m.as_of - 1")}
    GROUP BY ALL HAVING sum(s.arr) > 0
    """
    con.execute(eligible)
    missing = "SELECT count(*) FROM (FROM eligible EXCEPT SELECT account_id, as_of FROM truth)"
    extra = "SELECT count(*) FROM (SELECT account_id, as_of FROM truth EXCEPT FROM eligible)"
    assert _one(con, missing) == 0
    assert _one(con, extra) == 0
    assert _one(con, "SELECT count(*) FROM truth") == _one(con, "SELECT count(*) FROM eligible")
    # The installed base makes the first month start eligible too, and arrivals keep coming.
    per_month = con.execute(
        "SELECT count(*) FROM eligible GROUP BY as_of ORDER BY as_of"
    ).fetchall()
    assert len(per_month) == SMALL["months"] - 1
    assert per_month[0][0] > 0
    assert per_month[-1][0] > per_month[0][0]


def test_expansions_fall_on_days_3_to_28_and_price_only_renewals_exist(con):
    assert _one(con, "SELECT count(*) FROM expansions") > 50
    assert _one(con, "SELECT min(day(day)) >= 3 AND max(day(day)) <= 28 FROM expansions")
    price_only = """SELECT count(*) FROM subscriptions s JOIN subscriptions p
        ON p.account_id = s.account_id AND p.product = s.product AND p.end_date = s.start_date
        WHERE s.seats IS NOT DISTINCT FROM p.seats AND s.plan IS NOT DISTINCT FROM p.plan
          AND s.arr > p.arr"""
    assert _one(con, price_only) > 20
    contractions = """SELECT count(*) FROM subscriptions s JOIN subscriptions p
        ON p.account_id = s.account_id AND p.product = 'Core' AND s.product = 'Core'
       AND p.end_date = s.start_date WHERE s.seats < p.seats"""
    assert _one(con, contractions) > 0


def test_churned_accounts_fall_silent_and_trials_use_before_paying(con):
    churned = """CREATE TABLE churned AS SELECT account_id, max(end_date) AS gone
        FROM subscriptions GROUP BY ALL HAVING count(end_date) = count(*)"""
    con.execute(churned)
    assert _one(con, "SELECT count(*) FROM churned") > 0
    after = """SELECT count(*) FROM usage_events u JOIN churned c USING (account_id)
        WHERE u.timestamp >= c.gone"""
    assert _one(con, after) == 0
    trials = """SELECT count(DISTINCT u.account_id) FROM usage_events u
        JOIN (SELECT account_id, min(start_date) AS paid FROM subscriptions GROUP BY ALL)
        USING (account_id) WHERE u.timestamp < paid - 7"""
    assert _one(con, trials) > 0


def test_weekends_are_quiet(con):
    per_day = """SELECT avg(n) FILTER (WHERE dow IN (0, 6)) / avg(n) FILTER (WHERE dow IN (1, 2, 3))
        FROM (SELECT timestamp::DATE AS d, dayofweek(timestamp) AS dow, count(*) AS n
              FROM usage_events GROUP BY ALL)"""
    assert _one(con, per_day) < 0.35


def test_rates_are_believable(large):
    assert 0.1 <= _one(large, "SELECT avg(y::INT) FROM labels") <= 0.3
    churned = f"""SELECT count(*) FROM (SELECT account_id FROM subscriptions GROUP BY ALL
        HAVING count(end_date) = count(*) AND max(end_date) >= DATE '{START}')"""
    monthly_churn = _one(large, churned) / _one(large, "SELECT count(*) FROM truth")
    assert 0.001 < monthly_churn < 0.03
    arr = large.execute(
        f"""SELECT quantile_cont(arr, [0.05, 0.5, 0.95]) FROM (
            SELECT account_id, sum(s.arr) AS arr FROM subscriptions s
            WHERE {HELD_ON.format(day="DATE '2024-06-30'")} GROUP BY ALL)"""
    ).fetchone()[0]
    assert 500 <= arr[0] <= 5_000
    assert 5_000 <= arr[1] <= 50_000
    assert 80_000 <= arr[2] <= 800_000


def test_truth_matches_realised_expansions(large):
    frame = large.execute("SELECT account_id, p_expand, y::INT AS y FROM labels").df()
    gap = frame["y"] - frame["p_expand"]
    # Windows of one account overlap, so its residuals are summed before taking the error.
    se = np.sqrt((gap.groupby(frame["account_id"]).sum() ** 2).sum()) / len(frame)
    assert se < 0.015
    assert abs(gap.mean()) < 3 * se
    decile = pd.qcut(frame["p_expand"].rank(method="first"), 10, labels=False)
    realised = frame.groupby(decile)["y"].mean().to_numpy()
    assert np.corrcoef(np.arange(10), realised.argsort().argsort())[0, 1] > 0.9
    assert realised[-1] > 5 * realised[0]


def _monthly_usage(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"""CREATE OR REPLACE TABLE pairs AS
        WITH usage AS (
            SELECT account_id, CAST(date_trunc('month', timestamp) + INTERVAL 1 MONTH AS DATE)
                       AS as_of,
                   count(DISTINCT user_id) AS users,
                   count(*) FILTER (WHERE event = 'invite_user') AS invites,
                   count(*) FILTER (WHERE event = 'export_report') AS exports,
                   coalesce(sum(quantity) FILTER (WHERE event = 'api_call'), 0) AS api_calls
            FROM usage_events GROUP BY ALL),
        core AS (
            SELECT l.account_id, l.as_of, s.seats, s.plan
            FROM labels l JOIN subscriptions s ON s.account_id = l.account_id
             AND s.product = 'Core' AND {HELD_ON.format(day="l.as_of - 1")})
        SELECT l.*, u.users, u.invites, u.exports, u.api_calls, c.seats, c.plan
        FROM labels l JOIN core c USING (account_id, as_of) JOIN usage u USING (account_id, as_of)
        """
    )


def _later(product: str, change: str) -> str:
    """SQL: whether the pair's account has a given change in [as_of, as_of + 90)."""
    return f"""EXISTS (SELECT 1 FROM subscriptions s LEFT JOIN subscriptions p
        ON p.account_id = s.account_id AND p.product = s.product AND p.end_date = s.start_date
        WHERE s.account_id = pairs.account_id AND s.product = '{product}' AND {change}
          AND s.start_date >= pairs.as_of AND s.start_date < pairs.as_of + 90)"""


def test_accounts_short_of_seats_expand_more_often(large):
    _monthly_usage(large)
    frame = large.execute("SELECT users / seats AS utilisation, y::INT AS y FROM pairs").df()
    tercile = pd.qcut(frame["utilisation"].rank(method="first"), 3, labels=False)
    rates = frame.groupby(tercile)["y"].mean()
    assert rates[2] > 1.6 * rates[0]


def test_invites_rise_before_seats_are_bought(large):
    _monthly_usage(large)
    seat_add = _later("Core", "s.seats > p.seats")
    per_user = large.execute(
        f"""SELECT avg(invites / users) FILTER (WHERE {seat_add}),
                   avg(invites / users) FILTER (WHERE NOT {seat_add}) FROM pairs"""
    ).fetchone()
    assert per_user[0] > 1.4 * per_user[1]


def test_hitting_the_api_limit_precedes_plan_upgrades(large):
    _monthly_usage(large)
    upgrade = _later("Core", "s.plan <> p.plan AND s.seats >= p.seats")
    limit = (
        "CASE plan WHEN 'starter' THEN 5000 WHEN 'team' THEN 50000 WHEN 'business' THEN 500000 END"
    )
    rates = large.execute(
        f"""SELECT avg(({upgrade})::INT) FILTER (WHERE api_calls >= 0.8 * {limit}),
                   avg(({upgrade})::INT) FILTER (WHERE api_calls < 0.5 * {limit}),
                   count(*) FILTER (WHERE api_calls >= 0.8 * {limit}) FROM pairs"""
    ).fetchone()
    assert rates[2] >= 30
    assert rates[0] > 2 * rates[1]


def test_report_exports_point_to_analytics_purchases(large):
    _monthly_usage(large)
    owns = "EXISTS (SELECT 1 FROM subscriptions s WHERE s.account_id = pairs.account_id"
    owns += f" AND s.product = 'Analytics' AND {HELD_ON.format(day='pairs.as_of - 1')})"
    buys = _later("Analytics", "p.product IS NULL")
    per_user = large.execute(
        f"""SELECT avg(exports / users) FILTER (WHERE {buys}),
                   avg(exports / users) FILTER (WHERE NOT {buys}) FROM pairs WHERE NOT {owns}"""
    ).fetchone()
    assert per_user[0] > 1.4 * per_user[1]


def test_start_must_be_a_month_start(tmp_path):
    with pytest.raises(ValueError, match="first day of a month"):
        generate_world(tmp_path, n_accounts=5, start=date(2023, 1, 15), months=2)


def test_activity_thins_usage_and_changes_nothing_else(tmp_path: Path) -> None:
    counts = {}
    for activity in (1.0, 0.3):
        out = tmp_path / str(activity)
        counts[activity] = generate_world(out, n_accounts=60, seed=4, months=6, activity=activity)
    full, thin = tmp_path / "1.0", tmp_path / "0.3"
    for name in ("accounts", "subscriptions", "support_tickets", "nps_responses", "truth"):
        assert (full / f"{name}.parquet").read_bytes() == (thin / f"{name}.parquet").read_bytes()
    ratio = counts[0.3]["usage_events"] / counts[1.0]["usage_events"]
    assert 0.2 < ratio < 0.4


# --- A world that answers a program. ---

PINNED = "6581380285a8c2991818a4d020e794d524e4687d7a2abca1462aac14ded2d74d"
"""Content of `generate_world(n_accounts=40, seed=5, months=4)` before worlds could answer a
program (commit 7fb21c9): a world without a program must stay the world it was."""


def test_a_world_without_a_program_is_unchanged(tmp_path: Path) -> None:
    generate_world(tmp_path, n_accounts=40, seed=5, months=4)
    digest = hashlib.sha256()
    for name in FILES:
        digest.update(pd.read_parquet(tmp_path / f"{name}.parquet").to_csv(index=False).encode())
    assert digest.hexdigest() == PINNED


PROGRAM = {"n_accounts": 120, "seed": 2, "start": START, "months": 16}
PROGRAM_START = date(2024, 1, 1)


def _touches(accounts: list[str], when: str) -> pd.DataFrame:
    return pd.DataFrame({"account_id": accounts, "touched_at": pd.Timestamp(when)})


def test_a_touch_changes_its_own_account_and_no_other(tmp_path: Path) -> None:
    touched = [f"A{j:06d}" for j in range(0, 120, 3)]
    worlds = {}
    for name, touches in {"touched": _touches(touched, "2024-01-03 10:00"), "alone": None}.items():
        world = synthetic.ProgramWorld(tmp_path / name, PROGRAM_START, **PROGRAM)
        world.advance(date(2024, 1, 8), touches)
        world.advance(world.end)
        worlds[name] = world.out
    subs = {n: pd.read_parquet(p / "subscriptions.parquet") for n, p in worlds.items()}
    others = {n: s[~s["account_id"].isin(touched)].reset_index(drop=True) for n, s in subs.items()}
    pd.testing.assert_frame_equal(others["touched"], others["alone"])
    mine = {n: s[s["account_id"].isin(touched)].reset_index(drop=True) for n, s in subs.items()}
    assert not mine["touched"].equals(mine["alone"])
    # what the world looked like before the month after the touch is not rewritten (an end on
    # or after that day was still open then)
    cut = date(2024, 2, 1)
    before = {}
    for n, s in subs.items():
        seen = s[s["start_date"] < cut].reset_index(drop=True)
        seen["end_date"] = seen["end_date"].where(seen["end_date"] < cut)
        before[n] = seen
    pd.testing.assert_frame_equal(before["touched"], before["alone"])
    written = pd.read_parquet(worlds["touched"] / "touches.parquet")
    assert (
        sorted(written["account_id"]) == touched
        and not (worlds["alone"] / "touches.parquet").exists()
    )
    # the truth knows both chances: a touch helps most accounts and hurts some
    truth = pd.read_parquet(worlds["touched"] / "truth.parquet")
    lift = truth["p_touched"] - truth["p_expand"]
    assert lift.mean() > 0.01 and (lift < -0.01).any() and (lift > 0.05).any()


def test_a_program_world_resumes_where_it_stopped(tmp_path: Path) -> None:
    touches = _touches(["A000004", "A000010"], "2024-02-06 10:00")
    straight = synthetic.ProgramWorld(tmp_path / "straight", PROGRAM_START, **PROGRAM)
    straight.advance(date(2024, 2, 12), touches)
    straight.advance(date(2024, 4, 1))
    paused = synthetic.ProgramWorld(tmp_path / "paused", PROGRAM_START, **PROGRAM)
    paused.advance(date(2024, 2, 5))
    paused.save()
    resumed = synthetic.ProgramWorld.resume(tmp_path / "paused")
    resumed.advance(date(2024, 2, 12), touches)
    resumed.advance(date(2024, 4, 1))
    for name in (*FILES, "touches"):
        a = pd.read_parquet(tmp_path / "straight" / f"{name}.parquet")
        b = pd.read_parquet(tmp_path / "paused" / f"{name}.parquet")
        pd.testing.assert_frame_equal(a, b)


def test_a_touch_the_world_cannot_take_is_refused(tmp_path: Path) -> None:
    world = synthetic.ProgramWorld(tmp_path, PROGRAM_START, **PROGRAM)
    world.advance(date(2024, 3, 4))
    cases = {
        "not an account": _touches(["Z000001"], "2024-03-01"),
        "on or after": _touches(["A000001"], "2024-03-11 09:00"),
        "moved on": _touches(["A000001"], "2024-01-15"),
    }
    for says, touches in cases.items():
        with pytest.raises(ValueError, match=says):
            world.advance(date(2024, 3, 11), touches)


def test_a_random_catalogue_renames_everything_and_redraws_the_mechanisms(tmp_path: Path) -> None:
    catalogue = synthetic.Catalogue.of("random", seed=4)
    assert catalogue == synthetic.Catalogue.of("random", seed=4)  # drawn from the seed
    assert catalogue != synthetic.Catalogue.of("random", seed=5)
    assert catalogue.mechanisms != synthetic.DEFAULT_MECHANISMS
    generate_world(tmp_path, n_accounts=60, seed=4, months=6, catalogue=catalogue)
    con = duckdb.connect()
    subs = con.execute(f"SELECT * FROM '{tmp_path}/subscriptions.parquet'").df()
    events = con.execute(f"SELECT DISTINCT event FROM '{tmp_path}/usage_events.parquet'").df()
    assert set(subs["product"]) <= set(catalogue.products)
    assert set(subs["plan"].dropna()) <= set(catalogue.plans)
    assert set(events["event"]) <= set(catalogue.events)
    shipped = {*synthetic.PRODUCTS, *synthetic.PLANS, *synthetic.EVENTS}
    assert not shipped & {*subs["product"], *subs["plan"].dropna(), *events["event"]}
    # the budget-led structure is a different world, not renamed: same accounts, other contracts
    generate_world(tmp_path / "budget", n_accounts=60, seed=4, months=6,
                   catalogue=synthetic.Catalogue.of("default", 4, "budget"))  # fmt: skip
    budget = pd.read_parquet(tmp_path / "budget" / "subscriptions.parquet")
    assert set(budget["product"]) <= set(synthetic.PRODUCTS)
    with pytest.raises(ValueError, match="structure"):
        synthetic.Catalogue.of("default", 4, "gravity")
