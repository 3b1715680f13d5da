"""The demo's program: two quarters of weekly runs with a holdout on a world that answers, then
`measure`, then a last weekly run whose report says whether the program works."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from expansion_scorer.jobs.demo import WEEKS, program_world, run_demo_program
from expansion_scorer.settings import load_settings


def test_the_demos_last_report_shows_the_measurement_the_checks_and_the_plan(
    champion: Path, tmp_path: Path
) -> None:
    # Given the demo's world and the shipped serving config, half the candidates held out so
    # that a small world has both arms large enough to say something
    raw = yaml.safe_load((Path(__file__).parents[2] / "serving" / "default.yaml").read_text())
    raw["holdout"] = {"fraction": 0.5, "salt": "demo-test"}
    config = tmp_path / "serving.yaml"
    config.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    settings = load_settings(training=False, serving=config)
    assert settings.serving is not None
    world = program_world(tmp_path / "data", 150, seed=2)
    said: list[str] = []

    # When the demo runs its program with the champion
    demo = run_demo_program(
        world, tmp_path / "scores", settings.features, settings.serving, settings.champion(),
        seed=2, say=said.append,
    )  # fmt: skip

    # Then every weekly run ran, the measurement matured both quarters, and the last weekly
    # report says what it found: the verdict, both effects, the checks and the plan
    assert [line.split()[-1] for line in said[: len(WEEKS)]] == [str(w) for w in WEEKS]
    summary = json.loads((demo.out / "measure" / "program.json").read_text(encoding="utf-8"))
    assert summary == json.loads(json.dumps(demo.summary))
    assert summary["cohorts_matured"] == len(WEEKS)
    pooled = summary["pooled"]
    assert pooled["note"] == "" and pooled["adjusted_effect"] is not None
    html = (demo.out / "report.html").read_text(encoding="utf-8")
    assert said[-1].endswith(str(demo.as_of)) and demo.as_of > WEEKS[-1]
    verdict = summary["always_valid"]["verdict"]
    assert f"<strong>{verdict.capitalize()}</strong>: the always-valid 95% interval" in html
    assert f"{100 * pooled['adjusted_effect']:+.1f} points" in html
    assert "95% fixed-horizon interval" in html
    assert '<table class="checks">' in html and "Plan: about" in html
    assert -1 <= demo.true_effect <= 1
