"""`aigc data refresh` with every proxy variable pointing at a closed port, and no bypass list.

Prefect's client talks to its temporary API server on 127.0.0.1; before aigc added loopback
to NO_PROXY, those calls went to the proxy and the run died waiting for the server. The data
flow (real Prefect, real DVC repro and push to a folder remote) must now complete.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aigc.data.version import current_version, status
from aigc.text.modality import TEXT
from tests.http_fixture import PROXY_VARIABLES, closed_port

pytestmark = pytest.mark.slow

AIGC = str(Path(sys.executable).parent / "aigc")


def test_data_refresh_completes_behind_a_dead_proxy(project: Path):
    proxy = f"http://127.0.0.1:{closed_port()}"
    environment = {name: value for name, value in os.environ.items() if name.lower() != "no_proxy"}
    environment |= {name: proxy for name in PROXY_VARIABLES}
    result = subprocess.run(
        [AIGC, "data", "refresh", "--only", "text"],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    version = current_version(project, TEXT.data)
    assert f"data version {version[:12]}" in result.stdout
    text = {stage: state for stage, state in status(project).items() if "image" not in stage}
    assert text == {}, "DVC ran the text stages and they are clean (`--only text`)"
