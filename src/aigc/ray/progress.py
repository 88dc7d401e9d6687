"""Rank 0's progress (step, loss, lr, tokens/s) on its way to the driver, through a Ray queue.

    progress = open_queue()                  # in the driver, before the trainer starts
    progress.put_nowait(record)              # rank 0, at most every PROGRESS_INTERVAL_SECONDS
    drain(progress, on_progress, done, first)  # a driver thread, until training is done

The caller shows what `on_progress` hears (a progress bar in the CLI). Progress is best
effort: a full queue drops an update, and a queue whose node is lost ends the progress, not
the training.
"""

from __future__ import annotations

import queue
import threading
import time

PROGRESS_INTERVAL_SECONDS = 0.25


def open_queue():
    """A Ray queue on the driver's node: a queue on a worker node dies with it, and no
    progress comes after."""
    import ray
    from ray.util.queue import Queue
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(
        node_id=ray.get_runtime_context().get_node_id(), soft=False
    )
    return Queue(maxsize=1000, actor_options={"num_cpus": 0, "scheduling_strategy": here})


def drain(progress, on_progress, done: threading.Event, first: dict) -> None:
    """Hand rank 0's progress to `on_progress` until training is done and the queue empty.

    `first` is filled when the first step arrives: when, and how long that step itself took.
    A queue whose actor died (ActorDiedError: its node lost) can deliver nothing more: the
    progress ends there, quietly, and the training goes on."""
    while True:
        try:
            if done.is_set() and progress.empty():
                return
            item = progress.get(timeout=0.5)
        except queue.Empty:  # nothing within the timeout (ray's Empty is one)
            continue
        except Exception:  # the queue's actor is gone
            return
        if not first:  # when the first step arrived, and how long that step itself took
            first.update(at=time.perf_counter(), elapsed=item.get("elapsed_seconds", 0.0))
        if on_progress is not None:
            on_progress(item)
