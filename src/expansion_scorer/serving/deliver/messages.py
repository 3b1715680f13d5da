"""A published week as deliveries: each CSM's digest, chat messages and CRM tasks. No I/O.

Everything is built from the week as published (its score list, triggers and capacity lists),
never by scoring again. Held-out accounts are dropped on the way in, whatever the caller
passes, and each CSM's message is built from that CSM's rows only: nothing reaches a CSM that
must not. Data values are escaped for the medium that carries them (HTML in the digest,
Slack's or Markdown's control characters in chat); the attachment goes through the one CSV
writer.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from importlib import resources
from typing import Any

import jinja2
import pandas as pd

from expansion_scorer.config.deliver import (
    ADDRESS,
    ChatConfig,
    DeliverConfig,
    EmailConfig,
    TasksConfig,
)
from expansion_scorer.errors import UserError
from expansion_scorer.outputs import csv_bytes
from expansion_scorer.program.holdout import HOLDOUT, UNASSIGNED

TASK_COLUMNS = [
    "task_key", "as_of", "account_id", "crm_id", "account_name", "owner", "owner_email",
    "subject", "body", "due_date", "priority", "motion", "score", "status",
]  # fmt: skip


@dataclass(frozen=True)
class Week:
    """What deliveries read of a published week."""

    as_of: date
    table: pd.DataFrame
    """The score list as `scores.parquet` holds it (with `arm`), in rank order."""
    triggers: pd.DataFrame
    """`triggers.csv`'s rows: what fired, with `act_this_week`."""
    lists: dict[str, pd.DataFrame]
    """CSM -> their capacity list as their `per_csm` CSV shows it (the digest's attachment)."""
    emails: dict[str, str] = field(default_factory=dict)
    """CSM -> address, from the accounts' `csm_email` column."""
    top_band: str = "hot"


@dataclass(frozen=True)
class Message:
    channel: str
    recipient: str
    """The CSM (or, for chat per channel, the variable naming the webhook)."""
    address: str
    """An email address, or the environment variable holding the webhook URL (never the URL)."""
    subject: str
    payload: bytes
    digest: str
    """sha256 of what the message says (not of its Date header): equal for equal content."""
    accounts: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """The week's deliveries: messages for the outbox, tasks for files and the database."""

    messages: list[Message]
    tasks: pd.DataFrame
    missing_address: list[str]
    """CSMs with accounts this week and no email address: reported, not skipped in silence."""

    def manifest(self) -> dict[str, object]:
        """What went where, for the manifest: channel, recipient, address and content digest."""
        return {
            "messages": [
                {
                    "channel": m.channel,
                    "recipient": m.recipient,
                    "address": m.address,
                    "accounts": len(m.accounts),
                    "sha256": m.digest,
                }
                for m in self.messages
            ],
            "tasks": len(self.tasks),
            "csms_without_email": self.missing_address,
        }


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
        return ""
    return str(value)


def _points(value: object) -> list[str]:
    return [p for p in _text(value).split(" | ") if p]


@dataclass(frozen=True)
class _Csm:
    name: str
    cards: list[dict[str, Any]]
    also: list[dict[str, Any]]
    listed: pd.DataFrame


def _by_csm(week: Week) -> list[_Csm]:
    """Each CSM's part of the week, held-out and unowned accounts left out."""
    is_held = week.table["arm"].astype(str) == HOLDOUT
    held = week.table.loc[is_held, "account_id"].astype(str).unique()
    table = week.table[~is_held]
    triggers = week.triggers[~week.triggers["account_id"].astype(str).isin(held)]
    rows = {str(r["account_id"]): r for r in table.to_dict("records")}
    reasons = sorted(
        (c for c in table.columns if c.startswith("reason_") and c[7:].isdigit()),
        key=lambda c: int(c[7:]),
    )
    owners = {
        _text(o)
        for o in [*triggers["csm_owner"], *week.lists]
        if _text(o) and _text(o) != UNASSIGNED
    }
    out = []
    for owner in sorted(owners):
        mine = triggers[triggers["csm_owner"].astype(str) == owner].sort_values("rank")
        cards: list[dict[str, Any]] = []
        also: list[dict[str, Any]] = []
        for t in mine.to_dict("records"):
            r = rows[str(t["account_id"])]
            item = {
                "account_id": _text(t["account_id"]),
                "account_name": _text(t["account_name"]),
                "rank": int(t["rank"]),
                "score": float(r["score"]),
                "band": _text(r["band"]),
                "motion": _text(r["motion"]),
                "ready": _text(r["readiness"]) == "ready",
                "readiness_reason": _text(r["readiness_reason"]),
                "reasons": [_text(r[c]) for c in reasons if _text(r[c])],
                "against": _text(r["reason_against"]),
                "talking_points": _points(r["talking_points"]),
                "trigger": _text(t["trigger"]),
                "why": _text(t["why"]),
                "rules": _text(t["rules"]),
                "crm_id": _text(r.get("crm_id")),
            }
            (cards if bool(t["act_this_week"]) else also).append(item)
        listed = week.lists.get(owner, pd.DataFrame())
        if "account_id" in listed:
            listed = listed[~listed["account_id"].astype(str).isin(held)]
            listed = listed[listed["csm_owner"].astype(str) == owner]
        if cards or also or len(listed):
            out.append(_Csm(owner, cards, also, listed))
    return out


