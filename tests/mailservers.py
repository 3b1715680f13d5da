"""Real servers on 127.0.0.1 for deliveries: an SMTP server (aiosmtpd) and an incoming-webhook
HTTP server (http.server), each in a thread of the test process, each able to misbehave the
ways real ones do: refuse a login, drop the connection, answer 4xx or 500 before accepting,
or kill the sending process at a chosen moment."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER, PASSWORD = "expansion-bot", "s3cret-Pa55-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mailbox:
    """What the SMTP server received, and how it should misbehave next."""

    received: list[bytes] = field(default_factory=list)
    refuse_login: bool = False
    mail_code: str = "250 OK"
    """The answer to every MAIL FROM; a 4xx refuses every message."""
    temporary_failures: int = 0
    """Answer this many DATA commands with 451 before accepting."""
    drop_after: int | None = None
    """Close the connection at the MAIL FROM after this many accepted messages, once."""
    kill_pid: int | None = None
    kill_at_mail: int | None = None
    """Kill `kill_pid` when this MAIL FROM (1-based) arrives: between two messages."""
    kill_at_data: int | None = None
    """Kill `kill_pid` while this DATA (1-based) is being taken: a message in doubt."""
    mails: int = 0
    datas: int = 0


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        box = self.box
        box.mails += 1
        if box.kill_at_mail == box.mails and box.kill_pid:
            os.kill(box.kill_pid, signal.SIGKILL)
            box.kill_at_mail = None
        if box.drop_after is not None and len(box.received) >= box.drop_after:
            box.drop_after = None
            server.transport.close()
            return "421 closing"
        if not box.mail_code.startswith("250"):
            return box.mail_code
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        box = self.box
        box.datas += 1
        if box.kill_at_data == box.datas and box.kill_pid:
            os.kill(box.kill_pid, signal.SIGKILL)
            box.kill_at_data = None
            return "451 the sender is gone"
        if box.temporary_failures > 0:
            box.temporary_failures -= 1
            return "451 4.3.0 try again later"
        box.received.append(bytes(envelope.original_content or envelope.content))
        return "250 2.0.0 queued"


def _authenticator(box: Mailbox) -> Any:
    def check(server: Any, session: Any, envelope: Any, _mechanism: str, data: Any) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == USER
            and data.password.decode() == PASSWORD
            and not box.refuse_login
        )
        return AuthResult(success=ok, handled=False)

    return check


def certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (the certificate is its own CA)."""
    cert, key = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@contextmanager
def smtp_server(
    security: str = "none", cert: tuple[Path, Path] | None = None
) -> Iterator[tuple[Mailbox, int]]:
    """An SMTP server on 127.0.0.1 that takes USER's login (PASSWORD): over plain text, or with
    `cert` after STARTTLS (`starttls`, which it then requires) or over implicit TLS (`tls`)."""
    box = Mailbox()
    port = free_port()
    tls: dict[str, object] = {"auth_require_tls": False}
    if cert is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert[0]), str(cert[1]))
        tls = (
            {"tls_context": context, "require_starttls": True}
            if security == "starttls"
            else {"ssl_context": context, "auth_require_tls": False}
        )
    controller = Controller(
        _Handler(box), hostname="127.0.0.1", port=port, authenticator=_authenticator(box),
        auth_exclude_mechanism=["CRAM-MD5"], **tls,
    )  # fmt: skip
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


@dataclass
class Hook:
    """What the webhook server received, and how many POSTs it answers 500 first."""

    received: list[dict[str, Any]] = field(default_factory=list)
    failures: int = 0
    status: int = 200


@contextmanager
def webhook_server() -> Iterator[tuple[Hook, str]]:
    """An incoming-webhook server on 127.0.0.1; yields its state and its URL (with a secret
    path, as Slack's are)."""
    hook = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if hook.failures > 0:
                hook.failures -= 1
                code = 500
            else:
                code = hook.status
                if code == 200:
                    hook.received.append(json.loads(body))
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"ok" if code == 200 else b"error")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook, f"http://127.0.0.1:{server.server_port}/services/T000/B000/xoxSECRETtoken"
    finally:
        server.shutdown()
        server.server_close()
