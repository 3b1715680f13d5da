"""The `deliver:` block of the serving config: which channels, where, and with which secrets.

Secrets never sit in the YAML: a password and a webhook URL are named by the environment
variable that holds them, and a config that writes one in place stops at load, in a line that
does not repeat it.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CHANNELS = ("email", "chat", "tasks")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
"""An address a CSM reads mail at (`local@domain.tld`, in ASCII as SMTP without SMTPUTF8 takes
it): no display name, no list, no spaces."""
_SECRET_KEYS = {
    "password": "password_env",
    "pass": "password_env",
    "webhook": "webhook_env",
    "webhook_url": "webhook_env",
    "url": "webhook_env",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_secret_in_place(cls, raw: object) -> object:
        if isinstance(raw, dict):
            for key in raw:
                if str(key).lower() in _SECRET_KEYS:
                    env = _SECRET_KEYS[str(key).lower()]
                    raise ValueError(
                        f"{key} is a secret and never sits in the config: put it in an"
                        f" environment variable and name that variable with {env}"
                    )
        return raw


def _env_name(value: str | None, what: str) -> str | None:
    if value is not None and not _ENV_NAME.fullmatch(value):
        raise ValueError(
            f"{what} names the environment variable that holds the secret, not the secret"
            " itself: write a name such as EXPANSION_SECRET and export the value under it"
        )
    return value


class EmailConfig(_Strict):
    """One digest per CSM over SMTP."""

    host: str = Field(min_length=1)
    """The SMTP server (a relay or the provider's submission host)."""
    port: int = Field(default=587, ge=1, le=65535)
    """587 for starttls, 465 for tls, 25 for a local relay."""
    security: Literal["starttls", "tls", "none"] = "starttls"
    """starttls (port 587), tls (implicit TLS, port 465) or none (a relay on this machine)."""
    user: str | None = None
    """Who logs in; the password is read from `password_env`."""
    password_env: str | None = None
    """The environment variable holding the SMTP password (never the password itself)."""
    sender: str = Field(min_length=3)
    """The From address."""
    csms: dict[str, str] = Field(default_factory=dict)
    """CSM name -> address; wins over the accounts' `csm_email` column."""
    timeout_s: float = Field(default=30, gt=0)
    """Seconds to wait for the server at each step."""
    ca_file: str | None = None
    """A CA bundle (PEM) to verify the server's certificate with instead of the system's: a
    relay whose certificate a private CA signed."""

    @field_validator("password_env")
    @classmethod
    def _password_env(cls, value: str | None) -> str | None:
        return _env_name(value, "password_env")

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        if not ADDRESS.fullmatch(value):
            raise ValueError("sender is not an address: write one such as expansion@example.com")
        return value

    @field_validator("csms")
    @classmethod
    def _addresses(cls, value: dict[str, str]) -> dict[str, str]:
        for name, address in value.items():
            if not ADDRESS.fullmatch(address):
                raise ValueError(
                    f"csms: the address of {name!r} is not an address (local@domain.tld); fix it"
                )
        return value

    @model_validator(mode="after")
    def _login_needs_password(self) -> EmailConfig:
        if (self.user is None) != (self.password_env is None):
            raise ValueError(
                "user and password_env go together: give both to log in, or neither for a relay"
            )
        return self


class ChatConfig(_Strict):
    """A message to an incoming webhook, in Slack's JSON (Teams and Google Chat workflows take
    it too): one per CSM, or one per channel with each of its CSMs' accounts."""

    webhook_env: str
    """The environment variable holding the default webhook URL."""
    per: Literal["csm", "channel"] = "csm"
    """csm: a message to each CSM; channel: one message per webhook, for all its CSMs."""
    channels: dict[str, str] = Field(default_factory=dict)
    """CSM name -> the environment variable of their team's webhook; others use `webhook_env`."""
    markup: Literal["slack", "markdown"] = "slack"
    """slack: Slack's text with formatting off (`mrkdwn: false`); markdown: for receivers that
    render Markdown, data values with Markdown's punctuation escaped."""
    timeout_s: float = Field(default=15, gt=0)
    """Seconds to wait for the webhook's answer."""

    @field_validator("webhook_env")
    @classmethod
    def _webhook_env(cls, value: str) -> str:
        return _env_name(value, "webhook_env") or value

    @field_validator("channels")
    @classmethod
    def _channel_envs(cls, value: dict[str, str]) -> dict[str, str]:
        for name, env in value.items():
            _env_name(env, f"channels: the entry of {name!r}")
        return value


class TasksConfig(_Strict):
    """A CRM task per "Act this week" account, for a reverse-ETL sync: `tasks.csv`,
    `tasks.parquet` and, with `--to`, the `expansion_tasks` table."""

    due_days: int = Field(default=7, ge=0, le=90)
    """Due this many days after the as-of date."""
    table: str = Field(default="expansion_tasks", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """With `--to`, the table the tasks are upserted into, beside the scores' table."""


class DeliverConfig(_Strict):
    """Each channel is optional; the week the run has just published feeds them all."""

    email: EmailConfig | None = None
    chat: ChatConfig | None = None
    tasks: TasksConfig | None = None
    attempts: int = Field(default=3, ge=1, le=10)
    """Tries per message in one run; what still fails waits for `expansion deliver`."""
    retry_wait_s: float = Field(default=2.0, ge=0)
    """The wait before a second try, doubled before each further one."""

    @model_validator(mode="before")
    @classmethod
    def _known_channels(cls, raw: object) -> object:
        if isinstance(raw, dict):
            known = {*CHANNELS, "attempts", "retry_wait_s"}
            for key in raw:
                if key not in known and str(key).lower() not in _SECRET_KEYS:
                    raise ValueError(
                        f"{key} is not a channel: use {', '.join(CHANNELS)} (each optional)"
                    )
        return raw
