"""aigc.ray.progress.drain: the driver's side of rank 0's progress queue.

The queue here is a stand-in with Ray's queue's two methods, not a test of Ray: it hands
out its items, then fails the way a queue whose actor died with its node does."""

from __future__ import annotations

import queue
import threading

from ray.exceptions import ActorDiedError

from aigc.ray.progress import drain


class DyingQueue:
    """Gives `items`, then says "empty" `empty_gets` times, then raises `death` forever."""

    def __init__(self, items: list[dict], death: Exception, empty_gets: int = 0) -> None:
        self.items, self.death, self.empty_gets = list(items), death, empty_gets
        self.calls = 0

    def get(self, timeout: float) -> dict:
        self.calls += 1
        if self.items:
            return self.items.pop(0)
        if self.empty_gets:
            self.empty_gets -= 1
            raise queue.Empty
        raise self.death

    def empty(self) -> bool:
        if self.items:
            return False
        raise self.death


def drain_in_a_thread(progress, done: threading.Event) -> tuple[list[dict], list, bool]:
    """Run `drain` as train_on_ray does (a thread); what it handed on, the exceptions that
    escaped the thread, and whether it ended."""
    heard: list[dict] = []
    escaped: list = []
    previous_hook = threading.excepthook
    threading.excepthook = escaped.append  # where "Exception in thread …" is printed from
    try:
        thread = threading.Thread(target=drain, args=(progress, heard.append, done, {}))
        thread.start()
        thread.join(timeout=5)
    finally:
        threading.excepthook = previous_hook
    return heard, escaped, not thread.is_alive()


def test_a_queue_that_dies_mid_training_ends_the_progress_quietly(capsys):
    items = [{"step": 1, "elapsed_seconds": 0.1}, {"step": 2, "elapsed_seconds": 0.2}]
    progress = DyingQueue(items, ActorDiedError(), empty_gets=2)
    heard, escaped, ended = drain_in_a_thread(progress, threading.Event())  # training goes on
    assert ended, "draining stops once the queue is dead, though training is not done"
    assert heard == items, "what came before the death is shown"
    assert escaped == []
    assert progress.calls == len(items) + 3, "one failed get is enough to stop: no spinning"
    assert capsys.readouterr() == ("", "")


def test_a_queue_that_is_dead_when_training_ends_ends_the_progress_quietly(capsys):
    done = threading.Event()
    done.set()
    items = [{"step": 30}]
    heard, escaped, ended = drain_in_a_thread(DyingQueue(items, RuntimeError("gone")), done)
    assert (heard, escaped, ended) == (items, [], True)
    assert capsys.readouterr() == ("", "")
