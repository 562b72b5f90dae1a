"""`make up`: the whole ecosystem on this machine — real NATS JetStream and PostgreSQL from their
wheels, then every service — seeded with a demo, until Ctrl-C. Data lives under ``KIZUNA_HOME``
(default ``.kizuna/``) and is reused by the next `make up`.

A deployment keeps its address: the ports chosen at its first start are written to
``KIZUNA_HOME/ports.json`` and used again at every start (a partner deployment keeps delivering to
the same origin). A port still in TIME_WAIT after a stop is reused (address reuse); a port another
process really listens on stops the start with a message, never a silent move. Settings the docs
name are honoured: ``KIZUNA_HTTP_PORT`` (the gateway's port), ``KIZUNA_PUBLIC_URL``,
``KIZUNA_OPERATOR_TOKEN``, ``KIZUNA_JWT_PRIVATE_KEY`` and ``KIZUNA_FEDERATION_PRIVATE_KEY`` (else the
ones generated into ``KIZUNA_HOME/secrets.json``); other ``KIZUNA_*`` settings pass to every service.

People sign in with emailed links, so a fresh machine needs somewhere for email to arrive: unless
``KIZUNA_SMTP_HOST`` names a real server, `make up` starts a local SMTP server (aiosmtpd) keeping
every message in ``KIZUNA_HOME/mail`` (a Maildir), points the identity service at it, and serves a
read-only page of the newest messages with their links on 127.0.0.1 (its port is kept like the
others). Anyone who can read that page can sign in as anyone, so it never listens beyond loopback
and answers only requests addressed to loopback (a rebound DNS name cannot read it).

Ctrl-C reaches only this process (the servers run in sessions of their own): it stops the services
first, then NATS and PostgreSQL, so no service loses its bus or database while shutting down.
"""

from __future__ import annotations

import email
import email.policy
import html
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from secrets import token_hex
from typing import Any

import httpx

from .auth import generate_private_key_pem, load_private_key, public_pem
from .devstack import MailServer, NatsServer, PostgresServer, free_port

# Started in this order (the gateway last: it forwards to the others) and stopped together.
SERVICES = {"members": 8101, "referrals": 8102, "sessions": 8103, "identity": 8104, "notifications": 8105,
            "gateway": 8000}
# What the gateway forwards /v1/communities/… to (KIZUNA_SERVICE_URLS); it finds identity at KIZUNA_IDENTITY_URL.
BEHIND_GATEWAY = ("members", "referrals", "sessions", "notifications")
# The services that write to people (sign-in links; notifications): only they get the SMTP settings.
MAIL_SENDERS = ("identity", "notifications")
# The local SMTP server and the page showing what it received (MailHog's customary ports).
MAIL_PORTS = {"smtp": 1025, "inbox": 8025}
HOME = Path(os.environ.get("KIZUNA_HOME", ".kizuna")).resolve()


class PortTaken(RuntimeError):
    pass


def _listening(port: int) -> bool:
    """True when a process listens on the port; a socket left in TIME_WAIT by a stop does not count."""
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def choose_ports(home: Path, environ: dict[str, str]) -> dict[str, int]:
    """The deployment's ports: those it had before, else the defaults (or free ones) on its first start."""
    path = home / "ports.json"
    wanted = {"postgres": 55432, "nats": 44222, **SERVICES, **MAIL_PORTS}
    kept: dict[str, int] = json.loads(path.read_text()) if path.exists() else {}
    if environ.get("KIZUNA_HTTP_PORT"):
        kept["gateway"] = int(environ["KIZUNA_HTTP_PORT"])
    ports: dict[str, int] = {}
    for name, default in wanted.items():
        if name in kept:
            if _listening(kept[name]):
                raise PortTaken(f"port {kept[name]} ({name} of the deployment in {home}) is in use by another "
                                f"process; stop it, or start this deployment elsewhere (see README, 'Two "
                                f"deployments on one machine')")
            ports[name] = kept[name]
        else:
            ports[name] = default if not _listening(default) and default not in ports.values() else \
                _unchosen_port({*ports.values(), *kept.values(), *wanted.values()})
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ports, indent=2))
    return ports


def _unchosen_port(chosen: set[int]) -> int:
    """A free port none of the deployment's others has (nothing listens on those yet, so the OS may hand
    the same free port out twice)."""
    while (port := free_port()) in chosen:
        pass
    return port


