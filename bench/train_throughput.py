"""Training throughput: the single-process loop against the Ray path with 1 and 2 workers.

    .venv/bin/python bench/train_throughput.py [--steps 60] [--params params.yaml]

Same model, data and loop in each row (the project's train section on the current data
version in data/labeled, or a synthetic corpus when there is none). Prints tokens/s measured
inside the loop (steady state), wall time, peak memory, and the Ray path's fixed start-up
cost (wall time minus the time its steps took). Target: Ray with 1 worker at >= 0.9x the
single-process loop's tokens/s. Threads per process: 1, so the rows compare like with like.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from aigc.config import RayParams, load_params
from aigc.settings import apply_offline_defaults
from aigc.text.training import prepare_job
from aigc.train.job import train_single_process, with_loop
from aigc.train.loop import LoopHooks


def corpus(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    labeled = root / "data" / "labeled"
    if (labeled / "train.parquet").exists():
        return pd.read_parquet(labeled / "train.parquet"), pd.read_parquet(
            labeled / "validation.parquet"
        )
    words = "socket thread file number string list lock path server integer".split()  # noqa: SIM905
    texts = [" ".join(words[(i + j) % len(words)] for j in range(200)) for i in range(400)]
    frame = pd.DataFrame({"text": texts, "label": ["topic"] * len(texts)})
    return frame.iloc[:360], frame.iloc[360:]


def main() -> None:
    apply_offline_defaults()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    params = load_params(args.params)
    train, validation = corpus(Path("."))
    job = with_loop(
        prepare_job(train, validation, params.train),
        max_steps=args.steps,
        max_minutes=None,
        eval_every=0,
        checkpoint_every=0,
    )
    rows = []

    torch.set_num_threads(1)
    last: dict[str, float] = {}
    started = time.perf_counter()
    train_single_process(job, LoopHooks(on_step=last.update))
    wall = time.perf_counter() - started
    single = last["tokens_per_second"]
    rows.append(("single process", 1, single, wall, last["peak_memory_mb"], 0.0))

    from aigc.ray import connect, train_on_ray

    for workers in (1, 2):
        ray_params = RayParams(num_workers=workers, max_failures=0)
        connect(ray_params, Path(".aigc").resolve())
        seen: dict[str, float] = {}
        with tempfile.TemporaryDirectory() as storage:
            started = time.perf_counter()
            outcome = train_on_ray(
                job,
                ray_params,
                None,
                Path(storage),
                f"bench-{workers}",
                model_dir=Path(storage) / "model",
                on_progress=seen.update,
            )
            wall = time.perf_counter() - started
        tokens_per_second = outcome.metrics["tokens_per_second"]
        steps_seconds = outcome.metrics["tokens_seen"] / tokens_per_second
        rows.append(
            (
                f"ray, {workers} worker{'s' if workers > 1 else ''}",
                workers,
                tokens_per_second,
                wall,
                outcome.metrics.get("peak_memory_mb", float("nan")),
                wall - steps_seconds,
            )
        )

    print(
        f"\n{args.steps} steps, batch {job.batch_size} x block {job.block_size} per worker, "
        f"{job.model!r}"
    )
    header = f"{'path':<18}{'workers':>8}{'tokens/s':>11}{'vs single':>11}{'wall s':>9}"
    print(header + f"{'peak MB':>10}{'start-up s':>12}")
    for name, workers, tps, wall, memory, startup in rows:
        print(
            f"{name:<18}{workers:>8}{tps:>11,.0f}{tps / single:>10.2f}x{wall:>9.1f}"
            f"{memory:>10.0f}{startup:>12.1f}"
        )


if __name__ == "__main__":
    main()
