"""A stand-in for ``docker compose`` in the operator rehearsal (tests/deploy/test_rehearsal.py).

There is no Docker engine here or in CI, so the documented commands run against what compose WOULD
run: the same environment (docker-compose.yml parsed, ``${VAR}`` interpolated from ``.env`` the way
compose does, env files then ``environment:``), the same commands (``python -m …``, PostgreSQL's
tools) and the same healthchecks, with the services as processes and the wheels' PostgreSQL and
NATS in place of the containers. Only host names and ports change: each ``host:port`` of the
compose network maps to a loopback port. Used as ``docker`` on PATH:

    docker compose version --short | up -d [--build] [--wait] [service…] | stop [service…]
                   run --rm [--no-deps] service args… | exec -T postgres command… | rm --stop --force nats
    docker volume rm kizuna_nats-data

It reads the rehearsal's state (project folder, port map, PostgreSQL's tools) from the JSON file
named by ``KIZUNA_REHEARSAL_STATE``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
# In compose's start order: the gateway last, once every service it depends on is healthy.
APP_SERVICES = ("members", "referrals", "sessions", "identity", "notifications", "gateway")
# What the image's Dockerfile sets (ENV) before compose adds anything.
IMAGE_ENV = {"PYTHONUNBUFFERED": "1", "KIZUNA_HTTP_HOST": "0.0.0.0"}

_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
                       r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(text: str, variables: dict[str, str]) -> str:
    """Compose's interpolation: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?error}``, ``${VAR?error}``. A missing required variable stops compose: here, ValueError."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        value, op, arg = variables.get(name), match["op"], match["arg"] or ""
        unset_or_empty = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-") and unset_or_empty:
            return arg
        if op in (":?", "?") and unset_or_empty:
            raise ValueError(f"required variable {name} is missing a value: {arg}")
        return value or ""

    return _VARIABLE.sub(replace, text)


