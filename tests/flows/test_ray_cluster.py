"""Joining an existing Ray cluster (`train.ray.address`) with the token the environment names.

A real Ray, started by another process with its own token, stands for the cluster; aigc's
`connect` joins it from fresh processes: with no token, a wrong one, and the right one.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

# The cluster: a Ray with token authentication; prints its address, ends when stdin closes.
CLUSTER = """
import sys, ray
ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
"""

JOIN = """
import sys
from pathlib import Path
from aigc.config import RayParams
from aigc.errors import UserError
from aigc.ray import connect
try:
    resources = connect(RayParams(address=sys.argv[1]), Path(sys.argv[2]))
except UserError as error:
    print(f"UserError: {error}")
    sys.exit(2)
print("joined", resources["CPU"])
"""


@pytest.fixture
def cluster(tmp_path):
    token = tmp_path / "cluster-token"
    token.write_text(secrets.token_hex(32))
    environment = without_ray_auth() | {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "HOME": str(tmp_path),
    }
    head = subprocess.Popen(
        [sys.executable, "-c", CLUSTER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
    )
    try:
        address = head.stdout.readline().strip()
        assert address, "the cluster did not start"
        yield address, token
    finally:
        head.stdin.close()  # ray.shutdown() at its exit stops the processes it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()


def without_ray_auth() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("RAY_AUTH")}


def test_joining_a_cluster_takes_its_token_from_the_environment(cluster, tmp_path):
    address, token = cluster
    home = tmp_path / "home"  # a token in the home folder is never used
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(token.read_text())
    base = without_ray_auth() | {
        "HOME": str(home),
        "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}",
    }
    tokens = {
        "none": {},
        "wrong": {"RAY_AUTH_TOKEN": secrets.token_hex(32)},
        "missing file": {"RAY_AUTH_TOKEN_PATH": str(tmp_path / "nothing-here")},
        "right": {"RAY_AUTH_TOKEN_PATH": str(token)},
    }
    joins = {
        name: subprocess.Popen(
            [sys.executable, "-c", JOIN, address, str(tmp_path / name / ".aigc")],
            env=base | extra,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, extra in tokens.items()
    }
    outcomes = {name: join.communicate(timeout=240) for name, join in joins.items()}
    stdout = {name: out for name, (out, _) in outcomes.items()}

    assert joins["right"].returncode == 0, outcomes["right"]
    assert stdout["right"].startswith("joined 1.0")
    for name in ("none", "wrong", "missing file"):
        assert joins[name].returncode == 2, outcomes[name]
        message = stdout[name].strip()
        assert message.startswith("UserError: ") and "\n" not in message, message
        assert address in message and "RAY_AUTH_TOKEN_PATH" in message, message
    assert "no token to join it" in stdout["none"]
    assert "refused the token from RAY_AUTH_TOKEN" in stdout["wrong"]
    assert "is not a file" in stdout["missing file"]
