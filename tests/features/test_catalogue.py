"""The shipped definitions adapt to a company's own names: plans, events and the learned affinity.

A generated world is renamed (events, products, plans) with a fixed mapping the shipped YAML has
never seen, then trained and scored through the CLI with no definition edited.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from expansion_scorer.config import load_training_config
from expansion_scorer.data.loading import open_world
from expansion_scorer.features.build import build_features, evaluate_features
from expansion_scorer.features.catalogue import affinity_data, fit_affinity, for_model
from expansion_scorer.features.ledger import build_expansions, plans_by_price
from expansion_scorer.features.snapshots import build_entities, month_starts
from expansion_scorer.settings import load_feature_set
from tests.helpers import new_store, rewrite_future, run_cli

EVENTS = {
    "login": "sign_in",
    "create_record": "add_item",
    "comment": "note",
    "share": "send_link",
    "invite_user": "add_member",
    "export_report": "download_csv",
    "schedule_task": "plan_job",
    "api_call": "webhook_hit",
    "build_dashboard": "make_chart",
    "run_workflow": "run_recipe",
    "sync_connector": "pull_source",
}
PRODUCTS = {
    "Core": "Base",
    "Analytics": "Insights",
    "Automation": "Robots",
    "Integrations": "Bridges",
}
PLANS = {"starter": "bronze", "team": "silver", "business": "gold", "enterprise": "platinum"}
SHIPPED_AFFINITY = {
    "export_report": "Analytics",
    "schedule_task": "Automation",
    "api_call": "Integrations",
}
AS_OF = "2024-10-01"
# the features that read the catalogue: products, plans and events by name, through the data
CATALOGUE_FEATURES = [
    "unowned_fit_events_28d",
    "unowned_fit_per_user_28d",
    "top_unowned_fit",
    "top_unowned_fit_event",
    "catalogue_share_28d",
    "products_owned",
    "plan",
]


def renamed(src: Path, dst: Path) -> Path:
    """A copy of a generated world with every event, product and plan renamed."""
    dst.mkdir(parents=True, exist_ok=True)
    for path in src.glob("*.parquet"):
        frame = pd.read_parquet(path)
        if path.stem == "usage_events":
            frame["event"] = frame["event"].map(EVENTS)
        if path.stem == "subscriptions":
            frame["product"] = frame["product"].map(PRODUCTS)
            frame["plan"] = frame["plan"].map(PLANS)  # add-ons have no plan: they stay empty
        frame.to_parquet(dst / path.name, index=False)
    return dst


def cli(args: list[str]) -> tuple[int, str]:
    """The CLI in-process, as a module-scoped fixture can run it (capsys is per test)."""
    import contextlib
    import io

    from expansion_scorer.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(args)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def other_names(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from expansion_scorer.data.synthetic import generate_world

    generated = tmp_path_factory.mktemp("generated")
    generate_world(generated, n_accounts=220, seed=5, months=24)
    return renamed(generated, tmp_path_factory.mktemp("other"))


@pytest.fixture(scope="module")
def trained_other(
    other_names: Path, empty_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """Trained and scored through the CLI with the shipped definitions, in a SQLite store."""
    root = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", new_store(empty_store, root))
        mp.chdir(root)
        small = root / "training.yaml"  # a short backtest: the names are under test, not it
        small.write_text(
            "test_months: 2\n"
            "backtest: {folds: 1, calibration_months: 2}\n"
            "lightgbm: {n_estimators: 150, learning_rate: 0.1}\n"
        )
        code, said = cli(["train", str(other_names), "--config", str(small)])
        assert code == 0, said
        code, said = cli(["score", str(other_names), "--as-of", AS_OF, "--out", str(root / "out")])
        assert code == 0, said
        yield root


def test_plans_are_ordered_by_price_per_seat(other_names: Path) -> None:
    world = open_world(other_names)
    assert plans_by_price(world) == ["bronze", "silver", "gold", "platinum"]


def test_validate_reports_the_catalogue_and_what_reads_nothing(
    other_names: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(["validate", str(other_names)], capsys)

    assert code == 0
    assert "products (4): Base, Bridges, Insights, Robots" in out
    assert "plans (4, by ARR per seat, lowest first): bronze, silver, gold, platinum" in out
    assert "download_csv" in out and "affinity: learned" in out
    for feature in (
        "analytics_need_90d",
        "invites_28d",
        "plan_seat_fill",
        "key_feature_adoption_28d",
    ):
        assert f"feature {feature} names" in out, feature
    assert "plan_limits bronze" not in out and "plan_limits starter" in out
    assert "feature unowned_fit_events_28d" not in out  # what adapts is not reported


def test_other_names_train_and_score_with_no_yaml_edit(
    other_names: Path, trained_other: Path
) -> None:
    import mlflow

    model = mlflow.pyfunc.load_model("models:/expansion-propensity@champion").unwrap_python_model()
    assert model.plan_order == ["bronze", "silver", "gold", "platinum"]
    assert model.affinity and set(model.affinity.values()) <= {"Insights", "Robots", "Bridges"}
    assert set(model.affinity) <= set(EVENTS.values())
    # a shipped feature that names only our events and products is left out of the model
    assert "analytics_need_90d" not in model.feature_names

    world = open_world(other_names, cutoff=date.fromisoformat(AS_OF))
    features = for_model(load_feature_set(), model.affinity, model.plan_order)
    build_entities(world.con, [date.fromisoformat(AS_OF)])
    build_expansions(world.con, features)
    frame = build_features(world.con, features, True, True)
    for name in CATALOGUE_FEATURES:
        assert frame[name].nunique() > 1, name
    assert set(frame["top_unowned_fit"].dropna()) <= {"Insights", "Robots", "Bridges"}

    scores = pd.read_csv(trained_other / "out" / "scores.csv")
    said = " ".join(scores.filter(like="reason").fillna("").to_numpy().ravel())
    assert any(name in said for name in ("Insights", "Robots", "Bridges"))
    assert not any(name in said for name in [*PRODUCTS, *SHIPPED_AFFINITY])


def _fold_features(data: Path, fit_dates: list[date], as_of: date) -> tuple[dict, pd.DataFrame]:
    """The affinity fitted on `fit_dates` and the features as of `as_of` it gives, as a fold
    computes them (no cut-off: the code itself must keep to each date)."""
    cfg = load_training_config()
    learned = load_feature_set()
    world = open_world(data)
    build_entities(world.con, [*fit_dates, as_of])
    build_expansions(world.con, learned)
    build_features(world.con, learned, True, True)
    affinity = fit_affinity(affinity_data(world.con, cfg.horizon_days), fit_dates).pairs
    frame = evaluate_features(world.con, learned.with_catalogue(affinity=affinity), True, True)
    return affinity, frame[frame["as_of"] == as_of].reset_index(drop=True)


def test_the_learned_affinity_and_its_features_ignore_the_future(
    world_dir: Path, tmp_path: Path
) -> None:
    as_of = date(2024, 9, 1)
    horizon = load_training_config().horizon_days
    # a fold's training months: their label windows close before its test date
    fit_dates = [
        d for d in month_starts(date(2023, 4, 1), as_of) if d + timedelta(horizon) <= as_of
    ]
    affinity, before = _fold_features(world_dir, fit_dates, as_of)

    # on the generator's own names, it learns the affinity the shipped YAML used to name
    assert affinity == SHIPPED_AFFINITY
    assert before["unowned_fit_events_28d"].gt(0).sum() > 20
    # the future replaced by other rows (test_point_in_time also drops it, for every feature)
    changed = rewrite_future(world_dir, tmp_path / "scrambled", str(as_of), "scramble")
    affinity_after, after = _fold_features(changed, fit_dates, as_of)
    assert affinity_after == affinity
    pd.testing.assert_frame_equal(before, after)


def test_a_world_with_no_usable_event_stops_in_one_line(
    other_names: Path, tmp_path: Path, mlflow_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "no-usage"
    data.mkdir()
    for path in other_names.glob("*.parquet"):
        frame = pd.read_parquet(path)
        if path.stem == "usage_events":  # every event is of a workspace outside accounts
            frame = frame.head(500).assign(account_id="free-" + frame["account_id"].astype(str))
        frame.to_parquet(data / path.name, index=False)

    code, out, err = run_cli(["train", str(data)], capsys)

    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "usage_events.parquet: no usable usage event" in lines[0]
    assert "500 rows, 0 of them of accounts in accounts" in lines[0]
    assert not (mlflow_store / "store").exists() or "registered" not in out
