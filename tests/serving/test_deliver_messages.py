"""The week as deliveries, without servers: who gets what, per CSM or per channel, and how chat
carries a value that tries to format, link or mention."""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest

from expansion_scorer.config.deliver import DeliverConfig
from expansion_scorer.errors import UserError
from expansion_scorer.serving.deliver.messages import Week, chat_value, plan, task_key

AS_OF = date(2025, 6, 2)


def _week(emails: dict[str, str] | None = None) -> Week:
    """Ana and Bo each with two accounts to act on, Bo with one held out, one account nobody
    owns."""
    owners = ["Ana", "Ana", "Bo", "Bo", "Bo", None]
    arms = ["listed", "listed", "listed", "listed", "holdout", "listed"]
    ids = [f"A{i}" for i in range(6)]
    names = ["*bold* [x](http://evil)", "<!channel> <http://evil|click>", "Bo One", "Bo Two",
             "Held Out Ltd", "Nobody's"]  # fmt: skip
    table = pd.DataFrame(
        {"rank": range(1, 7), "account_id": ids, "crm_id": None, "account_name": names,
         "csm_owner": owners, "score": [0.9, 0.8, 0.7, 0.6, 0.55, 0.5],
         "expected_expansion_arr": 1.0, "band": "hot", "arm": arms, "readiness": "ready",
         "readiness_reason": "", "motion": "Add seats", "reason_1": "r1", "reason_2": "",
         "reason_3": "", "reason_against": "", "talking_points": "tp1 | tp2",
         "model_version": "m v1", "as_of": AS_OF}
    )  # fmt: skip
    triggers = table.loc[[0, 1, 2, 3, 5], ["rank", "account_id", "account_name", "csm_owner",
                                           "score"]].assign(
        as_of=AS_OF, act_this_week=[True, True, True, False, False], previous_score=0.5,
        change=0.2, trigger="rise", why="score up", rules="", model_version="m v1",
    )  # fmt: skip
    shown = table[table["arm"] != "holdout"]
    lists = {str(o): g for o, g in shown.groupby("csm_owner")}
    return Week(AS_OF, table, triggers, lists, emails or {})


def test_per_channel_groups_csms_by_their_webhook_and_leaves_out_who_must_not_hear() -> None:
    cfg = DeliverConfig.model_validate(
        {"chat": {"webhook_env": "TEAM_ALL", "per": "channel", "channels": {"Bo": "TEAM_BO"}}}
    )
    messages = plan(_week(), cfg).messages
    by_env = {m.address: json.loads(m.payload)["text"] for m in messages}
    assert set(by_env) == {"TEAM_ALL", "TEAM_BO"}
    assert "A0" in by_env["TEAM_ALL"] and "A2" not in by_env["TEAM_ALL"]
    assert "A2" in by_env["TEAM_BO"] and "Held Out" not in by_env["TEAM_BO"]
    assert "Nobody" not in "".join(by_env.values())  # unowned: nobody's to act on
    assert all(json.loads(m.payload)["mrkdwn"] is False for m in messages)


def test_chat_values_cannot_link_mention_or_format() -> None:
    assert chat_value("<!channel> <http://evil|click>", "slack") == (
        "&lt;!channel&gt; &lt;http://evil|click&gt;"
    )
    assert chat_value("*bold* [x](http://evil)\n=1", "markdown") == (
        r"\*bold\* \[x\]\(http://evil\) =1"
    )


def test_tasks_are_one_per_account_to_act_on_with_a_stable_key() -> None:
    cfg = DeliverConfig.model_validate({"tasks": {"due_days": 3}})
    tasks = plan(_week(), cfg).tasks
    assert tasks["account_id"].tolist() == ["A0", "A1", "A2"]
    assert (tasks["due_date"] == date(2025, 6, 5)).all()
    assert tasks["task_key"].tolist() == [
        task_key(a, AS_OF, "Add seats") for a in tasks["account_id"]
    ]
    assert task_key("A0", AS_OF, "Add seats") != task_key("A0", date(2025, 6, 9), "Add seats")


def test_an_address_from_the_data_that_is_not_one_stops_in_one_line() -> None:
    cfg = DeliverConfig.model_validate({"email": {"host": "h", "sender": "x@example.com"}})
    with pytest.raises(UserError, match=r"address of CSM 'Bo'.*csm_email"):
        plan(_week({"Ana": "ana@example.com", "Bo": "bo at example"}), cfg)
    planned = plan(_week({"Ana": "ana@example.com"}), cfg)
    assert [m.address for m in planned.messages] == ["ana@example.com"]
    assert planned.missing_address == ["Bo"]
