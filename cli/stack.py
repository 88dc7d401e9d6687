"""`aigc stack up|status|down`: the real servers on 127.0.0.1 (PostgreSQL, S3, MLflow,
Prefect) and how they are printed."""

from __future__ import annotations

import time

import typer
from rich.markup import escape

from cli.app import _root, stack_app
from cli.output import console


@stack_app.command("up")
def stack_up() -> None:
    """Start the stack (what is not running yet), wait until healthy, write its profile."""
    from aigc.stack.stack import up

    started = time.perf_counter()
    statuses = up(_root(), say=lambda text: console.print(text, highlight=False))
    _print_stack(statuses)
    console.print(
        f"stack up in {time.perf_counter() - started:.1f} s; use it with "
        "[bold]aigc --profile stack COMMAND[/] (profile: .aigc/stack/profile.env)"
    )


@stack_app.command("status")
def stack_status() -> None:
    """Each service's URL and health (exit 1 unless all are healthy)."""
    from aigc.stack.stack import status

    statuses = status(_root())
    if statuses is None:
        console.print("the stack is not up here (nothing in .aigc/stack/): `aigc stack up`")
        raise typer.Exit(1)
    _print_stack(statuses)
    if not all(item.healthy for item in statuses):
        raise typer.Exit(1)


@stack_app.command("down")
def stack_down() -> None:
    """Stop exactly the processes `aigc stack up` started; the data stays."""
    from aigc.stack.stack import down

    outcomes = down(_root(), say=lambda text: console.print(text, highlight=False))
    if outcomes is None:
        console.print("the stack is not up here: nothing to stop")
    else:
        console.print("stack down (data kept in .aigc/stack/)")


def _print_stack(statuses) -> None:
    for item in statuses:
        if item.health is None:
            health = "[red]not running[/]"
        else:
            health = "[green]healthy[/]" if item.health.ok else "[red]unhealthy[/]"
            health += f" ({escape(item.health.detail)})"
        memory = f", {item.pss / 2**20:.0f} MiB" if item.pid else ""
        console.print(
            f"[bold]{item.name:<8}[/] {item.url}  pid {item.pid or '-'}{memory}  {health}",
            highlight=False,
            soft_wrap=True,
        )
    rss, pss = (sum(getattr(item, key) for item in statuses) for key in ("rss", "pss"))
    console.print(
        f"memory of the stack: {pss / 2**30:.2f} GiB (PSS; RSS summed {rss / 2**30:.2f})"
    )
