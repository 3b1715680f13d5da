"""Batch scoring: every account accounted for, explained, safe to open, and point in time."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import rewrite_future, run_cli, with_hostile_names

AS_OF = "2024-09-01"


def _score(data: Path, out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    code, stdout, err = run_cli(
        ["score", str(data), "--as-of", AS_OF, "--out", str(out), *extra], capsys
    )
    assert code == 0, err
    return stdout


def _serving_config(tmp_path: Path, old: str, new: str) -> Path:
    """The shipped serving config with one setting changed, written under tmp_path."""
    default = (Path(__file__).parents[2] / "serving" / "default.yaml").read_text()
    assert old in default
    config = tmp_path / "serving.yaml"
    config.write_text(default.replace(old, new))
    return config


def test_scores_rank_and_explain_every_eligible_account(
    small_world_dir: Path, champion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stdout = _score(small_world_dir, tmp_path / "out", capsys)

    scores = pd.read_parquet(tmp_path / "out" / "scores.parquet")
    excluded = pd.read_csv(tmp_path / "out" / "excluded.csv")
    accounts = pd.read_parquet(small_world_dir / "accounts.parquet")
    existing = accounts[pd.to_datetime(accounts["created_at"]) < pd.Timestamp(AS_OF)]
    # every account that exists at the as-of date is scored or listed with a reason
    assert set(scores["account_id"]) | set(excluded["account_id"]) == set(existing["account_id"])
    assert not set(scores["account_id"]) & set(excluded["account_id"])
    assert excluded["excluded_reason"].notna().all()
    assert f"{len(scores):,} accounts" in stdout
    # ranked by a probability, with readable reasons in the account's own numbers
    assert scores["rank"].tolist() == list(range(1, len(scores) + 1))
    assert scores["score"].between(0, 1).all()
    # bands from the top down, ready accounts first within a band, then by score
    order = scores.assign(
        band_rank=scores["band"].map({"hot": 0, "warm": 1, "watch": 2}),
        not_ready=scores["readiness"] != "ready",
    )
    assert order["band_rank"].is_monotonic_increasing
    for _, group in order.groupby(["band_rank", "not_ready"]):
        assert group["score"].is_monotonic_decreasing
    assert (scores["model_version"] == "expansion-propensity v1").all()
    top = scores.head(10)
    assert (top["reason_1"].str.len() > 10).all()
    assert top["reason_1"].str.contains(r"\d").all()
    assert (tmp_path / "out" / "report.html").stat().st_size > 1000
    csv = pd.read_csv(tmp_path / "out" / "scores.csv")
    assert csv["account_id"].tolist() == scores["account_id"].tolist()


def test_ranking_can_use_expected_expansion_arr(
    small_world_dir: Path, champion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a serving config that ranks by expected expansion ARR
    config = _serving_config(tmp_path, "rank_by: score ", "rank_by: expected_arr ")

    _score(small_world_dir, tmp_path / "by_score", capsys)
    _score(small_world_dir, tmp_path / "by_arr", capsys, "--config", str(config))

    by_score = pd.read_parquet(tmp_path / "by_score" / "scores.parquet")
    by_arr = pd.read_parquet(tmp_path / "by_arr" / "scores.parquet")
    # the same scores and expected ARR, written beside the score
    merged = by_score.merge(by_arr, on="account_id", suffixes=("", "_arr"))
    assert len(merged) == len(by_score) == len(by_arr)
    assert (merged["score"] == merged["score_arr"]).all()
    assert (by_arr["expected_expansion_arr"] > 0).all()
    # within a band and readiness, ordered by expected ARR instead of score
    for _, group in by_arr.groupby(["band", "readiness"], sort=False):
        assert group["expected_expansion_arr"].is_monotonic_decreasing
    assert by_arr["account_id"].tolist() != by_score["account_id"].tolist()


def test_the_report_shows_each_csms_first_accounts_and_says_where_the_rest_are(
    small_world_dir: Path, champion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a serving config whose report shows 3 accounts a CSM
    config = _serving_config(tmp_path, "report_rows: 250 ", "report_rows: 3 ")

    _score(small_world_dir, tmp_path / "out", capsys, "--config", str(config))

    scores = pd.read_csv(tmp_path / "out" / "scores.csv")
    excluded = pd.read_csv(tmp_path / "out" / "excluded.csv")
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    sections = html.split('<section class="csm"')[1:]
    scores = scores[scores["arm"] != "holdout"]  # the control group is never in the report
    owners = scores["csm_owner"].fillna("Unassigned").value_counts()
    assert len(sections) == len(owners) and (owners > 3).any()
    for section in sections:
        owner = section.split('data-csm="', 1)[1].split('"', 1)[0]
        total = int(owners[owner])
        shown = section.count('<tr class="account"')
        # the CSM's best-ranked accounts, the whole count in the heading, the rest named
        assert shown == min(3, total)
        assert f"({total} accounts;" in section
        assert (f"The first 3 of {total} accounts by rank" in section) == (total > 3)
        mine = scores[scores["csm_owner"].fillna("Unassigned") == owner]
        for account in mine["account_id"].head(3):
            assert f'data-account="{account}"' in section
    assert len(excluded) > 3
    assert f"The first 3 of {len(excluded)} accounts not scored" in html
    assert f"{len(excluded)} not scored" in html
    assert len(scores) > 3 * len(owners)  # the CSV still holds every scored account


def test_scores_as_of_t_do_not_depend_on_data_dated_after_t(
    small_world_dir: Path, champion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dropped = rewrite_future(small_world_dir, tmp_path / "dropped", AS_OF, "drop")
    scrambled = rewrite_future(small_world_dir, tmp_path / "scrambled", AS_OF, "scramble")

    _score(small_world_dir, tmp_path / "full", capsys)
    _score(dropped, tmp_path / "past-only", capsys)
    _score(scrambled, tmp_path / "other-future", capsys)

    for name in ("scores.csv", "excluded.csv", "report.html"):
        full = (tmp_path / "full" / name).read_bytes()
        assert full == (tmp_path / "past-only" / name).read_bytes(), name
        assert full == (tmp_path / "other-future" / name).read_bytes(), name


def test_names_cannot_inject_script_or_formulas(
    small_world_dir: Path, champion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = with_hostile_names(small_world_dir, tmp_path / "data")

    _score(data, tmp_path / "out", capsys)

    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    csv_text = (tmp_path / "out" / "scores.csv").read_text(encoding="utf-8")
    assert "'=HYPERLINK" in csv_text
    assert "\n=HYPERLINK" not in csv_text and ",=HYPERLINK" not in csv_text


def test_failed_run_leaves_earlier_outputs_untouched(
    small_world_dir: Path, champion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    _score(small_world_dir, out, capsys)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    code, _, err = run_cli(
        ["score", str(small_world_dir), "--as-of", AS_OF, "--out", str(out), "--model",
         "models:/expansion-propensity/99"],
        capsys,
    )  # fmt: skip

    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "cannot be loaded" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
