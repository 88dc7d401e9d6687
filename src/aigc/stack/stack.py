"""`aigc stack up|status|down`: PostgreSQL, S3, MLflow and Prefect (server and worker) on
127.0.0.1, started from this Python environment, with their data under `.aigc/stack/`.

    statuses = up(root, say=print)   # starts what is not running, waits until each is healthy
    status(root)                     # each service: URL, pid, health, memory; None if never up
    down(root, say=print)            # stops exactly what `up` started: {service: outcome}

Every process is recorded in `.aigc/stack/state.json` by pid and start time when it starts,
so `down` signals only those (and what they started), never a process found by its name. The
ports are chosen on the first `up` and kept while free. `up` writes the profile
(`profile.env`, mode 0600: URLs and keys) and the params overlay (`params.yaml`: non-secret
settings) that `aigc --profile stack` reads; the keys themselves are in `secrets.json` (0600).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import yaml

from aigc.config import PARAMS_OVERLAY_VARIABLE
from aigc.settings import apply_offline_defaults
from aigc.stack.base import HOST, Health, Secrets, Service, StackConfig, StackError, log_tail
from aigc.stack.postgres import Postgres
from aigc.stack.prefect_server import PrefectServer, PrefectWorker, api_url
from aigc.stack.processes import ProcessRecord, stop, wait_gone
from aigc.stack.profile import STACK_PROFILE, write_profile
from aigc.stack.ray_cluster import RayHead, RayNode, token_path
from aigc.stack.ray_cluster import address as ray_address
from aigc.stack.seaweedfs import REGION, SeaweedFS
from aigc.stack.tracking_server import TrackingServer

POSTGRES, S3, MLFLOW, PREFECT, WORKER, RAY_HEAD, RAY_NODE = (
    Postgres(),
    SeaweedFS(),
    TrackingServer(),
    PrefectServer(),
    PrefectWorker(),
    RayHead(),
    RayNode(),
)
SERVICES: tuple[Service, ...] = (POSTGRES, S3, MLFLOW, PREFECT, WORKER, RAY_HEAD, RAY_NODE)
# `down` stops clients before the servers they use; the services of a wave stop together.
STOP_WAVES = (("worker", "ray-node"), ("mlflow", "prefect", "ray-head"), ("s3", "postgres"))
DVC_REMOTE_NAME = "stack"  # the name .dvc/config gives the stack's bucket
DVC_REMOTE_URL = "s3://dvc/aigc"
RAY_STORAGE_PATH = "s3://ray/aigc"
PORT_RANGE = (20000, 32000)  # below Linux's ephemeral ports, where outgoing connections land
LOCK_TIMEOUT = 600.0  # seconds to wait for another `aigc stack up|down` on the same project
FINAL_WAIT = 10.0  # seconds `down` gives the stack's last processes to exit before SIGKILL

Say = Callable[[str], None]


@dataclass(frozen=True)
class StackPaths:
    root: Path

    @property
    def home(self) -> Path:
        return self.root / STACK_PROFILE.parent

    @property
    def state(self) -> Path:
        return self.home / "state.json"

    @property
    def secrets(self) -> Path:
        return self.home / "secrets.json"

    @property
    def profile(self) -> Path:
        return self.root / STACK_PROFILE

    @property
    def overlay(self) -> Path:
        return self.home / "params.yaml"


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    url: str
    pid: int | None  # None: not running
    health: Health | None  # None: not running, so not asked
    rss: int  # resident bytes, with its child processes
    pss: int  # the same with shared pages split between the processes that share them

    @property
    def healthy(self) -> bool:
        return self.health is not None and self.health.ok


def up(root: Path, say: Say = lambda text: None) -> list[ServiceStatus]:
    """Start every service that is not running, wait until each is healthy, write the profile."""
    paths = StackPaths(Path(root).resolve())
    paths.home.mkdir(parents=True, exist_ok=True)
    with _locked(paths, say):
        state = _load_state(paths)
        recorded = _records(state)
        running = {name: record for name, record in recorded.items() if record.process()}
        for service in SERVICES:  # a service that died may have left children on its port
            if service.name in recorded and service.name not in running:
                outcome = stop(recorded[service.name], service.stop_plan)
                if outcome != "was not running":
                    say(f"{service.name}: {outcome}")
        config = StackConfig(
            paths.root,
            paths.home,
            _choose_ports(state.get("ports", {}), set(running), say),
            _secrets(paths),
        )
        state = {"ports": config.ports, "processes": {n: asdict(r) for n, r in running.items()}}
        _save_state(paths, state)
        _write_profile(paths, config)
        environment = _environment(paths)

        def launch(service: Service) -> ProcessRecord | None:
            if service.name in running:
                say(f"{service.name}: already running (pid {running[service.name].pid})")
                return None
            say(f"{service.name}: starting")
            record = service.start(config, environment)
            state["processes"][service.name] = asdict(record)
            _save_state(paths, state)  # recorded at once: `down` stops it even if `up` fails
            return record

        def ready(service: Service, record: ProcessRecord | None) -> None:
            if record is not None:
                seconds = _wait_healthy(service, config, record)
                say(f"{service.name}: healthy after {seconds:.1f} s at {service.url(config)}")
            else:  # running before this `up`, perhaps still starting (an interrupted `up`)
                _wait_healthy(service, config, running[service.name])
            service.prepare(config, environment)

        # Slow starters first, so that their starts overlap: S3 (≈3-10 s), MLflow (≈20 s on
        # a fresh database). PostgreSQL's pg_ctl returns once it accepts connections.
        s3 = launch(S3)
        ready(POSTGRES, launch(POSTGRES))
        mlflow = launch(MLFLOW)
        prefect = launch(PREFECT)
        ray_head = launch(RAY_HEAD)
        ready(S3, s3)
        ready(RAY_HEAD, ray_head)
        ray_node = launch(RAY_NODE)
        ready(PREFECT, prefect)
        ready(WORKER, launch(WORKER))
        ready(RAY_NODE, ray_node)
        ready(MLFLOW, mlflow)
    return status(paths.root) or []


def status(root: Path) -> list[ServiceStatus] | None:
    """Each service's URL, pid, health and memory; None when the stack was never brought up."""
    paths = StackPaths(Path(root).resolve())
    state = _load_state(paths)
    if not state.get("ports") or not paths.secrets.exists():
        return None
    config = StackConfig(paths.root, paths.home, state["ports"], _secrets(paths))
    records = _records(state)
    statuses = []
    for service in SERVICES:
        record = records.get(service.name)
        running = record is not None and record.process() is not None
        statuses.append(
            ServiceStatus(
                service.name,
                service.url(config),
                record.pid if running else None,
                service.health(config) if running else None,
                *(record.memory() if running else (0, 0)),
            )
        )
    return statuses


