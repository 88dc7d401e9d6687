"""Where a run's time goes: named parts, timed where they happen, summed per name.

    with timed("collect"):
        ...
    record("training", seconds)
    parts()   # {"collect": 3.1, "training": 96.0, ...}, in order of first appearance

Process-wide and thread-safe (Prefect runs tasks in threads of the flow's process). The
retrain summary carries `parts()`; `bench/pipeline.py` prints them as a table.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_LOCK = threading.Lock()
_PARTS: dict[str, float] = {}
_PREFIX = [""]  # the scope's name, put before every part recorded in it


def record(name: str, seconds: float) -> None:
    with _LOCK:
        name = _PREFIX[0] + name
        _PARTS[name] = _PARTS.get(name, 0.0) + max(0.0, seconds)


@contextmanager
def scope(prefix: str) -> Iterator[None]:
    """Parts recorded inside are named `prefix` + name ("image " + "training"): the retrain
    flow runs one modality after the other, each in its scope (process-wide, not nested)."""
    _PREFIX[0] = prefix
    try:
        yield
    finally:
        _PREFIX[0] = ""


@contextmanager
def timed(name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        record(name, time.perf_counter() - started)


def parts() -> dict[str, float]:
    with _LOCK:
        return dict(_PARTS)


def reset() -> None:
    with _LOCK:
        _PARTS.clear()
