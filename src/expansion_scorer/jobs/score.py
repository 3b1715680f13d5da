"""The scoring job: the eligible accounts as of a date, scored, explained, ranked and written."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from expansion_scorer import schemas
from expansion_scorer.config import Engine, FeatureSet, ServingConfig, TrainingConfig
from expansion_scorer.data.database import DatabaseError
from expansion_scorer.data.loading import AnyWorld, World
from expansion_scorer.data.sources import DataSource, Sources
from expansion_scorer.data.validation import validate
from expansion_scorer.errors import UserError
from expansion_scorer.features.catalogue import for_model
from expansion_scorer.features.frame import open_data
from expansion_scorer.jobs.deliver import DeliverResult, deliver_job
from expansion_scorer.jobs.deliver import say as say_deliveries
from expansion_scorer.model.loading import load_uplift, load_versioned
from expansion_scorer.model.propensity import PropensityModel
from expansion_scorer.outputs import (
    csv_writer,
    locked,
    parquet_writer,
    recover,
    text_writer,
    write_outputs,
)
from expansion_scorer.program import outbox
from expansion_scorer.program.history import (
    ASSIGNMENTS_STAGED,
    HISTORY_FILE,
    STAGED,
    Past,
    apply_stage,
    keyed,
    read_assignments,
    read_past,
)
from expansion_scorer.program.holdout import (
    HOLDOUT,
    assign_arms,
    owners_of,
    period_of,
    within_capacity,
)
from expansion_scorer.program.interleave import (
    Choice,
    choose,
    coin,
    interleaved_owners,
    team_draft,
    week_order,
)
from expansion_scorer.serving import sink as sinks
from expansion_scorer.serving.deliver import messages as deliveries
from expansion_scorer.serving.deliver import send as sender
from expansion_scorer.serving.lists import flat, for_people, per_csm
from expansion_scorer.serving.manifest import input_summary, render_manifest
from expansion_scorer.serving.monitor import (
    SCORE,
    drift_table,
    drift_warning,
    dumps,
    load_reference,
    model_record,
    training_reference,
)
from expansion_scorer.serving.report import render_report
from expansion_scorer.serving.scoring import Scored, order_by, score_frame
from expansion_scorer.serving.sink import Sink, Written
from expansion_scorer.serving.triggers import find_triggers
from expansion_scorer.tracking import CHAMPION, ModelRef, alias_uri

if TYPE_CHECKING:
    from expansion_scorer.features.spark import SparkWorld


class Laps:
    """How long each step of a run took, in seconds, for the manifest."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = time.perf_counter()

    def lap(self, step: str) -> None:
        """The time since the last lap (or the start), as `step`'s."""
        now = time.perf_counter()
        self.seconds[step] = round(now - self._clock, 3)
        self._clock = now


@dataclass(frozen=True)
class ScoreResult:
    files: list[Path]
    scored: int
    not_ready: int
    excluded: int
    not_yet_customers: int
    model_version: str
    triggers: int = 0
    previous_run: date | None = None
    warnings: list[str] = field(default_factory=list)
    lists: str = ""
    """Which ranking built the week's lists and why, in words."""
    written: Written | None = None
    """What `--to` wrote to the database, when it was given."""
    planned: deliveries.Plan | None = None
    """The week's deliveries, with a `deliver:` block."""
    delivered: DeliverResult | None = None


