"""Source mappings: a world written out in Stripe's, Segment's, Salesforce's and HubSpot's own
schemas, mapped back with the shipped presets, gives the world's own features; bad mappings
stop in one line naming the mapping, the table and what to fix."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest

from expansion_scorer.config import LabelConfig
from expansion_scorer.data.loading import World, open_world
from expansion_scorer.data.sources import load_sources, preset_text
from expansion_scorer.data.validation import validate
from expansion_scorer.features.build import build_features
from expansion_scorer.features.ledger import build_expansions
from expansion_scorer.features.snapshots import build_entities, labels
from expansion_scorer.settings import load_feature_set
from tests import pgserver
from tests.data.vendors import write_hubspot, write_salesforce, write_segment, write_stripe
from tests.helpers import TINY, run_cli, write_tables

END = date(2024, 3, 1)  # 14 months from 2023-01-01: the generated data's end
DATES = [date(2023, 6, 1), date(2023, 9, 1), date(2023, 11, 1)]
CUT = date(2023, 9, 1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from expansion_scorer.data.synthetic import generate_world

    out = tmp_path_factory.mktemp("sources_world")
    generate_world(out, n_accounts=80, seed=3, months=14)
    return out


@pytest.fixture(scope="module")
def exports(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The vendors' exports, with the tickets and NPS tables as contract files beside them:
    a mapping names only what comes from elsewhere."""
    out = tmp_path_factory.mktemp("exports")
    write_salesforce(world, out)
    write_hubspot(world, out)
    write_segment(world, out)
    write_stripe(world, out, END)
    for table in ("support_tickets", "nps_responses"):
        shutil.copy(world / f"{table}.parquet", out / f"{table}.parquet")
    for name, presets in {
        "salesforce.yaml": ["stripe", "segment", "salesforce"],
        "hubspot.yaml": ["stripe", "segment", "hubspot"],
    }.items():
        (out / name).write_text(preset_text(presets), encoding="utf-8")
    return out


def _frame(world: World, dates: list[date]) -> pd.DataFrame:
    """Features and labels of every eligible account at the dates, as training builds them."""
    features = load_feature_set()
    build_entities(world.con, dates)
    build_expansions(world.con, features)
    frame = build_features(world.con, features, world.has("support_tickets"), True)
    y = labels(world.con, 90, LabelConfig())
    return frame.merge(y, on=["account_id", "as_of"], validate="one_to_one")


@pytest.fixture(scope="module")
def own(world: Path) -> pd.DataFrame:
    return _frame(open_world(world), DATES)


@pytest.mark.parametrize("crm", ["salesforce", "hubspot"])
def test_a_preset_maps_the_vendors_exports_back_to_the_worlds_own_features(
    exports: Path, own: pd.DataFrame, world: Path, crm: str
) -> None:
    # Given the exports and the joined presets, with DATA_DIR holding the unmapped tables
    mapped = open_world(load_sources(exports / f"{crm}.yaml", exports))

    # When the mapped tables are validated and the training rows built
    report = validate(mapped)
    frame = _frame(mapped, DATES)

    # Then every feature and label is the world's own, and the CRM id is kept
    assert len(own) > 100 and own["label"].sum() > 5
    pd.testing.assert_frame_equal(frame, own)
    assert report.row_counts["usage_events"] == len(pd.read_parquet(world / "usage_events.parquet"))
    ids = mapped.con.execute("SELECT account_id, crm_id, csm_owner, csm_email FROM accounts").df()
    assert ids["crm_id"].notna().all() and ids["crm_id"].is_unique
    owned = ids[ids["csm_owner"].notna()]  # the digest's address comes with the owner
    assert len(owned) and owned["csm_email"].str.endswith("@vendor.example").all()
    assert len(ids) == len(pd.read_parquet(world / "accounts.parquet"))  # no prospect


