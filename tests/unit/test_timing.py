"""aigc.timing: named parts add up per name, as a context manager or a decorator."""

from __future__ import annotations

import time

from aigc import timing


def test_parts_add_up_per_name_in_order_of_first_appearance():
    timing.reset()

    @timing.timed("decorated")
    def work() -> str:
        time.sleep(0.01)
        return "done"

    assert work() == "done" and work() == "done"
    with timing.timed("block"):
        time.sleep(0.01)
    timing.record("given", 2.5)
    timing.record("given", -1.0)  # a negative measurement (clock noise) counts as nothing
    parts = timing.parts()
    assert list(parts) == ["decorated", "block", "given"]
    assert parts["decorated"] >= 0.02 and parts["block"] >= 0.01 and parts["given"] == 2.5
    timing.reset()
    assert timing.parts() == {}