def _environment(html: bool) -> jinja2.Environment:
    """HTML escapes every value; plain text puts each on one line (a name holding a line
    break cannot start a line of its own)."""
    env = jinja2.Environment(
        autoescape=html,
        undefined=jinja2.StrictUndefined,
        finalize=None if html else (lambda v: " ".join(str(v).split())),
        loader=jinja2.FunctionLoader(
            lambda name: (
                resources.files("expansion_scorer")
                .joinpath("serving", "templates", name)
                .read_text(encoding="utf-8")
            )
        ),
    )
    env.filters["pct"] = lambda v: f"{float(v):.0%}"
    return env


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "csm"


def _emails(week: Week, csms: list[_Csm], cfg: EmailConfig) -> tuple[list[Message], list[str]]:
    html = _environment(True).get_template("digest.html.j2")
    text = _environment(False).get_template("digest.txt.j2")
    messages, missing = [], []
    now = format_datetime(datetime.now(UTC))
    for csm in csms:
        address = cfg.csms.get(csm.name) or week.emails.get(csm.name, "")
        if not address:
            missing.append(csm.name)
            continue
        if not ADDRESS.fullmatch(address):
            raise UserError(
                f"deliver email: the address of CSM {csm.name!r} in the accounts' csm_email column"
                " is not an address (local@domain.tld): fix it there, or give one under"
                " deliver.email.csms"
            )
        page = {"week": str(week.as_of), "csm": csm.name, "cards": csm.cards, "also": csm.also,
                "listed": len(csm.listed), "top_band": week.top_band}  # fmt: skip
        body_html, body_text = html.render(**page), text.render(**page)
        attachment = csv_bytes(csm.listed)
        filename = f"expansion-{week.as_of}-{slug(csm.name)}.csv"
        n = len(csm.cards)
        subject = f"Expansion, week of {week.as_of}: {n} account{'s' if n != 1 else ''} to act on"
        digest = _digest(address, subject, body_text, body_html, attachment)
        mail = EmailMessage(policy=SMTP)
        mail["Subject"] = subject
        mail["From"] = cfg.sender
        mail["To"] = address
        mail["Date"] = now
        mail["Message-ID"] = f"<{digest[:32]}@{cfg.sender.rpartition('@')[2]}>"
        mail.set_content(body_text)
        mail.add_alternative(body_html, subtype="html")
        mail.add_attachment(attachment, maintype="text", subtype="csv", filename=filename)
        ids = tuple(c["account_id"] for c in [*csm.cards, *csm.also])
        listed = tuple(csm.listed["account_id"].astype(str)) if len(csm.listed) else ()
        messages.append(
            Message("email", csm.name, address, subject, mail.as_bytes(), digest,
                    tuple(dict.fromkeys(ids + listed)))
        )  # fmt: skip
    return messages, missing


_SLACK = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def chat_value(value: str, markup: str) -> str:
    """A data value as chat shows it: no link, mention or formatting it could start.

    Slack reads `<...>` as links and mentions, so `&`, `<` and `>` become entities (its own
    escaping rule); with Markdown, every punctuation mark Markdown reads is escaped too.
    Line breaks become spaces: a value stays on its line."""
    flat = " ".join(value.split())
    if markup == "markdown":
        flat = _MARKDOWN.sub(r"\\\1", flat)
    return flat.translate(_SLACK)


