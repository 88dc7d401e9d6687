"""The `clean` stage: a modality's newest raw snapshot -> clean records, and a quarantine.

    cleaned = clean(paths, params, modality)          # what its DVC stage runs (`aigc data clean`)
    cleaned, dvc_lines = run_in_dvc(paths, modality)  # `dvc repro clean` / `image_clean`: skipped
                                                      # when raw, code and params are unchanged

Outputs, under the modality's data folder: clean/{records,quarantine}.parquet,
reports/clean.json (the whole report), reports/clean_metrics.json (its headline numbers,
DVC's metrics) and the modality's figures (text: a length histogram). Every removed record
is in the quarantine with its rule; raw = clean + quarantined.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from aigc import timing
from aigc.config import Params
from aigc.data.snapshots import latest_snapshot, read_snapshot
from aigc.data.version import repro
from aigc.errors import UserError
from aigc.modality import Modality, data_of
from aigc.paths import DataPaths, ProjectPaths


@dataclass(frozen=True)
class CleanedDataset:
    path: Path
    records: int
    quarantined: int
    quarantined_by_rule: dict[str, int]


def clean(paths: ProjectPaths, params: Params, modality: Modality) -> CleanedDataset:
    where = paths.data(data_of(modality))
    snapshot = latest_snapshot(where.raw)
    if snapshot is None:
        raise UserError(
            f"no raw snapshot in {where.raw}: run `aigc data collect --modality "
            f"{modality.name}` (or `aigc data refresh`)"
        )
    result = modality.clean_records(read_snapshot(snapshot), modality.data_section(params).clean)
    where.clean.mkdir(parents=True, exist_ok=True)
    result.records.to_parquet(where.clean / "records.parquet", index=False)
    result.quarantine.to_parquet(where.clean / "quarantine.parquet", index=False)
    write_json(where.reports / "clean.json", {**result.report, "snapshot": snapshot.name})
    write_json(where.reports / "clean_metrics.json", clean_metrics(result.report))
    if modality.clean_figures is not None:
        modality.clean_figures(result, where.reports)
    return cleaned_dataset(where)


def run_in_dvc(paths: ProjectPaths, modality: Modality) -> tuple[CleanedDataset, list[str]]:
    """`dvc repro` of the modality's clean stage (which runs `clean` unless raw, code and
    params are unchanged)."""
    layout = data_of(modality)
    with timing.timed("clean"):
        lines = repro(paths.root, layout.clean_stage)
    return cleaned_dataset(paths.data(layout)), lines


def cleaned_dataset(where: DataPaths) -> CleanedDataset:
    """The reference to the stage's outputs, read from its report."""
    report = json.loads((where.reports / "clean.json").read_text())
    by_rule = report["quarantined_by_rule"]
    return CleanedDataset(
        path=where.clean,
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
