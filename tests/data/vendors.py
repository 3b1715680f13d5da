"""A generated world written out as the vendors' own exports: Stripe's Sigma / Data Pipeline
tables, Segment's warehouse tables and Salesforce objects, with their documented column names
and types, so the shipped presets can be tested by mapping them back into the contract.

The exports carry what real ones do and the world does not: prospects and deleted records in
Salesforce, anonymous and group-resolved calls in Segment, prorations, void invoices and a
metered price in Stripe.
"""

from __future__ import annotations

import json
import zlib
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

UTC_US = pa.timestamp("us", tz="UTC")


def _write(out: Path, table: str, frame: pd.DataFrame, schema: pa.Schema) -> None:
    folder = out / table
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False),
                   folder / "part-0000.parquet")  # fmt: skip


def _utc(day: date, hours: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=hours)


def sf_id(prefix: str, n: int) -> str:
    """An 18-character Salesforce record id with the object's key prefix."""
    return f"{prefix}{n:012d}AAA"


def write_salesforce(world: Path, out: Path) -> dict[str, str]:
    """Account and User as the Bulk API exports them; returns account_id -> Account Id."""
    accounts = pd.read_parquet(world / "accounts.parquet")
    owners = sorted(accounts["csm_owner"].dropna().unique())
    users = pd.DataFrame(
        {
            "Id": [sf_id("005", i) for i in range(len(owners))],
            "Name": owners,
            "Email": [f"{name.split()[0].lower()}@vendor.example" for name in owners],
            "IsActive": True,
        }
    )
    user_of = dict(zip(owners, users["Id"], strict=True))
    gone = sf_id("005", 999)  # a deactivated owner the User export leaves out: no CSM
    ids = {a: sf_id("001", i) for i, a in enumerate(accounts["account_id"])}
    frame = pd.DataFrame(
        {
            "Id": accounts["account_id"].map(ids),
            "IsDeleted": False,
            "Name": accounts["account_name"],
            "Industry": accounts["industry"],
            "NumberOfEmployees": accounts["employee_count"].astype("Int64"),
            "BillingCountry": accounts["country"],
            "OwnerId": accounts["csm_owner"].map(user_of).fillna(gone),
            "CreatedDate": [_utc(d, 9) for d in pd.to_datetime(accounts["created_at"]).dt.date],
            "Product_Account_Id__c": accounts["account_id"],
            "Customer_Segment__c": accounts["segment"],
        }
    )
    extra = pd.DataFrame(
        {
            "Id": [sf_id("001", 900_000), sf_id("001", 900_001)],
            "IsDeleted": [False, True],
            "Name": ["A prospect", "A deleted duplicate"],
            "Industry": [None, None],
            "NumberOfEmployees": pd.array([None, None], dtype="Int64"),
            "BillingCountry": [None, None],
            "OwnerId": [users["Id"].iloc[0]] * 2,
            "CreatedDate": [_utc(date(2023, 6, 1))] * 2,
            "Product_Account_Id__c": [None, accounts["account_id"].iloc[0]],
            "Customer_Segment__c": [None, None],
        }
    )
    account_schema = pa.schema(
        [("Id", pa.string()), ("IsDeleted", pa.bool_()), ("Name", pa.string()),
         ("Industry", pa.string()), ("NumberOfEmployees", pa.int32()),
         ("BillingCountry", pa.string()), ("OwnerId", pa.string()), ("CreatedDate", UTC_US),
         ("Product_Account_Id__c", pa.string()), ("Customer_Segment__c", pa.string())]
    )  # fmt: skip
    _write(out / "salesforce", "Account", pd.concat([frame, extra]), account_schema)
    user_schema = pa.schema(
        [("Id", pa.string()), ("Name", pa.string()), ("Email", pa.string()),
         ("IsActive", pa.bool_())]
    )  # fmt: skip
    _write(out / "salesforce", "User", users, user_schema)
    return ids


