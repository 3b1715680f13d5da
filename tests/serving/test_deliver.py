"""Deliveries with real servers: digests over SMTP (aiosmtpd), chat to an HTTP webhook, tasks in
files; exactly once across re-runs, refusals, dropped connections and kills; nothing held out,
excluded or another CSM's in any of them, whatever the names hold."""

from __future__ import annotations

import csv
import email
import html.parser
import io
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml

from tests import mailservers
from tests.helpers import run_cli, with_hostile_names

WEEK = "2024-09-01"
ROOT = Path(__file__).parents[2]
SMTP_ENV, HOOK_ENV = "EXPANSION_TEST_SMTP_PASSWORD", "EXPANSION_TEST_WEBHOOK"


def _config(path: Path, port: int, **deliver: object) -> Path:
    raw = yaml.safe_load((ROOT / "serving" / "default.yaml").read_text(encoding="utf-8"))
    raw["holdout"] = {"fraction": 0.3, "salt": "deliver-test"}
    raw["deliver"] = {
        "email": {"host": "127.0.0.1", "port": port, "security": "none",
                  "user": mailservers.USER, "password_env": SMTP_ENV,
                  "sender": "expansion@example.com"},
        "chat": {"webhook_env": HOOK_ENV},
        "tasks": {"due_days": 5},
        "attempts": 2,
        "retry_wait_s": 0,
        **deliver,
    }  # fmt: skip
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


@dataclass(frozen=True)
class Template:
    """A week scored with deliveries whose servers refused every message: all of it waits in
    the outbox as failed, ready to be sent by `expansion deliver` (copy it first)."""

    out: Path
    data: Path
    emails: dict[str, str]
    """CSM -> address; the first CSM has none."""


@pytest.fixture(scope="module")
def template(trained_store: Path, small_world_dir: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> Template:  # fmt: skip
    root = tmp_path_factory.mktemp("deliver")
    data = with_hostile_names(small_world_dir, root / "data", every=True)
    accounts = pd.read_parquet(data / "accounts.parquet")
    csms = sorted(accounts["csm_owner"].dropna().unique())
    emails = {c: f"csm{i}@example.com" for i, c in enumerate(csms) if i > 0}
    accounts["csm_email"] = accounts["csm_owner"].map(emails)
    accounts.to_parquet(data / "accounts.parquet", index=False)
    out = root / "weekly"
    with mailservers.smtp_server() as (box, port), mailservers.webhook_server() as (hook, url), \
            pytest.MonkeyPatch.context() as mp:  # fmt: skip
        box.mail_code = "451 4.7.1 greylisted"
        hook.status = 503
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{trained_store / 'mlflow.db'}")
        mp.setenv(SMTP_ENV, mailservers.PASSWORD)
        mp.setenv(HOOK_ENV, url)
        mp.chdir(root)
        from expansion_scorer.cli import main

        config = _config(root / "serving.yaml", port, attempts=1)
        args = ["score", str(data), "--as-of", WEEK, "--out", str(out), "--per-csm",
                "--config", str(config)]  # fmt: skip
        assert main(args) == 2  # the week is published; its messages wait
        assert box.received == [] and hook.received == []
    return Template(out, data, emails)


def _copy(template: Template, dst: Path) -> Path:
    shutil.copytree(template.out, dst)
    return dst


def _outbox(out: Path) -> pd.DataFrame:
    con = duckdb.connect(str(out / "history.duckdb"), read_only=True)
    try:
        return con.execute(
            "SELECT week, channel, recipient, address, status, attempts, answer FROM outbox"
            " ORDER BY channel, recipient"
        ).df()
    finally:
        con.close()


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[mailservers.Mailbox, int,
                                                                mailservers.Hook]]:  # fmt: skip
    with mailservers.smtp_server() as (box, port), mailservers.webhook_server() as (hook, url):
        monkeypatch.setenv(SMTP_ENV, mailservers.PASSWORD)
        monkeypatch.setenv(HOOK_ENV, url)
        yield box, port, hook


