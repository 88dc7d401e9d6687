"""Profiles and the params overlay, and the stack's process tracking, without any server.

The servers themselves are tested in tests/stack/ (marked `stack`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest
import yaml

from aigc.config import PARAMS_OVERLAY_VARIABLE, ConfigError, load_params
from aigc.errors import UserError
from aigc.stack.processes import ProcessRecord, StopPlan, record_of, spawn, stop
from aigc.stack.profile import apply_profile, read_profile, resolve_profile, write_profile
from tests.conftest import REPO


def test_profile_reads_what_a_shell_would_source(tmp_path):
    path = tmp_path / "team.env"
    path.write_text(
        "# our servers\n\n"
        "export MLFLOW_TRACKING_URI=http://mlflow.internal:5000\n"
        "AWS_ACCESS_KEY_ID='key with spaces'\n"
        'PREFECT_API_URL="http://prefect.internal/api"\n'
        f"{PARAMS_OVERLAY_VARIABLE}=overlays/team.yaml\n"
    )
    assert read_profile(path) == {
        "MLFLOW_TRACKING_URI": "http://mlflow.internal:5000",
        "AWS_ACCESS_KEY_ID": "key with spaces",
        "PREFECT_API_URL": "http://prefect.internal/api",
        PARAMS_OVERLAY_VARIABLE: str(tmp_path / "overlays" / "team.yaml"),  # from its folder
    }


def test_profile_line_that_is_no_assignment_is_named(tmp_path):
    path = tmp_path / "bad.env"
    path.write_text("MLFLOW_TRACKING_URI=http://x\nnot an assignment\n")
    with pytest.raises(UserError, match=r"bad.env, line 2: expected KEY=VALUE"):
        read_profile(path)


def test_written_profile_is_private_and_reads_back(tmp_path):
    path = tmp_path / "profile.env"
    write_profile(path, {"AWS_SECRET_ACCESS_KEY": "s3cret", "A": "1"}, "header\nline two")
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_profile(path) == {"AWS_SECRET_ACCESS_KEY": "s3cret", "A": "1"}
    environ: dict[str, str] = {"A": "0", "B": "kept"}
    apply_profile(path, environ)
    assert environ == {"A": "1", "B": "kept", "AWS_SECRET_ACCESS_KEY": "s3cret"}


def test_stack_profile_missing_says_to_bring_the_stack_up(tmp_path):
    with pytest.raises(UserError, match=r"aigc stack up"):
        resolve_profile("stack", tmp_path)
    with pytest.raises(UserError, match=r"no file .*elsewhere.env"):
        resolve_profile(str(tmp_path / "elsewhere.env"), tmp_path)


def test_overlay_sits_between_params_file_and_set_overrides(tmp_path, monkeypatch):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"tracking": {"experiment": "mine"}}))
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "tracking": {"tracking_uri": "http://127.0.0.1:5000", "artifact_root": None},
                "train": {"ray": {"storage_path": "s3://ray/aigc"}},
            }
        )
    )
    monkeypatch.setenv(PARAMS_OVERLAY_VARIABLE, str(overlay))
    loaded = load_params(params, ["train.ray.storage_path=/shared/ray"])
    assert loaded.tracking.tracking_uri == "http://127.0.0.1:5000"
    assert loaded.tracking.artifact_root is None
    assert loaded.tracking.experiment == "mine"  # params.yaml's own choice stays
    assert loaded.train.ray.storage_path == "/shared/ray"  # --set wins over the overlay


def test_missing_overlay_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv(PARAMS_OVERLAY_VARIABLE, str(tmp_path / "gone.yaml"))
    with pytest.raises(ConfigError, match=r"gone.yaml: no such file; bring the stack up"):
        load_params(None)


def test_cli_profile_option_exports_and_layers(tmp_path):
    (tmp_path / "overlay.yaml").write_text("tracking:\n  tracking_uri: http://127.0.0.1:5999\n")
    profile = tmp_path / "team.env"
    profile.write_text(f"{PARAMS_OVERLAY_VARIABLE}=overlay.yaml\n")
    path = [str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
    environment.pop(PARAMS_OVERLAY_VARIABLE, None)
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "--profile", str(profile), "params"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tracking_uri: http://127.0.0.1:5999" in result.stdout


def _sleeper(tmp_path, ignore_term: bool = False, with_child: bool = False) -> ProcessRecord:
    code = "import signal, subprocess, sys, time\n"
    if ignore_term:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    if with_child:
        code += "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
    code += "print('ready', flush=True)\ntime.sleep(600)\n"
    log = tmp_path / "sleeper.log"
    record = spawn("sleeper", [sys.executable, "-c", code], dict(os.environ), tmp_path, log)
    deadline = time.monotonic() + 30
    while "ready" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    return record


def test_a_record_names_one_process_not_a_reused_pid(tmp_path):
    record = _sleeper(tmp_path)
    try:
        impostor = ProcessRecord("sleeper", record.pid, record.started - 3600)
        assert impostor.process() is None  # same pid, another start time: not ours
        assert stop(impostor, StopPlan()) == "was not running"
        assert record.process() is not None  # left alone
    finally:
        stop(record, StopPlan(((signal.SIGTERM, 5.0),)))
    assert record.process() is None
    assert stop(record, StopPlan()) == "was not running"


def test_children_left_by_a_killed_service_are_found_by_marker_and_stopped(tmp_path):
    record = _sleeper(tmp_path, with_child=True)
    (child,) = psutil.Process(record.pid).children()
    os.kill(record.pid, signal.SIGKILL)  # the child is now an orphan: no pid leads to it
    deadline = time.monotonic() + 10
    while record.process() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [member.pid for member in record.family()] == [child.pid]
    assert stop(record, StopPlan()) == (
        "was not running; stopped 1 process(es) it had left behind"
    )
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


def test_a_taken_port_moves_only_while_nothing_runs(tmp_path):
    from aigc.stack.base import StackError
    from aigc.stack.stack import _choose_ports

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        said: list[str] = []
        me = f"{psutil.Process().name()} (pid {os.getpid()})"
        ports = _choose_ports({"mlflow": taken}, set(), said.append)
        assert ports["mlflow"] != taken and len(set(ports.values())) == len(ports)
        assert said == [f"port {taken} (mlflow) is taken by {me}: using {ports['mlflow']}"]
        with pytest.raises(
            StackError, match=rf"port {taken} \(mlflow\) is taken by .*pid {os.getpid()}"
        ):
            _choose_ports({"mlflow": taken}, {"postgres"}, said.append)


def test_stop_kills_what_ignores_sigterm_and_the_children(tmp_path):
    record = _sleeper(tmp_path, ignore_term=True, with_child=True)
    (child,) = psutil.Process(record.pid).children()
    child_record = record_of("child", child.pid)
    outcome = stop(record, StopPlan(((signal.SIGTERM, 0.5),)))
    assert outcome.startswith("stopped by SIGTERM, SIGKILL")
    assert record.process() is None
    assert child_record.process() is None
