"""Image-training throughput: the single-process loop against the Ray path with 1 worker.

    .venv/bin/python bench/image_throughput.py [--steps 200] [--families dcgan,vae,ddpm]

Each family's default config (`image.train`) on scikit-learn's 8x8 digits (1,500 train
images), the same job in each row. Prints images/s measured inside the loop (steady state),
the ratio to the single process, wall time and the Ray path's fixed start-up cost (wall time
minus the time its steps took). Threads per process: 1, so the rows compare like with like.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from aigc.config import ImageTrainParams, RayParams
from aigc.image.training import prepare_image_job
from aigc.settings import apply_offline_defaults
from aigc.train.job import train_single_process, with_loop
from aigc.train.loop import LoopHooks


def digits() -> tuple[SimpleNamespace, SimpleNamespace]:
    from sklearn.datasets import load_digits

    data = load_digits()
    pixels = (data.images * (255 / 16)).round().astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    labels, classes = data.target.astype(np.int64), [str(digit) for digit in range(10)]
    return (
        SimpleNamespace(pixels=pixels[:1500], labels=labels[:1500], classes=classes),
        SimpleNamespace(pixels=pixels[1500:], labels=labels[1500:], classes=classes),
    )


def main() -> None:
    apply_offline_defaults()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--families", default="dcgan,vae,ddpm")
    args = parser.parse_args()

    from aigc.ray import connect, train_on_ray

    torch.set_num_threads(1)
    ray_params = RayParams(num_workers=1, max_failures=0)
    connect(ray_params, Path(".aigc").resolve())
    train, validation = digits()
    rows = []
    for family in args.families.split(","):
        params = ImageTrainParams.model_validate({"model": {"family": family}})
        job = with_loop(
            prepare_image_job(train, validation, params),
            max_steps=args.steps,
            max_minutes=None,
            eval_every=0,
            checkpoint_every=0,
        )
        last: dict[str, float] = {}
        started = time.perf_counter()
        train_single_process(job, LoopHooks(on_step=last.update))
        single = last["tokens_per_second"]  # the loop's unit: images for image families
        rows.append((family, "single process", single, single, time.perf_counter() - started, 0.0))
        with tempfile.TemporaryDirectory() as storage:
            started = time.perf_counter()
            outcome = train_on_ray(
                job, ray_params, None, Path(storage), f"bench-{family}", Path(storage) / "m"
            )
            wall = time.perf_counter() - started
        images_per_second = outcome.metrics["images_per_second"]
        steps_seconds = outcome.metrics["images_seen"] / images_per_second
        rows.append(
            (family, "ray, 1 worker", images_per_second, single, wall, wall - steps_seconds)
        )

    print(f"\n{args.steps} steps, batch {job.batch_size}, 8x8 digits, 1 thread per process")
    header = f"{'family':<8}{'path':<17}{'images/s':>10}{'vs single':>11}{'wall s':>9}"
    print(header + f"{'start-up s':>12}")
    for family, path, rate, single, wall, startup in rows:
        print(
            f"{family:<8}{path:<17}{rate:>10,.0f}{rate / single:>10.2f}x{wall:>9.1f}"
            f"{startup:>12.1f}"
        )


if __name__ == "__main__":
    main()