def write_hubspot(world: Path, out: Path) -> dict[str, str]:
    """Companies and owners as the CRM API's NDJSON (every property as text); returns
    account_id -> company record id."""
    accounts = pd.read_parquet(world / "accounts.parquet")
    owners = sorted(accounts["csm_owner"].dropna().unique())
    owner_id = {name: str(70_000 + i) for i, name in enumerate(owners)}
    ids = {a: str(9_000_000 + i) for i, a in enumerate(accounts["account_id"])}

    def text(value: object) -> str | None:
        return None if pd.isna(value) else str(value)  # type: ignore[call-overload]

    companies = [
        {"id": ids[r.account_id], "archived": False,
         "createdAt": f"{r.created_at:%Y-%m-%d}T10:00:00.000Z",
         "properties": {
             "hs_object_id": ids[r.account_id], "name": r.account_name,
             "createdate": f"{r.created_at:%Y-%m-%d}T10:00:00.000Z",
             "industry": text(r.industry),
             "numberofemployees": None if pd.isna(r.employee_count)
             else str(int(r.employee_count)),
             "country": text(r.country),
             "hubspot_owner_id": owner_id.get(r.csm_owner) if pd.notna(r.csm_owner) else None,
             "product_account_id": r.account_id, "customer_segment": text(r.segment)}}
        for r in accounts.itertuples()
    ]  # fmt: skip
    companies.append({"id": "8999999", "archived": False, "createdAt": "2023-05-01T00:00:00Z",
                      "properties": {"name": "A prospect", "createdate": "2023-05-01T00:00:00Z",
                                     "product_account_id": None}})  # fmt: skip
    people = [
        {"id": owner_id[name], "email": f"{name.split()[0].lower()}@vendor.example",
         "firstName": name.split(" ", 1)[0],
         "lastName": name.split(" ", 1)[1] if " " in name else "", "archived": False}
        for name in owners
    ]  # fmt: skip
    for table, rows in (("companies", companies), ("owners", people)):
        folder = out / "hubspot" / table
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "page-0001.ndjson", "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return ids


SEGMENT_SCHEMA = pa.schema(
    [("id", pa.string()), ("anonymous_id", pa.string()), ("user_id", pa.string()),
     ("context_group_id", pa.string()), ("event", pa.string()), ("event_text", pa.string()),
     ("timestamp", UTC_US), ("original_timestamp", UTC_US), ("sent_at", UTC_US),
     ("received_at", UTC_US), ("quantity", pa.int64())]
)  # fmt: skip


def write_segment(world: Path, out: Path) -> None:
    """A table per event (the tracks columns plus the `quantity` property, sent only when
    above 1), and `groups`. A third of the users' calls carry no context.groupId: their
    account comes from the group call each user made when first seen."""
    usage = pd.read_parquet(world / "usage_events.parquet")
    usage["timestamp"] = pd.to_datetime(usage["timestamp"]).dt.tz_localize("UTC")
    no_group = usage["user_id"].map(lambda u: zlib.crc32(u.encode()) % 3 == 0)
    frame = pd.DataFrame(
        {
            "id": [f"msg-{i}" for i in range(len(usage))],
            "anonymous_id": None,
            "user_id": usage["user_id"],
            "context_group_id": usage["account_id"].where(~no_group, None),
            "event": usage["event"],
            "event_text": usage["event"].str.replace("_", " ").str.title(),
            "timestamp": usage["timestamp"],
            "original_timestamp": usage["timestamp"] - pd.Timedelta(seconds=2),
            "sent_at": usage["timestamp"] + pd.Timedelta(seconds=1),
            "received_at": usage["timestamp"] + pd.Timedelta(seconds=3),
            "quantity": usage["quantity"].astype("Int64").where(usage["quantity"] > 1),
        }
    )
    anonymous = frame.head(3).assign(
        id=["anon-0", "anon-1", "anon-2"], user_id=None, context_group_id=None,
        anonymous_id="anon-visitor",
    )  # fmt: skip
    frame = pd.concat([frame, anonymous], ignore_index=True)
    for event, rows in frame.groupby("event", sort=True):
        _write(out / "segment" / "events", str(event), rows, SEGMENT_SCHEMA)
    first = usage.sort_values("timestamp").groupby("user_id", sort=True).first().reset_index()
    groups = pd.DataFrame(
        {
            "id": [f"grp-{i}" for i in range(len(first))],
            "user_id": first["user_id"],
            "group_id": first["account_id"],
            "timestamp": first["timestamp"],
        }
    )
    groups_schema = pa.schema(
        [("id", pa.string()), ("user_id", pa.string()), ("group_id", pa.string()),
         ("timestamp", UTC_US)]
    )  # fmt: skip
    _write(out / "segment", "groups", groups, groups_schema)


def _anniversary(start: date, years: int) -> date:
    try:
        return start.replace(year=start.year + years)
    except ValueError:  # 29 February
        return date(start.year + years, 2, 28)


