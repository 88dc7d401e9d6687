"""aigc.runtime with real processes: what a SIGKILLed process left is ended by the next one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from aigc import runtime
from aigc.tracking import TrackingSettings
from tests.conftest import REPO

# A process that does what an aigc run does: registers, starts a long-lived child, opens an
# MLflow run, notes a folder to delete, then waits to be killed.
VICTIM = textwrap.dedent(
    """
    import subprocess, sys, time
    from pathlib import Path
    from aigc import runtime
    from aigc.tracking import TrackingSettings, TrainingRun

    work, store, folder = map(Path, sys.argv[1:4])
    record = runtime.start(work)
    child = subprocess.Popen(["sleep", "300"], stdout=subprocess.DEVNULL)
    record.note_children()
    settings = TrackingSettings(f"sqlite:///{store}", "artifacts", "t").resolve(store.parent)
    run = TrainingRun.start(settings, "victim")
    record.note_mlflow_run(settings.tracking_uri, run.run_id)
    record.note_path(folder)
    print(child.pid, run.run_id, flush=True)
    time.sleep(300)
    """
)


def start_victim(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    environment = os.environ | {"PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    victim = subprocess.Popen(
        [sys.executable, "-c", VICTIM, str(tmp_path / ".aigc"), str(tmp_path / "m.db"), folder],
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
    )
    child_pid, run_id = victim.stdout.readline().split()
    return victim, int(child_pid), run_id, folder


def test_a_killed_runs_processes_runs_and_folders_are_ended_by_the_next(tmp_path):
    victim, child_pid, run_id, folder = start_victim(tmp_path)
    record_file = tmp_path / ".aigc" / "run" / f"{victim.pid}.json"
    recorded = json.loads(record_file.read_text())
    assert [entry["pid"] for entry in recorded["processes"]] == [child_pid]

    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    child = psutil.Process(child_pid)
    assert child.is_running(), "SIGKILL leaves the child running: what the next run must end"
    lines = runtime.clean_up_dead_runs(tmp_path / ".aigc")
    assert not psutil.pid_exists(child_pid) or child.status() == psutil.STATUS_ZOMBIE
    assert any(f"ended pid {child_pid} (sleep 300) with SIGTERM" in line for line in lines)
    settings = TrackingSettings(f"sqlite:///{tmp_path / 'm.db'}", None, "t")
    run = settings.client().get_run(run_id)
    assert run.info.status == "FAILED"
    assert f"aigc pid {victim.pid}, which died" in run.data.tags[runtime.FAILED_REASON_TAG]
    assert not folder.exists() and not record_file.exists()
    assert len(lines) == 4, lines  # a heading, the process, the MLflow run, the folder

    assert runtime.clean_up_dead_runs(tmp_path / ".aigc") == [], "nothing is left to clean"


def test_a_reused_pid_and_a_live_owner_are_left_alone(tmp_path):
    folder = tmp_path / ".aigc" / "run"
    folder.mkdir(parents=True)
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        started = psutil.Process(bystander.pid).create_time()
        finished = subprocess.Popen(["true"])  # its pid stands for a dead owner
        finished.wait()
        # The dead owner recorded a process with this pid that started at another time.
        reused = {"pid": bystander.pid, "started": started - 100, "what": "sleep"}
        (folder / f"{finished.pid}.json").write_text(
            json.dumps({"pid": finished.pid, "started": time.time() - 200, "processes": [reused]})
        )
        # A live owner (this process) whose record lists the bystander: it is still in use.
        me = psutil.Process()
        (folder / f"{me.pid}.json").write_text(
            json.dumps(
                {
                    "pid": me.pid,
                    "started": me.create_time(),
                    "processes": [{"pid": bystander.pid, "started": started, "what": "sleep"}],
                }
            )
        )
        lines = runtime.clean_up_dead_runs(tmp_path / ".aigc")
        assert bystander.poll() is None, "a pid that was reused is not the recorded process"
        assert lines == [f"cleaning up after aigc pid {finished.pid}, which died"]
        assert not (folder / f"{finished.pid}.json").exists()
        assert (folder / f"{me.pid}.json").exists(), "a live run's record stays"
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.parametrize("exit_code", [0, 1])
def test_an_exit_removes_the_record_and_the_scratch_folder(tmp_path, exit_code):
    script = (
        "import sys; from aigc import runtime; "
        f"record = runtime.start({str(tmp_path / '.aigc')!r}); "
        "(record.scratch / 'models').mkdir(parents=True); "
        "print(record.file, flush=True); "
        f"sys.exit({exit_code})"
    )
    environment = os.environ | {"PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environment
    )
    assert done.returncode == exit_code, done.stderr
    assert list((tmp_path / ".aigc" / "run").iterdir()) == []