def test_the_rebuilt_stripe_history_is_point_in_time(
    exports: Path, world: Path, tmp_path: Path
) -> None:
    # Given a Stripe export taken on CUT, when the invoices after it did not exist yet
    early = tmp_path / "early"
    shutil.copytree(exports, early, ignore=shutil.ignore_patterns("stripe"))
    write_stripe(world, early, CUT)

    # When both exports are read as of CUT
    then = _frame(open_world(load_sources(early / "salesforce.yaml", early), cutoff=CUT), [CUT])
    now = _frame(open_world(load_sources(exports / "salesforce.yaml", exports), cutoff=CUT), [CUT])

    # Then the later invoices change nothing the cut-off lets through
    features = [c for c in now.columns if c not in ("label", "expansion_arr")]
    pd.testing.assert_frame_equal(then[features], now[features])
    assert len(now) > 30


def test_metered_stripe_prices_map_to_billed_revenue(tmp_path: Path) -> None:
    # Given a metered price billed monthly, a licensed fee, a void invoice and a credit
    stripe = tmp_path / "stripe"
    tables = {
        "customers": pd.DataFrame({"id": ["cus_1", "cus_2"],
                                   "metadata": ['{"account_id": "A1"}', '{"account_id": "A2"}']}),
        "prices": pd.DataFrame({"id": ["price_m", "price_l"],
                                "recurring_usage_type": ["metered", "licensed"]}),
        "invoices": pd.DataFrame({
            "id": ["in_1", "in_2", "in_3", "in_4"],
            "customer_id": ["cus_1", "cus_1", "cus_2", "cus_2"],
            "status": ["paid", "void", "open", "paid"],
            "created": pd.to_datetime(["2024-02-01 00:03", "2024-02-01 00:05",
                                       "2024-02-01 01:00", "2024-03-01 00:10"], utc=True)}),
        "invoice_line_items": pd.DataFrame({
            "id": ["il_1", "il_2", "il_3", "il_4", "il_5"],
            "invoice_id": ["in_1", "in_1", "in_2", "in_3", "in_4"],
            "price_id": ["price_m", "price_l", "price_m", "price_m", "price_m"],
            "amount": [12_345, 50_000, 99_999, 800, -300]}),
    }  # fmt: skip
    for name, frame in tables.items():
        (stripe / name).mkdir(parents=True)
        frame.to_parquet(stripe / name / "part-0.parquet")
    mapping = tmp_path / "sources.yaml"
    mapping.write_text(preset_text(["stripe-metered"]))

    write_tables(tmp_path, {k: TINY[k] for k in ("accounts", "usage_events")})

    # When the preset maps them, beside the other tables as contract files in DATA_DIR
    world = open_world(load_sources(mapping, tmp_path))
    validate(world)
    rows = world.con.execute("SELECT * FROM revenue ORDER BY account_id, date").fetchall()

    # Then each metered line of a billed invoice is revenue on the day it was invoiced
    assert [(a, str(d), float(x)) for a, d, x in rows] == [
        ("A1", "2024-02-01", 123.45),
        ("A2", "2024-02-01", 8.0),
        ("A2", "2024-03-01", -3.0),
    ]
    assert world.consumption


