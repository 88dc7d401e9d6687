"""Prefect's temporary API server: one per command, recorded, and gone when the command ends.

Each case runs the real `aigc data refresh` in a project whose only source is an empty
folder, with Prefect's own start limit forced to 1 s: aigc's limit
(`run.prefect_start_timeout_seconds`) replaces it. While the command runs, the test
follows every process it starts (psutil: pid and start time, never names), the ports they
listen on and the processes its run record names; when it has exited, none of them may
still run or listen.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # two fresh `aigc` processes and a Prefect server: ~20 s

AIGC = str(Path(sys.executable).parent / "aigc")


@dataclass
class Watched:
    returncode: int
    output: str
    processes: list[psutil.Process] = field(default_factory=list)  # it and its descendants
    listening: set[int] = field(default_factory=set)  # ports those processes listened on
    recorded: set[int] = field(default_factory=set)  # pids its run record named

    def survivors(self) -> list[psutil.Process]:
        return [
            process
            for process in self.processes
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE
        ]


def watch(root: Path, *args: str) -> Watched:
    """Run `aigc ARGS` in `root` with Prefect's start limit at 1 s, following what it starts."""
    path = [str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")]
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, path)),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "1",
    }
    environment.pop("PREFECT_API_URL", None)
    environment.pop("AIGC_TRACEBACK", None)
    log = root.parent / "aigc.log"
    with log.open("w") as output:
        command = subprocess.Popen(
            [AIGC, *args], cwd=root, env=environment, stdout=output, stderr=subprocess.STDOUT
        )
    me = psutil.Process(command.pid)
    record = root / ".aigc" / "run" / f"{command.pid}.json"
    seen: dict[tuple[int, float], psutil.Process] = {}
    listening: set[int] = set()
    recorded: set[int] = set()
    deadline = time.monotonic() + 120
    while command.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(psutil.Error):
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    seen.setdefault((child.pid, child.create_time()), child)
                    ports = child.net_connections(kind="inet")
                    listening |= {port.laddr.port for port in ports if port.status == "LISTEN"}
        with contextlib.suppress(OSError, ValueError, KeyError):
            recorded |= {entry["pid"] for entry in json.loads(record.read_text())["processes"]}
        time.sleep(0.05)
    returncode = command.wait(timeout=60)
    time.sleep(0.5)  # orphans that the command did not reap are reaped by init
    return Watched(returncode, log.read_text(), list(seen.values()), listening, recorded)


def is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not use
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def empty_project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "inbox").mkdir(parents=True)
    sources = [{"name": "inbox", "type": "folder", "path": "inbox"}]
    (root / "params.yaml").write_text(yaml.safe_dump({"collect": {"sources": sources}}))
    return root


def test_aigcs_start_limit_replaces_prefects_and_the_server_goes_with_the_command(
    empty_project: Path,
) -> None:
    """Prefect's 1 s would fail the start; aigc's limit lets the server come up, the flow
    runs (and fails on the empty source, one message), and the server is stopped."""
    watched = watch(empty_project, "data", "refresh")
    assert watched.returncode == 2, watched.output
    assert "Traceback" not in watched.output, watched.output
    assert "error: nothing was collected" in watched.output, "the flow ran on the server"
    assert "address already in use" not in watched.output, watched.output
    servers = [process for process in watched.processes if process.pid in watched.recorded]
    assert len(servers) == 1, "one server, noted in the run record while the command ran"
    assert watched.listening, "the server listened on a port"
    assert watched.survivors() == []
    assert all(is_free(port) for port in watched.listening)
    assert list((empty_project / ".aigc" / "run").glob("*.json")) == [], "the record is gone"


def test_a_server_that_misses_the_limit_is_stopped_and_named_in_one_line(
    empty_project: Path,
) -> None:
    watched = watch(
        empty_project, "data", "refresh", "--set", "run.prefect_start_timeout_seconds=0.5"
    )
    assert watched.returncode == 2, watched.output
    assert "Traceback" not in watched.output, watched.output
    (line,) = [line for line in watched.output.splitlines() if line.startswith("error: ")]
    assert line.startswith("error: Prefect's temporary API server did not answer within 0.5 s")
    assert "run.prefect_start_timeout_seconds=300" in line and "PREFECT_API_URL" in line
    started = {process.pid for process in watched.processes}
    assert watched.recorded and watched.recorded <= started, "the server, noted as it started"
    assert watched.survivors() == []
    assert all(is_free(port) for port in watched.listening)
    assert not (empty_project / "data").exists(), "the flow never ran"
