"""Prefect's temporary API server, started in a thread while a command imports the
pipeline: `aigc run` and `aigc data refresh` begin with it."""

from __future__ import annotations

import contextvars
import threading
from typing import TYPE_CHECKING

from aigc import runtime
from aigc.config import Params
from aigc.errors import UserError

if TYPE_CHECKING:
    from collections.abc import Callable


def _start_prefect_api(params: Params, record: runtime.RunRecord) -> Callable[[], None]:
    """Start Prefect's temporary API server (when no PREFECT_API_URL is set) in a thread;
    the function returned waits until it answers, or raises a UserError saying why not.

    It is a process of its own that takes seconds to answer; started first, it boots while
    this process imports the pipeline instead of after (1.5 s of a 23 s no-change run, on 2
    cores). The flows' client then finds it running: Prefect keeps one temporary server per
    process. aigc waits `run.prefect_start_timeout_seconds` for it, not Prefect's own 20 s,
    which a loaded machine misses. A start that fails is stopped here and ends the command:
    Prefect's client would start a second server on the same port and lose the first.

    The server is noted in `record` the moment it is started, so that the next run ends it
    if this process is killed; Prefect's exit hook stops it when this process exits. The
    thread is not a daemon: an exit waits for the start to end, then stops the server."""
    timeout = params.run.prefect_start_timeout_seconds
    failures: list[BaseException] = []

    def start() -> None:
        from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE

        if PREFECT_API_URL.value() or not PREFECT_SERVER_ALLOW_EPHEMERAL_MODE.value():
            return
        from prefect.server.api.server import SubprocessASGIServer

        class RecordedServer(SubprocessASGIServer):
            def _run_uvicorn_command(self):  # each process Prefect starts for its server
                process = super()._run_uvicorn_command()
                record.note_children()
                return process

        server = RecordedServer()  # Prefect's one per process, if it exists already
        try:
            server.start(timeout=timeout)
        except Exception as error:
            process = server.server_process
            code = process.poll() if process else None
            server.stop()
            if process is None:
                why = f"could not start: {error}"
            elif code is not None:
                why = f"exited with code {code} before it answered (its output is above)"
            else:
                why = f"did not answer within {timeout:g} s"
            failures.append(
                UserError(
                    f"Prefect's temporary API server {why}. Fix: on a busy machine give it "
                    f"longer (`--set run.prefect_start_timeout_seconds={max(300, 2 * timeout):g}`"
                    "), or set PREFECT_API_URL to a running Prefect server (`aigc stack up`)"
                )
            )
            return
        record.note_children()  # in case Prefect started it some other way

    def start_and_keep_error() -> None:
        try:
            start()
        except Exception as error:  # raised by wait(), in the thread that runs the command
            failures.append(error)

    # In this thread's context: settings a caller set for the duration (Prefect's test
    # harness sets PREFECT_API_URL so) hold in the start thread too.
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run, args=(start_and_keep_error,), name="prefect-api-start"
    )
    thread.start()

    def wait() -> None:
        thread.join()
        if failures:
            raise failures[0]

    return wait
