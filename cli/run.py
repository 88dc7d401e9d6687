"""The pipeline verbs: `aigc run` (the retrain flow), `schedule` (it, served on a cron) and
`reproduce` (a registered model rebuilt from its data version)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from aigc import runtime
from aigc.errors import UserError
from cli.app import (
    OnlyOption,
    ParamsOption,
    SetOption,
    _check_inputs,
    _existing_folder,
    _project,
    app,
)
from cli.output import _print_share_hint, _print_summary, _training_progress, console
from cli.prefect_api import _start_prefect_api


@app.command("run")
def run(
    force: Annotated[bool, typer.Option(help="retrain even when nothing changed")] = False,
    only: OnlyOption = None,
    timings: Annotated[
        Path | None, typer.Option(help="write where the time went (JSON; bench/pipeline.py)")
    ] = None,
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """The whole pipeline, for text and images: data refresh → train → evaluate → register →
    promote, each modality on its own training key and registered model."""
    paths, params = _project(params_file, overrides)  # before Prefect starts
    _existing_folder("--timings", timings)
    from aigc.modality import chosen_modalities

    _check_inputs(paths, params, chosen_modalities(only))
    run_record = runtime.start(paths.work)  # first ends what a killed run left running
    wait_for_api = _start_prefect_api(params, run_record)  # boots while the flows import
    from flows.retrain import retrain

    ready = _seconds_since_process_start()
    wait_for_api()
    summaries = retrain(
        root=str(paths.root),
        params_file=str(params_file) if params_file else None,
        overrides=overrides or [],
        force=force,
        only=only or None,
    )
    for summary in summaries.values():
        _print_summary(summary)
    if timings:
        last = list(summaries.values())[-1]  # the parts and seconds are the whole run's
        record = {"cli_ready": ready, "flow": last.seconds, "parts": last.timings}
        timings.write_text(json.dumps(record, indent=2) + "\n")
    _print_share_hint(paths.root)


def _seconds_since_process_start() -> float:
    import psutil

    return time.time() - psutil.Process().create_time()


# On aigc's own server: a tick starts within 2 s after its time (never before it, so that it
# does not meet the previous run still running), at one light request to loopback each 2 s.
OWN_SERVER_POLL_SECONDS = 2.0


@app.command("schedule")
def schedule(
    cron: Annotated[str, typer.Option(help='cron expression, e.g. "0 3 * * *"')],
    timezone: Annotated[str, typer.Option(help="IANA time zone of the cron")] = "UTC",
    name: Annotated[str, typer.Option(help="deployment name")] = "aigc-retrain",
    only: OnlyOption = None,
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """Serve the retrain flow as a Prefect deployment on a cron schedule, one run at a time
    (blocks; Ctrl-C or SIGTERM stops it). Without PREFECT_API_URL, on a Prefect server of
    aigc's own, stopped with the command: Prefect's temporary API runs no scheduler."""
    from aigc.modality import chosen_modalities
    from aigc.schedule import ScheduleServer

    paths, params = _project(params_file, overrides)
    _check_schedule(cron, timezone)
    chosen_modalities(only)
    record = runtime.start(paths.work)  # first ends what a killed command left running
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = None
    if not PREFECT_API_URL.value():
        server = ScheduleServer.start(paths.root, paths.work, record.scratch)
    before = signal.signal(signal.SIGTERM, _as_ctrl_c)  # from here on, the `finally` runs
    try:
        if server is not None:
            record.note_children()  # the moment it runs: the next command ends it if this dies
        from flows.retrain import scheduled_deployment  # imported while the server boots

        settings, poll_seconds = {}, None
        if server is not None:
            server.wait_ready(params.run.prefect_start_timeout_seconds)
            settings, poll_seconds = {PREFECT_API_URL: server.url}, OWN_SERVER_POLL_SECONDS
            console.print(
                f"aigc's Prefect server for the schedule: {server.url} (pid "
                f"{server.process.pid}; dashboard {server.url.removesuffix('/api')}; log "
                f"{escape(str(server.log))})",
                soft_wrap=True,
            )
        with temporary_settings(settings):
            deployment = scheduled_deployment(
                str(paths.root),
                cron,
                timezone,
                name,
                str(params_file) if params_file else None,
                overrides or [],
                only or None,
            )
            console.print(
                f"serving [bold]retrain/{name}[/] on cron {cron!r} ({timezone}); Ctrl-C stops"
            )
            _serve(deployment, poll_seconds)
    except KeyboardInterrupt:
        pass  # Ctrl-C or SIGTERM: stop the server, exit 0
    finally:
        signal.signal(signal.SIGTERM, before)
        if server is not None:
            console.print(f"aigc's Prefect server (pid {server.process.pid}) {server.stop()}")


def _as_ctrl_c(signum: int, frame: object) -> None:
    """SIGTERM handled as Ctrl-C is: asyncio's handler while an event loop runs (it cancels
    the loop's main task), else KeyboardInterrupt."""
    handler = signal.getsignal(signal.SIGINT)
    if not callable(handler):  # SIGINT ignored (a background job of a script)
        raise KeyboardInterrupt
    handler(signum, frame)