def test_validate_reads_through_a_mapping_and_names_it_in_warnings(
    exports: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mapping = exports / "salesforce.yaml"
    code, out, err = run_cli(["validate", str(exports), "--sources", str(mapping)], capsys)

    assert code == 0, err
    assert out.strip().endswith(f"{mapping}: valid")
    assert "salesforce.yaml tables.usage_events:" in out  # the free workspaces' warning


def _bad(tmp: Path, text: str) -> Path:
    """A mapping file; the name bad.yaml is what errors quote."""
    mapping = tmp / "bad.yaml"
    mapping.write_text(text, encoding="utf-8")
    return mapping


@pytest.mark.parametrize(
    ("mapping", "says"),
    [
        (
            "tables:\n  usage_events:\n    files: events/*.parquet\n",
            "bad.yaml tables.usage_events: files events/*.parquet matches no file under",
        ),
        (
            "tables:\n  accounts:\n    sql: SELECT * FROM read_parquet('crm/Account.parquet')\n",
            "bad.yaml tables.accounts: the SELECT fails (IO Error: No files found",
        ),
        (
            "tables:\n  accounts:\n    sql: SELECT * FROM accounts_table\n",
            "bad.yaml tables.accounts: the SELECT fails (Catalog Error: Table with name"
            " accounts_table does not exist!",
        ),
        (
            "tables:\n  usage_events:\n    files: usage_events.parquet\n"
            "    columns: {account_id: context_group_id}\n",
            "bad.yaml tables.usage_events: column context_group_id (mapped to account_id) is"
            " not in usage_events.parquet; it has account_id, user_id, timestamp, event,"
            " quantity; fix columns.account_id",
        ),
        (
            "tables:\n  accounts:\n    sql: SELECT account_id, account_name"
            " FROM read_parquet('accounts.parquet')\n",
            "bad.yaml tables.accounts: missing required column created_at; it has account_id,"
            " account_name; map it under columns or select a column AS created_at",
        ),
        (
            "tables:\n  accounts:\n    sql: SELECT account_id, account_name, 20240101 AS"
            " created_at FROM read_parquet('accounts.parquet')\n",
            "bad.yaml tables.accounts: column created_at is INTEGER, not a date; cast it in the"
            " mapping (from Unix seconds: to_timestamp(x))",
        ),
        (
            "tables:\n  accounts:\n    sql: SELECT * REPLACE (CASE WHEN account_id = 'A000007'"
            " THEN NULL ELSE account_name END AS account_name)"
            " FROM read_parquet('accounts.parquet')\n",
            "bad.yaml tables.accounts: column account_name, row 8 (account_id 'A000007'): empty"
            " value in a required column (value None); fill it",
        ),
        (
            "tables:\n  usage_events:\n    files: usage_events.parquet\n"
            "    columns: {timestamp: event}\n",
            "bad.yaml tables.usage_events: missing required column event; it has account_id,"
            " user_id, quantity, timestamp; map it under columns or select a column AS event",
        ),
        (
            "tables:\n  accounts:\n    sql: SELECT 1; SELECT 2\n",
            "bad.yaml tables.accounts: the sql must be one SELECT statement; fix it",
        ),
        ("tables:\n  acounts:\n    sql: SELECT 1\n", "bad.yaml: tables.acounts: not a contract"),
        (
            "tables:\n  accounts:\n    sqll: SELECT 1\n",
            "bad.yaml: tables.accounts.sqll: Extra inputs are not permitted",
        ),
        (
            "tables:\n  accounts:\n    files: a.parquet\n    sql: SELECT 1\n",
            "bad.yaml: tables.accounts: give either files (with columns) or sql",
        ),
        (
            "databases:\n  crm: postgresql://scorer:hunter2@db:5432/crm\ntables:\n  accounts:\n"
            "    database: crm\n    sql: SELECT * FROM accounts\n",
            "bad.yaml: databases.crm: the URL holds a password; write ${CRM_PASSWORD} in its"
            " place and set that environment variable (or PGPASSWORD)",
        ),
        (
            "databases:\n  crm: postgresql://scorer@127.0.0.1:1/crm\ntables:\n  accounts:\n"
            "    database: crm\n    sql: SELECT * FROM accounts\n",
            "bad.yaml tables.accounts (database crm): ",
        ),
    ],
)
def test_a_bad_mapping_stops_in_one_line_naming_the_mapping_and_table(
    world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], mapping: str, says: str
) -> None:
    # Given a mapping with one mistake, over the world's own files
    bad = _bad(tmp_path, mapping)

    # When a command reads through it
    out = tmp_path / "out"
    code, _, err = run_cli(
        ["score", str(world), "--sources", str(bad), "--as-of", "2024-01-01", "--out", str(out)],
        capsys,
    )

    # Then it stops with one line naming the mapping, the table and the fix; nothing written
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {says}"), lines[0]
    assert "hunter2" not in err
    assert not out.exists()


