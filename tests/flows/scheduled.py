"""`aigc schedule` as a real process, for tests: its output, the processes it starts, and
what its own Prefect server says (tests/flows/test_retrain.py serves a schedule with it).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    DeploymentFilter,
    DeploymentFilterId,
)
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.retrain import summary_artifact

EVERY_15_SECONDS = "* * * * * */15"  # Prefect's cron takes croniter's sixth field, seconds
NAME = "fires"
SERVER_LINE = re.compile(r"server for the schedule: (http://127\.0\.0\.1:(\d+)/api) \(pid (\d+)")


class Schedule:
    """`aigc schedule ARGS` as a real process in `root`, its output in a file; every process
    it starts is remembered (pid and start time) as long as `watch` is called."""

    def __init__(self, root: Path, output: Path, *args: str) -> None:
        environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
        environment.pop("PREFECT_API_URL", None)  # the embedded default
        self.output = output
        with output.open("wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "schedule", *args],
                cwd=root,
                env=environment,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        self.started: dict[tuple[int, float], psutil.Process] = {}

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def watch(self) -> None:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.process.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    self.started.setdefault((child.pid, child.create_time()), child)

    def wait_for(self, what: str, condition, timeout: float):
        """Watch until `condition()` is true (returns its value); fail with the output if the
        command exits first or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.watch()
            value = condition()
            if value:
                return value
            if self.process.poll() is not None:
                pytest.fail(f"aigc schedule exited ({self.process.returncode}):\n{self.text()}")
            time.sleep(0.5)
        pytest.fail(f"no {what} within {timeout:g} s; aigc schedule said:\n{self.text()[-6000:]}")

    def server(self) -> tuple[str, int, int] | None:
        """(API URL, port, pid) of aigc's server, once the command has said them."""
        found = SERVER_LINE.search(self.text())
        return (found[1], int(found[2]), int(found[3])) if found else None

    def stop(self, signum: int, timeout: float = 60.0) -> int:
        """Send `signum`, wait for the exit; SIGKILL (and fail) if it does not come."""
        self.watch()
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"aigc schedule ignored {signal.Signals(signum).name}:\n{self.text()}")

    def end(self) -> None:
        """After the test: stop the command as Ctrl-C does if it still runs, then kill
        whatever it left (nothing, when the test passed)."""
        if self.process.poll() is None:
            self.watch()
            self.process.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(30)
            self.process.kill()
        for process in self.started.values():
            with contextlib.suppress(psutil.Error):
                process.kill()  # psutil checks the start time: never another process

    def assert_nothing_left(self, port: int) -> None:
        """Every process the command started has exited (a zombie holds nothing) and nothing
        listens on its server's port."""
        _, alive = psutil.wait_procs(list(self.started.values()), timeout=20)
        left = []
        for process in alive:
            with contextlib.suppress(psutil.Error):
                if process.status() != psutil.STATUS_ZOMBIE:
                    left.append(f"{process.pid} {' '.join(process.cmdline())[:120]}")
        assert left == [], f"aigc schedule left these running: {left}"
        listening = [
            connection
            for connection in psutil.net_connections("tcp")
            if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port
        ]
        assert listening == []
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"


def polled(url: str) -> bool:
    """Whether the command's runner has asked the server for due runs of retrain/NAME."""
    with (
        temporary_settings({PREFECT_API_URL: url}),
        get_client(sync_client=True) as client,
        contextlib.suppress(ObjectNotFound),
    ):
        return client.read_deployment_by_name(f"retrain/{NAME}").last_polled is not None
    return False


def schedule_runs(url: str) -> list[FlowRun]:
    """The flow runs of deployment retrain/NAME on the server at `url`, oldest first."""
    with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(f"retrain/{NAME}")
        except ObjectNotFound:  # not served yet
            return []
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        )
    return sorted(runs, key=lambda run: run.expected_start_time)


def summary_of(url: str, run: FlowRun) -> str:
    """The description of a run's `retrain-summary-text` artifact: `retrain text: STATUS, …`."""
    with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[summary_artifact("text")]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]),
            )
        )
    return artifact.description
