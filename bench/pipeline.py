"""The whole pipeline on the defaults, as a user runs it: a first `aigc run`, then a rerun.

    .venv/bin/python bench/pipeline.py

Copies this working tree (code, params, dvc.yaml; no data, no MLflow store, no DVC cache)
into a temporary git repository, runs `aigc run --timings` there twice and prints, for the
first run and the no-change rerun, where the time went (each part, its share, and the fixed
overhead = wall - training - evaluation, text's and images'), then the default models'
figures read back from MLflow (steps trained, test bits per character against the unigram
baseline, label control; the image generator's Fréchet distance between its floor and
ceiling, conditional accuracy, recall, spread) and the image champion's sample grid, copied
to bench/default-run-grid.png. `make bench` writes the output into bench/RESULTS.md, where the
README quotes it.
"""

from __future__ import annotations

import json
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


def timed_run(folder: Path, name: str) -> tuple[float, str, dict]:
    timings = folder / f".timings-{name}.json"
    started = time.perf_counter()
    result = subprocess.run(
        [AIGC, "run", "--timings", str(timings)], cwd=folder, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"aigc run failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return seconds, result.stdout, json.loads(timings.read_text())


def breakdown(title: str, wall: float, record: dict) -> list[str]:
    """Each part of one run with its share of the wall time, and the fixed overhead."""
    parts = record["parts"]
    rows = [("CLI start (imports, config)", record["cli_ready"])]
    rows += [
        (
            "Prefect temporary API, flow start and end, exit",
            wall - record["cli_ready"] - record["flow"],
        )
    ]
    rows += list(parts.items())
    rows += [("other inside the flow", record["flow"] - sum(parts.values()))]
    training = sum(value for name, value in parts.items() if name.endswith("training"))
    evaluation = sum(value for name, value in parts.items() if name.endswith("evaluation"))
    compute = training + evaluation
    lines = [title, f"  {'part':<52}{'seconds':>9}{'share':>8}"]
    lines += [f"  {name:<52}{seconds:>9.1f}{seconds / wall:>8.0%}" for name, seconds in rows]
    lines.append(f"  {'wall':<52}{wall:>9.1f}{1:>8.0%}")
    lines.append(f"  {'fixed overhead (wall - training - evaluation)':<52}{wall - compute:>9.1f}")
    for prefix in ("text ", "image "):
        if parts.get(f"{prefix}training"):
            share = parts.get(f"{prefix}evaluation", 0.0) / parts[f"{prefix}training"]
            name = f"{prefix}evaluation / training compute"
            lines.append(f"  {name:<52}{share:>9.0%}")
    return lines


def champion_figures(folder: Path, modality: str) -> dict[str, float]:
    from aigc.config import load_params
    from aigc.modality import get_modality
    from aigc.registry.registry import CHAMPION, by_alias
    from aigc.tracking import TrackingSettings

    params = get_modality(modality).view(load_params(folder / "params.yaml"))
    settings = TrackingSettings.of(params.tracking, folder)
    champion = by_alias(settings, params.registry.model_name, CHAMPION)
    run = settings.client().get_run(champion.run_id)
    if modality == "image":  # the sample grid the README shows
        grid = folder / ".aigc" / "evaluations" / champion.run_id / "samples.png"
        shutil.copy(grid, REPO / "bench" / "default-run-grid.png")
    return {**run.data.metrics, "steps": float(run.data.tags["aigc.steps"])}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="aigc-bench-") as directory:
        folder = project_copy(Path(directory) / "project")
        first, _, first_record = timed_run(folder, "first")
        rerun, output, rerun_record = timed_run(folder, "rerun")
        assert "no change" in output, output[-2000:]
        figures = champion_figures(folder, "text")
        images = champion_figures(folder, "image")
    print("pipeline on the defaults (bench/pipeline.py)")
    print("\n".join(breakdown("first `aigc run`", first, first_record)))
    print("\n".join(breakdown("no-change rerun", rerun, rerun_record)))
    rows = [
        ("steps trained (default budget)", f"{figures['steps']:.0f}"),
        ("test bits per character", f"{figures['test_bits_per_character']:.3f}"),
        ("unigram baseline bits per character", f"{figures['unigram_bits_per_character']:.3f}"),
        ("label control: conditioned", f"{figures['label_control_accuracy']:.3f}"),
        (
            "label control: unconditioned",
            f"{figures['label_control_unconditioned_accuracy']:.3f}",
        ),
        ("label control: real-text ceiling", f"{figures['label_control_ceiling']:.3f}"),
        ("label control by labeling functions", f"{figures['label_control_lf_accuracy']:.3f}"),
    ]
    print("the default text model")
    for name, value in rows:
        print(f"  {name:<52}{value:>9}")
    print("the default image model (bench/default-run-grid.png: its samples, a row per class)")
    for name, key in (
        ("steps trained (default budget)", "steps"),
        ("Fréchet distance (classifier features)", "frechet_distance"),
        ("  floor: real train images", "floor_frechet_distance"),
        ("  ceiling: class mean + noise", "trivial_frechet_distance"),
        ("conditional accuracy", "conditional_accuracy"),
        ("recall", "recall"),
        ("within-class spread / real", "feature_spread_ratio"),
        ("feature classifier test accuracy", "classifier_test_accuracy"),
    ):
        print(f"  {name:<52}{images[key]:>9.3f}")


if __name__ == "__main__":
    main()
