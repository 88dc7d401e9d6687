"""The stack's Prefect server (on PostgreSQL), its process work pool `aigc`, and one worker.

Started through Prefect's own CLI in subprocesses (`prefect server start`, `prefect work-pool
create`, `prefect worker start`): aigc's library never imports Prefect. `aigc schedule` starts
its own server with the same command (`server_command`, aigc/schedule.py). The worker runs with
the stack's profile in its environment, so the flow runs it starts use the stack too, and with
AIGC_PROJECT_DIR set to the project (prefect.yaml's pull step changes into it).
"""

from __future__ import annotations

import signal
import subprocess
import urllib.error
from datetime import datetime

from aigc.stack.base import (
    HOST,
    Health,
    Service,
    StackConfig,
    StackError,
    executable,
    http_health,
    http_json,
)
from aigc.stack.postgres import connection_url
from aigc.stack.processes import ProcessRecord, StopPlan, spawn

WORK_POOL = "aigc"
WORKER_NAME = "aigc-stack"


def api_url(config: StackConfig) -> str:
    return f"{config.url('prefect')}/api"


def server_command(port: int) -> list[str]:
    """`prefect server start` on loopback: the stack's server and `aigc schedule`'s own."""
    return [executable("prefect"), "server", "start", "--host", HOST, "--port", str(port)]


def _prefect_environment(config: StackConfig, environment: dict[str, str]) -> dict[str, str]:
    """The stack's Prefect processes keep their files in .aigc/stack/prefect, not ~/.prefect."""
    return {
        **environment,
        "PREFECT_HOME": str(config.home / "prefect"),
        "PREFECT_API_URL": api_url(config),
    }


class PrefectServer(Service):
    name = "prefect"
    ports = ("prefect",)
    stop_plan = StopPlan(((signal.SIGTERM, 15.0),))

    def url(self, config: StackConfig) -> str:
        return api_url(config)

    def start(self, config: StackConfig, environment: dict[str, str]) -> ProcessRecord:
        environment = {
            **_prefect_environment(config, environment),
            "PREFECT_API_DATABASE_CONNECTION_URL": connection_url(
                config, "prefect", "postgresql+asyncpg"
            ),
            "PGPASSWORD": config.secrets.postgres_password,  # asyncpg reads it
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        argv = server_command(config.ports["prefect"])
        return spawn(self.name, argv, environment, config.root, config.log(self.name))

    def health(self, config: StackConfig) -> Health:
        return http_health(f"{api_url(config)}/health")

    def prepare(self, config: StackConfig, environment: dict[str, str]) -> None:
        """The process work pool `aigc`, created with Prefect's default job template."""
        try:
            http_json(f"{api_url(config)}/work_pools/{WORK_POOL}")
            return
        except urllib.error.HTTPError as error:
            if error.code != 404:
                raise
        result = subprocess.run(
            [executable("prefect"), "work-pool", "create", WORK_POOL, "--type", "process"],
            env=_prefect_environment(config, environment),
            cwd=config.root,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise StackError(
                f"could not create the work pool {WORK_POOL!r}:\n{result.stdout}{result.stderr}"
            )


class PrefectWorker(Service):
    name = "worker"
    ports = ()
    # The worker takes its first SIGTERM as "finish the current runs"; a second one stops it.
    stop_plan = StopPlan(((signal.SIGTERM, 2.0), (signal.SIGTERM, 15.0)))

    def url(self, config: StackConfig) -> str:
        return f"work pool {WORK_POOL!r}"

    def start(self, config: StackConfig, environment: dict[str, str]) -> ProcessRecord:
        environment = {
            **_prefect_environment(config, environment),
            "AIGC_PROJECT_DIR": str(config.root),
        }
        argv = [
            executable("prefect"),
            "worker",
            "start",
            "--pool",
            WORK_POOL,
            "--type",
            "process",
            "--name",
            WORKER_NAME,
        ]
        return spawn(self.name, argv, environment, config.root, config.log(self.name))

    def health(self, config: StackConfig) -> Health:
        return self._health(config, since=0.0)

    def started(self, config: StackConfig, record: ProcessRecord) -> Health:
        # The server keeps a stopped worker ONLINE for a while: wait for this one's heartbeat.
        return self._health(config, since=record.started)

    def _health(self, config: StackConfig, since: float) -> Health:
        url = f"{api_url(config)}/work_pools/{WORK_POOL}/workers/filter"
        try:
            workers = http_json(url, body={})
        except (urllib.error.URLError, OSError) as error:
            return Health(False, f"{url}: {getattr(error, 'reason', error)}")
        ours = next((worker for worker in workers or [] if worker["name"] == WORKER_NAME), None)
        if ours is None:
            return Health(False, f"{WORKER_NAME} has not registered in work pool {WORK_POOL!r}")
        heartbeat = datetime.fromisoformat(ours["last_heartbeat_time"]).timestamp()
        if ours.get("status") == "ONLINE" and heartbeat >= since:
            return Health(True, f"{WORKER_NAME} online")
        return Health(False, f"{WORKER_NAME} is {ours.get('status')}, last heartbeat {heartbeat}")