def write_stripe(world: Path, out: Path, data_end: date) -> None:
    """Stripe's tables for the world's contracts, billed yearly in advance from each
    subscription's start: renewals and first invoices as full-period lines, mid-period changes
    as a proration credit for the old quantity and a charge for the new, a mid-period cancel
    as a credit alone. Only invoices dated before `data_end` exist, as in a real export."""
    subs = pd.read_parquet(world / "subscriptions.parquet")
    subs["start_date"] = pd.to_datetime(subs["start_date"]).dt.date
    subs["end_date"] = [None if pd.isna(d) else pd.Timestamp(d).date() for d in subs["end_date"]]
    subs = subs.sort_values(["account_id", "product", "start_date"]).reset_index(drop=True)
    products = sorted(subs["product"].unique())
    product_id = {p: f"prod_{i:04d}" for i, p in enumerate(products)}
    seat_based = set(subs.loc[subs["seats"].notna(), "product"])
    customers = sorted(subs["account_id"].unique())
    customer_id = {a: f"cus_{i:06d}" for i, a in enumerate(customers)}
    prices: list[dict[str, object]] = []
    lines: list[dict[str, object]] = []
    subscriptions: list[dict[str, object]] = []
    items: list[dict[str, object]] = []
    invoices: dict[tuple[str, date], str] = {}

    def invoice(sub: str, day: date) -> str:
        return invoices.setdefault((sub, day), f"in_{len(invoices):07d}")

    def line(sub: str, item: str, price: dict[str, object], q: int, start: date, end: date,
             proration: bool, sign: int = 1) -> None:  # fmt: skip
        if start >= data_end:
            return
        full = int(price["_cents"])  # type: ignore[call-overload]
        if proration:
            period = (end - _anniversary(end, -1)).days
            cents = round(full * (end - start).days / period)
        else:
            cents = full
        lines.append(
            {"id": f"il_{len(lines):08d}", "invoice_id": invoice(sub, start),
             "subscription_id": sub, "subscription_item_id": item, "price_id": price["id"],
             "type": "subscription", "proration": proration, "amount": sign * cents,
             "currency": "usd", "quantity": q, "period_start": _utc(start),
             "period_end": _utc(end)}
        )  # fmt: skip

    chain = 0
    for (account, product), rows in subs.groupby(["account_id", "product"], sort=True):
        runs: list[list[pd.Series]] = []
        for _, row in rows.iterrows():
            if runs and runs[-1][-1]["end_date"] == row["start_date"]:
                runs[-1].append(row)
            else:
                runs.append([row])
        for run in runs:
            sub, item = f"sub_{chain:06d}", f"si_{chain:06d}"
            chain += 1
            anchor = run[0]["start_date"]
            before: tuple[dict[str, object], int] | None = None
            for row in run:
                q = int(row["seats"]) if pd.notna(row["seats"]) else 1
                cents = round(float(row["arr"]) * 100)
                price: dict[str, object] = {
                    "id": f"price_{len(prices):06d}", "product_id": product_id[str(product)],
                    "nickname": row["plan"] if pd.notna(row["plan"]) else None,
                    "unit_amount": round(cents / q),
                    "unit_amount_decimal": str((Decimal(cents) / q).quantize(Decimal("1e-12"))),
                    "currency": "usd", "recurring_interval": "year",
                    "recurring_interval_count": 1, "recurring_usage_type": "licensed",
                    "type": "recurring", "active": True, "_cents": cents,
                }  # fmt: skip
                prices.append(price)
                start, end = row["start_date"], row["end_date"]
                k = 0
                while _anniversary(anchor, k + 1) <= start:
                    k += 1
                if _anniversary(anchor, k) == start:
                    line(sub, item, price, q, start, _anniversary(anchor, k + 1), False)
                else:
                    upto = _anniversary(anchor, k + 1)
                    if before is not None:
                        line(sub, item, before[0], before[1], start, upto, True, -1)
                    line(sub, item, price, q, start, upto, True)
                k += 1
                while _anniversary(anchor, k) < (end or data_end):
                    day = _anniversary(anchor, k)
                    line(sub, item, price, q, day, _anniversary(anchor, k + 1), False)
                    k += 1
                before = (price, q)
            last = run[-1]
            end = last["end_date"]
            if end is not None and end < data_end:
                k = 0
                while _anniversary(anchor, k + 1) <= end:
                    k += 1
                if _anniversary(anchor, k) != end:  # cancelled mid-period: credit the rest
                    assert before is not None
                    line(sub, item, before[0], before[1], end, _anniversary(anchor, k + 1),
                         True, -1)  # fmt: skip
            ended = end is not None and end < data_end
            subscriptions.append(
                {"id": sub, "customer_id": customer_id[str(account)],
                 "status": "canceled" if ended else "active", "created": _utc(anchor),
                 "start_date": _utc(anchor), "canceled_at": _utc(end) if ended else None,
                 "ended_at": _utc(end) if ended else None}
            )  # fmt: skip
            assert before is not None
            items.append(
                {"id": item, "subscription_id": sub, "price_id": before[0]["id"],
                 "quantity": before[1], "created": _utc(anchor)}
            )  # fmt: skip

    # Noise a real export holds: a void invoice's line and a metered price's usage line.
    metered = {
        "id": "price_metered", "product_id": product_id[products[0]], "nickname": None,
        "unit_amount": 2, "unit_amount_decimal": "2", "currency": "usd",
        "recurring_interval": "month", "recurring_interval_count": 1,
        "recurring_usage_type": "metered", "type": "recurring", "active": True, "_cents": 0,
    }  # fmt: skip
    prices.append(metered)
    first = lines[0]
    lines.append({**first, "id": "il_metered", "price_id": "price_metered", "amount": 4_000,
                  "quantity": 2_000})  # fmt: skip
    void_day = pd.Timestamp(first["period_start"]).date() + timedelta(days=40)  # type: ignore[arg-type]
    lines.append({**first, "id": "il_void", "invoice_id": "in_void", "quantity": 999,
                  "period_start": _utc(void_day)})  # fmt: skip
    customer_of = {str(s["id"]): s["customer_id"] for s in subscriptions}
    invoice_rows = [
        {"id": iid, "customer_id": customer_of[sub],
         "subscription_id": sub, "status": "paid", "created": _utc(day),
         "period_start": _utc(day), "period_end": _utc(day)}
        for (sub, day), iid in invoices.items()
    ]  # fmt: skip
    invoice_rows.append({**invoice_rows[0], "id": "in_void", "status": "void"})

    ts = UTC_US
    stripe = out / "stripe"
    _write(stripe, "customers", pd.DataFrame(
        {"id": list(customer_id.values()), "name": customers,
         "email": [f"billing@{a.lower()}.example" for a in customers],
         "created": _utc(date(2020, 1, 1)),
         "metadata": [json.dumps({"account_id": a}) for a in customers]}),
        pa.schema([("id", pa.string()), ("name", pa.string()), ("email", pa.string()),
                   ("created", ts), ("metadata", pa.string())]))  # fmt: skip
    _write(stripe, "products", pd.DataFrame(
        {"id": [product_id[p] for p in products], "name": products,
         "unit_label": ["seat" if p in seat_based else None for p in products],
         "active": True}),
        pa.schema([("id", pa.string()), ("name", pa.string()), ("unit_label", pa.string()),
                   ("active", pa.bool_())]))  # fmt: skip
    _write(stripe, "prices", pd.DataFrame([{k: v for k, v in p.items() if k != "_cents"}
                                           for p in prices]),
        pa.schema([("id", pa.string()), ("product_id", pa.string()), ("nickname", pa.string()),
                   ("unit_amount", pa.int64()), ("unit_amount_decimal", pa.string()),
                   ("currency", pa.string()), ("recurring_interval", pa.string()),
                   ("recurring_interval_count", pa.int64()),
                   ("recurring_usage_type", pa.string()), ("type", pa.string()),
                   ("active", pa.bool_())]))  # fmt: skip
    _write(stripe, "subscriptions", pd.DataFrame(subscriptions),
        pa.schema([("id", pa.string()), ("customer_id", pa.string()), ("status", pa.string()),
                   ("created", ts), ("start_date", ts), ("canceled_at", ts),
                   ("ended_at", ts)]))  # fmt: skip
    _write(stripe, "subscription_items", pd.DataFrame(items),
        pa.schema([("id", pa.string()), ("subscription_id", pa.string()),
                   ("price_id", pa.string()), ("quantity", pa.int64()),
                   ("created", ts)]))  # fmt: skip
    _write(stripe, "invoices", pd.DataFrame(invoice_rows),
        pa.schema([("id", pa.string()), ("customer_id", pa.string()),
                   ("subscription_id", pa.string()), ("status", pa.string()),
                   ("created", ts), ("period_start", ts), ("period_end", ts)]))  # fmt: skip
    _write(stripe, "invoice_line_items", pd.DataFrame(lines),
        pa.schema([("id", pa.string()), ("invoice_id", pa.string()),
                   ("subscription_id", pa.string()), ("subscription_item_id", pa.string()),
                   ("price_id", pa.string()), ("type", pa.string()), ("proration", pa.bool_()),
                   ("amount", pa.int64()), ("currency", pa.string()), ("quantity", pa.int64()),
                   ("period_start", ts), ("period_end", ts)]))  # fmt: skip


