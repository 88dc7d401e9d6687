"""The whole pipeline on the defaults, as a user runs it: a first `aigc run`, then a rerun.

    .venv/bin/python bench/pipeline.py

Copies this working tree (code, params, dvc.yaml; no data, no MLflow store, no DVC cache)
into a temporary git repository, runs `aigc run` there twice and prints one table: wall
time of the first run and of the no-change rerun, and the default model's figures read back
from MLflow (steps trained, test bits per character against the unigram baseline, label
control). `make bench` writes the output into bench/RESULTS.md, where the README quotes it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AIGC = str(Path(sys.executable).parent / "aigc")
COPIED = ("src", "cli", "flows", "tasks", "data/labels", "pyproject.toml", "params.yaml")
COPIED += ("dvc.yaml", "prefect.toml", ".dvc/config", ".dvcignore", ".gitignore")


def project_copy(folder: Path) -> Path:
    for name in COPIED:
        source, target = REPO / name, folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target)
    (folder / "data" / "inbox").mkdir(parents=True)
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(
            ["git", "-c", "user.email=bench@aigc", "-c", "user.name=bench", *command],
            cwd=folder,
            check=True,
        )
    return folder


def timed_run(folder: Path) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run([AIGC, "run"], cwd=folder, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"aigc run failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return seconds, result.stdout


def champion_figures(folder: Path) -> dict[str, float]:
    from aigc.config import load_params
    from aigc.registry.registry import CHAMPION, by_alias
    from aigc.tracking import TrackingSettings

    params = load_params(folder / "params.yaml")
    settings = TrackingSettings.of(params.tracking, folder)
    champion = by_alias(settings, params.registry.model_name, CHAMPION)
    run = settings.client().get_run(champion.run_id)
    return {**run.data.metrics, "steps": float(run.data.tags["aigc.steps"])}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="aigc-bench-") as directory:
        folder = project_copy(Path(directory) / "project")
        first, _ = timed_run(folder)
        rerun, output = timed_run(folder)
        assert "no change" in output, output[-2000:]
        figures = champion_figures(folder)
    rows = [
        ("first `aigc run` (wall s)", f"{first:.0f}"),
        ("no-change rerun (wall s)", f"{rerun:.0f}"),
        ("steps trained (default budget)", f"{figures['steps']:.0f}"),
        ("test bits per character", f"{figures['test_bits_per_character']:.3f}"),
        ("unigram baseline bits per character", f"{figures['unigram_bits_per_character']:.3f}"),
        ("label control: conditioned", f"{figures['label_control_accuracy']:.3f}"),
        (
            "label control: unconditioned",
            f"{figures['label_control_unconditioned_accuracy']:.3f}",
        ),
    ]
    print("pipeline on the defaults (bench/pipeline.py)")
    print(f"  {'measure':<40}{'value':>10}")
    for name, value in rows:
        print(f"  {name:<40}{value:>10}")


if __name__ == "__main__":
    main()
