"""The whole pipeline on the stack: `aigc run` against real servers and a two-node Ray cluster,
then a reproduction from a second clone, then the deployed `retrain` run by the stack's worker.

One stack per module (starting it is most of the time). Everything is checked through each
server's own API: MLflow's REST API, Prefect's, the S3 bucket with the profile's key. The
stack is down at the end, and no process it started is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml

from aigc.stack.stack import StackPaths
from tests.conftest import REPO, TINY, git, make_documents, make_project, write_documents
from tests.stack.test_stack import aigc, ok, read_env, s3_client

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def get(url: str, body: dict | None = None) -> dict | list:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def mlflow(profile: dict[str, str], endpoint: str, **query: str) -> dict:
    url = f"{profile['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/{endpoint}"
    return get(f"{url}?{urllib.parse.urlencode(query)}")


def keyed(profile: dict[str, str]):
    """An S3 client with the profile's key."""
    return s3_client(
        profile,
        aws_access_key_id=profile["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=profile["AWS_SECRET_ACCESS_KEY"],
    )


def bucket_keys(profile: dict[str, str], bucket: str, prefix: str = "") -> list[str]:
    s3 = keyed(profile)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


@pytest.fixture(scope="module")
def stack():
    """A committed project (the repo's .dvc/config, flows and prefect.yaml, TINY training) with
    its stack up; yields (root, profile); the stack goes down at the end, checked.

    Not under pytest's basetemp: a pytest starting beside this one makes that folder 0700
    again, and PostgreSQL, run as its own system user, could no longer reach its data."""
    base = Path(tempfile.mkdtemp(prefix="aigc-stack-test-"))
    base.chmod(0o755)
    root = make_project(base / "project", base / "unused-remote")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params.update(TINY)
    del params["version"]  # the committed .dvc/config's remotes; the profile picks `stack`
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copy(REPO / ".dvc" / "config", root / ".dvc" / "config")
    shutil.copy(REPO / ".gitignore", root / ".gitignore")
    shutil.copy(REPO / "prefect.yaml", root / "prefect.yaml")
    shutil.copytree(REPO / "flows", root / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "stack project")
    started = time.monotonic()
    up = aigc(root, "stack", "up")
    state = json.loads(StackPaths(root).state.read_text())
    try:
        ok(up)
        print(f"stack up: {time.monotonic() - started:.1f} s")
        yield root, read_env(root / ".aigc" / "stack" / "profile.env")
    finally:
        families = [
            psutil.Process(entry["pid"]).children(recursive=True) + [psutil.Process(entry["pid"])]
            for entry in state["processes"].values()
            if psutil.pid_exists(entry["pid"])
        ]
        started = time.monotonic()
        ok(aigc(root, "stack", "down", timeout=180))
        print(f"stack down: {time.monotonic() - started:.1f} s")
        left = [
            process
            for family in families
            for process in family
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE
        ]
        assert not left, f"left running after `stack down`: {left}"
        shutil.rmtree(base, ignore_errors=True)


def test_run_reproduce_and_deployment_on_the_stack(stack):
    root, profile = stack
    started = time.monotonic()
    ok(aigc(root, "--profile", "stack", "run", timeout=600))
    print(f"aigc run on the stack: {time.monotonic() - started:.1f} s")

    # MLflow: the registered version, its alias, its run, the artifacts in the bucket.
    model = mlflow(profile, "registered-models/get", name="aigc-text")["registered_model"]
    assert {alias["alias"] for alias in model.get("aliases", [])} >= {"champion"}
    version = mlflow(profile, "model-versions/get", name="aigc-text", version="1")
    run_id = version["model_version"]["run_id"]
    run = mlflow(profile, "runs/get", run_id=run_id)["run"]
    assert run["info"]["status"] == "FINISHED"
    tags = {tag["key"]: tag["value"] for tag in run["data"]["tags"]}
    assert run["info"]["artifact_uri"].startswith("mlflow-artifacts:")
    artifacts = bucket_keys(profile, "mlflow")
    assert any(run_id in key and key.endswith("params.json") for key in artifacts)
    assert not (root / "mlflow" / "artifacts").exists() and not (root / "mlflow.db").exists()
    image = mlflow(profile, "model-versions/get", name="aigc-image", version="1")
    image_run = mlflow(profile, "runs/get", run_id=image["model_version"]["run_id"])["run"]
    assert "frechet_distance" in {metric["key"] for metric in image_run["data"]["metrics"]}
    assert any(image_run["info"]["run_id"] in key for key in artifacts), "image model in S3"

    # Ray: the training workers ran on both nodes of the cluster.
    nodes = tags["aigc.ray_node_ids"].split(",")
    assert len(nodes) == 2 and len(set(nodes)) == 2, nodes
    # The evaluation's shards (as many as test documents, up to evaluate.shards), spread: each
    # on a node of the cluster, no two on one node while another is free.
    evaluated = tags["aigc.ray_evaluation_node_ids"].split(",")
    assert set(evaluated) <= set(nodes) and len(set(evaluated)) == min(2, len(evaluated))
    assert not bucket_keys(profile, "ray", f"aigc/{run_id}"), "checkpoints left in the bucket"

    # DVC: the data version's manifest and every file of it are in the bucket.
    data_version = tags["aigc.data_version"]
    keys = set(bucket_keys(profile, "dvc", "aigc/"))
    manifest = f"aigc/files/md5/{data_version[:2]}/{data_version[2:]}.dir"
    assert manifest in keys
    body = keyed(profile).get_object(Bucket="dvc", Key=manifest)["Body"].read()
    for entry in json.loads(body):
        assert f"aigc/files/md5/{entry['md5'][:2]}/{entry['md5'][2:]}" in keys, entry

    # Prefect: the flow run and every one of its task runs completed.
    api = profile["PREFECT_API_URL"]
    flow_runs = get(f"{api}/flow_runs/filter", {})
    (top,) = [run for run in flow_runs if not run["parent_task_run_id"]]
    assert top["name"] and {run["state_type"] for run in flow_runs} == {"COMPLETED"}, flow_runs
    ids = [run["id"] for run in flow_runs]  # the run and its subflows
    tasks = get(f"{api}/task_runs/filter", {"flow_runs": {"id": {"any_": ids}}})
    assert tasks and {task["state_type"] for task in tasks} == {"COMPLETED"}

    # A second clone, no data, no DVC cache, no mlflow/: the profile file is all it gets.
    clone = root.parent / "clone"
    subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
    assert not (clone / "data" / "labeled").exists() and not (clone / ".dvc" / "cache").exists()
    assert not (clone / "mlflow").exists() and not (clone / ".aigc").exists()
    started = time.monotonic()
    profile_file = str(root / ".aigc" / "stack" / "profile.env")
    output = ok(aigc(clone, "--profile", profile_file, "reproduce", "aigc-text/1", timeout=600))
    print(f"reproduce from a second clone: {time.monotonic() - started:.1f} s")
    assert not (clone / "mlflow").exists(), output

    # The deployed retrain, run by the stack's worker.
    started = time.monotonic()
    environment = {"PREFECT_API_URL": api, "PREFECT_HOME": str(root.parent / "prefect-home")}
    prefect = shutil.which("prefect", path=str(Path(sys.executable).parent))
    deploy = [prefect, "--no-prompt", "deploy", "--name", "nightly-retrain"]
    run = subprocess.run(deploy, cwd=root, env=_with(environment), capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    command = [prefect, "deployment", "run", "retrain/nightly-retrain", "--watch"]
    run = subprocess.run(
        command, cwd=root, env=_with(environment), capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout + run.stderr
    deployed = [item for item in get(f"{api}/flow_runs/filter", {}) if item["deployment_id"]]
    completed = [item for item in deployed if item["state_type"] == "COMPLETED"]
    assert completed and completed[0]["work_pool_name"] == "aigc", deployed  # not the cron's
    print(f"deployment run by the worker: {time.monotonic() - started:.1f} s")


def _with(variables: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **variables}


def test_object_store_down_at_version_names_the_remote_and_the_next_run_pushes(stack):
    """A profile whose S3 endpoint nothing answers (the store down, or out of reach)."""
    from aigc.data.version import current_version, status

    root, profile = stack
    write_documents(root / "data" / "inbox", make_documents(8, seed=3, prefix="late"))
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    unreachable = root.parent / "unreachable.env"
    text = (root / ".aigc" / "stack" / "profile.env").read_text()
    unreachable.write_text(text.replace(profile["AWS_ENDPOINT_URL_S3"], dead))
    started = time.monotonic()
    failed = aigc(root, "--profile", str(unreachable), "data", "refresh", timeout=300)
    print(f"data refresh with the object store down: {time.monotonic() - started:.1f} s")
    output = failed.stdout + failed.stderr
    assert failed.returncode == 2, output
    assert "DVC remote 'stack' (s3://dvc/aigc)" in output and "Traceback" not in output, output
    text = {stage: state for stage, state in status(root).items() if "image" not in stage}
    assert text == {}, "the text data was versioned locally; only the push failed (the image"
    # branch comes after text's version, so this run never reached it)

    ok(aigc(root, "--profile", "stack", "data", "refresh", timeout=300))
    version = current_version(root)
    manifest = f"aigc/files/md5/{version[:2]}/{version[2:]}.dir"
    assert manifest in bucket_keys(profile, "dvc", "aigc/"), "the missed push was not made"


def test_ray_worker_node_killed_mid_training(stack):
    """The worker node's processes are killed once a checkpoint is in the bucket, and `stack
    up` starts a replacement node: the run resumes from that checkpoint, or (where Ray cannot
    recover) ends with a one-line error and the registry unchanged."""
    root, profile = stack
    versions_before = mlflow(profile, "model-versions/search")
    node = recorded(root, "ray-node")
    with training_to_a_checkpoint(root, profile, "killed-node") as training:
        for process in node.family():  # the whole node: `ray start`, its raylet, its workers
            process.kill()
        ok(aigc(root, "stack", "up"))  # a replacement node
    run = latest_run(profile)
    if training.returncode == 0:
        metrics = {metric["key"]: metric["value"] for metric in run["data"]["metrics"]}
        assert run["info"]["status"] == "FINISHED" and metrics["restarts"] >= 1, run
    else:
        assert training.returncode == 2 and "Traceback" not in training.output, training.output
        assert run["info"]["status"] == "FAILED", run
    assert mlflow(profile, "model-versions/search") == versions_before


def test_mlflow_server_stopped_and_restarted_during_training(stack):
    """The tracking server goes away mid-training and comes back (same port, same database):
    the run completes, or fails with a one-line error; the registry is unchanged."""
    from aigc.stack.processes import stop
    from aigc.stack.stack import MLFLOW

    root, profile = stack
    versions_before = mlflow(profile, "model-versions/search")
    with training_to_a_checkpoint(root, profile, "mlflow-restart") as training:
        stop(recorded(root, "mlflow"), MLFLOW.stop_plan)
        time.sleep(5)
        ok(aigc(root, "stack", "up"))
    run = latest_run(profile)
    if training.returncode == 0:
        assert run["info"]["status"] == "FINISHED", run
    else:
        assert training.returncode == 2 and "Traceback" not in training.output, training.output
    assert mlflow(profile, "model-versions/search") == versions_before


def recorded(root: Path, service: str):
    from aigc.stack.processes import ProcessRecord

    state = json.loads(StackPaths(root).state.read_text())
    return ProcessRecord(**state["processes"][service])


def latest_run(profile: dict[str, str]) -> dict:
    return get(
        f"{profile['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/runs/search",
        {"experiment_ids": ["1"], "order_by": ["attributes.start_time DESC"], "max_results": 1},
    )["runs"][0]


@contextlib.contextmanager
def training_to_a_checkpoint(root: Path, profile: dict[str, str], name: str):
    """`aigc --profile stack train` (half a minute, a checkpoint every 20 steps) in the
    background; the body runs once a checkpoint is in the bucket; then waits for the end:
    the yielded process has `returncode` and `output`."""
    overrides = ["train.loop.max_steps=100000", "train.loop.max_minutes=0.5"]
    overrides += ["train.loop.checkpoint_every=20", "train.loop.eval_every=1000"]
    command = [sys.executable, "-m", "cli.main", "--profile", "stack", "train", "--no-evaluate"]
    command += [part for override in overrides for part in ("--set", override)]
    path = os.pathsep.join([str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")])
    log = root.parent / f"{name}-training.log"
    before = set(bucket_keys(profile, "ray", "aigc/"))
    with log.open("w") as output:
        training = subprocess.Popen(
            command, cwd=root, env={**os.environ, "PYTHONPATH": path}, stdout=output, stderr=output
        )
    started = time.monotonic()
    while not any(
        "checkpoint_" in key for key in set(bucket_keys(profile, "ray", "aigc/")) - before
    ):
        assert training.poll() is None, log.read_text()
        assert time.monotonic() - started < 300, "no checkpoint reached the bucket"
        time.sleep(0.5)
    try:
        yield training
    except BaseException:
        training.kill()  # by its pid: the test failed, the training must not outlive it
        training.wait()
        raise
    training.wait(timeout=600)
    training.output = log.read_text()
    seconds = time.monotonic() - started
    print(f"{name}: training took {seconds:.1f} s, exit {training.returncode}")
