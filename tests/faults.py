"""Faults the tests cause, passed into the code under test through its hooks.

`train_on_ray(..., on_worker_step=KillRank(rank=1, step=15, marker=path))` kills rank 1's
worker process right after step 15, once: the marker file records that it happened (and a
restarted group, which finds it, trains on). The hook is pickled to Ray's workers, which
import this module from the test session's path.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KillRank:
    """A step hook that ends one worker's process the hard way, as a lost machine would."""

    rank: int
    step: int
    marker: Path
    # Ray's controller picks reported checkpoints up at its health-check interval (0.5 s, aigc's
    # setting): wait so that the one before the kill is registered, as it would be in a run
    # with real step times.
    delay_seconds: float = 2.0

    def __call__(self, rank: int, step: int) -> None:
        if rank != self.rank or step != self.step or self.marker.exists():
            return
        time.sleep(self.delay_seconds)
        self.marker.write_text(f"killed rank {rank}\n")
        os._exit(1)  # no cleanup, no exception: the process is simply gone

    def happened(self) -> bool:
        return self.marker.read_text() == f"killed rank {self.rank}\n"


@dataclass(frozen=True)
class Faults:
    """Several step hooks as one, called in order."""

    hooks: tuple

    def __init__(self, *hooks) -> None:
        object.__setattr__(self, "hooks", hooks)

    def __call__(self, rank: int, step: int) -> None:
        for hook in self.hooks:
            hook(rank, step)


@dataclass(frozen=True)
class RecordSteps:
    """A step hook that writes every step rank 0 takes to a file, one line each: where each
    start of the worker group began shows whether it resumed from a checkpoint."""

    path: Path

    def __call__(self, rank: int, step: int) -> None:
        if rank == 0:
            with self.path.open("a") as file:
                file.write(f"{os.getpid()} {step}\n")

    def starts(self) -> list[int]:
        """The first step of each worker process of rank 0, in order."""
        first: dict[str, int] = {}
        for line in self.path.read_text().splitlines():
            pid, step = line.split()
            first.setdefault(pid, int(step))
        return list(first.values())
