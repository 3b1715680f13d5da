"""`expansion deliver`: send what the outbox holds (or write it as files with --dry-run), and
`--status`: what went, what waits and what is in doubt."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from expansion_scorer.config.deliver import DeliverConfig
from expansion_scorer.errors import UserError
from expansion_scorer.outputs import bytes_writer, locked, recover, write_outputs
from expansion_scorer.program.history import HISTORY_FILE, apply_stage
from expansion_scorer.program.outbox import (
    DELIVERED,
    IN_DOUBT,
    SENDABLE,
    SUPERSEDED,
    Outbox,
)
from expansion_scorer.serving.deliver.messages import Plan, slug
from expansion_scorer.serving.deliver.send import day, send_rows

DRY_RUN_DIR = "outbox-dry-run"


@dataclass
class DeliverResult:
    sent: dict[str, int] = field(default_factory=dict)
    """Messages delivered in this run, by channel."""
    problems: list[str] = field(default_factory=list)
    """One line per message left failed or in doubt."""
    files: list[Path] = field(default_factory=list)
    """With `dry_run`, the messages as files."""

    def problem(self) -> str | None:
        """All problems as one line, for the exit."""
        if not self.problems:
            return None
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return (
            f"{self.problems[0]}{more}; they stay in the outbox: fix that and run"
            " `expansion deliver OUT --config ...` (`--status` lists them)"
        )


def _history(out_dir: Path) -> Path:
    history = Path(out_dir) / HISTORY_FILE
    if not history.is_file():
        raise UserError(
            f"{out_dir}: no {HISTORY_FILE}; run `expansion score ... --out {out_dir}` with a"
            " deliver: block first"
        )
    return history


def deliver_job(
    out_dir: Path,
    cfg: DeliverConfig | None,
    dry_run: bool = False,
    resend_in_doubt: bool = False,
) -> DeliverResult:
    """Send what the outbox under `out_dir` holds pending or failed (and, when asked, what is
    in doubt); with `dry_run`, write those messages to `outbox-dry-run/` and send nothing."""
    history = _history(out_dir)
    result = DeliverResult()
    with locked(out_dir):
        recover(out_dir, apply_stage(history))
        box = Outbox(history)
        try:
            rows = box.rows(SENDABLE + ((IN_DOUBT,) if resend_in_doubt else ()))
            if dry_run:
                result.files = _dry_run(out_dir, rows)
                return result
            for channel in ("email", "chat"):
                mine = rows[rows["channel"] == channel]
                if mine.empty:
                    continue
                channel_cfg = None if cfg is None else getattr(cfg, channel)
                if channel_cfg is None or cfg is None:
                    raise UserError(
                        f"deliver {channel}: the outbox holds {len(mine)} {channel} messages but"
                        f" the config has no deliver.{channel}: pass the --config the week was"
                        " scored with"
                    )
                sent = send_rows(box, mine, cfg, channel_cfg, result.problems)
                result.sent[channel] = sent
        finally:
            box.close()
    return result


def _dry_run(out_dir: Path, rows: pd.DataFrame) -> list[Path]:
    """The messages as files a person can open: `.eml` for mail, `.json` for chat."""
    writers = {}
    for row in rows.to_dict("records"):
        channel = str(row["channel"])
        ext = "eml" if channel == "email" else "json"
        who = f"{slug(str(row['recipient']))}-{str(row['digest'])[:8]}"
        name = f"{day(row['week'])}/{channel}/{who}"
        writers[f"{name}.{ext}"] = bytes_writer(bytes(row["payload"]))
    return write_outputs(Path(out_dir) / DRY_RUN_DIR, writers) if writers else []


def status(out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per week, channel and state, how many messages; and each message of the newest week, and
    each of earlier weeks not delivered, with where it goes and the server's last answer."""
    history = _history(out_dir)
    with locked(out_dir):
        box = Outbox(history, read_only=True)  # a look changes nothing
        try:
            if not box.exists():
                return pd.DataFrame(), pd.DataFrame()
            summary = box.summary()
            every = box.rows((*SENDABLE, IN_DOUBT, DELIVERED, SUPERSEDED), payload=False)
        finally:
            box.close()
    shown = every[(every["week"] == every["week"].max()) | every["status"].isin(SENDABLE)
                  | (every["status"] == IN_DOUBT)]  # fmt: skip
    return summary, shown[["week", "channel", "recipient", "address", "status", "attempts",
                           "answer"]]  # fmt: skip


def say(planned: Plan | None, delivered: DeliverResult | None) -> None:
    """What a run planned and sent; a run that left messages failed ends in one line."""
    if planned is not None:
        for name in planned.missing_address:
            name = " ".join(name.split())
            print(
                f"warning: deliver email: CSM {name} has no address (accounts' csm_email or"
                " deliver.email.csms): no digest for them this week"
            )
        if len(planned.tasks.columns):
            print(f"  {len(planned.tasks):,} CRM tasks in tasks.csv and tasks.parquet")
    if delivered is not None:
        for channel, n in delivered.sent.items():
            print(f"  {channel}: {n:,} messages delivered")
        for path in delivered.files:
            print(f"  {path}")
        problem = delivered.problem()
        if problem:
            raise UserError(problem)


def say_status(summary: pd.DataFrame, waiting: pd.DataFrame) -> None:
    """What `deliver --status` prints: per week, channel and state, how many; then each message
    that waits or is in doubt."""
    for r in summary.itertuples():
        print(f"{str(r.week)[:10]} {r.channel!s:<6} {r.status!s:<11} {r.messages:>5,}")
    for w in waiting.to_dict("records"):
        who = " ".join(str(w["recipient"]).split())  # a name's line breaks stay off the screen
        print(
            f"  {str(w['week'])[:10]} {w['channel']} to {who} ({w['address']}):"
            f" {w['status']} after {w['attempts']} attempts; {w['answer'] or 'not tried yet'}"
        )
