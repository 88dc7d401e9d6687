"""What the clean stage says about a run: the report dict and the length histogram PNG.

`build_report` is called by `clean_records`; its dict is deterministic (no timestamps, no
timings) so two runs on the same input write byte-identical JSON. `write_length_histogram`
is for the stage's edges (task, CLI): it draws the clean text lengths with matplotlib's Agg
backend and writes a PNG without date or software metadata, so it is byte-identical too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from aigc.config import CleanParams


def build_report(
    raw: pd.DataFrame,
    records: pd.DataFrame,
    quarantine: pd.DataFrame,
    params: CleanParams,
    rules: tuple[str, ...],
    changed: dict[str, int],
) -> dict:
    """Counts per rule, characters in and out, clean length stats and the params used."""
    by_rule = quarantine["rule"].value_counts()
    length_details = quarantine.loc[quarantine["rule"] == "length", "detail"]
    lengths = records["text"].str.len().to_numpy()
    return {
        "input_records": len(raw),
        "output_records": len(records),
        "quarantined_records": len(quarantine),
        "quarantined_by_rule": {rule: int(by_rule.get(rule, 0)) for rule in rules},
        "length_quarantined": {
            kind: int(length_details.str.startswith(kind + ":").sum())
            for kind in ("too_short", "too_long")
        },
        "texts_changed": {name: changed.get(name, 0) for name in ("normalize", "strip_markup")},
        "chars_in": int(raw["text"].str.len().sum()),
        "chars_out": int(lengths.sum()),
        "clean_length": {
            "min": int(lengths.min()) if len(lengths) else None,
            "median": float(np.median(lengths)) if len(lengths) else None,
            "p95": round(float(np.percentile(lengths, 95)), 1) if len(lengths) else None,
            "max": int(lengths.max()) if len(lengths) else None,
        },
        "params": params.model_dump(mode="json"),
    }


def write_length_histogram(records: pd.DataFrame, report: dict, path: Path | str) -> Path:
    """Write a PNG histogram of the clean records' text lengths (log x) with the length rule's
    bounds, from the clean report (`build_report`'s)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    lengths = records["text"].str.len().to_numpy()
    length_params = report["params"]["length"]
    too = report["length_quarantined"]
    figure = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if len(lengths):
        bins = np.geomspace(max(1, lengths.min()), max(2, lengths.max()) * 1.01, 50)
        axes.hist(lengths, bins=bins, color="#4c72b0")
    axes.set_xscale("log")
    if length_params["enabled"]:
        for bound in (length_params["min_chars"], length_params["max_chars"]):
            axes.axvline(max(bound, 1), color="#c44e52", linestyle="--", linewidth=1)
    axes.set_xlabel("clean text length (characters, log scale)")
    axes.set_ylabel("records")
    axes.set_title(
        f"{len(lengths)} clean records; quarantined by length: "
        f"{too['too_short']} too short (< {length_params['min_chars']}), "
        f"{too['too_long']} too long (> {length_params['max_chars']})",
        fontsize=9,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", metadata={"Software": None})
    return path


def write_clean_figures(result: object, reports: Path) -> None:
    """The text modality's figures of a clean run: the length histogram (clean_lengths.png,
    the DVC stage's plot)."""
    write_length_histogram(result.records, result.report, reports / "clean_lengths.png")
