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

Ctrl-C reaches only this process (the servers run in sessions of their own): it stops the services
first, then NATS and PostgreSQL, so no service loses its bus or database while shutting down.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from .auth import generate_private_key_pem, load_private_key, public_pem
from .devstack import NatsServer, PostgresServer, free_port

SERVICES = {"members": 8101, "referrals": 8102, "sessions": 8103, "gateway": 8000}
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
    wanted = {"postgres": 55432, "nats": 44222, **SERVICES}
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
            ports[name] = default if not _listening(default) and default not in ports.values() else free_port()
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ports, indent=2))
    return ports


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


def service_env(name: str, port: int, pg: PostgresServer, nats: NatsServer, secrets: dict[str, str],
                ports: dict[str, int]) -> dict[str, str]:
    urls = ",".join(f"{svc}=http://127.0.0.1:{ports[svc]}" for svc in SERVICES if svc != "gateway")
    return {
        **os.environ,
        "KIZUNA_SERVICE_NAME": name,
        "KIZUNA_DATABASE_URL": pg.create_database(f"kizuna_{name}"),
        "KIZUNA_NATS_URL": nats.url,
        "KIZUNA_HTTP_PORT": str(port),
        "KIZUNA_OPERATOR_TOKEN": secrets["operator_token"],
        "KIZUNA_JWT_PRIVATE_KEY": secrets["jwt_private_key"] if name == "gateway" else "",
        "KIZUNA_JWT_PUBLIC_KEYS": public_pem(load_private_key(secrets["jwt_private_key"])),
        "KIZUNA_FEDERATION_PRIVATE_KEY": secrets["federation_private_key"] if name == "gateway" else "",
        "KIZUNA_SERVICE_URLS": urls,
        # Everything here is on loopback, partners on this machine included (README, two deployments).
        "KIZUNA_FEDERATION_ALLOW_PRIVATE_ADDRESSES": os.environ.get("KIZUNA_FEDERATION_ALLOW_PRIVATE_ADDRESSES",
                                                                    "true"),
        "KIZUNA_PUBLIC_URL": os.environ.get("KIZUNA_PUBLIC_URL") or f"http://127.0.0.1:{ports['gateway']}",
    }


def wait_ready(url: str, proc: subprocess.Popen[bytes], name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited early; see {HOME / 'logs' / (name + '.log')}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
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
        print("kizuna: stopping NATS and PostgreSQL …", flush=True)  # only once nothing uses them
        nats.stop()
        pg.stop()
        print("kizuna: stopped; data kept in", HOME, flush=True)
        sys.exit(0)

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    try:
        for name in SERVICES:
            env = service_env(name, ports[name], pg, nats, secrets, ports)
            log = open(logs / f"{name}.log", "ab")
            processes[name] = subprocess.Popen([sys.executable, "-m", f"services.{name}"], env=env,
                                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        for name in SERVICES:
            wait_ready(f"http://127.0.0.1:{ports[name]}", processes[name], name)
            print(f"kizuna: {name:<9} ready on http://127.0.0.1:{ports[name]}", flush=True)
        gateway = f"http://127.0.0.1:{ports['gateway']}"
        demo = seed_demo(gateway, secrets["operator_token"])
        from .demo import dashboard_token

        demo["dashboard_token"] = dashboard_token(gateway, secrets["operator_token"], demo)
        print_banner(gateway, secrets["operator_token"], demo, pg, nats, time.monotonic() - started)
        while True:
            for name, proc in processes.items():
                if proc.poll() is not None:
                    print(f"kizuna: {name} exited with {proc.returncode}; see {logs / (name + '.log')}")
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
                 nats: NatsServer, seconds: float) -> None:
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
    lines += [f"│ Ready in {seconds:.1f}s. Ctrl-C stops everything; the next `make up` reuses the data.",
              "└────────────────────────────────────────────────────────────────────────"]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
