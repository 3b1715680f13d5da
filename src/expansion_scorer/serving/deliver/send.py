"""Sending the outbox: digests over SMTP, chat messages to webhooks, each once.

A message is `in_doubt` only across the step that cannot be taken back: for mail, the DATA
command after the server has accepted sender and recipient; for chat, the POST. A server that
refuses (a 4xx or 5xx answer, a refused connection) has not taken the message, so it is tried
again, here up to `attempts` times and later by `expansion deliver`. A process killed in that
step leaves the message `in_doubt`, which is never sent again unless the operator asks
(`--resend-in-doubt`), after checking the mailbox or channel. Secrets (the SMTP password, the
webhook URLs) are read from the environment when needed and never written anywhere.
"""

from __future__ import annotations

import os
import smtplib
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import date
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from expansion_scorer.config.deliver import ChatConfig, DeliverConfig, EmailConfig
from expansion_scorer.errors import UserError
from expansion_scorer.program.outbox import (
    DELIVERED,
    FAILED,
    IN_DOUBT,
    Outbox,
)


class Refused(Exception):
    """The server did not take the message: trying again cannot send it twice."""


class InDoubt(Exception):
    """The connection ended while the server may have been taking the message."""


def _secret(env: str, channel: str, what: str) -> str:
    value = os.environ.get(env, "")
    if not value:
        raise UserError(
            f"deliver {channel}: {what} is read from ${env}, which is not set: export {env}"
        )
    return value


def webhook_url(env: str) -> str:
    """The URL in `env`, checked to be http(s); the line on a bad one never shows it."""
    url = _secret(env, "chat", "the webhook URL")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UserError(
            f"deliver chat: ${env} does not hold an http(s) URL: set it to the incoming"
            " webhook's URL"
        )
    return url


class Mailer:
    """One SMTP session, reopened when the server drops it."""

    def __init__(self, cfg: EmailConfig) -> None:
        self.cfg = cfg
        self.password = (
            ""
            if cfg.password_env is None
            else _secret(cfg.password_env, "email", f"the password of SMTP user {cfg.user}")
        )
        self.smtp: smtplib.SMTP | None = None

    @property
    def where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    def _clean(self, text: str) -> str:
        return text.replace(self.password, "***") if self.password else text

    def connect(self) -> None:
        cfg = self.cfg
        try:
            context = ssl.create_default_context(cafile=cfg.ca_file)
        except OSError as exc:
            raise UserError(
                f"deliver email: ca_file {cfg.ca_file} cannot be read ({exc.strerror or exc}):"
                " give a PEM bundle of the CA that signed the server's certificate"
            ) from None
        smtp: smtplib.SMTP | None = None
        try:
            if cfg.security == "tls":
                smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_s, context=context)
            else:
                smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
                if cfg.security == "starttls":
                    smtp.starttls(context=context)
            if cfg.user is not None:
                smtp.login(cfg.user, self.password)
        except (OSError, smtplib.SMTPException) as exc:
            if smtp is not None:
                smtp.close()
            raise self._connect_error(exc) from None
        self.smtp = smtp

    def _connect_error(self, exc: BaseException) -> UserError:
        cfg = self.cfg
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return UserError(
                f"deliver email: the SMTP server at {self.where} refused the login of"
                f" {cfg.user} ({exc.smtp_code} {self._answer(exc.smtp_error)}): check the"
                f" password in ${cfg.password_env} and the user"
            )
        return UserError(
            f"deliver email: cannot reach the SMTP server at {self.where}"
            f" ({self._answer(str(exc)) or type(exc).__name__}): check host, port and"
            " security (starttls, tls or none) under deliver.email"
        )

    def _answer(self, raw: bytes | str) -> str:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return self._clean(" ".join(text.split()))

    def send(self, address: str, payload: bytes, in_doubt: Callable[[], None]) -> str:
        """The server's answer once it has taken the message; `Refused` when it did not."""
        if self.smtp is None:
            self.connect()
        smtp = self.smtp
        assert smtp is not None
        try:
            code, answer = smtp.mail(self.cfg.sender)
            if code != 250:
                smtp.rset()
                raise Refused(f"{code} {self._answer(answer)} (MAIL FROM)")
            code, answer = smtp.rcpt(address)
            if code not in (250, 251):
                smtp.rset()
                raise Refused(f"{code} {self._answer(answer)} (RCPT TO)")
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self.smtp = None
            raise Refused(f"connection lost before the message ({type(exc).__name__})") from None
        in_doubt()
        try:
            code, answer = smtp.data(payload)
        except smtplib.SMTPDataError as exc:
            raise Refused(f"{exc.smtp_code} {self._answer(exc.smtp_error)} (DATA)") from None
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self.smtp = None
            raise InDoubt(f"connection lost during DATA ({type(exc).__name__})") from None
        if code != 250:  # smtplib returns the answer after the message without checking it
            raise Refused(f"{code} {self._answer(answer)} (DATA)")
        return f"{code} {self._answer(answer)}"

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (OSError, smtplib.SMTPException):
                self.smtp.close()
            self.smtp = None