def load_secrets() -> dict[str, str]:
    """The deployment's secrets: from the environment where set, else generated once into secrets.json."""
    path = HOME / "secrets.json"
    if path.exists():
        secrets: dict[str, str] = json.loads(path.read_text())
    else:
        secrets = {
            "operator_token": "kz-op-" + os.urandom(24).hex(),
            "jwt_private_key": generate_private_key_pem(),
            "federation_private_key": generate_private_key_pem(),
        }
        HOME.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(secrets, indent=2))
        path.chmod(0o600)
    for name in secrets:
        if os.environ.get(f"KIZUNA_{name.upper()}"):
            secrets[name] = os.environ[f"KIZUNA_{name.upper()}"].replace("\\n", "\n")
    return secrets


def public_url(ports: dict[str, int]) -> str:
    return os.environ.get("KIZUNA_PUBLIC_URL") or f"http://127.0.0.1:{ports['gateway']}"


def local_mail_env(smtp_port: int) -> dict[str, str]:
    """Identity's SMTP settings for the local inbox: plain SMTP on loopback (no TLS to offer there)."""
    return {"KIZUNA_SMTP_HOST": "127.0.0.1", "KIZUNA_SMTP_PORT": str(smtp_port), "KIZUNA_SMTP_SECURITY": "none",
            "KIZUNA_SMTP_USERNAME": "", "KIZUNA_SMTP_PASSWORD": "",
            "KIZUNA_SMTP_SENDER": os.environ.get("KIZUNA_SMTP_SENDER", "Kizuna <no-reply@kizuna.localhost>")}


def service_env(name: str, port: int, pg: PostgresServer, nats: NatsServer, secrets: dict[str, str],
                ports: dict[str, int], mail: dict[str, str] | None = None) -> dict[str, str]:
    urls = ",".join(f"{svc}=http://127.0.0.1:{ports[svc]}" for svc in BEHIND_GATEWAY)
    return {
        **os.environ,
        "KIZUNA_SERVICE_NAME": name,
        "KIZUNA_INSTANCE": token_hex(8),  # /readyz says it back: the process on the port is this one
        "KIZUNA_DATABASE_URL": pg.create_database(f"kizuna_{name}"),
        "KIZUNA_KEYS_DATABASE_URL": pg.create_database("kizuna_keys"),  # one key vault for every service
        "KIZUNA_NATS_URL": nats.url,
        "KIZUNA_HTTP_PORT": str(port),
        "KIZUNA_OPERATOR_TOKEN": secrets["operator_token"],
        "KIZUNA_JWT_PRIVATE_KEY": secrets["jwt_private_key"] if name == "gateway" else "",
        "KIZUNA_JWT_PUBLIC_KEYS": public_pem(load_private_key(secrets["jwt_private_key"])),
        "KIZUNA_FEDERATION_PRIVATE_KEY": secrets["federation_private_key"] if name == "gateway" else "",
        "KIZUNA_SERVICE_URLS": urls,
        "KIZUNA_IDENTITY_URL": f"http://127.0.0.1:{ports['identity']}",
        # Everything here is on loopback, partners on this machine included (README, two deployments).
        "KIZUNA_FEDERATION_ALLOW_PRIVATE_ADDRESSES": os.environ.get("KIZUNA_FEDERATION_ALLOW_PRIVATE_ADDRESSES",
                                                                    "true"),
        "KIZUNA_PUBLIC_URL": public_url(ports),
        **(mail if name in MAIL_SENDERS and mail else {}),
        # Webhook receivers on this machine (a dashboard on loopback) are what a developer has.
        **({"KIZUNA_WEBHOOK_ALLOW_PRIVATE_ADDRESSES": os.environ.get("KIZUNA_WEBHOOK_ALLOW_PRIVATE_ADDRESSES", "true")}
           if name == "notifications" else {}),
    }


