"""What a live aigc process started, kept on disk so that the next run can end it if it dies.

    record = runtime.start(paths.work)   # first call: end what dead runs left, then register
    record.note_children()               # the processes this one has started so far
    record.note_mlflow_run(tracking_uri, run_id)
    record.note_path(storage / name)     # a folder this run deletes when it ends normally

A process that trains keeps `.aigc/run/<pid>.json`: its pid and start time, the processes it
started with their descendants (Prefect's temporary API server, Ray's head, Ray's agents),
each with its start time, the MLflow runs it opened and the folders it would delete. A
normal exit removes the file and the process's scratch folder `.aigc/run/<pid>/`.

A process killed with SIGKILL cannot clean up, and some of what it started outlives it
(Prefect's server, Ray's dashboard and runtime-env agents). The first `start` of a later
process reads every file whose owner is gone, ends the recorded processes that are still
the same processes (same start time: a reused pid is never ours), SIGTERM first and SIGKILL
after a grace period, marks the recorded MLflow runs still RUNNING as FAILED with a tag
saying why, deletes the folders and the file, and logs one line for each. Processes are
found only through these files, never by name.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

RUN_FOLDER = "run"
GRACE_SECONDS = 5.0
FAILED_REASON_TAG = "aigc.failed_reason"
# psutil derives a start time from clock ticks since boot: equal for one process, every time.
SAME_START_SECONDS = 0.05

logger = logging.getLogger(__name__)
_records: dict[Path, RunRecord] = {}
_lock = threading.Lock()


@dataclass
class RunRecord:
    """This process's entry in `work_dir/run/`; every `note_*` rewrites the file at once.

    Threads share it (Prefect's server is noted by the thread that starts it while the
    main thread goes on), so each change and its write hold one lock."""

    work_dir: Path
    pid: int
    started: float
    processes: list[dict[str, Any]] = field(default_factory=list)
    mlflow_runs: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    @property
    def file(self) -> Path:
        return self.work_dir / RUN_FOLDER / f"{self.pid}.json"

    @property
    def scratch(self) -> Path:
        """A folder that lives as long as this process (removed at exit or by the next run)."""
        return self.work_dir / RUN_FOLDER / str(self.pid)

    def note_children(self) -> None:
        """Record every process this one has started and is still running, and their children."""
        with self._lock:
            alive = [entry for entry in self.processes if _same_process(entry) is not None]
            known = {(entry["pid"], entry["started"]) for entry in alive}
            for child in psutil.Process(self.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    entry = {"pid": child.pid, "started": child.create_time()}
                    if (entry["pid"], entry["started"]) not in known:
                        alive.append({**entry, "what": _what(child)})
            self.processes = alive
            self._write()

    def note_mlflow_run(self, tracking_uri: str, run_id: str) -> None:
        with self._lock:
            self.mlflow_runs.append({"tracking_uri": tracking_uri, "run_id": run_id})
            self._write()

    def note_path(self, path: Path) -> None:
        with self._lock:
            self.paths.append(str(Path(path).resolve()))
            self._write()

    def close(self) -> None:
        """Remove the file and the scratch folder (at exit; only in the process they describe)."""
        if os.getpid() != self.pid:
            return  # a forked child inherits the atexit hook, not the record
        self.file.unlink(missing_ok=True)
        shutil.rmtree(self.scratch, ignore_errors=True)
        _records.pop(self.work_dir, None)

    def _write(self) -> None:
        content = {
            "pid": self.pid,
            "started": self.started,
            "processes": self.processes,
            "mlflow_runs": self.mlflow_runs,
            "paths": self.paths,
        }
        with self._lock:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.file.with_name(f".{self.file.name}.tmp")
            temporary.write_text(json.dumps(content, indent=1))
            os.replace(temporary, self.file)  # a reader never sees half a file


def start(work_dir: Path) -> RunRecord:
    """This process's record in the project whose scratch folder is `work_dir` (`.aigc`).

    The first call in a process ends what dead runs of that project left behind, then writes
    the record; later calls return the same record."""
    work_dir = Path(work_dir).resolve()
    with _lock:
        record = _records.get(work_dir)
        if record is None or record.pid != os.getpid():
            clean_up_dead_runs(work_dir)
            me = psutil.Process()
            record = RunRecord(work_dir, me.pid, me.create_time())
            record._write()
            _records[work_dir] = record
            atexit.register(record.close)
        return record


def clean_up_dead_runs(work_dir: Path) -> list[str]:
    """End what every dead aigc process of this project left; one line per thing, logged."""
    folder = Path(work_dir).resolve() / RUN_FOLDER
    lines: list[str] = []
    for file in sorted(folder.glob("*.json")):
        try:
            content = json.loads(file.read_text())
            owner = {"pid": int(content["pid"]), "started": float(content["started"])}
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a record of ours
        if _same_process(owner) is not None:
            continue  # its owner still runs
        claimed = file.with_name(f".{file.name}.cleaning-{os.getpid()}")
        try:
            os.rename(file, claimed)  # when two runs start at once, one of them cleans
        except FileNotFoundError:
            continue
        lines += _end_dead_run(content, folder)
        claimed.unlink(missing_ok=True)
    for line in lines:
        logger.warning(line)
    return lines


def _end_dead_run(content: dict[str, Any], folder: Path) -> list[str]:
    owner = f"aigc pid {content['pid']}, which died"
    lines = [f"cleaning up after {owner}"]
    survivors = []
    for entry in content.get("processes", []):
        process = _same_process(entry)
        if process is not None:
            survivors.append((process, entry["what"]))
    for process, _ in survivors:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, still_alive = psutil.wait_procs([process for process, _ in survivors], GRACE_SECONDS)
    for process in still_alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(still_alive, GRACE_SECONDS)
    for process, what in survivors:
        how = "SIGKILL" if process in still_alive else "SIGTERM"
        lines.append(f"ended pid {process.pid} ({what}) with {how}, left by {owner}")
    for run in content.get("mlflow_runs", []):
        lines.append(_fail_run(run["tracking_uri"], run["run_id"], owner))
    for path in map(Path, content.get("paths", [])):
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
            lines.append(f"deleted {path}, left by {owner}")
    scratch = folder / str(content["pid"])
    if scratch.exists():
        shutil.rmtree(scratch, ignore_errors=True)
        lines.append(f"deleted {scratch}, left by {owner}")
    return lines


def _fail_run(tracking_uri: str, run_id: str, owner: str) -> str:
    from aigc.tracking import TrackingSettings

    try:
        client = TrackingSettings(tracking_uri, None, "").client()
        status = client.get_run(run_id).info.status
        if status != "RUNNING":
            return f"MLflow run {run_id} was already {status}"
        client.set_tag(run_id, FAILED_REASON_TAG, f"the process that ran it ({owner}) stopped")
        client.set_terminated(run_id, status="FAILED")
    except Exception as error:  # the store may be gone or unreachable: say so, go on
        return f"could not mark MLflow run {run_id} in {tracking_uri} FAILED: {error}"
    return f"marked MLflow run {run_id} FAILED, left RUNNING by {owner}"


def _same_process(entry: dict[str, Any]) -> psutil.Process | None:
    """The process `entry` describes, if it still runs: same pid and same start time."""
    try:
        process = psutil.Process(int(entry["pid"]))
        if abs(process.create_time() - float(entry["started"])) > SAME_START_SECONDS:
            return None  # the pid was reused by another process
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return process


def _what(process: psutil.Process) -> str:
    try:
        command = " ".join(process.cmdline()).strip() or process.name()
    except psutil.Error:
        command = "?"
    return command[:160]