def test_a_table_read_from_postgresql_gives_the_same_features(
    world: Path,
    own: pd.DataFrame,
    postgres: pgserver.Server,
    pg_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the accounts in a real PostgreSQL database, its password in the environment
    frame = pd.read_parquet(world / "accounts.parquet")
    body = frame.to_csv(index=False, na_rep="\\N")
    postgres.psql(
        "CREATE TABLE crm_accounts (account_id text PRIMARY KEY, account_name text,"
        " created_at date, industry text, employee_count double precision, country text,"
        f" segment text, csm_owner text); ALTER TABLE crm_accounts OWNER TO {pgserver.USER};\n"
        "COPY crm_accounts FROM STDIN (FORMAT csv, HEADER true, NULL '\\N');\n" + body + "\\.\n",
        database=pg_database,
    )
    monkeypatch.setenv("CRM_PASSWORD", pgserver.PASSWORD)
    url = postgres.url(password="${CRM_PASSWORD}", database=pg_database).replace(
        quote("${CRM_PASSWORD}", safe=""), "${CRM_PASSWORD}"
    )
    mapping = _bad(
        tmp_path,
        f"databases:\n  crm: {url}\ntables:\n  accounts:\n    database: crm\n"
        "    sql: SELECT *, 'SF-' || account_id AS crm_id FROM crm_accounts\n",
    )

    # When the world is read with accounts from the database and the rest from DATA_DIR
    mapped = open_world(load_sources(mapping, world))
    validate(mapped)

    # Then the features are the world's own, the CRM id is there, no password is recorded
    pd.testing.assert_frame_equal(_frame(mapped, DATES), own)
    assert mapped.con.execute(
        "SELECT count(*) FROM accounts WHERE crm_id LIKE 'SF-%'"
    ).fetchone() == (len(frame),)
    assert pgserver.PASSWORD not in mapping.read_text()


def test_scores_carry_the_crm_id_for_a_reverse_etl_sync(
    small_world_dir: Path, champion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given accounts mapped with their CRM id, the other tables read from DATA_DIR
    mapping = _bad(
        tmp_path,
        "tables:\n  accounts:\n    sql: SELECT *, 'SF-' || account_id AS crm_id"
        " FROM read_parquet('accounts.parquet')\n",
    )

    # When the week is scored through the mapping
    out = tmp_path / "out"
    code, _, err = run_cli(
        ["score", str(small_world_dir), "--sources", str(mapping), "--as-of", "2024-09-01", "--out",
         str(out)],
        capsys,
    )  # fmt: skip

    # Then every list row holds the CRM id to upsert by, and the manifest names the mapping
    assert code == 0, err
    for scores in (pd.read_parquet(out / "scores.parquet"), pd.read_csv(out / "scores.csv")):
        assert list(scores.columns[:3]) == ["rank", "account_id", "crm_id"]
        assert (scores["crm_id"] == "SF-" + scores["account_id"]).all()
    excluded = pd.read_csv(out / "excluded.csv")
    assert (excluded["crm_id"] == "SF-" + excluded["account_id"]).all()
    inputs = json.loads((out / "manifest.json").read_text())["inputs"]
    assert inputs["accounts"]["source"] == "bad.yaml tables.accounts"
    assert inputs["usage_events"]["file"] == "usage_events.parquet"


def test_the_spark_engine_refuses_a_mapping_before_starting(
    world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mapping = _bad(tmp_path, "tables:\n  accounts:\n    files: accounts.parquet\n")
    code, _, err = run_cli(
        ["score", str(world), "--sources", str(mapping), "--as-of", "2024-01-01", "--out",
         str(tmp_path / "out"), "--engine", "spark"],
        capsys,
    )  # fmt: skip
    assert code == 2
    assert err.startswith("error: --engine spark reads contract files only; with --sources")