def _chat_section(csm: _Csm, markup: str) -> list[str]:
    def v(x: object) -> str:
        return chat_value(_text(x), markup)

    lines = [f"{v(csm.name)}: {len(csm.cards)} to act on this week"]
    for c in csm.cards:
        lines.append(
            f"{c['rank']}. {v(c['account_name'])} ({v(c['account_id'])}): {c['score']:.0%},"
            f" {v(c['motion']) or 'no motion'}; {v(c['trigger'])}. {v(c['why'])}"
        )
    if csm.also:
        also = ", ".join(f"{v(a['account_name'])} ({a['score']:.0%})" for a in csm.also)
        lines.append(f"Also fired: {also}")
    if len(csm.listed):
        lines.append(f"Your list this week: {len(csm.listed)} accounts (in your email digest).")
    return lines


def _chats(week: Week, csms: list[_Csm], cfg: ChatConfig) -> list[Message]:
    groups: dict[str, list[_Csm]] = {}
    for csm in csms:
        env = cfg.channels.get(csm.name, cfg.webhook_env)
        groups.setdefault(csm.name if cfg.per == "csm" else env, []).append(csm)
    messages = []
    for recipient, members in groups.items():
        env = cfg.channels.get(members[0].name, cfg.webhook_env)
        lines = [f"Expansion, week of {week.as_of}"]
        for csm in members:
            lines += ["", *_chat_section(csm, cfg.markup)]
        text = "\n".join(lines)
        body: dict[str, object] = {"text": text}
        if cfg.markup == "slack":
            body["mrkdwn"] = False
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        ids = tuple(c["account_id"] for m in members for c in [*m.cards, *m.also])
        messages.append(
            Message("chat", recipient, env, lines[0], payload, _digest(env, payload), ids)
        )
    return messages


def task_key(account_id: str, as_of: date, motion: str) -> str:
    """Stable per account, week and motion: a re-run upserts the same task."""
    return "exp-" + hashlib.sha256(f"{account_id}\x1f{as_of}\x1f{motion}".encode()).hexdigest()[:20]


def tasks(week: Week, csms: list[_Csm], cfg: TasksConfig) -> pd.DataFrame:
    """A CRM task per "Act this week" account, shaped for Salesforce Task or HubSpot tasks."""
    rows = []
    for csm in csms:
        for c in csm.cards:
            body = [f"Why now: {c['trigger']}. {c['why']}".strip()]
            body += [f"- {r}" for r in c["reasons"]]
            if c["against"]:
                body.append(f"Against: {c['against']}")
            if not c["ready"] and c["readiness_reason"]:
                body.append(f"Not yet: {c['readiness_reason']}")
            body += [f"Talking point: {p}" for p in c["talking_points"]]
            rows.append(
                {"task_key": task_key(c["account_id"], week.as_of, c["motion"]),
                 "as_of": week.as_of, "account_id": c["account_id"],
                 "crm_id": c["crm_id"] or None, "account_name": c["account_name"],
                 "owner": csm.name, "owner_email": week.emails.get(csm.name),
                 "subject": f"Expansion: {c['motion'] or 'review'} ({c['account_name']})",
                 "body": "\n".join(body), "due_date": week.as_of + timedelta(days=cfg.due_days),
                 "priority": "High" if c["band"] == week.top_band else "Normal",
                 "motion": c["motion"], "score": c["score"], "status": "Open"}
            )  # fmt: skip
    frame = pd.DataFrame(rows, columns=TASK_COLUMNS)
    return frame.astype({"score": "float64"})


def plan(week: Week, cfg: DeliverConfig) -> Plan:
    """The week's deliveries under `cfg`; a malformed address stops here, before anything is
    recorded or sent."""
    csms = _by_csm(week)
    messages: list[Message] = []
    missing: list[str] = []
    if cfg.email is not None:
        mails, missing = _emails(week, csms, cfg.email)
        messages += mails
    if cfg.chat is not None:
        messages += _chats(week, csms, cfg.chat)
    frame = tasks(week, csms, cfg.tasks) if cfg.tasks is not None else pd.DataFrame()
    return Plan(messages, frame, missing)