def wait_ready(url: str, proc: subprocess.Popen[bytes], name: str, instance: str, timeout: float = 60) -> None:
    """Until the process started as ``instance`` answers ready on ``url``. Another process answering there (a
    second deployment started at the same moment took the port first) does not count: this one then fails to
    listen, exits, and says so."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited early (is its port taken?); see {HOME / 'logs' / (name + '.log')}")
        try:
            answer = httpx.get(f"{url}/readyz", timeout=1)
            if answer.status_code == 200 and answer.headers.get("kizuna-instance") == instance:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{name} not ready after {timeout}s; see {HOME / 'logs' / (name + '.log')}")


def main() -> None:
    started = time.monotonic()
    try:
        ports = choose_ports(HOME, dict(os.environ))
    except PortTaken as error:
        print(f"kizuna: {error}", file=sys.stderr)
        sys.exit(1)
    secrets = load_secrets()
    logs = HOME / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    print("kizuna: starting PostgreSQL and NATS JetStream from their wheels …", flush=True)
    pg = PostgresServer(HOME / "postgres", port=ports["postgres"], own_session=True).start()
    nats = NatsServer(HOME / "nats", port=ports["nats"], own_session=True).start()
    processes: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False
    # The operator's own SMTP server wins; otherwise sign-in email goes to the local inbox.
    mail_server: MailServer | None = None
    inbox_page: ThreadingHTTPServer | None = None
    mail_env: dict[str, str] = {}

    def shutdown(*_: Any) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        print("\nkizuna: stopping the services …", flush=True)
        for proc in processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in processes.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if inbox_page is not None:
            inbox_page.shutdown()
        if mail_server is not None:
            mail_server.stop()
        print("kizuna: stopping NATS and PostgreSQL …", flush=True)  # only once nothing uses them
        nats.stop()
        pg.stop()
        print("kizuna: stopped; data kept in", HOME, flush=True)
        sys.exit(0)

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    try:
        if not os.environ.get("KIZUNA_SMTP_HOST"):
            mail_server = MailServer(HOME / "mail", logs / "smtp.log", port=ports["smtp"], own_session=True).start()
            inbox_page = serve_inbox(HOME / "mail", ports["inbox"])
            mail_env = local_mail_env(ports["smtp"])
        instances: dict[str, str] = {}
        for name in SERVICES:
            env = service_env(name, ports[name], pg, nats, secrets, ports, mail_env)
            instances[name] = env["KIZUNA_INSTANCE"]
            log = open(logs / f"{name}.log", "ab")
            processes[name] = subprocess.Popen([sys.executable, "-m", f"services.{name}"], env=env,
                                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        for name in SERVICES:
            wait_ready(f"http://127.0.0.1:{ports[name]}", processes[name], name, instances[name])
            print(f"kizuna: {name:<9} ready on http://127.0.0.1:{ports[name]}", flush=True)
        gateway = f"http://127.0.0.1:{ports['gateway']}"
        demo = seed_demo(gateway, secrets["operator_token"])
        from .demo import dashboard_token, owner_sign_in_path

        demo["dashboard_token"] = dashboard_token(gateway, secrets["operator_token"], demo)
        demo["owner_sign_in"] = owner_sign_in_path(gateway, secrets["operator_token"], demo)
        inbox = f"http://127.0.0.1:{ports['inbox']}/" if inbox_page is not None else None
        print_banner(gateway, secrets["operator_token"], demo, pg, nats, time.monotonic() - started,
                     public=public_url(ports), inbox=inbox)
        while True:
            for name, proc in processes.items():
                if proc.poll() is not None:
                    print(f"kizuna: {name} exited with {proc.returncode}; see {logs / (name + '.log')}")
                    shutdown()
            if mail_server is not None and mail_server.process and mail_server.process.poll() is not None:
                print(f"kizuna: the local SMTP server exited; see {logs / 'smtp.log'}")
                shutdown()
            time.sleep(1)
    except Exception as error:
        print(f"kizuna: {error}", file=sys.stderr)
        shutdown()


def seed_demo(gateway: str, operator_token: str) -> dict[str, Any]:
    marker = HOME / "demo.json"
    if marker.exists():
        saved: dict[str, Any] = json.loads(marker.read_text())
        return saved
    from .demo import seed

    print("kizuna: seeding the demo (two linked communities) …", flush=True)
    demo = seed(gateway, operator_token)
    marker.write_text(json.dumps(demo, indent=2))
    marker.chmod(0o600)
    return demo


def print_banner(gateway: str, operator_token: str, demo: dict[str, Any], pg: PostgresServer,
                 nats: NatsServer, seconds: float, *, public: str, inbox: str | None) -> None:
    owner_token = demo.get("dashboard_token", "")
    lines = [
        "",
        "┌─ Kizuna is up ─────────────────────────────────────────────────────────",
        f"│ Gateway (the public API)  {gateway}/v1   (OpenAPI: {gateway}/docs)",
        f"│ Dashboard                 {gateway}/dashboard#token={owner_token}",
        f"│ Operator token            {operator_token}",
        f"│ NATS JetStream            {nats.url}",
        f"│ PostgreSQL                {pg.url()}",
        f"│ Data and logs             {HOME}",
    ]
    for label, value in demo.get("summary", {}).items():
        lines.append(f"│ {label:<25} {value}")
    # Where a person comes in: the sign-in page, each demo community's join link, and where the email goes.
    lines.append(f"│ {'Sign-in page':<25} {public}/sign-in")
    if demo.get("owner_sign_in"):  # until someone has become the first community's owner
        lines.append(f"│ {'Be its owner (Yui)':<25} {public}{demo['owner_sign_in']}")
    for community in demo.get("communities", []):
        lines.append(f"│ {'Join ' + community['name']:<25} {public}/join/{community['community_id']}")
    where = f"{inbox}   (local inbox: every email lands here)" if inbox else \
        f"sent through {os.environ.get('KIZUNA_SMTP_HOST')} (KIZUNA_SMTP_HOST)"
    lines.append(f"│ {'Sign-in email':<25} {where}")
    lines += [f"│ Ready in {seconds:.1f}s. Ctrl-C stops everything; the next `make up` reuses the data.",
              "└────────────────────────────────────────────────────────────────────────"]
    print("\n".join(lines), flush=True)


# ---- the local inbox, read in a browser ----

INBOX_SHOWN = 25
_LINK = re.compile(r"https?://[^\s<>\"']+")


def newest_messages(maildir: Path, limit: int = INBOX_SHOWN) -> list[EmailMessage]:
    """The Maildir's newest messages first (by when they were delivered)."""
    files = [f for folder in ("new", "cur") if (maildir / folder).is_dir() for f in (maildir / folder).iterdir()]
    files.sort(key=lambda f: f.stat().st_mtime_ns, reverse=True)
    messages = []
    for path in files[:limit]:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if isinstance(message, EmailMessage):  # always, with the default policy; narrows the type
            messages.append(message)
    return messages


