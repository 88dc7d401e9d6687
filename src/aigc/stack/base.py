"""What every service of the stack shares: its settings, its health, its way to start and stop.

A service is a `Service` subclass (postgres.py, seaweedfs.py, tracking_server.py,
prefect_server.py); stack.py starts them in order and asks each for its health:

    config = StackConfig(root, home, ports, secrets)
    record = service.start(config, environment)      # a ProcessRecord, tracked by stack.py
    service.health(config)                           # Health(ok=True, detail="…")
"""

from __future__ import annotations

import json
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from aigc.errors import UserError
from aigc.stack.processes import ProcessRecord, StopPlan

HOST = "127.0.0.1"  # every service listens on loopback only


class StackError(UserError):
    """The stack cannot start, or a service in it does not answer; the message says which."""


@dataclass(frozen=True)
class Secrets:
    """Generated once per stack, kept in `.aigc/stack/secrets.json` (mode 0600)."""

    s3_access_key: str
    s3_secret_key: str
    postgres_password: str


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


@dataclass(frozen=True)
class StackConfig:
    """Where the stack keeps its data and which ports and secrets its services use."""

    root: Path  # the project
    home: Path  # <project>/.aigc/stack
    ports: dict[str, int]
    secrets: Secrets

    def url(self, port_name: str) -> str:
        return f"http://{HOST}:{self.ports[port_name]}"

    def log(self, service_name: str) -> Path:
        return self.home / "logs" / f"{service_name}.log"


class Service:
    """One server of the stack. Subclasses say how to start it and how to check it."""

    name: str = ""
    ports: tuple[str, ...] = ()  # names of the ports it listens on (keys of StackConfig.ports)
    stop_plan: StopPlan = StopPlan()
    start_timeout: float = 120.0  # seconds from start to healthy, on a busy 2-core machine

    def url(self, config: StackConfig) -> str:
        return config.url(self.ports[0])

    def start(self, config: StackConfig, environment: dict[str, str]) -> ProcessRecord:
        raise NotImplementedError

    def health(self, config: StackConfig) -> Health:
        raise NotImplementedError

    def started(self, config: StackConfig, record: ProcessRecord) -> Health:
        """Health that the process of `record` itself answers (not one before it)."""
        return self.health(config)

    def prepare(self, config: StackConfig, environment: dict[str, str]) -> None:
        """What it needs once healthy (databases, buckets, a work pool); idempotent."""

    def stopped(self, config: StackConfig) -> None:
        """Tidy what a stopped process leaves behind."""


def executable(name: str) -> str:
    """A console script of this Python environment (mlflow, prefect, weed), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise StackError(
            f"`{name}` is not installed in {sys.prefix}: install aigc's dependencies "
            "(pip install -c constraints.txt -e .)"
        )
    return found


def http_json(url: str, body: dict | None = None, timeout: float = 3.0) -> object:
    """GET (or POST `body` as JSON to) `url` and decode the JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def http_health(url: str) -> Health:
    """Health of an HTTP endpoint that answers 200 when the server is up."""
    try:
        with urllib.request.urlopen(url, timeout=3.0) as response:
            text = response.read(200).decode(errors="replace").strip()
        return Health(True, f"{url.rsplit('/', 1)[-1]}: {text}")
    except (urllib.error.URLError, OSError) as error:
        return Health(False, f"{url}: {getattr(error, 'reason', error)}")


def log_tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return f"(no log at {path})"
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])
