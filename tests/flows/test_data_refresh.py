"""The data flow end to end on real Prefect (test harness), real DVC in a temporary git repo.

One project goes through a whole life: a first run makes a data version per modality (text
from the inbox, images from the built-in digits); an unchanged rerun keeps them; DVC agrees
with Prefect (`dvc status` clean, `dvc repro` in a fresh clone gives byte-identical outputs);
new inbox data makes a new version; the old ones (text and image) check out intact.

Slow: DVC runs its stages for real (in this process), the digits are cleaned and hashed.
The commands run in this process against the session's Prefect test API.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from aigc.data.version import configure_remote, current_version, dvc, history, status
from aigc.image.dataset import read_labeled
from aigc.image.modality import IMAGE
from aigc.text.modality import TEXT
from tests.conftest import aigc_in_process, git, make_documents, write_documents

pytestmark = pytest.mark.slow


def files_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_data_flow_versions_reproduces_and_restores(project: Path, prefect_api, tmp_path: Path):
    from flows.data_refresh import data_refresh

    both = data_refresh(root=str(project))
    first, images = both.of("text"), both.of("image")
    version = current_version(project, TEXT.data)
    assert first.version == version and len(version) == 32
    assert status(project) == {}, "dvc status must be clean after the flow"

    # The image data version: its own DVC output, history and raw snapshot tracked by DVC.
    image_version = current_version(project, IMAGE.data)
    assert images.version == image_version != version
    assert [known.version for known in history(project, IMAGE.data)] == [image_version]
    assert (project / "data" / "image" / "raw.dvc").is_file()
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert {out["path"] for out in lock["stages"]["image_label"]["outs"]} >= {"data/image/labeled"}
    image_raw = pd.read_parquet(next((project / "data/image/raw").glob("snapshot-*.parquet")))
    image_clean = pd.read_parquet(project / "data/image/clean/records.parquet")
    image_held = pd.read_parquet(project / "data/image/clean/quarantine.parquet")
    assert len(image_raw) == len(image_clean) + len(image_held) == 1797
    splits = read_labeled(images.path)
    assert sum(len(split) for split in splits.values()) == images.counts["records"] == 1797
    assert splits["train"].pixels.shape[1:] == (8, 8, 1) and len(splits["test"].classes) == 10
    image_bytes = files_bytes(project / "data" / "image" / "labeled")

    raw = pd.read_parquet(next((project / "data" / "raw").glob("snapshot-*.parquet")))
    clean = pd.read_parquet(project / "data" / "clean" / "records.parquet")
    quarantine = pd.read_parquet(project / "data" / "clean" / "quarantine.parquet")
    assert len(raw) == len(clean) + len(quarantine) == 60
    assert set(raw["uri"]) == set(clean["uri"]) | set(quarantine["uri"])
    assert sum(first.counts["splits"].values()) == len(clean)
    first_bytes = files_bytes(project / "data" / "labeled")

    # Unchanged inputs: no new snapshot, DVC skips the stages, same version.
    again = data_refresh(root=str(project))
    assert again.of("text").version == version and again.of("image").version == image_version
    assert len(list((project / "data" / "raw").glob("snapshot-*.parquet"))) == 1
    assert [known.version for known in history(project, TEXT.data)] == [version]

    # dvc repro in a fresh clone with the same raw snapshot: byte-identical outputs.
    git(project, "add", "-A")
    git(project, "commit", "-qm", "data version 1")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    configure_remote(clone, "storage", str(tmp_path / "remote"))
    dvc(clone, "pull", "--quiet", "data/raw.dvc", "data/image/raw.dvc")
    assert aigc_in_process(clone, "params", "--write").exit_code == 0
    assert "Running stage 'label'" in dvc(clone, "repro").stdout
    assert git(clone, "status", "--porcelain", "dvc.lock") == "", "outputs differ in the clone"
    assert files_bytes(clone / "data" / "labeled") == first_bytes
    assert files_bytes(clone / "data" / "image" / "labeled") == image_bytes

    # New data in the inbox: a new snapshot and a new version.
    write_documents(project / "data" / "inbox", make_documents(12, seed=7, prefix="new"))
    second = data_refresh(root=str(project)).of("text")
    assert second.version != version
    assert [known.version for known in history(project, TEXT.data)] == [version, second.version]
    assert status(project) == {}

    # The CLI: status shows both; checkout of the first restores identical bytes.
    shown = aigc_in_process(project, "data", "status")
    assert shown.exit_code == 0, shown.output
    assert second.version in shown.output and version[:12] in shown.output
    restored = aigc_in_process(project, "data", "checkout", version[:10])
    assert restored.exit_code == 0, restored.output
    assert files_bytes(project / "data" / "labeled") == first_bytes

    # The image version restores the same way, from its own history.
    (project / "data" / "image" / "labeled" / "test.parquet").unlink()
    restored = aigc_in_process(
        project, "data", "checkout", "--modality", "image", image_version[:10]
    )
    assert restored.exit_code == 0, restored.output
    assert files_bytes(project / "data" / "image" / "labeled") == image_bytes


def test_checkout_from_the_remote_in_another_clone(project: Path, prefect_api, tmp_path: Path):
    from flows.data_refresh import data_refresh

    labeled = data_refresh(root=str(project), modalities=("text",)).of("text")
    expected = files_bytes(project / "data" / "labeled")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "v1")
    clone = tmp_path / "elsewhere"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    result = aigc_in_process(clone, "data", "checkout", labeled.version, "--out", "restored")
    assert result.exit_code == 0, result.output
    assert files_bytes(clone / "restored") == expected


def test_unknown_version_is_a_clear_error(project: Path):
    result = aigc_in_process(project, "data", "checkout", "abc123")
    assert result.exit_code == 2
    assert "no data version starts with 'abc123'" in result.output
    assert "aigc data status" in result.output


def test_set_on_data_refresh_is_used_recorded_and_never_written_to_params_yaml(
    project: Path, prefect_api
):
    """`--set` reaches DVC through params.effective.yaml; params.yaml keeps its bytes."""
    short = {
        f"short-{n}.txt": f"A short note number {n} about sockets and servers." for n in "abc"
    }
    write_documents(project / "data" / "inbox", short)  # 49 characters: kept at 40, not at 100
    before = (project / "params.yaml").read_bytes()
    run = aigc_in_process(
        project, "data", "refresh", "--only", "text", "--set", "clean.length.min_chars=100"
    )
    assert run.exit_code == 0, run.output
    assert (project / "params.yaml").read_bytes() == before
    effective = yaml.safe_load((project / "params.effective.yaml").read_text())
    assert effective["clean"]["length"]["min_chars"] == 100
    report = json.loads((project / "data" / "reports" / "clean.json").read_text())
    assert report["quarantined_by_rule"].get("length", 0) == 3, "the override was applied"
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert (
        lock["stages"]["clean"]["params"]["params.effective.yaml"]["clean"]["length"]["min_chars"]
        == 100
    )
    diff = dvc(project, "params", "diff", "--json").stdout
    assert json.loads(diff)["params.effective.yaml"]["clean.length.min_chars"]["new"] == 100

    # The next run without --set goes back to params.yaml's value, and DVC re-runs clean.
    plain = aigc_in_process(project, "data", "refresh", "--only", "text")
    assert plain.exit_code == 0, plain.output
    effective = yaml.safe_load((project / "params.effective.yaml").read_text())
    assert effective["clean"]["length"]["min_chars"] == 40
    report = json.loads((project / "data" / "reports" / "clean.json").read_text())
    assert report["quarantined_by_rule"].get("length", 0) == 0
    assert (project / "params.yaml").read_bytes() == before
