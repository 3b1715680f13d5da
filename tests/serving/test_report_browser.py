"""The report as a CSM meets it: in headless Chromium, sorted, filtered, opened, and safe."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import run_cli, with_hostile_names

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def report(
    small_world_dir: Path, champion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Path:
    data = with_hostile_names(small_world_dir, tmp_path / "data")
    code, _, err = run_cli(
        ["score", str(data), "--as-of", "2024-09-01", "--out", str(tmp_path / "out")], capsys
    )
    assert code == 0, err
    return tmp_path / "out" / "report.html"


def test_report_sorts_filters_opens_and_runs_nothing_from_the_data(
    browser: object, report: Path, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))

    page.goto(report.as_uri())
    page.wait_for_load_state("load")

    # the injected names are shown as text, never run (those of accounts the report shows)
    scores = pd.read_parquet(report.parent / "scores.parquet")
    shown = set(scores.loc[scores["arm"] != "holdout", "account_name"])
    hostile = ["<script>alert(1)</script>", '"><img src=x onerror=alert(2)>',
               '=HYPERLINK("http://x","y")', "</td></tr><tr><td>"]  # fmt: skip
    assert len(shown & set(hostile)) >= 2
    for name in shown & set(hostile):
        assert page.get_by_text(name).count() >= 1, name

    # sorting: the first section's score column, ascending then descending
    section = page.locator("section.csm").first
    header = section.locator("th", has_text="Score")
    header.click()
    values = [float(v) for v in section.locator("tr.account td:nth-child(3)").evaluate_all(
        "cells => cells.map(c => c.dataset.value)")]  # fmt: skip
    assert values == sorted(values)
    header.click()
    values = [float(v) for v in section.locator("tr.account td:nth-child(3)").evaluate_all(
        "cells => cells.map(c => c.dataset.value)")]  # fmt: skip
    assert values == sorted(values, reverse=True)

    # filtering by band, then by text
    top_band = page.locator("tr.account").first.get_attribute("data-band")
    page.select_option("#band-filter", str(top_band))
    visible_bands = page.locator("tr.account:visible").evaluate_all(
        "rows => rows.map(r => r.dataset.band)"
    )
    assert visible_bands and set(visible_bands) == {top_band}
    page.select_option("#band-filter", "")
    first = page.locator("tr.account").first
    name = first.get_attribute("data-account")
    page.fill("#search", str(name))
    assert page.locator("tr.account:visible").count() == 1
    page.fill("#search", "")

    # opening one account shows its drivers, reasons, motion, readiness and talking points
    first.click()
    details = first.locator("xpath=following-sibling::tr[1]")
    assert details.is_visible()
    text = details.inner_text()
    for heading in ("What moved the score", "Why now", "Offer:", "Readiness:"):
        assert heading in text
    assert details.locator("svg.drivers rect").count() >= 1

    # each CSM's section opens on the accounts to act on this week, as cards, before the book
    section = page.locator("section.csm").first
    cards = section.locator("article.card")
    assert 1 <= cards.count() <= 20
    card = cards.first
    assert card.is_visible()
    card_text = card.inner_text()
    for part in ("%", "Offer:", "Readiness:", "Why now"):
        assert part in card_text, card_text
    assert "rule " in card.locator("p.fired").inner_text()
    book = section.locator("table.scores")
    assert card.bounding_box()["y"] < book.bounding_box()["y"]  # type: ignore[index]
    section.screenshot(path=str(tmp_path / "csm.png"))
    assert (tmp_path / "csm.png").stat().st_size > 10_000

    page.screenshot(path=str(tmp_path / "report.png"), full_page=False)
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert problems == []
    assert all(u.startswith("file://") for u in requests), requests
