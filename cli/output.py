"""What the verbs print: the console, counts, metrics, a training or evaluation result,
a run's summary, the hint to share data versions, and the training progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from aigc.config import ImageTrainParams, TrainParams

console = Console()


def _print_counts(counts: dict) -> None:
    table = Table("split", "records")
    for split, count in counts["splits"].items():
        table.add_row(split, str(count))
    labels = Table("label", "records", "share")
    total = max(1, sum(counts["labels"].values()))
    for label, count in sorted(counts["labels"].items(), key=lambda item: -item[1]):
        labels.add_row(label, str(count), f"{count / total:.1%}")
    console.print(table, labels)


def _print_share_hint(root: Path) -> None:
    """What to commit to share the data versions; nothing when git's HEAD has them."""
    from aigc.data.share import share_hint

    hint = share_hint(root)
    if hint:
        console.print(hint, highlight=False, markup=False, soft_wrap=True)


def _print_metrics(metrics: dict[str, float]) -> None:
    table = Table("metric", "value", title="evaluation")
    for key in sorted(metrics):
        table.add_row(key, f"{metrics[key]:.4g}")
    console.print(table)


def _print_trained(trained) -> None:
    console.print(
        f"\n[bold green]trained[/] run {trained.run_id} on data version "
        f"{trained.data_version[:12]}: {trained.steps} steps in {trained.seconds:.0f}s\n"
        f"model: {trained.model_uri}"
    )
    keys = ("train_loss", "val_loss", "restarts")
    _print_metrics({key: trained.metrics[key] for key in keys if key in trained.metrics})


def _print_evaluation(evaluation, modality) -> None:
    """The modality's headline figures, the run, and a sample per label (text)."""
    metrics = evaluation.metrics
    shown = modality.registered_metrics()
    _print_metrics({key: metrics[key] for key in shown if key in metrics})
    console.print(f"recorded in MLflow run {evaluation.run_id}")
    for label, texts in sorted(evaluation.samples.items()):
        if texts:
            console.print(f"{label}: {texts[0].strip()[:200]}", highlight=False, markup=False)


def _print_summary(summary) -> None:
    from aigc.modality import get_modality

    colour = {"promoted": "green", "rejected": "yellow", "no change": "cyan"}[summary.status]
    console.print(
        f"\n[bold]{summary.modality}[/]: [bold {colour}]{summary.status}[/] in "
        f"{summary.seconds:.0f}s · data version "
        f"{summary.data_version[:12]} · run {summary.run_id[:12]} · challenger version "
        f"{summary.challenger_version} · champion version {summary.champion_version or '-'}"
    )
    table = Table("metric", "challenger", "champion (same test split)")
    for key in get_modality(summary.modality).registered_metrics():
        if key in summary.challenger_metrics:
            champion = (summary.champion_metrics or {}).get(key)
            table.add_row(
                key,
                f"{summary.challenger_metrics[key]:.4g}",
                "-" if champion is None else f"{champion:.4g}",
            )
    console.print(table)
    for reason in summary.reasons:
        console.print(f"  - {reason}", highlight=False, markup=False)
    for label, text in sorted(summary.samples.items()):
        console.print(f"{label}: {text.strip()[:160]}", highlight=False, markup=False)


def _training_progress(train: TrainParams | ImageTrainParams, announcement: str | None = None):
    """A rich progress bar fed by rank 0 of the Ray workers, training with `train`.

    Its total is the step that the first budget to run out stops at: max_steps or max_tokens
    exactly, max_minutes estimated from the rate so far ("~"); the column after it says which.
    `announcement` replaces the first line, "training until <the budgets>"."""
    import contextlib

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from aigc.train.progress import (
        BudgetEstimate,
        describe_budgets,
        throughput,
        tokens_per_step,
    )

    loop, step_tokens = train.loop, tokens_per_step(train)
    announcement = announcement or f"training until {describe_budgets(loop, step_tokens)}"

    @contextlib.contextmanager
    def progress():
        columns = (
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[limit]}"),
            TextColumn("loss {task.fields[loss]:.3f}"),
            TextColumn("lr {task.fields[lr]:.2e}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
        )
        bar = Progress(*columns, console=console, transient=False)
        estimate = BudgetEstimate(loop, step_tokens)
        shown: list = []  # the bar's task, once training has started
        budget = estimate.update({"step": 0})

        def update(metrics: dict) -> None:
            nonlocal budget
            if not shown:  # shown from the first step: a command that fails before shows none
                console.print(announcement)
                bar.start()
                shown.append(
                    bar.add_task("train", total=budget.steps, limit="", loss=0.0, lr=0.0, rate="")
                )
            budget = estimate.update(metrics)
            bar.update(
                shown[0],
                total=budget.steps,
                limit=("~" if budget.estimated else "") + budget.limit,
                completed=metrics["step"],
                loss=metrics["train_loss"],
                lr=metrics["lr"],
                rate=throughput(metrics).strip(),
            )

        try:
            yield update
            if shown and budget.estimated:  # time ran out at the last step shown: the total
                bar.update(shown[0], total=bar.tasks[0].completed)
        finally:
            if shown:
                bar.stop()

    return progress()