def require_up(root: Path) -> None:
    """Raise StackError unless every service of the project's stack is running."""
    statuses = _records(_load_state(StackPaths(Path(root).resolve())))
    stopped = [
        service.name
        for service in SERVICES
        if not (service.name in statuses and statuses[service.name].process())
    ]
    if stopped:
        raise StackError(
            f"the stack is not up here ({', '.join(stopped)} not running): `aigc stack up`"
        )


def down(root: Path, say: Say = lambda text: None) -> dict[str, str] | None:
    """Stop what `up` recorded (clients first), nothing else; None when nothing was recorded.
    Returns once every process of theirs has exited (a StackError names any that cannot).
    The data, ports and keys stay for the next `up`."""
    paths = StackPaths(Path(root).resolve())
    if not paths.state.exists():
        return None
    with _locked(paths, say):
        state = _load_state(paths)
        records = _records(state)
        if not records:
            return None
        services = {service.name: service for service in SERVICES}
        config = StackConfig(paths.root, paths.home, state["ports"], _secrets(paths))
        outcomes: dict[str, str] = {}
        seen = [member for record in records.values() for member in record.family()]

        def stop_one(name: str) -> None:
            service = services.get(name, Service())  # a name from another aigc version
            outcomes[name] = stop(records[name], service.stop_plan)
            service.stopped(config)
            say(f"{name} (pid {records[name].pid}): {outcomes[name]}")

        waves = [*STOP_WAVES, tuple(set(records) - {n for wave in STOP_WAVES for n in wave})]
        for wave in waves:
            threads = [
                threading.Thread(target=stop_one, args=(name,)) for name in wave if name in records
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        # Returns only once every process the stack started has exited: a script may move
        # or delete the folder next. A service's stragglers (an orphaned worker, a process
        # that started while its service stopped) get FINAL_WAIT seconds, then SIGKILL.
        left = wait_gone(list(records.values()), seen, FINAL_WAIT)
        if left:
            named = ", ".join(f"{_name_of(process)} (pid {process.pid})" for process in left)
            raise StackError(
                f"{len(left)} process(es) of the stack still run after SIGKILL: {named}; "
                "stop them yourself (kill -9 PID) before you move or delete the folder"
            )
        say(f"every process of the stack has exited ({len(seen)} in all)")
        state["processes"] = {}
        _save_state(paths, state)
    return outcomes


def _write_profile(paths: StackPaths, config: StackConfig) -> None:
    s3 = config.url("s3")
    values = {
        PARAMS_OVERLAY_VARIABLE: str(paths.overlay),
        "MLFLOW_TRACKING_URI": config.url("mlflow"),
        "PREFECT_API_URL": api_url(config),
        "AWS_ACCESS_KEY_ID": config.secrets.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": config.secrets.s3_secret_key,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL_S3": s3,  # boto3, s3fs (DVC) and pyarrow (Ray) read it
        "MLFLOW_S3_ENDPOINT_URL": s3,
        "AIGC_DVC_REMOTE_URL": DVC_REMOTE_URL,
        "AIGC_RAY_STORAGE_PATH": RAY_STORAGE_PATH,
        # The Ray cluster admits only holders of its token (aigc, the nodes, the worker's runs)
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token_path(config)),
    }
    header = (
        "Written by `aigc stack up`: where this project's stack listens, and its S3 key.\n"
        "Use: aigc --profile stack COMMAND, or in a shell: set -a; . .aigc/stack/profile.env\n"
        "A team with its own servers writes the same keys in a file of its own."
    )
    write_profile(paths.profile, values, header)
    overlay = {
        "tracking": {"tracking_uri": config.url("mlflow"), "artifact_root": None},
        "version": {"remote_name": DVC_REMOTE_NAME, "remote_url": DVC_REMOTE_URL},
        "train": {"ray": {"storage_path": RAY_STORAGE_PATH, "address": ray_address(config)}},
    }
    text = "# Written by `aigc stack up`: the stack's settings, layered over params.yaml.\n"
    paths.overlay.write_text(text + yaml.safe_dump(overlay, sort_keys=False), encoding="utf-8")


