"""A SIGKILLed `aigc run` leaves processes and a RUNNING MLflow run; the next run ends them.

Real processes throughout: `aigc run` on a tiny project (Prefect's temporary server, a local
Ray, MLflow on sqlite), killed with SIGKILL once training has started, then the project's next
command (`aigc data refresh`). Slow: two fresh `aigc` processes with a Prefect server each,
the first one training on a Ray of its own.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from aigc import runtime
from tests.conftest import REPO

pytestmark = pytest.mark.slow

AIGC = str(Path(sys.executable).parent / "aigc")


def aigc_run(root: Path, *overrides: str, **options) -> subprocess.Popen:
    environment = os.environ | {"PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    arguments = [argument for item in overrides for argument in ("--set", item)]
    return subprocess.Popen(
        [AIGC, "run", "--only", "text", *arguments],
        cwd=root,
        env=environment,
        text=True,
        **options,
    )


def wait_for_training(record_file: Path, run: subprocess.Popen, timeout: float) -> dict:
    """The run's record once it lists an MLflow run (Ray has started by then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert run.poll() is None, "the first run ended before it could be killed"
        if record_file.exists():
            record = json.loads(record_file.read_text())
            if record["mlflow_runs"]:
                return record
        time.sleep(1)
    raise AssertionError(f"no training started within {timeout} s")


def alive(entries: list[dict]) -> list[dict]:
    return [entry for entry in entries if runtime._same_process(entry) is not None]


def test_the_next_run_ends_what_a_killed_run_left(pipeline_project, tmp_path):
    root, settings = pipeline_project
    first = aigc_run(
        root,
        "train.loop.max_steps=100000",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    leftovers: list[dict] = []
    try:
        record_file = root / ".aigc" / "run" / f"{first.pid}.json"
        record = wait_for_training(record_file, first, timeout=300)
        time.sleep(2)  # into the training steps
        record = json.loads(record_file.read_text())
        os.kill(first.pid, signal.SIGKILL)
        first.wait()

        time.sleep(2)  # Ray's head dies with its parent, its workers soon after; not all
        leftovers = alive(record["processes"])
        assert leftovers, "SIGKILL leaves some of what the run started running"
        (mlflow_run,) = record["mlflow_runs"]
        assert settings.client().get_run(mlflow_run["run_id"]).info.status == "RUNNING"
        (checkpoints,) = map(Path, record["paths"])

        # The next command of this project, whatever it is, cleans up first.
        second = subprocess.run(
            [AIGC, "data", "refresh", "--only", "text"],
            cwd=root,
            env=os.environ | {"PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"},
            capture_output=True,
            text=True,
            timeout=600,
        )
        stdout, stderr = second.stdout, second.stderr
        assert second.returncode == 0, stdout + stderr

        assert alive(leftovers) == [], "every leftover process is ended, found by its pid"
        ended = {int(pid) for pid in re.findall(r"ended pid (\d+) ", stderr)}
        recorded_pids = {entry["pid"] for entry in record["processes"]}
        assert ended and ended <= recorded_pids, stderr  # only what the record names
        failed = settings.client().get_run(mlflow_run["run_id"])
        assert failed.info.status == "FAILED"
        assert f"aigc pid {first.pid}, which died" in failed.data.tags[runtime.FAILED_REASON_TAG]
        assert f"marked MLflow run {mlflow_run['run_id']} FAILED" in stderr
        assert not checkpoints.exists(), "the killed run's checkpoint folder is deleted"
        assert list((root / ".aigc" / "run").iterdir()) == [], "both records are gone"
    finally:
        for entry in alive(leftovers):  # only when an assertion failed before the cleanup
            psutil.Process(entry["pid"]).kill()
        if first.poll() is None:
            first.kill()
            first.wait()
