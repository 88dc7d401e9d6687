"""The scaled-out shape beside the embedded default: `aigc run` both ways, one sitting.

    .venv/bin/python bench/stack.py

Two copies of this working tree (as bench/pipeline.py makes them): in the first, `aigc run`
on the embedded defaults (sqlite MLflow, Prefect's temporary API, a local Ray, a folder as
DVC remote); in the second, `aigc stack up` (PostgreSQL, S3, MLflow and Prefect servers, a
worker, a two-node Ray cluster, all on 127.0.0.1), then `aigc --profile stack run` with the
same defaults, then `aigc stack down`. Prints each wall time and the stack's memory.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import AIGC, project_copy  # noqa: E402 (a sibling script)


def timed(folder: Path, *arguments: str) -> float:
    started = time.perf_counter()
    result = subprocess.run([AIGC, *arguments], cwd=folder, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"aigc {' '.join(arguments)} failed:\n{result.stdout[-3000:]}{result.stderr}")
    return time.perf_counter() - started


def main() -> None:
    from aigc.stack.stack import down, status

    rows = []
    with tempfile.TemporaryDirectory(prefix="aigc-bench-stack-") as directory:
        embedded = project_copy(Path(directory) / "embedded")
        rows.append(("aigc run, embedded default (first run)", timed(embedded, "run")))
        stacked = project_copy(Path(directory) / "stacked")
        try:
            rows.append(("aigc stack up, from nothing", timed(stacked, "stack", "up")))
            services = status(stacked) or []
            run = timed(stacked, "--profile", "stack", "run")
            rows.append(("aigc --profile stack run (first run)", run))
            memory = sum(service.pss for service in services) / 2**30
            count = len(services)
        finally:
            started = time.perf_counter()
            down(stacked)
            rows.append(("aigc stack down", time.perf_counter() - started))
    print("aigc run on the defaults, embedded and on the stack (bench/stack.py)")
    for name, seconds in rows:
        print(f"  {name:<52}{seconds:>9.1f} s")
    name = f"memory of the stack after up (PSS, {count} services)"
    print(f"  {name:<52}{memory:>9.2f} GiB")


if __name__ == "__main__":
    main()
