"""A throwaway PostgreSQL server from Debian's binaries: for the tests and bench/pg_sink.py.

`initdb` in a fresh directory, password (SCRAM) authentication over TCP on loopback, trust only
on its own Unix socket for the superuser's set-up, then one role and one database for the code
under test. PostgreSQL refuses to run as root, so as root it runs as the `postgres` user that
Debian's package creates.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

USER = "scorer"
PASSWORD = "Pg-S3cret@sink:/wk"
"""Holds '@', ':' and '/', so URLs must percent-encode it and redaction must catch both forms."""
DATABASE = "crm"


def binaries() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    bin: Path
    root: Path
    port: int
    as_user: str | None

    @property
    def socket_dir(self) -> str:
        return str(self.root)

    def url(self, password: str | None = PASSWORD, database: str = DATABASE) -> str:
        secret = f":{quote(password, safe='')}" if password is not None else ""
        return f"postgresql://{USER}{secret}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, stdin: str | None = None) -> str:
        cmd = [*(["runuser", "-u", self.as_user, "--"] if self.as_user else []), *args]
        done = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, cwd=self.root, check=False
        )
        if done.returncode:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stderr.strip()}")
        return done.stdout

    def psql(self, sql: str, database: str = DATABASE) -> str:
        """SQL as the superuser over the Unix socket; tab-separated rows without a header."""
        return self._run(
            str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
            "-h", self.socket_dir, "-p", str(self.port), "-U", "postgres", "-d", database,
            stdin=sql,
        )  # fmt: skip

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate",
                  "-w", "stop")  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


def start(fsync: bool = False) -> Server:
    """A running server on a free loopback port with role `scorer` owning database `crm`."""
    bin_dir = binaries()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL's initdb is not installed")
    as_user = "postgres" if os.geteuid() == 0 else None
    # as root, under /tmp, which the postgres user can traverse whatever TMPDIR says
    root = Path(tempfile.mkdtemp(prefix="expansion-pg-", dir="/tmp" if as_user else None))
    if as_user:
        shutil.chown(root, user=as_user)
    server = Server(bin_dir, root, free_port(), as_user)
    pwfile = root / "pw"
    pwfile.write_text(f"{PASSWORD}-admin\n")
    if as_user:
        shutil.chown(pwfile, user=as_user)
    server._run(
        str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", "postgres", "-E", "UTF8",
        "--locale", "C", f"--pwfile={pwfile}", "--auth-host=scram-sha-256",
        "--auth-local=trust", "--no-sync",
    )  # fmt: skip
    options = (
        f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1"
        f" -c fsync={'on' if fsync else 'off'} -c max_connections=20"
    )
    server._run(str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "log"),
                "-w", "-t", "30", "-o", options, "start")  # fmt: skip
    server.psql(
        f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'; CREATE DATABASE {DATABASE} OWNER {USER};",
        database="postgres",
    )
    return server