def write_all(world: Path, out: Path, data_end: date) -> dict[str, str]:
    """Every vendor's export of `world` under `out`; returns account_id -> Salesforce Id."""
    ids = write_salesforce(world, out)
    write_segment(world, out)
    write_stripe(world, out, data_end)
    return ids


def _owner_ids(world: Path, make: object) -> dict[str, str]:
    """CSM name -> the vendor's user id, numbered as the accounts writers number them."""
    accounts = pd.read_parquet(world / "accounts.parquet")
    owners = sorted(accounts["csm_owner"].dropna().unique())
    return {name: make(i) for i, name in enumerate(owners)}  # type: ignore[operator]


def write_salesforce_activity(world: Path, out: Path, ids: dict[str, str]) -> pd.DataFrame:
    """The world's touches as Task (calls and emails, closed) and Event (meetings) records,
    with what a real export also holds: open, deleted and prospects' tasks, activities logged
    on an opportunity (WhatId) rather than the account, and a task the weekly run created and
    its CSM closed. Returns that closed task as the touch it must map to."""
    touches = pd.read_parquet(world / "touches.parquet").reset_index(drop=True)
    users = _owner_ids(world, lambda i: sf_id("005", i))
    gone = sf_id("005", 999)
    when = pd.to_datetime(touches["touched_at"]).dt.tz_localize("UTC")
    on_opportunity = touches.index % 2 == 1  # AccountId filled, WhatId an opportunity
    account = touches["account_id"].map(ids)
    tasks = touches[touches["channel"] != "meeting"]
    logged = tasks.index % 3 == 0  # logged after the fact: no CompletedDateTime
    task_rows = pd.DataFrame(
        {
            "Id": [sf_id("00T", i) for i in tasks.index],
            "IsDeleted": False,
            "WhatId": np.where(on_opportunity[tasks.index], sf_id("006", 1), account[tasks.index]),
            "AccountId": np.where(on_opportunity[tasks.index], account[tasks.index], None),
            "OwnerId": tasks["csm"].map(users).fillna(gone),
            "Subject": tasks["channel"].str.title() + " with the customer",
            "ActivityDate": when[tasks.index].dt.date,
            "CreatedDate": np.where(logged, when[tasks.index],
                                    when[tasks.index] - pd.Timedelta(days=2)),
            "CompletedDateTime": when[tasks.index].where(~logged, None),
            "Status": "Completed",
            "IsClosed": True,
            "Type": None,
            "TaskSubtype": tasks["channel"].str.title(),
            "CallDisposition": tasks["outcome"],
            "Expansion_Motion__c": tasks["motion"],
        }
    )  # fmt: skip
    first = touches.iloc[0]
    closed_at = pd.Timestamp(when.iloc[0]) + pd.Timedelta(hours=3)
    run_task = {
        **task_rows.iloc[0].to_dict(), "Id": sf_id("00T", 900_000), "WhatId": ids[first.account_id],
        "AccountId": None, "OwnerId": users.get(first.csm, gone),
        "Subject": f"Expansion: seats ({first.account_id})",
        "CreatedDate": closed_at - pd.Timedelta(days=4), "CompletedDateTime": closed_at,
        "TaskSubtype": "Task", "CallDisposition": None, "Expansion_Motion__c": "seats",
    }  # fmt: skip
    open_task = {**run_task, "Id": sf_id("00T", 900_001), "Status": "Not Started",
                 "IsClosed": False, "CompletedDateTime": None}  # fmt: skip
    deleted = {**run_task, "Id": sf_id("00T", 900_002), "IsDeleted": True}
    prospect = {**run_task, "Id": sf_id("00T", 900_003), "WhatId": sf_id("001", 900_000)}
    task_rows = pd.concat(
        [task_rows, pd.DataFrame([run_task, open_task, deleted, prospect])], ignore_index=True
    )
    ts = UTC_US
    _write(out / "salesforce", "Task", task_rows, pa.schema(
        [("Id", pa.string()), ("IsDeleted", pa.bool_()), ("WhatId", pa.string()),
         ("AccountId", pa.string()), ("OwnerId", pa.string()), ("Subject", pa.string()),
         ("ActivityDate", pa.date32()), ("CreatedDate", ts), ("CompletedDateTime", ts),
         ("Status", pa.string()), ("IsClosed", pa.bool_()), ("Type", pa.string()),
         ("TaskSubtype", pa.string()), ("CallDisposition", pa.string()),
         ("Expansion_Motion__c", pa.string())]))  # fmt: skip
    meetings = touches[touches["channel"] == "meeting"]
    events = pd.DataFrame(
        {
            "Id": [sf_id("00U", i) for i in meetings.index],
            "IsDeleted": False,
            "WhatId": account[meetings.index],
            "AccountId": account[meetings.index],
            "OwnerId": meetings["csm"].map(users).fillna(gone),
            "Subject": "Meeting",
            "ActivityDate": when[meetings.index].dt.date,
            "ActivityDateTime": when[meetings.index],
            "CreatedDate": when[meetings.index] - pd.Timedelta(days=7),
            "Type": "Meeting",
            "Expansion_Motion__c": meetings["motion"],
        }
    )
    _write(out / "salesforce", "Event", events, pa.schema(
        [("Id", pa.string()), ("IsDeleted", pa.bool_()), ("WhatId", pa.string()),
         ("AccountId", pa.string()), ("OwnerId", pa.string()), ("Subject", pa.string()),
         ("ActivityDate", pa.date32()), ("ActivityDateTime", ts), ("CreatedDate", ts),
         ("Type", pa.string()), ("Expansion_Motion__c", pa.string())]))  # fmt: skip
    return pd.DataFrame(
        {"account_id": [first.account_id], "touched_at": [closed_at.tz_localize(None)],
         "csm": [first.csm], "motion": ["seats"], "channel": ["task"],
         "outcome": ["Completed"]}
    )  # fmt: skip