def interpolate_tree(node: Any, variables: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, list):
        return [interpolate_tree(item, variables) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_tree(value, variables) for key, value in node.items()}
    return node


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines as compose v2 reads them. Only the plain form the bootstrap writes is
    accepted (unquoted, no ``$``, no `` #``), where every reader agrees; anything else fails loudly
    rather than be read differently here than by compose."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"{path}:{number}: not KEY=VALUE")
        if value[:1] in ("'", '"') or "$" in value or " #" in value:
            raise ValueError(f"{path}:{number}: quoting, $ or an inline comment would be read differently by compose")
        values[key] = value
    return values


def load_compose(project: Path) -> dict[str, Any]:
    """docker-compose.yml with ``${…}`` filled from ``.env`` (the shell's variables are not used: the
    rehearsal's must not leak in, and the operator's guide puts everything in ``.env``)."""
    dotenv = project / ".env"
    variables = read_env_file(dotenv) if dotenv.exists() else {}
    compose: dict[str, Any] = interpolate_tree(yaml.safe_load((project / "docker-compose.yml").read_text()), variables)
    return compose


def remap(value: str, ports: dict[str, int]) -> str:
    """``host:port`` on the compose network → ``127.0.0.1:<its loopback port>``."""
    for address, port in ports.items():
        value = re.sub(rf"(?<=[/@]){re.escape(address)}(?![0-9])", f"127.0.0.1:{port}", value)
    return value


def service_environment(project: Path, name: str, ports: dict[str, int]) -> dict[str, str]:
    """What the container would see: the image's ENV, the env files in order, then ``environment:``."""
    service = load_compose(project)["services"][name]
    env_files = service.get("env_file", [])
    env = dict(IMAGE_ENV)
    for env_file in [env_files] if isinstance(env_files, str) else env_files:
        env.update(read_env_file(project / env_file))
    env.update({key: str(value) for key, value in (service.get("environment") or {}).items()})
    env = {key: remap(value, ports) for key, value in env.items()}
    own_port = env["KIZUNA_HTTP_PORT"]
    env["KIZUNA_HTTP_PORT"] = str(ports[f"{name}:{own_port}"])
    env["KIZUNA_HTTP_HOST"] = "127.0.0.1"  # 0.0.0.0 inside a container; loopback here
    env["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"  # `python` is the image's interpreter
    return env


def healthcheck(project: Path, name: str, env: dict[str, str]) -> list[str]:
    test = load_compose(project)["services"][name]["healthcheck"]["test"]
    if test[0] == "CMD":
        return [str(part) for part in test[1:]]
    assert test[0] == "CMD-SHELL", test
    return ["sh", "-c", str(test[1])]


def healthy(project: Path, name: str, env: dict[str, str]) -> bool:
    command = healthcheck(project, name, env)
    return subprocess.run(command, env=env, capture_output=True, timeout=10).returncode == 0


# ---- process bookkeeping (pid files, so every shim invocation sees what earlier ones started) ----

def _state() -> dict[str, Any]:
    state: dict[str, Any] = json.loads(Path(os.environ["KIZUNA_REHEARSAL_STATE"]).read_text())
    return state


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _pid(run_dir: Path, name: str) -> int | None:
    path = run_dir / f"{name}.pid"
    if path.exists() and _alive(pid := int(path.read_text())):
        return pid
    return None


def _stop(run_dir: Path, name: str) -> None:
    pid = _pid(run_dir, name)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def _nats_up(state: dict[str, Any]) -> None:
    """The nats container: started again if it was removed (on an empty volume if that was removed too)."""
    run_dir = Path(state["run_dir"])
    if _pid(run_dir, "nats"):
        return
    with open(run_dir / "nats.log", "ab") as log:
        process = subprocess.Popen(state["nats"]["argv"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    (run_dir / "nats.pid").write_text(str(process.pid))
    deadline = time.monotonic() + 15
    while subprocess.run(state["nats"]["healthcheck"], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise TimeoutError("nats did not become healthy")
        time.sleep(0.1)


def _up(state: dict[str, Any], names: list[str], wait: bool) -> int:
    project, run_dir, ports = Path(state["project"]), Path(state["run_dir"]), state["ports"]
    _nats_up(state)
    for name in [n for n in APP_SERVICES if n in (names or APP_SERVICES)]:
        env = service_environment(project, name, ports)
        env_path = run_dir / f"{name}.env.json"
        if _pid(run_dir, name) and env_path.exists() and json.loads(env_path.read_text()) == env:
            continue  # compose leaves an unchanged container alone, and recreates a changed one
        _stop(run_dir, name)
        env_path.write_text(json.dumps(env))
        with open(run_dir / f"{name}.log", "ab") as log:
            process = subprocess.Popen([sys.executable, "-m", f"services.{name}"], env=env, cwd=ROOT,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        (run_dir / f"{name}.pid").write_text(str(process.pid))
        # depends_on: service_healthy, so each waits for the one before (the gateway for all five).
        deadline = time.monotonic() + 60
        while wait and not healthy(project, name, env):
            if process.poll() is not None or time.monotonic() > deadline:
                print(f"{name} did not become healthy; see {run_dir / f'{name}.log'}", file=sys.stderr)
                return 1
            time.sleep(0.2)
    return 0


def main(argv: list[str]) -> int:
    if argv[:2] == ["volume", "rm"]:
        state = _state()
        assert argv[2:] == ["kizuna_nats-data"], "the rehearsal removes only the nats volume"
        assert not _pid(Path(state["run_dir"]), "nats"), "volume is in use"
        shutil.rmtree(state["nats"]["data"], ignore_errors=True)
        return 0
    if argv[:1] != ["compose"]:
        print(f"the rehearsal's docker knows only `docker compose`, not {argv}", file=sys.stderr)
        return 2
    command, *rest = argv[1:]
    if command == "version":
        print("2.29.7")
        return 0
    state = _state()
    if command == "up":
        flags = {a for a in rest if a.startswith("-")}
        assert flags <= {"-d", "--build", "--wait"}, flags
        # Without --wait compose returns before the services are healthy; the rehearsal waits either way.
        return _up(state, [a for a in rest if not a.startswith("-")], wait=True)
    if command == "stop":
        for name in [a for a in rest if not a.startswith("-")] or [*APP_SERVICES, "nats"]:
            _stop(Path(state["run_dir"]), name)
        return 0
    if command == "rm":
        names = [a for a in rest if not a.startswith("-")]
        assert names == ["nats"] and {"--stop", "--force"} <= set(rest), "the rehearsal removes only nats"
        _stop(Path(state["run_dir"]), "nats")
        return 0
    if command == "run":
        args = [a for a in rest if a not in ("--rm", "--no-deps")]
        name, *arguments = args
        env = service_environment(Path(state["project"]), name, state["ports"])
        return subprocess.run([sys.executable, "-m", *arguments], env=env, cwd=ROOT).returncode  # ENTRYPOINT python -m
    if command == "exec":
        args = [a for a in rest if a != "-T"]
        name, *arguments = args
        assert name == "postgres", f"the rehearsal execs only in postgres, not {name}"
        # Inside the container these tools reach the server over its local socket, as POSTGRES_USER.
        env = {"PATH": f"{state['pg_bin']}:/usr/bin:/bin", **state["postgres_env"]}
        return subprocess.run(arguments, env=env).returncode
    print(f"the rehearsal's docker compose does not know `{command}`", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
