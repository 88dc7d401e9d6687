"""The processes of the stack, each named by its pid and start time, so `down` stops only them.

    record = spawn("mlflow", argv, environment, cwd=root, log=logs / "mlflow.log")
    record.process()           # the live process, or None once it exited or its pid was reused
    record.family()            # it, its descendants, and what it left behind when it died
    stop(record, StopPlan(((signal.SIGTERM, 10.0),)))   # signals, waits, then SIGKILL
    wait_gone(records, seen, seconds=10.0)  # then SIGKILL; [] once none of their processes runs

A pid alone can name another program once the first has exited; the pair (pid, start time)
cannot. A service's children are found as its descendants, and also by a marker, a random
value of AIGC_STACK_PROCESS in the environment they inherit: when a main process is killed,
its children (MLflow's uvicorn worker, say) are orphans that no pid leads to, still holding
the port. A zombie counts as gone: where pid 1 does not reap orphans (this sandbox's does
not), a stopped server stays a zombie, which holds no memory, port or file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

MARKER = "AIGC_STACK_PROCESS"
START_TIME_TOLERANCE = 0.05  # seconds; psutil derives start times from clock ticks and boot time
ORPHAN_GRACE = 3.0  # seconds a descendant left behind by a stopped service gets after SIGTERM
KILL_WAIT = 5.0  # seconds a SIGKILLed process gets to be gone (a big one frees memory first)


@dataclass(frozen=True)
class ProcessRecord:
    """One process the stack started (a service's main process)."""

    name: str
    pid: int
    started: float  # psutil's create_time()
    marker: str = ""  # its MARKER value, inherited by the processes it starts; "" for none

    def process(self) -> psutil.Process | None:
        """The live process this record names; None when it exited or the pid names another."""
        try:
            process = psutil.Process(self.pid)
            if abs(process.create_time() - self.started) > START_TIME_TOLERANCE:
                return None
        except psutil.NoSuchProcess:
            return None
        return process if _running(process) else None

    def memory(self) -> tuple[int, int]:
        """(RSS, PSS) in bytes of the process and its descendants; (0, 0) when not running.

        RSS counts a page shared by several processes (PostgreSQL's shared buffers) in each
        of them; PSS splits it between them, so PSS sums to what the service really holds."""
        rss = pss = 0
        for member in self.family():
            with contextlib.suppress(psutil.Error):
                memory = member.memory_full_info()  # PSS needs /proc/PID/smaps: same user or root
                rss += memory.rss
                pss += getattr(memory, "pss", memory.rss)
        return rss, pss

    def family(self) -> list[psutil.Process]:
        """The live process, its descendants, and the live processes that carry its marker."""
        members: dict[int, psutil.Process] = {}
        process = self.process()
        if process is not None:
            members = {member.pid: member for member in (process, *_descendants(process))}
        if self.marker:
            ours = {os.getpid(), *(parent.pid for parent in psutil.Process().parents())}
            for candidate in psutil.process_iter():
                if candidate.pid in members or candidate.pid in ours:
                    continue
                with contextlib.suppress(psutil.Error):
                    if candidate.environ().get(MARKER) == self.marker and _running(candidate):
                        members[candidate.pid] = candidate
        return list(members.values())


@dataclass(frozen=True)
class StopPlan:
    """The signals that stop a service, each followed by how long to wait for it to exit;
    SIGKILL comes after the last wait."""

    signals: tuple[tuple[int, float], ...] = ((signal.SIGTERM, 10.0),)


def record_of(name: str, pid: int, marker: str = "") -> ProcessRecord:
    """The record of a running process (one started by another program, say pg_ctl)."""
    return ProcessRecord(name, pid, psutil.Process(pid).create_time(), marker)


def spawn(
    name: str,
    argv: list[str],
    environment: dict[str, str],
    cwd: Path,
    log: Path,
) -> ProcessRecord:
    """Start `argv` in its own session (a Ctrl-C in the terminal does not reach it), output
    appended to `log`; it outlives the caller."""
    log.parent.mkdir(parents=True, exist_ok=True)
    marker = f"{name}-{secrets.token_hex(8)}"
    with log.open("ab") as output:
        child = subprocess.Popen(
            argv,
            env={**environment, MARKER: marker},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return record_of(name, child.pid, marker)


def stop(record: ProcessRecord, plan: StopPlan) -> str:
    """Stop the recorded process and what it started; says how it ended."""
    process = record.process()
    family = record.family()
    if process is None:
        if not family:
            return "was not running"
        _terminate(family)
        return f"was not running; stopped {len(family)} process(es) it had left behind"
    started = time.monotonic()
    sent = []
    for signum, seconds in plan.signals:
        _signal(process, signum)
        sent.append(signal.Signals(signum).name)
        if _wait_gone([process], seconds):
            break
    else:
        _signal(process, signal.SIGKILL)
        sent.append("SIGKILL")
        _wait_gone([process], KILL_WAIT)
    outcome = f"stopped by {', '.join(sent)} in {time.monotonic() - started:.1f} s"
    _terminate([member for member in family if member.pid != process.pid])
    return outcome


def wait_gone(
    records: list[ProcessRecord], seen: list[psutil.Process], seconds: float
) -> list[psutil.Process]:
    """Wait until no process of `records` runs: their families found afresh (a process may
    have started while its service stopped) and `seen`, the families found before the stop;
    after `seconds`, SIGKILL by pid what runs. Returns what still runs after that (none,
    unless a process cannot die: stuck in the kernel, or another user's)."""
    deadline = time.monotonic() + seconds
    while left := _still_running(records, seen):
        if time.monotonic() > deadline:
            for process in left:
                _signal(process, signal.SIGKILL)
            _wait_gone(left, KILL_WAIT)
            return _still_running(records, seen)
        time.sleep(0.2)
    return []


def _still_running(records: list[ProcessRecord], seen: list[psutil.Process]) -> list:
    members = {process.pid: process for process in seen if _running(process)}
    for record in records:
        members |= {member.pid: member for member in record.family()}
    return list(members.values())


def _terminate(processes: list[psutil.Process]) -> None:
    """SIGTERM, a short grace, then SIGKILL, for what a service left running."""
    left = [process for process in processes if _running(process)]
    for process in left:
        _signal(process, signal.SIGTERM)
    if left and not _wait_gone(left, ORPHAN_GRACE):
        for process in left:
            _signal(process, signal.SIGKILL)
        _wait_gone(left, KILL_WAIT)


def _descendants(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


def _running(process: psutil.Process) -> bool:
    """True while the process runs; a zombie is reaped when it is our child, and is gone."""
    try:
        if not process.is_running():  # also False when the pid now names another process
            return False
        if process.status() != psutil.STATUS_ZOMBIE:
            return True
    except psutil.NoSuchProcess:
        return False
    with contextlib.suppress(ChildProcessError):
        os.waitpid(process.pid, os.WNOHANG)
    return False


def _signal(process: psutil.Process, signum: int) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        process.send_signal(signum)  # psutil checks the start time before it signals


def _wait_gone(processes: list[psutil.Process], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(_running(process) for process in processes):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