def _deliver(out: Path, config: Path, capsys: pytest.CaptureFixture[str], *extra: str
             ) -> tuple[int, str, str]:  # fmt: skip
    return run_cli(["deliver", str(out), "--config", str(config), *extra], capsys)


def _parsed(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    return message


def _parts(message: EmailMessage) -> tuple[str, str, bytes]:
    """The digest's plain text, HTML and attached CSV."""
    text = message.get_body(("plain",))
    page = message.get_body(("html",))
    assert text is not None and page is not None
    (attachment,) = list(message.iter_attachments())
    data = attachment.get_payload(decode=True)
    assert isinstance(data, bytes)
    return text.get_content(), page.get_content(), data


def test_every_csm_gets_one_digest_and_one_chat_message_and_a_rerun_sends_nothing(
    template: Template, champion: Path, servers: tuple[mailservers.Mailbox, int, mailservers.Hook],
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    box, port, hook = servers
    out = _copy(template, tmp_path / "weekly")
    config = _config(tmp_path / "serving.yaml", port)
    before = _outbox(out)
    assert set(before["status"]) == {"failed"}

    code, stdout, err = _deliver(out, config, capsys)

    assert code == 0, err
    table = pd.read_parquet(out / "scores.parquet")
    shown = table[table["arm"] != "holdout"]
    triggers = pd.read_csv(out / "triggers.csv")
    with_accounts = set(shown["csm_owner"].dropna())  # every fired account is shown
    mailed = sorted(str(_parsed(m)["To"]) for m in box.received)
    assert mailed == sorted(a for c, a in template.emails.items() if c in with_accounts)
    assert len(hook.received) == len(before[before["channel"] == "chat"]) > 1
    assert set(_outbox(out)["status"]) == {"delivered"}
    assert f"email: {len(mailed)} messages delivered" in stdout
    tasks = pd.read_parquet(out / "tasks.parquet")
    assert len(tasks) == int(triggers["act_this_week"].sum()) > 0
    assert tasks["task_key"].is_unique
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    for path in [p for p in out.rglob("*") if p.is_file()]:  # no secret in any file written
        data = path.read_bytes()
        assert mailservers.PASSWORD.encode() not in data and b"xoxSECRETtoken" not in data
    assert mailservers.PASSWORD not in stdout + err and "xoxSECRETtoken" not in stdout + err
    unaddressed = sorted(with_accounts - set(template.emails))
    assert manifest["deliver"]["csms_without_email"] == unaddressed != []  # reported

    # a second deliver, and a re-run of the same week, send nothing again
    code, stdout, _ = _deliver(out, config, capsys)
    assert code == 0 and "nothing to deliver" in stdout
    code, _, err = run_cli(
        ["score", str(template.data), "--as-of", WEEK, "--out", str(out), "--per-csm",
         "--config", str(config)], capsys,
    )  # fmt: skip
    assert code == 0, err
    assert len(box.received) == len(mailed) and len(hook.received) == len(before) - len(mailed)
    assert set(_outbox(out)["status"]) == {"delivered"}
    assert pd.read_parquet(out / "tasks.parquet")["task_key"].tolist() == tasks["task_key"].tolist()


class _Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attrs: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attrs |= {name for name, _ in attrs}


def test_no_delivery_holds_a_held_out_excluded_or_other_csms_account_or_runs_a_name(
    template: Template, servers: tuple[mailservers.Mailbox, int, mailservers.Hook],
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    box, port, hook = servers
    out = _copy(template, tmp_path / "weekly")
    config = _config(
        tmp_path / "serving.yaml", port, chat={"webhook_env": HOOK_ENV, "markup": "markdown"}
    )
    assert _deliver(out, config, capsys)[0] == 0
    table = pd.read_parquet(out / "scores.parquet")
    held = set(table.loc[table["arm"] == "holdout", "account_id"])
    excluded = set(pd.read_csv(out / "excluded.csv")["account_id"])
    owner = dict(zip(table["account_id"], table["csm_owner"], strict=True))
    address_of = {a: c for c, a in template.emails.items()}
    assert held and excluded
    ids = set(table["account_id"]) | excluded

    def mentioned(text: str) -> set[str]:
        return {a for a in ids if f"({a})" in text or f">{a}<" in text or f",{a}," in text}

    for raw in box.received:
        message = _parsed(raw)
        csm = address_of[str(message["To"])]
        text, page, attachment = _parts(message)
        rows = list(csv.DictReader(io.StringIO(attachment.decode("utf-8"))))
        seen = mentioned(text) | mentioned(page) | {r["account_id"] for r in rows}
        assert seen and not seen & held and not seen & excluded
        assert {owner[a] for a in seen} == {csm}
        tags = _Tags()
        tags.feed(page)
        assert tags.tags <= {"html", "head", "meta", "title", "body", "table", "tr", "td",
                             "div", "span", "ul", "li", "b"}  # fmt: skip
        assert not tags.attrs - {"lang", "charset", "name", "content", "style", "role", "width",
                                 "cellpadding", "cellspacing", "align"}  # fmt: skip
        for row in rows:  # the one CSV writer: no cell a spreadsheet would run
            for cell in row.values():
                assert not cell.lstrip(" \t\r\n").startswith(("=", "+", "@", "-")) or (
                    cell.startswith("'") or _number(cell)
                )
    for body in hook.received:
        text = body["text"]
        assert "<" not in text and ">" not in text  # no link or mention Slack would read
        seen = mentioned(text)
        assert not seen & held and not seen & excluded
        assert len({owner[a] for a in seen}) == 1  # one CSM's accounts a message
    tasks = pd.read_parquet(out / "tasks.parquet")
    assert not set(tasks["account_id"]) & held
    assert (tasks["owner"] == tasks["account_id"].map(owner)).all()
    written = pd.read_csv(out / "tasks.csv", dtype=str, keep_default_na=False)
    assert not written["subject"].str.match(r"^[=+\-@\t\r]").any()


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def test_a_digest_renders_in_chromium_with_hostile_names_as_text(
    template: Template, servers: tuple[mailservers.Mailbox, int, mailservers.Hook],
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from tests.serving.test_report_browser import CHROMIUM, FLAGS

    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    box, port, _ = servers
    out = _copy(template, tmp_path / "weekly")
    assert _deliver(out, _config(tmp_path / "serving.yaml", port), capsys)[0] == 0
    pages = [_parts(_parsed(m))[1] for m in box.received]
    # the page with the most script-like names in it ("alert(" survives escaping), then the longest
    page_html = max(pages, key=lambda page: (page.count("alert("), len(page)))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 760, "height": 1000})
        problems: list[str] = []
        page.on("dialog", lambda d: (problems.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.set_content(page_html)
        shown = page.inner_text("body")
        images = page.eval_on_selector_all("img, script, iframe", "els => els.length")
        browser.close()
    assert problems == [] and images == 0
    assert "<script>alert(1)</script>" in shown or "onerror=alert(2)" in shown
    assert "to act on this week" in shown


def test_refused_login_stops_in_one_line_without_the_password_and_sends_nothing(
    template: Template, servers: tuple[mailservers.Mailbox, int, mailservers.Hook],
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    box, port, _hook = servers
    box.refuse_login = True
    out = _copy(template, tmp_path / "weekly")
    before = _outbox(out)
    code, stdout, err = _deliver(out, _config(tmp_path / "serving.yaml", port), capsys)
    assert code == 2
    assert err.count("\n") == 1 and "refused the login" in err and SMTP_ENV in err
    assert mailservers.PASSWORD not in stdout + err
    assert box.received == []
    pd.testing.assert_frame_equal(_outbox(out), before)


def test_a_dropped_connection_and_a_4xx_are_retried_and_each_message_goes_once(
    template: Template, servers: tuple[mailservers.Mailbox, int, mailservers.Hook],
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    box, port, hook = servers
    box.drop_after = 2  # the connection ends after the second message
    box.temporary_failures = 1  # the first DATA is answered 451, then accepted on retry
    hook.failures = 1  # the webhook answers 500, then 200
    out = _copy(template, tmp_path / "weekly")
    before = _outbox(out)
    code, _, err = _deliver(out, _config(tmp_path / "serving.yaml", port), capsys)
    assert code == 0, err
    rows = _outbox(out)
    assert set(rows["status"]) == {"delivered"}
    recipients = Counter(str(_parsed(m)["To"]) for m in box.received)
    assert set(recipients.values()) == {1}
    assert len(recipients) == int((rows["channel"] == "email").sum())
    assert len(hook.received) == int((rows["channel"] == "chat").sum())
    assert {json.dumps(b, sort_keys=True) for b in hook.received}.__len__() == len(hook.received)
    tries = rows["attempts"] - before["attempts"]  # the template's run tried each once
    assert tries.max() == 2 and (tries >= 1).all()


def _subprocess_deliver(out: Path, config: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return subprocess.Popen(
        [sys.executable, "-m", "expansion_scorer", "deliver", str(out), "--config", str(config),
         *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def test_a_kill_between_two_messages_leaves_the_rest_to_send_once(
    template: Template, servers: tuple[mailservers.Mailbox, int, mailservers.Hook],
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    box, port, _hook = servers
    out = _copy(template, tmp_path / "weekly")
    config = _config(tmp_path / "serving.yaml", port)
    proc = _subprocess_deliver(out, config)
    box.kill_pid, box.kill_at_mail = proc.pid, 2
    proc.wait(timeout=120)
    assert proc.returncode == -9
    rows = _outbox(out)
    assert (rows["status"] == "delivered").sum() == len(box.received) == 1
    assert "in_doubt" not in set(rows["status"])

    code, _, err = _deliver(out, config, capsys)  # the next run sends the rest

    assert code == 0, err
    recipients = Counter(str(_parsed(m)["To"]) for m in box.received)
    assert set(recipients.values()) == {1}
    assert len(recipients) == int((rows["channel"] == "email").sum())
    assert set(_outbox(out)["status"]) == {"delivered"}


def test_a_kill_while_the_server_takes_a_message_leaves_it_in_doubt_not_sent_twice(
    template: Template, servers: tuple[mailservers.Mailbox, int, mailservers.Hook],
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    box, port, _hook = servers
    out = _copy(template, tmp_path / "weekly")
    config = _config(tmp_path / "serving.yaml", port)
    proc = _subprocess_deliver(out, config)
    box.kill_pid, box.kill_at_data = proc.pid, 1
    proc.wait(timeout=120)
    assert proc.returncode == -9
    assert (_outbox(out)["status"] == "in_doubt").sum() == 1

    code, _, err = _deliver(out, config, capsys)
    assert code == 0, err
    rows = _outbox(out)
    doubtful = rows[rows["status"] == "in_doubt"]
    assert len(doubtful) == 1 and len(box.received) == int((rows["channel"] == "email").sum()) - 1
    code, stdout, _ = run_cli(["deliver", str(out), "--status"], capsys)
    assert code == 0 and "in_doubt" in stdout

    code, _, err = _deliver(out, config, capsys, "--resend-in-doubt")
    assert code == 0, err
    assert set(_outbox(out)["status"]) == {"delivered"}
    assert set(Counter(str(_parsed(m)["To"]) for m in box.received).values()) == {1}


def test_dry_run_writes_the_messages_and_sends_nothing(
    template: Template, servers: tuple[mailservers.Mailbox, int, mailservers.Hook],
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    box, port, hook = servers
    out = _copy(template, tmp_path / "weekly")
    before = _outbox(out)
    code, _, err = _deliver(out, _config(tmp_path / "serving.yaml", port), capsys, "--dry-run")
    assert code == 0, err
    assert box.received == [] and hook.received == []
    written = sorted((out / "outbox-dry-run").rglob("*.*"))
    assert len(written) == len(before)
    mails = [p for p in written if p.suffix == ".eml"]
    assert _parts(_parsed(mails[0].read_bytes()))[1].startswith("<!DOCTYPE html>")
    pd.testing.assert_frame_equal(_outbox(out), before)


@pytest.mark.parametrize(
    ("deliver", "says"),
    [
        (
            {"email": {"host": "h", "sender": "a@b.co", "password": "hunter2-secret"}},
            "password is a secret and never sits in the config",
        ),
        (
            {"chat": {"webhook_env": "https://hooks.slack.com/services/T0/B0/hunter2-secret"}},
            "webhook_env names the environment variable",
        ),
        (
            {"chat": {"webhook_url": "https://hooks.slack.com/services/T0/B0/hunter2-secret"}},
            "webhook_url is a secret",
        ),
        ({"sms": {"to": "all"}}, "sms is not a channel: use email, chat, tasks"),
        (
            {"chat": {"webhook_env": "EXPANSION_TEST_UNSET_HOOK"}},
            "read from $EXPANSION_TEST_UNSET_HOOK, which is not set: export",
        ),
        (
            {"email": {"host": "h", "sender": "a@b.co", "csms": {"Ana": "not an address"}}},
            "the address of 'Ana' is not an address",
        ),
    ],
)
def test_a_bad_deliver_block_stops_before_any_data_in_one_line(
    deliver: dict[str, object], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = {"deliver": deliver}
    config = tmp_path / "serving.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    code, _, err = run_cli(
        ["score", str(tmp_path / "none"), "--as-of", WEEK, "--out", str(tmp_path / "out"),
         "--config", str(config)], capsys,
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and says in err, err
    assert "hunter2" not in err
    assert not (tmp_path / "out").exists()


def test_an_unreachable_server_stops_the_week_before_anything_is_written(
    world_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv(SMTP_ENV, mailservers.PASSWORD)
    monkeypatch.setenv(HOOK_ENV, "http://127.0.0.1:9/hook")
    config = _config(tmp_path / "serving.yaml", mailservers.free_port())
    code, stdout, err = run_cli(
        ["score", str(world_dir), "--as-of", WEEK, "--out", str(tmp_path / "out"),
         "--config", str(config)], capsys,
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1
    assert "deliver email: cannot reach the SMTP server at 127.0.0.1" in err
    assert mailservers.PASSWORD not in stdout + err
    assert not (tmp_path / "out").exists()


def test_a_malformed_address_in_the_data_stops_before_the_week_is_published(
    template: Template, champion: Path, servers: tuple[mailservers.Mailbox, int,
                                                       mailservers.Hook],
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    box, port, hook = servers
    data = shutil.copytree(template.data, tmp_path / "data")
    accounts = pd.read_parquet(data / "accounts.parquet")
    accounts["csm_email"] = accounts["csm_email"].where(
        accounts["csm_email"].isna(), "ana at example dot com"
    )
    accounts.to_parquet(data / "accounts.parquet", index=False)
    code, _, err = run_cli(
        ["score", str(data), "--as-of", WEEK, "--out", str(tmp_path / "out"),
         "--config", str(_config(tmp_path / "serving.yaml", port))], capsys,
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "csm_email" in err, err
    assert not (tmp_path / "out" / "scores.csv").exists()
    assert not (tmp_path / "out" / "history.duckdb").exists()
    assert box.received == [] and hook.received == []


def test_tasks_are_upserted_beside_the_scores_and_a_rerun_updates_them_in_place(
    template: Template, champion: Path, servers: tuple[mailservers.Mailbox, int,
                                                       mailservers.Hook],
    postgres: object, pg_database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from expansion_scorer.data.database import read_select

    box, port, hook = servers
    url = postgres.url(database=pg_database)  # type: ignore[attr-defined]
    out = tmp_path / "weekly"
    args = ["score", str(template.data), "--as-of", WEEK, "--out", str(out), "--per-csm",
            "--config", str(_config(tmp_path / "serving.yaml", port)), "--to", url]  # fmt: skip
    assert run_cli(args, capsys)[0] == 0
    first = read_select(url, "SELECT * FROM expansion_tasks ORDER BY task_key").to_pandas()
    rows = _outbox(out)  # `score` itself sent the week: one digest and one chat message a CSM
    assert set(rows["status"]) == {"delivered"}
    sent = Counter(str(_parsed(m)["To"]) for m in box.received)
    assert set(sent.values()) == {1} and len(sent) == int((rows["channel"] == "email").sum())
    assert len(hook.received) == int((rows["channel"] == "chat").sum()) > 1
    code, _, err = run_cli(args, capsys)  # the same week again
    assert code == 0, err
    assert len(box.received) == sum(sent.values()) and len(hook.received) == len(rows) - len(sent)
    again = read_select(url, "SELECT * FROM expansion_tasks ORDER BY task_key").to_pandas()
    files = pd.read_parquet(out / "tasks.parquet").sort_values("task_key")
    assert again["task_key"].tolist() == first["task_key"].tolist() == files["task_key"].tolist()
    assert (again["updated_at"] > first["updated_at"]).all()  # updated in place, not added
    scores = read_select(url, "SELECT account_id, arm FROM expansion_scores").to_pandas()
    held = set(pd.read_parquet(out / "scores.parquet").query("arm == 'holdout'")["account_id"])
    assert not held & set(again["account_id"]) and not held & set(scores["account_id"])
    assert set(again["account_id"]) <= set(scores["account_id"])


def test_the_example_deliver_block_in_the_shipped_config_loads() -> None:
    from expansion_scorer.config.deliver import DeliverConfig

    text = (ROOT / "serving" / "default.yaml").read_text(encoding="utf-8")
    commented = text.split("# deliver:\n")[1].splitlines()
    block = "deliver:\n" + "\n".join(line[1:] for line in commented)
    cfg = DeliverConfig.model_validate(yaml.safe_load(block)["deliver"])
    assert cfg.email is not None and cfg.chat is not None and cfg.tasks is not None


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_a_digest_goes_over_tls_to_a_server_whose_certificate_the_ca_file_vouches_for(
    template: Template, security: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    cert = mailservers.certificate(tmp_path)
    out = _copy(template, tmp_path / "weekly")
    monkeypatch.setenv(SMTP_ENV, mailservers.PASSWORD)
    with mailservers.smtp_server(security, cert) as (box, port), \
            mailservers.webhook_server() as (hook, url):  # fmt: skip
        monkeypatch.setenv(HOOK_ENV, url)
        email = {"host": "127.0.0.1", "port": port, "security": security,
                 "user": mailservers.USER, "password_env": SMTP_ENV,
                 "sender": "expansion@example.com"}  # fmt: skip
        untrusted = _config(tmp_path / "untrusted.yaml", port, email=email)
        code, _, err = _deliver(out, untrusted, capsys)
        assert code == 2 and err.count("\n") == 1 and "CERTIFICATE_VERIFY_FAILED" in err, err
        assert box.received == []
        trusted = _config(tmp_path / "trusted.yaml", port, email={**email, "ca_file": str(cert[0])})
        code, _, err = _deliver(out, trusted, capsys)
    assert code == 0, err
    rows = _outbox(out)
    assert len(box.received) == int((rows["channel"] == "email").sum()) > 0
    assert set(rows["status"]) == {"delivered"} and len(hook.received) > 0
