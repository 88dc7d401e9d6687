"""The Prefect server that `aigc schedule` starts when no PREFECT_API_URL is set.

    record = runtime.start(paths.work)
    server = ScheduleServer.start(paths.root, paths.work, record.scratch)   # in the background
    record.note_children()                       # recorded at once: a later run ends it
    server.wait_ready(timeout)                   # its /health answers, or a UserError
    ...serve the deployment against server.url...
    server.stop()                                # by its pid, whatever else runs

Prefect's temporary API (what `aigc run` uses) runs only the few services marked for it, and
the scheduler is not one: a cron served on it creates no runs. This server is the stack's command
(`stack.prefect_server.server_command`) on 127.0.0.1 and a free port, its scheduler looking
for deployments that need runs every few seconds, not every minute; its log and Prefect's files
in `.aigc/prefect/`.

Its sqlite database lives as long as the command, in the command's scratch folder: Prefect
counts a deployment's running flow runs in the database but keeps the leases that free them
in the server's memory, so a database kept across commands keeps a slot that a stopped command
held (a run stopped between its submission and its start) with nothing left to free it, and
every later tick is refused.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from aigc.errors import UserError
from aigc.stack.base import HOST, http_health, log_tail
from aigc.stack.prefect_server import PrefectServer, server_command
from aigc.stack.processes import ProcessRecord, spawn, stop

FOLDER = "prefect"  # in the project's .aigc
LOG = "server.log"
SERVER_SETTINGS = {
    "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "true",
    # Prefect's 60 s: a deployment left short of future runs would wait up to a minute for them.
    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
    # The scheduler logs each pass at INFO, every few seconds; the log keeps what goes wrong.
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


@dataclass(frozen=True)
class ScheduleServer:
    process: ProcessRecord
    port: int
    home: Path  # .aigc/prefect: the log and Prefect's own files

    @property
    def url(self) -> str:
        """The API, for PREFECT_API_URL; the dashboard is this without `/api`."""
        return f"http://{HOST}:{self.port}/api"

    @property
    def log(self) -> Path:
        return self.home / LOG

    @classmethod
    def start(cls, root: Path, work_dir: Path, scratch: Path) -> ScheduleServer:
        """Start the server on a free port, its database in `scratch` (a folder that lives as
        long as the command), in the project `root` (its prefect.toml holds) and in a session
        of its own: a Ctrl-C in the terminal reaches aigc, which stops it."""
        home = Path(work_dir).resolve() / FOLDER
        home.mkdir(parents=True, exist_ok=True)
        Path(scratch).mkdir(parents=True, exist_ok=True)
        port = _free_port()
        environment = {
            **{key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"},
            **SERVER_SETTINGS,
            "PREFECT_HOME": str(home),
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{scratch}/prefect.db",
        }
        process = spawn("prefect-schedule", server_command(port), environment, root, home / LOG)
        return cls(process, port, home)

    def wait_ready(self, timeout: float) -> None:
        """Return once the API answers; a UserError naming the cause when it exits or when
        `timeout` seconds pass first (the caller stops it)."""
        started = time.monotonic()
        while not http_health(f"{self.url}/health").ok:
            if self.process.process() is None:
                raise UserError(
                    f"aigc's Prefect server for the schedule (pid {self.process.pid}) exited "
                    f"while starting; the end of {self.log}:\n{log_tail(self.log)}"
                )
            if time.monotonic() - started > timeout:
                raise UserError(
                    f"aigc's Prefect server for the schedule did not answer within {timeout:g} "
                    f"s (see {self.log}). Fix: on a busy machine give it longer (`--set "
                    f"run.prefect_start_timeout_seconds={max(300, 2 * timeout):g}`), or set "
                    "PREFECT_API_URL to a running Prefect server (`aigc stack up`)"
                )
            time.sleep(0.25)

    def stop(self) -> str:
        """Stop it and whatever it started, by pid and start time; says how it ended."""
        return stop(self.process, PrefectServer.stop_plan)


def _free_port() -> int:
    """A port on loopback that nothing listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]