def score_job(
    data_dir: DataSource,
    as_of: date,
    out_dir: Path,
    feature_set: FeatureSet,
    serving: ServingConfig,
    model_uri: str | None = None,
    csm_files: bool = False,
    engine: Engine = Engine.DUCKDB,
    sink: Sink | None = None,
) -> ScoreResult:
    """The weekly run: score, explain, trigger, and publish outputs and history together.

    With `Engine.SPARK` Spark computes eligibility, features and scores (`serving.spark`);
    validation, explanations, drift and the outputs are the same code either way. With a
    `sink`, the database is checked before any data is read and the week is replaced in it
    after the files are published (`serving.sink`).
    """
    started = datetime.now(UTC)
    laps = Laps()
    lap, seconds = laps.lap, laps.seconds

    out_dir = Path(out_dir)
    serving.check_against(feature_set)  # before any data is read
    if engine is Engine.SPARK and isinstance(data_dir, Sources):
        raise UserError(
            "--engine spark reads contract files only; with --sources, use --engine duckdb"
            " (or write the mapped tables out as contract files first)"
        )
    if sink is not None:
        sinks.check(sink, serving.reasons)
        lap("check_sink")
    if serving.deliver is not None:
        sender.check(serving.deliver)  # secrets set, the SMTP server takes the login
        lap("check_deliver")
    world = open_data(data_dir, engine, cutoff=as_of)
    validate(world, feature_set.events)
    inputs = input_summary(world)
    lap("read_and_validate")
    model_uri = model_uri or alias_uri(TrainingConfig().registered_model, CHAMPION)
    model, registered = load_versioned(model_uri)
    version = registered.label if registered is not None else model_uri
    feature_set = for_model(feature_set, model.affinity, model.plan_order)  # once, for every step
    uplift, uplift_version = load_uplift(serving)
    lap("load_model")
    if engine is Engine.SPARK:
        from expansion_scorer.serving.spark import score_frame_spark

        assert not isinstance(world, World)  # Engine.SPARK opened a SparkWorld
        if uplift is not None:
            raise UserError(
                f"rank_by: {serving.rank_by} with an uplift model is scored by the duckdb engine"
                " only; drop --engine spark or set rank_by: score"
            )
        scored = score_frame_spark(world, as_of, model, model_uri, feature_set, serving, version)
    else:
        scored = score_frame(world, as_of, model, feature_set, serving, version, uplift)
    lap("features_score_explain")
    with locked(out_dir):
        recover(out_dir, apply_stage(out_dir / HISTORY_FILE))
        week = run_week(
            scored, world, as_of, model, (registered, version), feature_set, serving, out_dir,
            csm_files,
        )  # fmt: skip
        seconds.update(week.seconds)
        planned = None
        if serving.deliver is not None:  # before anything is written: a bad address stops here
            planned = deliveries.plan(_delivered_week(week, world, serving), serving.deliver)
        provenance: dict[str, object] = {
            "model": {"uri": model_uri, "version": version},
            "inputs": inputs,
            "engine": engine.value,
            # the TreeSHAP method used; a gam alone explains by its own exact terms
            "explainer": model.explainer,
        }
        if uplift is not None:
            provenance["uplift_model"] = {"uri": serving.uplift_uri, "version": uplift_version}
        if sink is not None:
            provenance["sink"] = sink.describe()  # the URL without its password
        if planned is not None:
            provenance["deliver"] = planned.manifest()
        run: dict[str, object] = {
            "started_at": started.isoformat(timespec="seconds"),
            "seconds": dict(seconds),
        }
        files = publish(week, out_dir, provenance, run, planned)
        written = (
            None
            if sink is None
            else _to_database(
                sink,
                week.table,
                as_of,
                serving.reasons,
                world,
                started,
                out_dir,
                _tasks_for(planned, serving, started),
            )
        )
    delivered = None
    if planned is not None and planned.messages:
        delivered = deliver_job(out_dir, serving.deliver)
    return ScoreResult(
        files=files,
        scored=len(week.table),
        not_ready=int((week.table["readiness"] != "ready").sum()),
        excluded=len(week.excluded),
        not_yet_customers=_created_on_or_after(world, as_of),
        model_version=version,
        triggers=len(week.triggers),
        previous_run=week.previous_run,
        warnings=week.warnings,
        lists=week.lists,
        written=written,
        planned=planned,
        delivered=delivered,
    )


