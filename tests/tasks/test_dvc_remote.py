"""DVC remotes: the committed .dvc/config names them; aigc writes only what it lacks, and a
failed pull says what DVC said. Real DVC in a temporary repository."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aigc.data.version import (
    VersionNotFound,
    checkout_version,
    configure_remote,
    init_project,
    remotes,
)
from aigc.text.modality import TEXT
from tests.conftest import REPO


def test_remotes_come_from_the_committed_config_and_a_failed_pull_says_why(tmp_path: Path):
    root = tmp_path / "project"
    init_project(root)
    shutil.copy(REPO / ".dvc" / "config", root / ".dvc" / "config")
    local = root / ".dvc" / "config.local"

    assert configure_remote(root, "storage", "dvc-remote") == str(root / "dvc-remote")
    configure_remote(root, "stack", "s3://dvc/aigc")
    assert remotes(root)["stack"] == "s3://dvc/aigc"
    assert "url" not in (local.read_text() if local.exists() else ""), "nothing to add"

    configure_remote(root, "storage", str(tmp_path / "elsewhere"))  # a remote moved here only
    assert "url = ../../elsewhere" in local.read_text()  # relative to .dvc/, as DVC reads it
    assert remotes(root)["storage"] == str(tmp_path / "elsewhere")

    with pytest.raises(VersionNotFound) as raised:
        checkout_version(root, "0" * 32, tmp_path / "out", TEXT.data, remote="storage")
    message = str(raised.value)
    assert "remote 'storage'" in message and "DVC says:\n" in message
    assert message.split("DVC says:\n", 1)[1].strip() and "nothing (exit" not in message
