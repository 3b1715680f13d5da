"""Benchmark: delivering a week for 100 CSMs: 2,000 act-this-week accounts, 100 digests, 100 chat
messages and 2,000 CRM tasks, against real local servers.

Starts an SMTP server (aiosmtpd) and an incoming-webhook server (http.server) on 127.0.0.1 in
this process (`tests/mailservers.py`), builds a published week with the columns and text lengths
of a real one (each CSM 20 accounts to act on, 5 more that also fired, a capacity list of 20),
and times, per repeat: the plan (`messages.plan`: the digests with their HTML, text and CSV
attachment, the chat messages and the tasks), recording the messages in a new history's outbox
(`outbox.merge`, one transaction) with `tasks.csv` and `tasks.parquet`, and sending everything
(`jobs.deliver.deliver_job`: one SMTP session with a login, a POST per chat message, each message's
state committed before and after it goes). Prints each repeat, the medians and the target.

    .venv/bin/python bench/deliver.py [--csms 100] [--accounts 20] [--repeats 3]
        [--smoke] [--out DIR]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/mailservers.py

from expansion_scorer.config.deliver import DeliverConfig
from expansion_scorer.jobs.deliver import deliver_job
from expansion_scorer.outputs import csv_writer, parquet_writer, write_outputs
from expansion_scorer.program import outbox
from expansion_scorer.program.history import HISTORY_FILE
from expansion_scorer.serving.deliver.messages import Week, plan
from tests import mailservers

import _args

WEEK = date(2025, 6, 2)
TARGET_S = 30.0
SENTENCE = "Active users up 48% in 28 days (212 of 240 seats), three teams invited this month"


def week(csms: int, per_csm: int) -> Week:
    """A published week: each CSM `per_csm` accounts to act on, a quarter as many that also
    fired, a capacity list of `per_csm`, and held-out accounts that must reach nobody."""
    rows, triggers = [], []
    rank = 0
    for c in range(csms):
        owner = f"CSM {c:03d} Example"
        for k in range(per_csm + per_csm // 4 + 2):
            rank += 1
            account = f"acct-{c:03d}-{k:03d}"
            held = k >= per_csm + per_csm // 4
            rows.append(
                {"rank": rank, "account_id": account, "crm_id": f"001{rank:012d}AAA",
                 "account_name": f"Account {account} Holdings", "csm_owner": owner,
                 "score": 0.9 - k / 100, "expected_expansion_arr": 12_000.0, "band": "hot",
                 "arm": "holdout" if held else "listed", "readiness": "ready",
                 "readiness_reason": "", "motion": "Add seats", "reason_1": SENTENCE,
                 "reason_2": SENTENCE, "reason_3": SENTENCE, "reason_against": SENTENCE,
                 "talking_points": f"{SENTENCE} | {SENTENCE}", "model_version": "bench v1",
                 "as_of": WEEK}
            )  # fmt: skip
            if not held:
                triggers.append(
                    {"as_of": WEEK, "rank": rank, "account_id": account,
                     "account_name": f"Account {account} Holdings", "csm_owner": owner,
                     "act_this_week": k < per_csm, "score": 0.9 - k / 100,
                     "previous_score": 0.7, "change": 0.2, "trigger": "rise; entered hot",
                     "why": f"score up 0.20 (70% → 90%): {SENTENCE}", "rules": "",
                     "model_version": "bench v1"}
                )  # fmt: skip
    table = pd.DataFrame(rows)
    shown = table[table["arm"] != "holdout"]
    lists = {str(o): g.head(per_csm) for o, g in shown.groupby("csm_owner")}
    emails = {f"CSM {c:03d} Example": f"csm{c:03d}@example.com" for c in range(csms)}
    return Week(WEEK, table, pd.DataFrame(triggers), lists, emails)


def run(data: Week, cfg: DeliverConfig, root: Path) -> dict[str, float]:
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    planned = plan(data, cfg)
    seconds["plan"] = time.perf_counter() - clock
    clock = time.perf_counter()
    messages: list[dict[str, object]] = [
        {"channel": m.channel, "recipient": m.recipient, "address": m.address,
         "subject": m.subject, "digest": m.digest, "payload": m.payload}
        for m in planned.messages
    ]  # fmt: skip
    staged = root / "outbox.parquet"
    outbox.staged_rows(WEEK, messages).to_parquet(staged, index=False)
    con = duckdb.connect(str(root / HISTORY_FILE))
    con.execute("BEGIN TRANSACTION")
    outbox.merge(con, staged)
    con.execute("COMMIT")
    con.close()
    write_outputs(root, {"tasks.csv": csv_writer(planned.tasks),
                         "tasks.parquet": parquet_writer(planned.tasks)})  # fmt: skip
    seconds["record"] = time.perf_counter() - clock
    clock = time.perf_counter()
    result = deliver_job(root, cfg)
    seconds["send"] = time.perf_counter() - clock
    seconds["total"] = sum(seconds.values())
    assert not result.problems, result.problems
    expected = len(data.emails)
    assert result.sent == {"email": expected, "chat": expected}, result.sent
    assert len(planned.tasks) == int(data.triggers["act_this_week"].sum())
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--csms", type=int, default=100)
    parser.add_argument("--accounts", type=int, default=20, help="act-this-week per CSM")
    parser.add_argument("--repeats", type=int, default=3)
    args = _args.parse(parser, "deliver", {"csms": 3, "accounts": 2, "repeats": 1})
    data = week(args.csms, args.accounts)
    acting = int(data.triggers["act_this_week"].sum())
    print(f"{args.csms} CSMs, {acting:,} act-this-week accounts, {len(data.table):,} scored rows")
    times: list[dict[str, float]] = []
    with mailservers.smtp_server() as (box, port), mailservers.webhook_server() as (hook, url):
        os.environ["BENCH_SMTP_PASSWORD"] = mailservers.PASSWORD
        os.environ["BENCH_WEBHOOK"] = url
        cfg = DeliverConfig.model_validate(
            {"email": {"host": "127.0.0.1", "port": port, "security": "none",
                       "user": mailservers.USER, "password_env": "BENCH_SMTP_PASSWORD",
                       "sender": "expansion@example.com"},
             "chat": {"webhook_env": "BENCH_WEBHOOK"}, "tasks": {}}
        )  # fmt: skip
        for i in range(args.repeats):
            with tempfile.TemporaryDirectory(dir=args.out) as tmp:
                box.received.clear()
                hook.received.clear()
                seconds = run(data, cfg, Path(tmp))
                assert len(box.received) == len(hook.received) == args.csms
            times.append(seconds)
            print(f"repeat {i + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items()))
    medians = {k: statistics.median(t[k] for t in times) for k in times[0]}
    print("median: " + ", ".join(f"{k} {v:.2f} s" for k, v in medians.items()))
    print(
        f"delivering the week: {medians['total']:.2f} s against the {TARGET_S:.0f} s target"
        f" ({medians['total'] / TARGET_S:.2f} of it)"
    )


if __name__ == "__main__":
    main()