def post(url: str, env: str, payload: bytes, timeout: float, in_doubt: Callable[[], None]) -> str:
    """POST a chat message; the answer with the URL left out (it is a secret)."""
    request = urllib.request.Request(
        url, data=payload, method="POST", headers={"Content-Type": "application/json"}
    )
    in_doubt()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        raise Refused(f"HTTP {exc.code} from the webhook in ${env}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError | socket.gaierror):
            raise Refused(f"the webhook in ${env} cannot be reached (connection refused)") from None
        why = type(exc.reason).__name__
        raise InDoubt(f"the webhook in ${env} did not answer ({why})") from None
    except (TimeoutError, OSError) as exc:
        raise InDoubt(f"the webhook in ${env} did not answer ({type(exc).__name__})") from None


def check(cfg: DeliverConfig) -> None:
    """Before a weekly run reads any data: every secret is set, the SMTP server answers and
    takes the login, each webhook variable holds a URL. Nothing is sent."""
    if cfg.email is not None:
        mailer = Mailer(cfg.email)
        mailer.connect()
        mailer.close()
    if cfg.chat is not None:
        for env in {cfg.chat.webhook_env, *cfg.chat.channels.values()}:
            webhook_url(env)


def send_rows(
    box: Outbox,
    rows: pd.DataFrame,
    cfg: DeliverConfig,
    channel_cfg: EmailConfig | ChatConfig,
    problems: list[str],
) -> int:
    """Each row's message, tried up to `cfg.attempts` times; how many went."""
    mailer = Mailer(channel_cfg) if isinstance(channel_cfg, EmailConfig) else None
    sent = 0
    try:
        for row in rows.to_dict("records"):
            key = (day(row["week"]), str(row["channel"]), str(row["recipient"]))
            payload = bytes(row["payload"])
            address = str(row["address"])

            def doubt(key: tuple[date, str, str] = key) -> None:
                box.mark(key, IN_DOUBT, "sending")

            for attempt in range(cfg.attempts):
                try:
                    if mailer is not None:
                        answer = mailer.send(address, payload, doubt)
                    else:
                        assert isinstance(channel_cfg, ChatConfig)
                        url = webhook_url(address)
                        answer = post(url, address, payload, channel_cfg.timeout_s, doubt)
                except Refused as exc:
                    box.mark(key, FAILED, str(exc), tried=True)
                    if attempt + 1 == cfg.attempts:
                        problems.append(f"deliver {key[1]} to {_one_line(key[2])}: {exc}")
                    else:
                        time.sleep(cfg.retry_wait_s * 2**attempt)
                    continue
                except InDoubt as exc:
                    box.mark(key, IN_DOUBT, str(exc), tried=True)
                    problems.append(
                        f"deliver {key[1]} to {_one_line(key[2])}: in doubt, {exc}; check"
                        " whether it arrived, then --resend-in-doubt if not"
                    )
                    break
                box.mark(key, DELIVERED, answer, tried=True)
                sent += 1
                break
    finally:
        if mailer is not None:
            mailer.close()
    return sent


def _one_line(text: str) -> str:
    """A name as an error line shows it: its line breaks and tabs as spaces."""
    return " ".join(text.split())


def day(value: Any) -> date:
    return pd.Timestamp(value).date()