def _text_of(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain", "html"))
    return str(body.get_content()) if body is not None else ""


def inbox_html(maildir: Path) -> str:
    """The inbox as a page: each message's header lines, its links (to click) and its text."""
    items = []
    for message in newest_messages(maildir):
        text = _text_of(message)
        links = "".join(f'<li><a href="{html.escape(link)}">{html.escape(link)}</a></li>'
                        for link in _LINK.findall(text))
        items.append(
            f"<article><h2>{html.escape(str(message.get('Subject', '')))}</h2>"
            f"<p>To <b>{html.escape(str(message.get('To', '')))}</b> · {html.escape(str(message.get('Date', '')))}</p>"
            f"<ul>{links}</ul><pre>{html.escape(text)}</pre></article>")
    body = "".join(items) or "<p>No email yet. Ask for a sign-in link; it appears here within a second.</p>"
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><meta http-equiv=refresh content=5>"
            "<title>Kizuna · local inbox</title><style>body{font:15px system-ui;margin:2em auto;max-width:60em}"
            "article{border-top:1px solid #ccc}pre{white-space:pre-wrap}</style></head><body>"
            f"<h1>Local inbox of make up</h1><p>Every email Kizuna sends from this machine, newest first "
            f"(the last {INBOX_SHOWN}); the page refreshes itself.</p>{body}</body></html>")


def serve_inbox(maildir: Path, port: int) -> ThreadingHTTPServer:
    """Serves ``inbox_html`` on 127.0.0.1:``port`` from a thread of this process, read-only."""
    allowed_hosts = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}

    class InboxPage(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Host", "") not in allowed_hosts:
                # A DNS name rebound to 127.0.0.1 would let any web page read the sign-in links.
                self._answer(421, "text/plain", b"this inbox answers only at 127.0.0.1\n")
            elif self.path.split("?")[0] != "/":
                self._answer(404, "text/plain", b"not found\n")
            else:
                self._answer(200, "text/html; charset=utf-8", inbox_html(maildir).encode())

        def _answer(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            # Only the page's own inline style; no scripts; a clicked link sends no Referer with its token.
            self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
            self.send_header("Referrer-Policy", "no-referrer")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the terminal shows the banner, not every refresh of this page

    server = ThreadingHTTPServer(("127.0.0.1", port), InboxPage)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="kizuna-inbox", daemon=True).start()
    return server


if __name__ == "__main__":
    main()
