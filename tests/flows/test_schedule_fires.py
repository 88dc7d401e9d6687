"""`aigc schedule` fires on the embedded default: a real command, its own Prefect server, a cron
that ticks every 15 seconds, and nothing left running once it is stopped.

Slow (94 s on this 2-core machine while another test suite ran): the command starts a Prefect
server, its first tick trains the tiny text model on Ray, a later tick finds nothing changed,
and the test waits for both through Prefect's API before it stops the command. The SIGTERM
test starts a server and serves a cron that does not tick (14 s).
"""

from __future__ import annotations

import contextlib
import itertools
import json
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
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL, temporary_settings

from aigc.registry.registry import versions
from flows.retrain import SUMMARY_ARTIFACT

pytestmark = pytest.mark.slow

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


@pytest.fixture
def schedule(pipeline_project, tmp_path):
    """Starts `aigc schedule ARGS` in the pipeline project; ends what is left after the test."""
    root, _ = pipeline_project
    started: list[Schedule] = []

    def start(*args: str) -> Schedule:
        started.append(Schedule(root, tmp_path / f"schedule-{len(started)}.log", *args))
        return started[-1]

    yield start
    for command in started:
        command.end()


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
    """The description of a run's `retrain-summary` artifact: `retrain text: STATUS, …`."""
    with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[SUMMARY_ARTIFACT]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]),
            )
        )
    return artifact.description


def test_each_tick_starts_a_run_on_aigcs_own_server_and_ctrl_c_stops_everything(
    pipeline_project, schedule
):
    root, settings = pipeline_project
    command = schedule("--cron", EVERY_15_SECONDS, "--name", NAME, "--only", "text")
    url, port, server_pid = command.wait_for("server", command.server, timeout=150)
    record = json.loads((root / ".aigc" / "run" / f"{command.process.pid}.json").read_text())
    assert server_pid in {entry["pid"] for entry in record["processes"]}, "not recorded"

    def two_completed() -> list[FlowRun] | None:
        completed = [run for run in schedule_runs(url) if run.state_type == StateType.COMPLETED]
        return completed if len(completed) >= 2 else None

    first, second = command.wait_for("two completed ticks", two_completed, timeout=400)[:2]
    runs = schedule_runs(url)
    summaries = [summary_of(url, first), summary_of(url, second)]  # while the server runs
    assert command.stop(signal.SIGINT) == 0, command.text()

    # Created by the schedule, 15 s apart, one at a time: a tick that came while a run ran
    # was cancelled by the deployment's concurrency limit, not queued.
    assert all(run.auto_scheduled for run in runs)
    ticks = [run.expected_start_time.timestamp() for run in runs]
    assert all(round(later - earlier) % 15 == 0 for earlier, later in itertools.pairwise(ticks))
    ran = [run for run in runs if run.run_count > 0]  # those that reached RUNNING
    for earlier, later in itertools.pairwise(ran):
        assert earlier.end_time is not None and earlier.end_time <= later.start_time
    for run in runs:  # as they were before the Ctrl-C
        if run.state_type == StateType.CANCELLED:
            assert run.run_count == 0 and "concurrency limit" in run.state.message, run.state
        else:
            assert run.state_type in {
                StateType.COMPLETED,
                StateType.RUNNING,
                StateType.PENDING,
                StateType.SCHEDULED,
            }, run.state

    # The first tick trained and registered version 1; the next found nothing changed.
    assert summaries[0].startswith("retrain text: promoted"), summaries
    assert summaries[1].startswith("retrain text: no change"), summaries
    (version,) = versions(settings, "aigc-text")
    assert version.version == "1"
    trained = settings.client().get_run(version.run_id).info.start_time / 1000
    assert first.start_time.timestamp() <= trained <= first.end_time.timestamp()

    assert "never awaited" not in command.text()
    assert server_pid in {pid for pid, _ in command.started}  # what it started was seen
    command.assert_nothing_left(port)
    assert not (root / ".aigc" / "run" / f"{command.process.pid}.json").exists()


def test_sigterm_stops_the_command_and_its_server_cleanly(pipeline_project, schedule):
    """The way `timeout` and service managers stop it: no "coroutine 'Runner.astop' was never
    awaited", exit code 0, the server gone."""
    root, _ = pipeline_project
    command = schedule("--cron", "0 3 1 1 *", "--name", NAME)
    url, port, server_pid = command.wait_for("server", command.server, timeout=150)
    command.wait_for("the runner's first poll", lambda: polled(url), timeout=60)
    exit_code = command.stop(signal.SIGTERM)
    output = command.text()
    assert exit_code == 0, output
    assert "never awaited" not in output and "Traceback" not in output, output
    assert "All deployments have been paused" in output  # the runner's own shutdown ran
    assert not (root / ".aigc" / "run" / f"{command.process.pid}").exists(), "the database"
    assert f"Prefect server (pid {server_pid}) stopped by SIGTERM" in output, output
    assert server_pid in {pid for pid, _ in command.started}
    command.assert_nothing_left(port)
