"""What DVC shows as metrics after a real `dvc repro` of dvc.yaml: a short table of numbers.

The whole clean and label reports (strings, per-function figures, a copy of the params) once
were the metrics and made `dvc metrics show` and `dvc exp show` about 500 columns wide; now
they are plain outputs and the metrics are their headline numbers. Slow: it runs the whole
data DAG of both modalities through `dvc repro` (about 9 s), end to end.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aigc.config import load_params, write_effective_params
from aigc.data.version import dvc, status
from aigc.image.modality import IMAGE
from aigc.paths import ProjectPaths
from aigc.stages.clean import cleaned_dataset
from aigc.stages.collect import collect
from aigc.stages.label import labeled_dataset
from aigc.text.modality import TEXT

pytestmark = pytest.mark.slow


def leaves(tree: dict, prefix: str = "") -> dict:
    """{"a.b": value} for every value that is not a dict."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= leaves(value, f"{prefix}{key}.")
        else:
            flat[prefix + key] = value
    return flat


def test_metrics_are_a_few_numbers_and_the_reports_stay_outputs(project: Path):
    paths = ProjectPaths.at(project)
    params = load_params(paths.params)
    write_effective_params(params, paths.effective_params)
    collect(paths, params, TEXT)
    collect(paths, params, IMAGE)
    dvc(project, "repro")
    assert status(project) == {}

    shown = json.loads(dvc(project, "metrics", "show", "--json").stdout)
    files = shown[""]["data"]
    assert set(files) == {
        "data/reports/clean_metrics.json",
        "data/reports/label_metrics.json",
        "data/image/reports/clean_metrics.json",
        "data/image/reports/label_metrics.json",
    }
    metrics = {
        f"{name}:{key}": value
        for name, entry in files.items()
        for key, value in leaves(entry["data"]).items()
    }
    assert 0 < len(metrics) < 40, sorted(metrics)
    assert all(
        isinstance(value, int | float) and not isinstance(value, bool)
        for value in metrics.values()
    ), metrics
    clean, label = "data/reports/clean_metrics.json", "data/reports/label_metrics.json"
    text = paths.data(TEXT.data)
    cleaned, labeled = cleaned_dataset(text), labeled_dataset(text)
    assert metrics[f"{clean}:input_records"] == 60
    assert metrics[f"{clean}:output_records"] == cleaned.records
    assert metrics[f"{clean}:quarantined_records"] == cleaned.quarantined
    assert metrics[f"{label}:records"] == cleaned.records
    assert sum(metrics[f"{label}:splits.{split}"] for split in labeled.counts["splits"]) == (
        cleaned.records
    )
    assert 0 <= metrics[f"{label}:coverage"] <= 1

    experiments = json.loads(dvc(project, "exp", "show", "--json").stdout)
    workspace = experiments[0]["data"]["metrics"]
    assert sum(len(leaves(entry["data"])) for entry in workspace.values()) == len(metrics)

    report = json.loads((text.reports / "label.json").read_text())
    assert "labeling_functions" in report, "the whole report is still written"
    assert (text.reports / "clean.json").exists() and (text.reports / "clean_lengths.png").exists()