def _environment(paths: StackPaths) -> dict[str, str]:
    """The environment of the stack's processes: ours, offline, and the profile's."""
    from aigc.stack.profile import read_profile

    environment = dict(os.environ)
    apply_offline_defaults(environment)
    environment.update(read_profile(paths.profile))
    return environment


def _wait_healthy(service: Service, config: StackConfig, record: ProcessRecord) -> float:
    started = time.monotonic()
    while True:
        health = service.started(config, record)
        if health.ok:
            return time.monotonic() - started
        log = config.log(service.name)
        if record.process() is None:
            raise StackError(
                f"{service.name} (pid {record.pid}) exited while starting; the end of {log}:\n"
                f"{log_tail(log)}\nFix the cause, then run `aigc stack up` again."
            )
        if time.monotonic() - started > service.start_timeout:
            raise StackError(
                f"{service.name} is not healthy {service.start_timeout:.0f} s after its start "
                f"({health.detail}); see {log}. `aigc stack down` stops what started."
            )
        time.sleep(0.5)


def _choose_ports(recorded: dict[str, int], running: set[str], say: Say) -> dict[str, int]:
    """The recorded ports, kept while free (or in use by the running service); new ones else.

    A port moves only while nothing runs: a running service would keep the old address."""
    ports: dict[str, int] = {}
    for service in SERVICES:
        for name in service.ports:
            port = recorded.get(name)
            if service.name in running or (port and port not in ports.values() and _free(port)):
                ports[name] = port
                continue
            if port and running:
                raise StackError(
                    f"port {port} ({name}) is taken by {_holder(port)}; stop that, or move the "
                    "whole stack to free ports: `aigc stack down`, then `aigc stack up`"
                )
            ports[name] = _new_port(set(ports.values()) | set(recorded.values()))
            if port:
                say(f"port {port} ({name}) is taken by {_holder(port)}: using {ports[name]}")
    return ports


def _name_of(process: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return process.name()
    return "a process"


def _holder(port: int) -> str:
    """Which process listens on `port`, in words."""
    with contextlib.suppress(psutil.Error):
        for connection in psutil.net_connections("tcp"):
            if connection.laddr and connection.laddr.port == port and connection.pid:
                process = psutil.Process(connection.pid)
                return f"{process.name()} (pid {connection.pid})"
    return "another program"


def _new_port(taken: set[int]) -> int:
    for _ in range(200):
        port = random.randrange(*PORT_RANGE)
        if port not in taken and _free(port):
            return port
    raise StackError(f"no free port on {HOST} between {PORT_RANGE[0]} and {PORT_RANGE[1]}")


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _secrets(paths: StackPaths) -> Secrets:
    """The stack's keys: generated on the first `up`, kept in secrets.json (mode 0600)."""
    if paths.secrets.exists():
        return Secrets(**json.loads(paths.secrets.read_text()))
    if (paths.home / "postgres" / "data").exists():  # new keys would not open the old data
        raise StackError(
            f"{paths.secrets} is missing but the stack's data is in {paths.home}: restore the "
            f"file, or start afresh without the data: `aigc stack down`, then delete {paths.home}"
        )
    generated = Secrets(
        s3_access_key="aigc" + secrets.token_hex(8),
        s3_secret_key=secrets.token_urlsafe(30),
        postgres_password=secrets.token_urlsafe(24),
    )
    temporary = paths.secrets.with_suffix(".tmp")
    temporary.touch(mode=0o600)
    temporary.chmod(0o600)
    temporary.write_text(json.dumps(asdict(generated), indent=2))
    temporary.replace(paths.secrets)
    return generated


def _load_state(paths: StackPaths) -> dict:
    if not paths.state.exists():
        return {}
    return json.loads(paths.state.read_text())


def _save_state(paths: StackPaths, state: dict) -> None:
    temporary = paths.state.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2))
    temporary.replace(paths.state)


def _records(state: dict) -> dict[str, ProcessRecord]:
    return {name: ProcessRecord(**entry) for name, entry in state.get("processes", {}).items()}


@contextmanager
def _locked(paths: StackPaths, say: Say) -> Iterator[None]:
    """One `up` or `down` at a time per project (an flock the kernel drops if we die)."""
    with (paths.home / "lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("another `aigc stack` command is bringing this stack up or down: waiting")
            deadline = time.monotonic() + LOCK_TIMEOUT
            while True:
                time.sleep(0.5)
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StackError(
                            f"{paths.home}/lock is held by another `aigc stack` command"
                        ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
