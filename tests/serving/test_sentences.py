"""Every sentence a CSM reads speaks in the account's numbers, and never about the calendar."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from expansion_scorer.config import load_serving_config
from expansion_scorer.data.loading import open_world
from expansion_scorer.features.build import build_features
from expansion_scorer.features.ledger import build_expansions
from expansion_scorer.features.snapshots import build_entities
from expansion_scorer.serving.explain import points_text, speak
from expansion_scorer.settings import load_feature_set
from expansion_scorer.text import MissingValue, check_template, fill, is_missing, plural
from tests.helpers import run_cli

DATES = [date(2023, 11, 6), date(2024, 5, 6), date(2024, 9, 1)]
SHIPPED = [
    (Path("features/features.yaml"), Path("serving/default.yaml")),
    (Path("features/online_retail.yaml"), Path("serving/online_retail.yaml")),
]


AFFINITY = {"export_report": "Analytics", "schedule_task": "Automation", "api_call": "Integrations"}


@pytest.fixture(scope="module")
def rows(world_dir: Path) -> list[dict[str, object]]:
    """The generated world's feature rows at three dates, as the scorer's templates get them:
    with the affinity a model trained on this world learns (`affinity: learned`)."""
    features = load_feature_set().with_catalogue(affinity=AFFINITY)
    world = open_world(world_dir)
    build_entities(world.con, DATES)
    build_expansions(world.con, features)
    frame = build_features(
        world.con, features, world.has("support_tickets"), world.has("nps_responses")
    )
    frame["account_name"], frame["csm_owner"] = "Acme", "Dana"
    return [{str(k): v for k, v in r.items()} for r in frame.to_dict(orient="records")]


def test_every_shipped_feature_speaks_in_the_accounts_numbers(
    rows: list[dict[str, object]],
) -> None:
    # Given every feature that may become a reason, and every account at three dates
    features = load_feature_set()
    speaking = [f for f in features.features if features.speaks(f)]
    assert len(speaking) >= 40

    for f in speaking:
        assert isinstance(f.reason, str), f"{f.name} has no reason template"
        present = [r for r in rows if not is_missing(r[f.name])]
        assert present, f"{f.name} never has a value in the generated world"
        for row in present:
            # When its sentence is rendered, strictly (a fallback raises)
            try:
                text = speak(f, row, strict=True)
            except MissingValue as exc:
                pytest.fail(f"{f.name} falls back to its description on {row['account_id']}: {exc}")
            # Then it is a sentence with a number or a category of the account, never "nan"
            assert text != f.description and "nan" not in text.split(), (f.name, text)
            assert " 1 people" not in text and " 1 seats" not in text, (f.name, text)
        # and where the account has no value, it says so instead of the description
        missing = next((r for r in rows if is_missing(r[f.name])), None)
        if missing is not None:
            said = speak(f, missing, strict=True)
            assert said != f.description and said.strip(), (f.name, said)


def test_numbers_agree_with_their_nouns() -> None:
    assert plural(1, "seat") == "1 seat"
    assert plural(2, "seat") == "2 seats"
    assert plural(1.0, "person", "people") == "1 person"
    assert plural(1200, "person", "people") == "1,200 people"
    assert points_text(1.2) == "+1 pt"
    assert points_text(-0.6) == "-1 pt"
    assert points_text(12.4) == "+12 pts"
    assert fill("Cross-sell {{ p }}", {"p": "Analytics"}) == "Cross-sell Analytics"
    for missing in (None, float("nan"), pd.NA):  # a missing category is never printed as "nan"
        with pytest.raises(MissingValue):
            fill("Cross-sell {{ p }}", {"p": missing})


@pytest.mark.parametrize(("features", "serving"), SHIPPED)
def test_shipped_templates_read_only_the_columns_they_get(features: Path, serving: Path) -> None:
    feature_set = load_feature_set(features)
    load_serving_config(serving).check_against(feature_set)  # raises on any unknown column
    assert check_template("{{ invites_90d|num }}", feature_set.row_columns, "x") is not None


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("{{ invites_90d|num }} invites", "reads invites_90d, which the scored row does not hold"),
        ("{{ seats|num }", "does not parse"),
    ],
)
def test_a_template_that_cannot_render_stops_at_load_in_one_line(
    template: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the shipped features with one reason template broken
    text = Path("features/features.yaml").read_text(encoding="utf-8")
    old = "reason: \"{{ seats|plural('seat') }} bought\""
    assert old in text
    broken = tmp_path / "features.yaml"
    broken.write_text(text.replace(old, f'reason: "{template}"'), encoding="utf-8")

    # When any command loads it, before reading data
    code, _, err = run_cli(["validate", str(tmp_path / "nowhere"), "--features", str(broken)],
                           capsys)  # fmt: skip

    # Then one line names the feature and what is wrong, exit 2
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "feature seats: reason" in err and says in err


def test_a_motion_template_reading_a_window_stops_before_any_data_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = Path("serving/default.yaml").read_text(encoding="utf-8")
    config = tmp_path / "serving.yaml"
    config.write_text(text.replace("label: Add seats", "label: Add {{ invites_90d }} seats"))

    code, _, err = run_cli(
        ["score", str(tmp_path / "nowhere"), "--as-of", "2024-09-01", "--out",
         str(tmp_path / "out"), "--config", str(config)],
        capsys,
    )  # fmt: skip

    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "motion seats: label" in err and "invites_90d" in err
    assert not (tmp_path / "out").exists()


def test_context_families_move_the_score_but_are_never_told(
    world_dir: Path, champion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given two weekly runs (so that triggers say why scores moved)
    out = tmp_path / "out"
    for as_of in ("2024-09-01", "2024-09-08"):
        code, _, err = run_cli(
            ["score", str(world_dir), "--as-of", as_of, "--out", str(out), "--per-csm"], capsys
        )
        assert code == 0, err

    # Then the calendar still moves the score (its points are in drivers.parquet) ...
    drivers = pd.read_parquet(out / "drivers.parquet")
    assert (drivers["calendar"].abs() >= 0.5).any()
    # ... but no reason, motion, trigger or page a CSM reads mentions it
    scores = pd.read_parquet(out / "scores.parquet")
    triggers = pd.read_csv(out / "triggers.csv")
    told = " ".join(
        [
            *scores.filter(regex=r"^reason_|^motion$|^talking_points$").astype(str).stack(),
            *triggers["why"].astype(str),
        ]
    )
    calendar = load_feature_set().features[-1]
    assert calendar.family == "calendar" and calendar.reason is False
    for word in ("calendar", "month_of_year", "time of year", calendar.description):
        assert word not in told
    html = (out / "report.html").read_text(encoding="utf-8")
    assert ">calendar<" not in html and "time of year" not in html
    # and a motion may not be built on a context family
    serving = load_serving_config()
    with_calendar = serving.model_copy(
        update={"motions": {**serving.motions, "seats": serving.motions["seats"].model_copy(
            update={"families": ["seats", "calendar"]})}}
    )  # fmt: skip
    with pytest.raises(Exception, match="context families calendar"):
        with_calendar.check_against(load_feature_set())