def write_hubspot_engagements(world: Path, out: Path, ids: dict[str, str]) -> None:
    """The world's touches as the CRM API's calls, emails and meetings (NDJSON, every property
    text, associated to their company), with an archived note beside them."""
    touches = pd.read_parquet(world / "touches.parquet").reset_index(drop=True)
    owners = _owner_ids(world, lambda i: str(70_000 + i))
    outcome_property = {"call": "hs_call_disposition", "email": "hs_email_status",
                        "meeting": "hs_meeting_outcome"}  # fmt: skip
    objects: dict[str, list[dict[str, object]]] = {"calls": [], "emails": [], "meetings": [],
                                                   "notes": []}  # fmt: skip
    for i, t in enumerate(touches.itertuples()):
        stamp = pd.Timestamp(t.touched_at)
        properties: dict[str, object] = {
            "hs_object_id": str(5_000_000 + i),
            "hs_timestamp": f"{stamp:%Y-%m-%dT%H:%M:%S}.000Z",
            "hubspot_owner_id": owners.get(t.csm) if isinstance(t.csm, str) else None,
            "expansion_motion": t.motion if isinstance(t.motion, str) else None,
        }
        # requested properties come back with every object, null when empty
        properties[outcome_property[str(t.channel)]] = (
            t.outcome if isinstance(t.outcome, str) else None
        )
        objects[f"{t.channel}s"].append(
            {"id": str(5_000_000 + i), "archived": False, "properties": properties,
             "associations": {"companies": {"results": [
                 {"id": ids[t.account_id], "type": f"{t.channel}_to_company"}]}}}
        )  # fmt: skip
    objects["notes"].append(
        {"id": "4999999", "archived": True, "properties": {
            "hs_timestamp": "2024-01-02T09:00:00.000Z", "hubspot_owner_id": None},
         "associations": {"companies": {"results": [
             {"id": next(iter(ids.values())), "type": "note_to_company"}]}}}
    )  # fmt: skip
    for kind, rows in objects.items():
        folder = out / "hubspot" / kind
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "page-0001.ndjson", "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