@dataclass(frozen=True)
class WeeklyRun:
    """One week's lists, report, history rows and manifest, made but not yet written."""

    as_of: date
    table: pd.DataFrame
    """Every scored account in rank order with its arm: `scores.csv` and `scores.parquet`."""
    drivers: pd.DataFrame
    triggers: pd.DataFrame
    """What a CSM is told this week (held-out accounts never fire)."""
    excluded: pd.DataFrame
    report: str
    """`report.html`: what CSMs see, without the held-out accounts."""
    per_csm: dict[str, pd.DataFrame]
    """Each CSM's list by file name, when asked for (`--per-csm`)."""
    history: dict[str, pd.DataFrame]
    """The rows this week adds to the history, by staged file name."""
    texts: dict[str, str]
    """Other files: the cached drift reference of the model, when computed this week."""
    manifest: dict[str, object]
    """The week's part of the manifest; the job adds where the model and data came from."""
    previous_run: date | None
    warnings: list[str]
    seconds: dict[str, float]
    lists: str = ""
    """Which ranking built the week's lists and why, in words."""


def run_week(
    scored: Scored,
    world: World | SparkWorld,
    as_of: date,
    model: PropensityModel,
    named: tuple[ModelRef | None, str],
    feature_set: FeatureSet,
    serving: ServingConfig,
    out_dir: Path,
    csm_files: bool = False,
) -> WeeklyRun:
    """The week from its scores: the capacity lists, the holdout draw, the triggers, drift and
    the report. It reads the history and the drift reference under `out_dir` and writes
    nothing; `publish` does, and the caller holds the output root's lock between the two.

    `named` is the model's registry version (None for a model outside the registry) and the
    label the outputs show it by."""
    laps = Laps()
    lap, seconds = laps.lap, laps.seconds

    registered, version = named
    history = out_dir / HISTORY_FILE
    past = read_past(history, as_of, version, serving.triggers.cooldown_weeks)
    program = _measured(out_dir)
    lists = build_lists(scored, serving, choose(serving, program), as_of)
    scored = lists.scored
    ranked = scored.scores.copy()
    ranked["on_list"] = within_capacity(owners_of(ranked["csm_owner"]), serving.accounts_per_csm)

    def fire(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        return find_triggers(
            rows,
            scored.drivers,
            scored.features,
            past,
            serving.triggers,
            feature_set,
            as_of,
            serving.accounts_per_csm,
        )

    # The holdout draws among this week's candidates (capacity lists and triggers), then
    # the triggers a CSM sees are found again without the held-out accounts.
    candidates, _ = fire(ranked)
    period = period_of(as_of, serving.holdout.period)
    recorded = read_assignments(history, period, through=as_of)
    arms = assign_arms(
        ranked,
        ranked["account_id"].isin(candidates["account_id"]).to_numpy(),
        recorded,
        as_of,
        serving.holdout,
        serving.accounts_per_csm,
        model.horizon_days,
        lists.drafted_by,
    )
    held = arms.arm == HOLDOUT
    ranked["on_list"] = arms.on_list
    ranked["arm"] = arms.arm
    triggers, shown_state = fire(ranked[~held].reset_index(drop=True))
    state = (
        ranked[["account_id"]]
        .merge(shown_state, on="account_id", how="left")
        .fillna({"fired": False, "trigger": ""})
        .astype({"fired": bool})
    )
    lap("triggers")
    table = flat(scored.scores, serving)
    table.insert(list(table.columns).index("band") + 1, "arm", arms.arm)
    schemas.check(schemas.scores_schema(list(serving.bands)), table)
    schemas.check(schemas.drivers_schema(), scored.drivers)
    schemas.check(schemas.triggers_schema(), triggers)
    schemas.check(schemas.excluded_schema(), scored.excluded)

    body = _manifest_body(as_of, feature_set, serving, scored, triggers, past)
    body["holdout"] = {
        **serving.holdout.model_dump(mode="json"),
        "period": period,
        "arms": {str(k): int(v) for k, v in pd.Series(arms.arm).value_counts().items()},
        # counted the same on a re-run of the week, which finds them recorded
        "assigned_this_week": len(arms.new)
        + int((pd.to_datetime(recorded["assigned_on"]).dt.date == as_of).sum()),
    }
    body["lists"] = lists.manifest
    drift, warnings = _weekly_drift(
        world, out_dir, model, registered, version, feature_set, serving, scored
    )
    texts = {}
    if drift.get("reference_file"):
        texts[str(drift["reference_file"])] = str(drift.pop("reference"))
    body["drift"] = drift
    lap("drift")

    meta = {
        "as_of": str(as_of),
        "model": version,
        "horizon_days": model.horizon_days,
        "capacity": serving.accounts_per_csm,
        "bands": serving.bands,
        "previous_run": str(past.as_of) if past.as_of else "",
        "held_out": int(held.sum()),
        "program": program,
        "holdout_period": period if serving.holdout.fraction > 0 else "",
        "lists": lists.said,
    }
    report = render_report(
        scored.scores.assign(placed_by=lists.placed_by)[~held].reset_index(drop=True),
        scored.drivers[~held].reset_index(drop=True),
        scored.excluded,
        meta,
        triggers,
        serving.report_rows,
        frozenset(feature_set.context_families),
    )
    files = {}
    if csm_files:
        listed = table[arms.on_list].drop(columns="arm")
        files = per_csm(listed, serving.accounts_per_csm, table["csm_owner"])
    lap("render")
    rows = _history_rows(ranked, state, scored, model, as_of, version)
    rows[ASSIGNMENTS_STAGED] = arms.new
    return WeeklyRun(
        as_of=as_of,
        table=table,
        drivers=scored.drivers,
        triggers=triggers,
        excluded=scored.excluded,
        report=report,
        per_csm=files,
        history=rows,
        texts=texts,
        manifest=body,
        previous_run=past.as_of,
        warnings=warnings,
        seconds=seconds,
        lists=lists.said,
    )


@dataclass(frozen=True)
class Lists:
    """The week's scores in the order its lists are cut from, and who placed each account."""

    scored: Scored
    drafted_by: np.ndarray | None
    """Per account, the ranking that drafted it onto an interleaved list (None elsewhere); None
    when the lists are not interleaved."""
    placed_by: np.ndarray
    """Per account, the ranking that put it where it is: the one that drafted it, or else the
    one its CSM's list and book are ordered by."""
    said: str
    """Which ranking built the lists and why, in words, for the report."""
    manifest: dict[str, object]


def build_lists(scored: Scored, serving: ServingConfig, choice: Choice, as_of: date) -> Lists:
    """The week's order: as scored with one ranking; interleaved, each CSM's capacity list
    drafted in turns from the two rankings of `compare` (`program.interleave`) and put at the
    head of their book, the rest of it in `choice.ranked_by`'s order."""
    n = len(scored.scores)
    said = f"ranked by {choice.ranked_by} ({choice.why})"
    manifest: dict[str, object] = {"rank_by": serving.rank_by, "why": choice.why, "said": said}
    if serving.rank_by not in ("interleave", "auto") or n == 0:
        return Lists(scored, None, np.full(n, choice.ranked_by, dtype=object), said, manifest)
    scored = _reordered(scored, order_by(scored.scores, choice.ranked_by, serving.bands))
    orders = {str(r): order_by(scored.scores, r, serving.bands) for r in serving.rankings}
    owners = owners_of(scored.scores["csm_owner"])
    salt = serving.holdout.salt
    interleave = interleaved_owners(owners, choice.share, salt, as_of)
    u = coin(salt, as_of)
    first = serving.rankings[0] if u < 0.5 else serving.rankings[1]
    draft = team_draft(owners, orders, choice.ranked_by, serving.accounts_per_csm, interleave,
                       first)  # fmt: skip
    order = week_order(draft.slot)
    drafted_by = draft.drafted_by[order]
    placed_by = np.where(pd.isna(drafted_by), choice.ranked_by, drafted_by).astype(object)
    counts = pd.Series(drafted_by).dropna().value_counts()
    manifest.update(
        compare=list(serving.rankings),
        ranked_by=choice.ranked_by,
        coin=u,
        first=first,
        interleaved_csms=len(draft.interleaved),
        csms=int(owners.nunique()),
        drafted={str(r): int(counts.get(r, 0)) for r in serving.rankings},
    )
    said = choice.why
    if draft.interleaved:
        said += (
            f"; {len(draft.interleaved)} of {owners.nunique()} CSMs' lists drafted in turns,"
            f" {first} picking first this week (a fair coin)"
        )
    manifest["said"] = said
    return Lists(_reordered(scored, order), drafted_by, placed_by, said, manifest)


def _reordered(scored: Scored, order: np.ndarray) -> Scored:
    """The scores, drivers and features in `order` (row positions), ranked 1, 2, ... again."""

    def take(frame: pd.DataFrame) -> pd.DataFrame:
        if len(frame) != len(order):  # nothing explained or kept: nothing to order
            return frame
        return frame.iloc[order].reset_index(drop=True)

    scores = take(scored.scores)
    scores["rank"] = np.arange(1, len(scores) + 1)
    return Scored(scores, take(scored.drivers), scored.excluded, take(scored.features))


def publish(
    week: WeeklyRun,
    out_dir: Path,
    provenance: dict[str, object],
    run: dict[str, object],
    planned: deliveries.Plan | None = None,
) -> list[Path]:
    """The week's files into `out_dir` and its rows into the history, together: every file is
    staged first, and a run killed part-way leaves last week's outputs (`outputs.write_outputs`).
    `provenance` (model, inputs, engine) joins the manifest's body; `run` (timings) does not
    count towards its digest. `planned` deliveries add the tasks files and record the week's
    messages in the outbox with the rest of its history."""
    writers: dict[str, Callable[[Path], None]] = {
        "scores.csv": csv_writer(for_people(week.table)),
        "scores.parquet": parquet_writer(week.table),
        "drivers.parquet": parquet_writer(week.drivers),
        "excluded.csv": csv_writer(week.excluded),
        "triggers.csv": csv_writer(for_people(week.triggers)),
        "report.html": text_writer(week.report),
    }
    for name, rows in week.per_csm.items():
        writers[f"per_csm/{name}"] = csv_writer(for_people(rows))
    for name, text in week.texts.items():
        writers[name] = text_writer(text)
    writers["manifest.json"] = text_writer(render_manifest({**week.manifest, **provenance}, run))
    staged = {name: parquet_writer(rows) for name, rows in week.history.items()}
    if planned is not None:
        if len(planned.tasks.columns):
            writers["tasks.csv"] = csv_writer(planned.tasks)
            writers["tasks.parquet"] = parquet_writer(planned.tasks)
        messages: list[dict[str, object]] = [
            {"channel": m.channel, "recipient": m.recipient, "address": m.address,
             "subject": m.subject, "digest": m.digest, "payload": m.payload}
            for m in planned.messages
        ]  # fmt: skip
        staged[outbox.STAGED] = parquet_writer(outbox.staged_rows(week.as_of, messages))
    return write_outputs(out_dir, writers, staged, apply_stage(out_dir / HISTORY_FILE))


def _to_database(
    sink: Sink,
    table: pd.DataFrame,
    as_of: date,
    reasons: int,
    world: AnyWorld,
    started: datetime,
    out_dir: Path,
    tasks: sinks.Tasks | None = None,
) -> Written:
    """The published list into the sink's table, in one transaction; on failure, one line that
    says the files are out and the table is as it was. Held-out accounts stay out of it: the
    table is synced to where CSMs work, and a CSM who saw one might call it."""
    table = table[table["arm"] != HOLDOUT]
    data = sinks.rows(table, _crm_ids(world, table["account_id"]), started, reasons)
    try:
        return sinks.write(sink, data, as_of, tasks)
    except DatabaseError as exc:
        raise UserError(
            f"{exc}; the table is as it was, the files in {out_dir} are this run's:"
            " fix that and re-run the week"
        ) from None


def _tasks_for(
    planned: deliveries.Plan | None, serving: ServingConfig, started: datetime
) -> sinks.Tasks | None:
    """With `deliver: tasks`, the week's tasks for the table beside the scores."""
    cfg = None if serving.deliver is None else serving.deliver.tasks
    if planned is None or cfg is None:
        return None
    return sinks.Tasks(cfg.table, sinks.task_rows(planned.tasks, started))


def _delivered_week(week: WeeklyRun, world: AnyWorld, serving: ServingConfig) -> deliveries.Week:
    """What deliveries read of the week: its list and triggers, each CSM's capacity list as
    their CSV shows it, and the CSMs' addresses from the accounts' `csm_email` column."""
    listed_ids = week.history[STAGED["scores"]].query("on_list")["account_id"]
    listed = week.table[week.table["account_id"].isin(listed_ids)].drop(columns="arm")
    lists = {
        str(owner): for_people(rows.head(serving.accounts_per_csm))
        for owner, rows in listed.groupby("csm_owner", sort=True)
    }
    emails = world.frame(
        "SELECT csm_owner, min(csm_email) AS csm_email FROM accounts"
        " WHERE csm_owner IS NOT NULL AND csm_email IS NOT NULL GROUP BY csm_owner"
    )
    return deliveries.Week(
        as_of=week.as_of,
        table=week.table,
        triggers=week.triggers,
        lists=lists,
        emails=dict(zip(emails["csm_owner"], emails["csm_email"], strict=True)),
        top_band=serving.triggers.top_band,
    )


def _crm_ids(world: AnyWorld, account_ids: pd.Series) -> pd.Series | None:
    """Each account's CRM id (`crm_id`, an optional contract column of accounts); None when no
    account has one."""
    ids = world.frame("SELECT account_id, crm_id FROM accounts WHERE crm_id IS NOT NULL")
    if ids.empty:
        return None
    mapping = ids.drop_duplicates("account_id").set_index("account_id")["crm_id"]
    return account_ids.astype(str).map(mapping)


def _measured(out_dir: Path) -> dict[str, object]:
    """The latest `expansion measure` summary and plan under the output root, for the report;
    empty when the program has not been measured or planned."""
    found: dict[str, object] = {}
    for name in ("program.json", "plan.json"):  # the plan alone when only --plan has run
        try:
            found[name] = json.loads((out_dir / "measure" / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    summary = found.get("program.json")
    out = dict(summary) if isinstance(summary, dict) and "pooled" in summary else {}
    if isinstance(found.get("plan.json"), dict):
        out["plan"] = found["plan.json"]  # the latest plan, `measure` or `measure --plan`
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "model"


def _weekly_drift(
    world: World | SparkWorld,
    out_dir: Path,
    model: PropensityModel,
    registered: ModelRef | None,
    version: str,
    feature_set: FeatureSet,
    serving: ServingConfig,
    scored: Scored,
) -> tuple[dict[str, object], list[str]]:
    """PSI of this run against the model's training months (cached per model as
    `reference-<model>.json`), for the manifest, and a warning line when something drifted."""
    record = None if registered is None else model_record(registered)
    if registered is None or record is None or scored.features.empty:
        return {"checked": False, "why": "no training window recorded for this model"}, []
    cfg = serving.monitor
    name = f"reference-{_slug(version)}.json"
    ref = load_reference(out_dir / name, record.fit_dates_seen(world.cutoff), cfg)
    if ref is None:
        ref = training_reference(world, model, feature_set, record, cfg)
    if not ref["columns"]:
        return {"checked": False, "why": "the model's training months are after the as-of date"}, []
    current = scored.features.assign(**{SCORE: scored.scores["score"].to_numpy()})
    table = drift_table(ref, current, cfg)
    warning = drift_warning(table, cfg)
    return {
        "checked": True,
        "reference_months": ref["dates"],
        "reference_file": name,
        "reference": dumps(ref),
        "psi": {r.column: r.psi for r in table.itertuples()},
        "warning": warning or "",
    }, [warning] if warning else []


def _history_rows(
    ranked: pd.DataFrame,
    state: pd.DataFrame,
    scored: Scored,
    model: PropensityModel,
    as_of: date,
    version: str,
) -> dict[str, pd.DataFrame]:
    """This week's rows of the history: scores, drivers and numeric features, by staged name."""
    rows = ranked[
        ["account_id", "account_name", "csm_owner", "rank", "score", "band", "on_list", "arm"]
    ]
    rows = rows.assign(fired=state["fired"].to_numpy(), trigger=state["trigger"].to_numpy())
    rows.insert(0, "model_version", version)
    rows.insert(0, "as_of", as_of)
    rows = rows.astype({"rank": "int32", "score": "float64", "on_list": bool, "fired": bool})
    rows = rows[["as_of", "model_version", "account_id", "account_name", "csm_owner", "rank",
                 "score", "band", "on_list", "fired", "trigger", "arm"]]  # fmt: skip
    numeric = [c for c in model.numeric if c in scored.features.columns]
    features = scored.features[["account_id", *numeric]]
    return {
        STAGED["scores"]: rows,
        STAGED["drivers"]: keyed(scored.drivers, as_of, version),
        STAGED["features"]: keyed(features, as_of, version),
    }


def _manifest_body(
    as_of: date,
    feature_set: FeatureSet,
    serving: ServingConfig,
    scored: Scored,
    triggers: pd.DataFrame,
    past: Past,
) -> dict[str, object]:
    excluded = scored.excluded
    eligible = len(scored.scores)
    reasons = excluded["excluded_reason"].value_counts().sort_index()
    kinds = (
        triggers["trigger"].str.split("; ").explode().value_counts().sort_index()
        if len(triggers)
        else pd.Series(dtype="int64")
    )
    return {
        "as_of": str(as_of),
        "config": {
            "serving": serving.model_dump(mode="json"),
            "features": [f.name for f in feature_set.features],
        },
        "accounts": {
            "existing_before_as_of": eligible + len(excluded),
            "eligible": eligible,
            "scored": len(scored.scores),
            "excluded": len(excluded),
            "excluded_by_reason": {str(k): int(v) for k, v in reasons.items()},
        },
        "triggers": {
            "previous_run": str(past.as_of or ""),
            "fired": len(triggers),
            "by_kind": {str(k): int(v) for k, v in kinds.items()},
        },
    }


def _created_on_or_after(world: AnyWorld, as_of: date) -> int:
    """How many accounts the as-of date cannot see yet: a count for the console, never a feature.

    Read from the rows as written, which the cut-off does not hide, cast as `accounts` casts."""
    (row,) = world.rows(
        f"SELECT count(*) FROM raw_accounts WHERE TRY_CAST(created_at AS DATE) >= DATE '{as_of}'"
    )
    return int(row[0])


def say(result: ScoreResult, as_of: date, sink: Sink | None) -> None:
    """What `score` prints: counts, triggers, warnings, the files, deliveries and the table."""
    print(
        f"scored {result.scored:,} accounts as of {as_of} with {result.model_version}"
        f" ({result.not_ready:,} not yet ready);"
        f" {result.excluded:,} not eligible (reasons in excluded.csv);"
        f" {result.not_yet_customers:,} created on or after {as_of} are not yet customers"
    )
    since = f"since {result.previous_run}" if result.previous_run else "first run in this history"
    print(f"{result.triggers:,} triggers fired ({since}; why in triggers.csv)")
    if result.lists:
        print(f"lists: {result.lists}")
    for warning in result.warnings:
        print(f"warning: {warning}")
    for path in result.files:
        print(f"  {path}")
    say_deliveries(result.planned, result.delivered)
    if sink is not None and result.written is not None:
        w = result.written
        print(
            f"  {sink.name} at {sink.database.display}: {w.rows:,} rows as of {as_of}"
            f" ({w.rows - w.replaced:,} new, {w.replaced:,} replaced; {w.removed:,} of accounts"
            " no longer scored removed)"
        )
