"""The `clean` stage: the newest raw snapshot -> clean records, and a quarantine for the rest.

    cleaned = clean(paths, params)          # what DVC's stage runs (`aigc data clean`)
    cleaned, dvc_lines = run_in_dvc(paths)  # `dvc repro clean`: skipped when nothing changed

Outputs: data/clean/{records,quarantine}.parquet, data/reports/clean.json (the whole report),
data/reports/clean_metrics.json (its headline numbers, DVC's metrics) and a length histogram.
Every removed record is in the quarantine with its rule; raw = clean + quarantined.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from aigc import timing
from aigc.config import Params
from aigc.data.clean import clean_records, write_length_histogram
from aigc.data.collect import latest_snapshot, read_snapshot
from aigc.data.version import repro
from aigc.errors import UserError
from aigc.paths import ProjectPaths


@dataclass(frozen=True)
class CleanedDataset:
    path: Path
    records: int
    quarantined: int
    quarantined_by_rule: dict[str, int]


def clean(paths: ProjectPaths, params: Params) -> CleanedDataset:
    snapshot = latest_snapshot(paths.raw)
    if snapshot is None:
        raise UserError(
            f"no raw snapshot in {paths.raw}: run `aigc data collect` (or `aigc data refresh`)"
        )
    result = clean_records(read_snapshot(snapshot), params.clean)
    paths.clean.mkdir(parents=True, exist_ok=True)
    result.records.to_parquet(paths.clean / "records.parquet", index=False)
    result.quarantine.to_parquet(paths.clean / "quarantine.parquet", index=False)
    write_json(paths.reports / "clean.json", {**result.report, "snapshot": snapshot.name})
    write_json(paths.reports / "clean_metrics.json", clean_metrics(result.report))
    write_length_histogram(result.records, result.report, paths.reports / "clean_lengths.png")
    return cleaned_dataset(paths)


def run_in_dvc(paths: ProjectPaths) -> tuple[CleanedDataset, list[str]]:
    """`dvc repro clean` (which runs `clean` unless raw, code and params are unchanged)."""
    with timing.timed("clean"):
        lines = repro(paths.root, "clean")
    return cleaned_dataset(paths), lines


def cleaned_dataset(paths: ProjectPaths) -> CleanedDataset:
    """The reference to the stage's outputs, read from its report."""
    report = json.loads((paths.reports / "clean.json").read_text())
    by_rule = report["quarantined_by_rule"]
    return CleanedDataset(
        path=paths.clean,
        records=int(report["output_records"]),
        quarantined=int(sum(by_rule.values())),
        quarantined_by_rule={str(rule): int(count) for rule, count in by_rule.items()},
    )


def clean_metrics(report: dict) -> dict:
    """The report's headline numbers, all counts: what `dvc metrics show` and `exp show` list.

    The whole report (lengths, characters, the params used) stays in clean.json, an output
    like any other: declared as metrics, its strings and params made hundreds of columns."""
    return {
        "input_records": report["input_records"],
        "output_records": report["output_records"],
        "quarantined_records": report["quarantined_records"],
        "quarantined_by_rule": dict(report["quarantined_by_rule"]),
    }


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