def _serve(deployment, poll_seconds: float | None) -> None:
    """Prefect's `serve(deployment)`, stopped by SIGTERM as by Ctrl-C; with `poll_seconds`, the
    runner asks for due runs that often and starts none before its time (Prefect's runner asks
    every 10 s for the runs due within the next 10 s, and starts them at once).

    Prefect's runner answers SIGTERM by calling its `stop` from the signal handler, inside its
    event loop, where that only creates a coroutine ("coroutine 'Runner.astop' was never
    awaited") and exits mid-loop. Here the runner's task is cancelled instead: the runner
    terminates its flow runs, pauses the schedule and returns."""
    import asyncio

    from prefect.runner import Runner

    class StoppableRunner(Runner):
        def handle_sigterm(self, signum: int, frame: object) -> None:
            _as_ctrl_c(signum, frame)

    timing = {} if poll_seconds is None else {"query_seconds": poll_seconds, "prefetch_seconds": 0}
    runner = StoppableRunner(pause_on_shutdown=True, **timing)
    runner.add_deployment(deployment)
    asyncio.run(runner.start())  # Ctrl-C: KeyboardInterrupt, once the runner has stopped


def _check_schedule(cron: str, timezone: str) -> None:
    """A UserError naming --cron or --timezone unless Prefect's schedule accepts them."""
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=cron)
    except ValueError:
        raise UserError(
            f"--cron {cron!r} is not a cron expression; give five fields, minute hour "
            'day-of-month month day-of-week, e.g. "0 3 * * *" for 03:00 every day'
        ) from None
    try:
        CronSchedule(cron=cron, timezone=timezone)
    except ValueError:
        raise UserError(
            f"--timezone {timezone!r} is not an IANA time zone; give one such as UTC, "
            "Europe/Berlin or America/New_York"
        ) from None


@app.command("reproduce")
def reproduce(
    target: Annotated[str | None, typer.Argument(help="NAME/VERSION, e.g. aigc-text/3")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="a training run id")] = None,
    tolerance: Annotated[float, typer.Option(help="relative tolerance per metric")] = 1e-6,
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """Rebuild a model from its data version and prove the metrics match (exit 0 if so)."""
    from aigc.reproduce import carry_out, plan_reproduction

    paths, params = _project(params_file, overrides)
    reproduction = plan_reproduction(paths, params, target, run_id)
    # The recorded budget, not this clone's params: exactly the original run's steps.
    with _training_progress(reproduction.train, reproduction.announcement) as on_progress:
        report = carry_out(paths, params, reproduction, tolerance, on_progress=on_progress)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    table = Table(
        "metric",
        "original",
        "reproduced",
        "difference",
        "ok",
        title=f"reproduction of run {report.original_run_id[:12]} "
        f"(data version {report.data_version[:12]})",
    )
    for row in report.metrics:
        table.add_row(
            row["metric"],
            f"{row['original']:.6g}",
            f"{row['reproduced']:.6g}",
            f"{row['difference']:.2e}",
            "yes" if row["ok"] else "[red]NO[/]",
        )
    console.print(table)
    weights = report.weights
    console.print(
        f"weights sha256: {'identical' if weights['equal'] else 'DIFFERENT'} "
        f"({weights['original']} vs {weights['reproduced']})"
    )
    console.print(f"reproduction run {report.reproduction_run_id} (tag reproduction_of)")
    if not report.matches:
        console.print("[bold red]the reproduction does not match[/]")
        raise typer.Exit(1)
    console.print("[bold green]the reproduction matches[/]")
