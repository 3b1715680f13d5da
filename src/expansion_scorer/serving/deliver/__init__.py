"""Deliveries: the week the run has just published, brought to where CSMs work.

`settings` holds the `deliver:` block of the serving config; `messages` turns a published week
into digests, chat messages and CRM tasks (no I/O); `send` hands the outbox's pending messages to
an SMTP server or a webhook, once each (`program.outbox` records them).
"""
