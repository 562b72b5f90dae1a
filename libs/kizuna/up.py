"""`make up`: the whole ecosystem on this machine — real NATS JetStream and PostgreSQL from their
wheels, then every service — seeded with a demo, until Ctrl-C. Data lives under ``.kizuna/`` and
is reused by the next `make up`.
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


def _port(preferred: int) -> int:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


def load_secrets() -> dict[str, str]:
    path = HOME / "secrets.json"
    if path.exists():
        secrets: dict[str, str] = json.loads(path.read_text())
        return secrets
    secrets = {
        "operator_token": "kz-op-" + os.urandom(24).hex(),
        "jwt_private_key": generate_private_key_pem(),
        "federation_private_key": generate_private_key_pem(),
    }
    HOME.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(secrets, indent=2))
    path.chmod(0o600)
    return secrets


def service_env(name: str, port: int, pg: PostgresServer, nats: NatsServer, secrets: dict[str, str],
                ports: dict[str, int]) -> dict[str, str]:
    urls = ",".join(f"{svc}=http://127.0.0.1:{p}" for svc, p in ports.items() if svc != "gateway")
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
        "KIZUNA_PUBLIC_URL": f"http://127.0.0.1:{ports['gateway']}",
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
    secrets = load_secrets()
    logs = HOME / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    print("kizuna: starting PostgreSQL and NATS JetStream from their wheels …", flush=True)
    pg = PostgresServer(HOME / "postgres", port=_port(55432)).start()
    nats = NatsServer(HOME / "nats", port=_port(44222)).start()
    ports = {name: _port(port) for name, port in SERVICES.items()}
    processes: dict[str, subprocess.Popen[bytes]] = {}

    def shutdown(*_: Any) -> None:
        print("\nkizuna: stopping …", flush=True)
        for proc in processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in processes.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        nats.stop()
        pg.stop()
        print("kizuna: stopped; data kept in", HOME, flush=True)
        sys.exit(0)

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    try:
        for name, port in ports.items():
            env = service_env(name, port, pg, nats, secrets, ports)
            log = open(logs / f"{name}.log", "ab")
            processes[name] = subprocess.Popen([sys.executable, "-m", f"services.{name}"], env=env,
                                               stdout=log, stderr=subprocess.STDOUT)
        for name, port in ports.items():
            wait_ready(f"http://127.0.0.1:{port}", processes[name], name)
            print(f"kizuna: {name:<9} ready on http://127.0.0.1:{port}", flush=True)
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
