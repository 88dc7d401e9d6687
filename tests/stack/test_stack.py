"""`aigc stack` and the whole pipeline on it: real servers on 127.0.0.1 and a two-node Ray
cluster, each checked through its own API (MLflow's REST API, Prefect's, S3 with the
profile's key, PostgreSQL), then the faults the README names.

Slow, and the suite's longest module: one stack for the whole module (bringing it up and
down is a good part of the time), in order: the servers and their keys; `aigc --profile
stack run` (text), `aigc data commit` and `dvc pull` in a fresh clone, a reproduction from a
second clone and the deployed `retrain` run by the stack's worker; what listens beyond
loopback (Ray, refusing calls without the token); the object store out of reach at
`version`; a Ray worker node killed mid-training, then one lost for good; the MLflow server
restarted mid-training; a killed server restarted by `up`, `down` returning once nothing is
left (and sparing decoys named like the servers), `up` again finding the data. The stack is
down at the end, and no process it started is left. Images go through the stack the same
way as text (tests/flows/test_retrain_images.py runs them end to end).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml

from aigc.stack.stack import StackPaths, status
from tests.conftest import REPO, TINY, git, make_documents, make_project, write_documents

pytestmark = [pytest.mark.stack, pytest.mark.slow]

SERVICES = ("postgres", "s3", "mlflow", "prefect", "worker", "ray-head", "ray-node")


def aigc(
    cwd: Path, *args: str, timeout: float = 400, environment: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """The real CLI in a fresh process, importing this checkout's code (with `environment`)."""
    path = [str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")]
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, path)),
        **(environment or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(result: subprocess.CompletedProcess) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs if not key.startswith("#")}


def s3_client(profile: dict[str, str], **keys):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=profile["AWS_ENDPOINT_URL_S3"],
        region_name="us-east-1",
        **keys,
    )


MLFLOW_CLIENT = textwrap.dedent(
    """
    import json, sys, tempfile, time
    from pathlib import Path
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=sys.argv[1])
    if sys.argv[2] == "write":
        experiment = client.create_experiment(f"stack-test-{time.time_ns()}")
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "loss", 0.25)
        note = Path(tempfile.mkdtemp()) / "note.txt"
        note.write_text("logged through the tracking server")
        client.log_artifact(run.info.run_id, str(note))
        client.set_terminated(run.info.run_id)
        print(json.dumps({"run_id": run.info.run_id, "experiment_id": experiment}))
    else:
        run = client.get_run(sys.argv[3])
        folder = client.download_artifacts(sys.argv[3], "note.txt", tempfile.mkdtemp())
        print(json.dumps({"loss": run.data.metrics["loss"], "note": Path(folder).read_text()}))
    """
)


def mlflow_client(project: Path, tracking_uri: str, *args: str) -> dict:
    """An MLflow client that knows only the server's URL: no S3 endpoint, no key."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "MLFLOW_", "AIGC_"))
    }
    result = subprocess.run(
        [sys.executable, "-c", MLFLOW_CLIENT, tracking_uri, *args],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def recorded(project: Path) -> dict[str, psutil.Process]:
    state = json.loads(StackPaths(project).state.read_text())
    processes = {}
    for name, entry in state["processes"].items():
        process = psutil.Process(entry["pid"])
        assert abs(process.create_time() - entry["started"]) < 0.05
        processes[name] = process
    return processes


def stack_processes(project: Path) -> list[psutil.Process]:
    """Every live process of the stack: each recorded service's process, its descendants and
    what carries its marker (processes.py), found afresh."""
    from aigc.stack.processes import ProcessRecord

    state = json.loads(StackPaths(project).state.read_text())
    records = [ProcessRecord(**entry) for entry in state["processes"].values()]
    return list({p.pid: p for record in records for p in record.family()}.values())


def running_with_markers(markers: set[str]) -> list[psutil.Process]:
    """Live processes whose environment carries one of the stack's markers."""
    from aigc.stack.processes import MARKER

    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.environ().get(MARKER) in markers and not gone(process):
                found.append(process)
    return found


def command_line(process: psutil.Process) -> list[str]:
    """A process's command line; none for one that has exited (or is a zombie) meanwhile."""
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def decoys(folder: Path) -> list[subprocess.Popen]:
    """Processes a stop-by-name would hit: named `weed` and `postgres`, and a command line
    reading like MLflow's and Prefect's servers. `down` must leave them running."""
    started = []
    for name in ("weed", "postgres"):
        link = folder / name
        link.symlink_to(sys.executable)
        started.append([str(link), "-c", "import time; time.sleep(600)"])
    started.append(
        [sys.executable, "-c", "import time; time.sleep(600)", "mlflow server", "prefect worker"]
    )
    return [subprocess.Popen(argv, start_new_session=True) for argv in started]


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
    # The worker (started with this environment) asks for flow runs every 2 s, not Prefect's
    # 10: the deployment's run starts that much sooner.
    up = aigc(root, "stack", "up", environment={"PREFECT_WORKER_QUERY_SECONDS": "2"})
    try:
        ok(up)
        print(f"stack up: {time.monotonic() - started:.1f} s")
        yield root, read_env(root / ".aigc" / "stack" / "profile.env")
    finally:
        state = json.loads(StackPaths(root).state.read_text())
        markers = {entry["marker"] for entry in state["processes"].values()} - {""}
        family = stack_processes(root)
        started = time.monotonic()
        ok(aigc(root, "stack", "down", timeout=180))
        print(f"stack down: {time.monotonic() - started:.1f} s")
        left = [process for process in family if not gone(process)]
        left += running_with_markers(markers)
        assert not left, f"left running after `stack down`: {left}"
        shutil.rmtree(base, ignore_errors=True)


def test_each_server_answers_with_its_key_on_loopback_only(stack):
    project, _ = stack
    paths = StackPaths(project)
    profile = read_env(paths.profile)
    secrets = json.loads(paths.secrets.read_text())
    processes = recorded(project)
    assert sorted(processes) == sorted(SERVICES)

    # Files that hold keys are private; the overlay holds none.
    for private in (paths.profile, paths.secrets, paths.home / "s3-identities.json"):
        assert private.stat().st_mode & 0o077 == 0, private
    overlay = paths.overlay.read_text()
    assert f"tracking_uri: {profile['MLFLOW_TRACKING_URI']}" in overlay
    assert "s3://dvc/" in overlay and "s3://ray/" in overlay
    for value in secrets.values():
        assert value not in overlay

    # Every server listens on 127.0.0.1 only. Ray binds every interface whatever it is told:
    # its nodes refuse any client without the cluster's token, which they all run with.
    servers = {name: p for name, p in processes.items() if not name.startswith("ray-")}
    family = {p.pid for p in servers.values()}
    family |= {c.pid for p in servers.values() for c in p.children(recursive=True)}
    for name in ("ray-head", "ray-node"):
        environment = processes[name].environ()
        assert environment["RAY_AUTH_MODE"] == "token", name
        assert environment["RAY_AUTH_TOKEN_PATH"] == profile["RAY_AUTH_TOKEN_PATH"], name
        assert oct(Path(profile["RAY_AUTH_TOKEN_PATH"]).stat().st_mode & 0o777) == "0o600"
    listening = [
        c for c in psutil.net_connections("inet") if c.status == "LISTEN" and c.pid in family
    ]
    ports = {c.laddr.port for c in listening}
    assert {c.laddr.ip for c in listening} == {"127.0.0.1"}
    for url in (profile["MLFLOW_TRACKING_URI"], profile["AWS_ENDPOINT_URL_S3"]):
        assert int(url.rsplit(":", 1)[1]) in ports

    # S3: the profile's key reads and writes; anonymous and wrong-key requests are refused.
    import botocore
    from botocore.config import Config
    from botocore.exceptions import ClientError

    keyed = s3_client(
        profile,
        aws_access_key_id=profile["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=profile["AWS_SECRET_ACCESS_KEY"],
    )
    assert {b["Name"] for b in keyed.list_buckets()["Buckets"]} >= {"dvc", "mlflow", "ray"}
    keyed.put_object(Bucket="dvc", Key="aigc/probe.txt", Body=b"kept across restarts")
    assert keyed.get_object(Bucket="dvc", Key="aigc/probe.txt")["Body"].read() == (
        b"kept across restarts"
    )
    anonymous = s3_client(profile, config=Config(signature_version=botocore.UNSIGNED))
    wrong_key = s3_client(
        profile, aws_access_key_id=profile["AWS_ACCESS_KEY_ID"], aws_secret_access_key="guess"
    )
    for client in (anonymous, wrong_key):
        for call in (
            lambda c=client: c.list_buckets(),
            lambda c=client: c.get_object(Bucket="dvc", Key="aigc/probe.txt"),
            lambda c=client: c.put_object(Bucket="dvc", Key="aigc/intruder", Body=b"x"),
        ):
            with pytest.raises(ClientError) as refused:
                call()
            assert refused.value.response["Error"]["Code"] in {
                "AccessDenied",
                "SignatureDoesNotMatch",
            }

    # MLflow: a client with only the URL logs a run and an artifact; the artifact is an object
    # in the `mlflow` bucket, and nothing is written under the project.
    tracking_uri = profile["MLFLOW_TRACKING_URI"]
    logged = mlflow_client(project, tracking_uri, "write")
    objects = keyed.list_objects_v2(Bucket="mlflow")["Contents"]
    (artifact,) = [
        o["Key"] for o in objects if o["Key"].endswith(f"{logged['run_id']}/artifacts/note.txt")
    ]
    assert artifact.startswith(f"{logged['experiment_id']}/")
    assert keyed.get_object(Bucket="mlflow", Key=artifact)["Body"].read() == (
        b"logged through the tracking server"
    )
    assert not (project / "mlflow").exists() and not (project / "mlruns").exists()

    # PostgreSQL: both databases, and no way in without the password.
    import psycopg2

    port = int(paths.state.read_text().split('"postgres": ')[1].split(",")[0])
    with (
        psycopg2.connect(
            host="127.0.0.1", port=port, user="postgres", password=secrets["postgres_password"]
        ) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT datname FROM pg_database")
        assert {"mlflow", "prefect"} <= {row[0] for row in cursor.fetchall()}
    with pytest.raises(psycopg2.OperationalError, match="password"):
        psycopg2.connect(host="127.0.0.1", port=port, user="postgres", connect_timeout=5)

    # Prefect: healthy, the process work pool, its worker online with the profile in its
    # environment (the flow runs it starts inherit it).
    api = profile["PREFECT_API_URL"]
    assert get(f"{api}/health") is True
    assert get(f"{api}/work_pools/aigc")["type"] == "process"
    workers = get(f"{api}/work_pools/aigc/workers/filter", {})
    assert [(w["name"], w["status"]) for w in workers] == [("aigc-stack", "ONLINE")]
    worker_environment = processes["worker"].environ()
    assert worker_environment["MLFLOW_TRACKING_URI"] == tracking_uri
    assert worker_environment["AIGC_PROJECT_DIR"] == str(project.resolve())

    # No key in a log or on a command line.
    logs = "".join(log.read_text(errors="replace") for log in (paths.home / "logs").iterdir())
    command_lines = " ".join(" ".join(command_line(p)) for p in psutil.process_iter())
    for name in ("s3_secret_key", "postgres_password"):
        assert secrets[name] not in logs, name
        assert secrets[name] not in command_lines, name

    # status: every service healthy; memory measured.
    status_output = ok(aigc(project, "stack", "status"))
    for service in SERVICES:
        (line,) = [line for line in status_output.splitlines() if line.startswith(service + " ")]
        assert "healthy (" in line and "unhealthy" not in line, status_output
    pss = sum(item.pss for item in status(project))
    print(f"\nstack: {pss / 2**30:.2f} GiB PSS for {len(SERVICES)} services")

    # A second `up` starts nothing.
    again = ok(aigc(project, "stack", "up"))
    assert again.count("already running") == len(SERVICES), again
    assert {n: p.pid for n, p in recorded(project).items()} == {
        n: p.pid for n, p in processes.items()
    }


def test_run_reproduce_and_deployment_on_the_stack(stack):
    root, profile = stack
    started = time.monotonic()
    params_before = (root / "params.yaml").read_bytes()
    run = ["--profile", "stack", "run", "--only", "text", "--set", "train.loop.max_steps=25"]
    said = ok(aigc(root, *run, timeout=600))
    print(f"aigc run on the stack: {time.monotonic() - started:.1f} s")
    assert (root / "params.yaml").read_bytes() == params_before, "a run never writes params.yaml"

    # MLflow: the registered version, its alias, its run, the artifacts in the bucket.
    model = mlflow(profile, "registered-models/get", name="aigc-text")["registered_model"]
    assert {alias["alias"] for alias in model.get("aliases", [])} >= {"champion"}
    version = mlflow(profile, "model-versions/get", name="aigc-text", version="1")
    run_id = version["model_version"]["run_id"]
    run = mlflow(profile, "runs/get", run_id=run_id)["run"]
    assert run["info"]["status"] == "FINISHED"
    tags = {tag["key"]: tag["value"] for tag in run["data"]["tags"]}
    recorded = {param["key"]: param["value"] for param in run["data"]["params"]}
    assert recorded["train.loop.max_steps"] == "25", "MLflow holds the --set value"
    assert run["info"]["artifact_uri"].startswith("mlflow-artifacts:")
    artifacts = bucket_keys(profile, "mlflow")
    assert any(run_id in key and key.endswith("params.json") for key in artifacts)
    assert not (root / "mlflow" / "artifacts").exists() and not (root / "mlflow.db").exists()

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

    # The README's second-clone recipe: the run says what to commit, `aigc data commit`
    # commits it, and a fresh clone with the profile loaded pulls the text data version with
    # DVC: the same bytes.
    assert "`aigc data commit`" in said, said
    ok(aigc(root, "data", "commit"))
    pulled = root.parent / "clone-pulled"
    subprocess.run(["git", "clone", "-q", str(root), str(pulled)], check=True)
    profile_file = root / ".aigc" / "stack" / "profile.env"
    recipe = f"set -a && . {profile_file} && set +a && dvc pull -r stack --with-deps label"
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # the venv's dvc
    pull = subprocess.run(
        ["bash", "-c", recipe],
        cwd=pulled,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pull.returncode == 0, pull.stdout + pull.stderr
    for folder in ("data/raw", "data/clean", "data/labeled"):
        assert contents(pulled / folder) == contents(root / folder) != {}, folder

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
    command += ["--param", 'only=["text"]', "--param", 'overrides=["train.loop.max_steps=25"]']
    run = subprocess.run(
        command, cwd=root, env=_with(environment), capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout + run.stderr
    deployed = [item for item in get(f"{api}/flow_runs/filter", {}) if item["deployment_id"]]
    completed = [item for item in deployed if item["state_type"] == "COMPLETED"]
    assert completed and completed[0]["work_pool_name"] == "aigc", deployed  # not the cron's
    print(f"deployment run by the worker: {time.monotonic() - started:.1f} s")


# A harmless read of each kind of Ray gRPC server (GCS, raylet, object manager, a worker's);
# a server answers UNIMPLEMENTED (12) for another kind's method, UNAUTHENTICATED (16) for its
# own without the token.
RAY_PROBES = (
    "/ray.rpc.NodeInfoGcsService/GetClusterId",
    "/ray.rpc.NodeManagerService/GetResourceLoad",
    "/ray.rpc.ObjectManagerService/Pull",
    "/ray.rpc.CoreWorkerService/GetCoreWorkerStats",
)
UNAUTHENTICATED = "16"


def test_what_listens_beyond_loopback_is_ray_and_refuses_a_call_without_the_token(stack):
    """README "What listens where": every listening socket of every process the stack started
    (services, their descendants, what carries their markers). Those not on loopback belong to
    Ray's nodes, and each refuses a call without the token: a gRPC call to its own service
    is UNAUTHENTICATED (the same call with the token is answered), an HTTP one 401."""
    import httpx

    root, profile = stack
    token = Path(profile["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
    owner = {p.pid: name for name in SERVICES for p in record_of(root, name).family()}
    listening = {
        (c.laddr.ip, c.laddr.port, c.pid)
        for c in psutil.net_connections("inet")
        if c.status == psutil.CONN_LISTEN and c.pid in owner
    }
    outside = [(ip, port, pid) for ip, port, pid in listening if not ip.startswith("127.")]
    assert {owner[pid] for _, _, pid in outside} <= {"ray-head", "ray-node"}, [
        (ip, port, owner[pid], command_line(psutil.Process(pid))[:2]) for ip, port, pid in outside
    ]
    gcs_port = json.loads(StackPaths(root).state.read_text())["ports"]["ray"]
    assert any(port == gcs_port for _, port, _ in outside), "the GCS listens beyond loopback"
    machine = machine_address()
    answered = 0
    for ip, port, pid in sorted(outside):
        url = f"http://{machine if ip in ('0.0.0.0', '::') else ip}:{port}"
        with httpx.Client(http1=False, http2=True, timeout=5) as grpc:  # gRPC: HTTP/2, no TLS
            try:
                refused = [grpc_status(grpc, url + method) for method in RAY_PROBES]
            except httpx.TransportError:  # not HTTP/2 (the runtime-env agent's API), or gone
                if pid_gone(pid):  # a worker that exited meanwhile
                    continue
                assert httpx.get(url, timeout=5).status_code == 401, (url, owner[pid])
                continue
            assert UNAUTHENTICATED in refused, (url, owner[pid], refused)
            own = RAY_PROBES[refused.index(UNAUTHENTICATED)]
            answered += grpc_status(grpc, url + own, token) is None  # its status: in trailers
    assert answered, "no Ray server answered a call with the token: the probe proves nothing"
    print(f"\n{len(outside)} listeners beyond loopback, all Ray's, none open without the token")


def grpc_status(client, url: str, token: str | None = None) -> str | None:
    """The grpc-status of an empty unary call: an error comes at once with the headers; a
    success's status comes in the trailers, so None."""
    headers = {"content-type": "application/grpc", "te": "trailers"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    response = client.post(url, content=b"\0\0\0\0\0", headers=headers)  # no flag, length 0
    return response.headers.get("grpc-status")


def pid_gone(pid: int) -> bool:
    try:
        return gone(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return True


def machine_address() -> str:
    """This machine's first non-loopback IPv4 address (loopback when it has none)."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return address.address
    return "127.0.0.1"


def contents(folder: Path) -> dict[str, bytes]:
    """{path relative to `folder`: bytes} of every file under it (git's .gitignore aside)."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file() and path.name != ".gitignore"
    }


def _with(variables: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **variables}


def test_object_store_down_at_version_names_the_remote_and_the_next_run_pushes(stack):
    """A profile whose S3 endpoint nothing answers (the store down, or out of reach)."""
    from aigc.data.version import current_version, status
    from aigc.text.modality import TEXT

    root, profile = stack
    write_documents(root / "data" / "inbox", make_documents(8, seed=3, prefix="late"))
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    unreachable = root.parent / "unreachable.env"
    text = (root / ".aigc" / "stack" / "profile.env").read_text()
    unreachable.write_text(text.replace(profile["AWS_ENDPOINT_URL_S3"], dead))
    started = time.monotonic()
    refresh = ("data", "refresh", "--only", "text")
    # One attempt per request: botocore's retries of a refused connection (9 s) change nothing.
    one_attempt = {"AWS_MAX_ATTEMPTS": "1"}
    failed = aigc(root, "--profile", str(unreachable), *refresh, environment=one_attempt)
    print(f"data refresh with the object store down: {time.monotonic() - started:.1f} s")
    output = failed.stdout + failed.stderr
    assert failed.returncode == 2, output
    assert "DVC remote 'stack' (s3://dvc/aigc)" in output and "Traceback" not in output, output
    text = {stage: state for stage, state in status(root).items() if "image" not in stage}
    assert text == {}, "the text data was versioned locally; only the push failed"

    ok(aigc(root, "--profile", "stack", *refresh, timeout=300))
    version = current_version(root, TEXT.data)
    manifest = f"aigc/files/md5/{version[:2]}/{version[2:]}.dir"
    assert manifest in bucket_keys(profile, "dvc", "aigc/"), "the missed push was not made"


def test_ray_worker_node_killed_mid_training(stack):
    """The worker node's processes are killed once a checkpoint is in the bucket, and `stack
    up` starts a replacement node: as the README says, the run resumes from the bucket's
    checkpoint and finishes (restarts ≥ 1); `aigc train` registers no version."""
    root, profile = stack
    versions_before = mlflow(profile, "model-versions/search")
    with training_to_a_checkpoint(root, profile, "killed-node") as training:
        kill_node(record_of(root, "ray-node"))
        ok(aigc(root, "stack", "up"))  # a replacement node
    assert training.returncode == 0, training.output
    run = trained_run(profile, training)
    metrics = {metric["key"]: metric["value"] for metric in run["data"]["metrics"]}
    assert run["info"]["status"] == "FINISHED", run
    assert metrics.get("restarts", 0) >= 1, (metrics, training.output[-3000:])
    assert "Traceback" not in training.output, training.output
    assert mlflow(profile, "model-versions/search") == versions_before


def test_ray_node_lost_for_good_ends_in_one_line_and_a_failed_run(stack):
    """The worker node goes mid-training and nothing replaces it: as the README says, the
    run ends after `train.ray.max_failures` restarts (here 1, each start given 1 s instead
    of 20) in one line naming the lost node and the setting, exit 2, its MLflow run FAILED.
    Then `stack up` brings the node back."""
    root, profile = stack
    versions_before = mlflow(profile, "model-versions/search")
    node = record_of(root, "ray-node")
    try:
        with training_to_a_checkpoint(
            root,
            profile,
            "lost-node",
            overrides=("train.ray.max_failures=1",),
            environment={"RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "1"},
        ) as training:
            kill_node(node)
    finally:
        ok(aigc(root, "stack", "up"))  # the node back, for the tests after this one
    output = training.output
    assert training.returncode == 2, output
    assert "Traceback" not in output, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("error: training stopped: Ray node "), output[-3000:]
    assert "was lost" in last and "train.ray.max_failures=1" in last, last
    assert training.seconds < 90, f"{training.seconds:.0f} s from the node's loss to the end"
    (run_id,) = set(re.findall(r"/runs/(\w+)", output))
    assert mlflow(profile, "runs/get", run_id=run_id)["run"]["info"]["status"] == "FAILED"
    assert mlflow(profile, "model-versions/search") == versions_before


def kill_node(node) -> None:
    """SIGKILL a Ray node's whole family (`ray start`, its raylet, agents and workers) at once,
    as a machine that goes away: all stopped first, so none of them sees another die and
    reports it to the cluster."""
    family = node.family()
    for process in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.suspend()
    for process in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def test_mlflow_server_stopped_and_restarted_during_training(stack):
    """The tracking server goes away mid-training and comes back (same port, same database):
    as the README says, the run finishes, its metrics recorded to the end (the client retries
    while the server is away); `aigc train` registers no version."""
    from aigc.stack.processes import stop
    from aigc.stack.stack import MLFLOW

    root, profile = stack
    versions_before = mlflow(profile, "model-versions/search")
    with training_to_a_checkpoint(root, profile, "mlflow-restart") as training:
        stop(record_of(root, "mlflow"), MLFLOW.stop_plan)
        assert training.poll() is None, "the training ended before the server went away"
        # Away for as long as `up` takes to start it again (7 s on an idle machine): the
        # client's retry 12 s after the first failure finds it back, not the one at 28 s.
        ok(aigc(root, "stack", "up"))
    assert training.returncode == 0, training.output
    run = trained_run(profile, training)
    assert run["info"]["status"] == "FINISHED", run
    metrics = {metric["key"]: metric["value"] for metric in run["data"]["metrics"]}
    assert metrics.get("restarts", 0) == 0, "the client's retries rode the outage out"
    tags = {tag["key"]: tag["value"] for tag in run["data"]["tags"]}
    history = mlflow(
        profile, "metrics/get-history", run_id=run["info"]["run_id"], metric_key="train_loss"
    )
    last_step = max(metric["step"] for metric in history["metrics"])
    assert last_step == int(tags["aigc.steps"]), "train_loss recorded to the last step"
    assert mlflow(profile, "model-versions/search") == versions_before


def record_of(root: Path, service: str):
    from aigc.stack.processes import ProcessRecord

    state = json.loads(StackPaths(root).state.read_text())
    return ProcessRecord(**state["processes"][service])


def trained_run(profile: dict[str, str], training) -> dict:
    """The MLflow run of an `aigc train` process, found by the id it printed."""
    (run_id,) = re.findall(r"trained run (\w+) on data version", training.output)
    return mlflow(profile, "runs/get", run_id=run_id)["run"]


@contextlib.contextmanager
def training_to_a_checkpoint(
    root: Path,
    profile: dict[str, str],
    name: str,
    overrides: tuple[str, ...] = (),
    environment: dict[str, str] | None = None,
):
    """`aigc --profile stack train` (9 s of training, a checkpoint every 20 steps; more
    `overrides`, more `environment`) in the background; the body runs once a checkpoint is
    in the bucket; then waits for the end: the yielded process has `returncode`, `output`
    and `seconds` (from the body's end to its exit)."""
    settings = ["train.loop.max_steps=100000", "train.loop.max_minutes=0.15"]
    settings += ["train.loop.checkpoint_every=20", "train.loop.eval_every=1000", *overrides]
    command = [sys.executable, "-m", "cli.main", "--profile", "stack", "train", "--no-evaluate"]
    command += [part for setting in settings for part in ("--set", setting)]
    path = os.pathsep.join([str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")])
    variables = {**os.environ, "PYTHONPATH": path, **(environment or {})}
    log = root.parent / f"{name}-training.log"
    before = set(bucket_keys(profile, "ray", "aigc/"))
    with log.open("w") as output:
        training = subprocess.Popen(command, cwd=root, env=variables, stdout=output, stderr=output)
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
    body_ended = time.monotonic()
    training.wait(timeout=600)
    training.seconds = time.monotonic() - body_ended
    training.output = log.read_text()
    seconds = time.monotonic() - started
    print(f"{name}: training took {seconds:.1f} s, exit {training.returncode}")


def test_a_killed_server_restarts_and_down_then_up_keeps_the_data(stack, tmp_path: Path):
    project, profile = stack
    paths = StackPaths(project)
    processes = recorded(project)
    tracking_uri = profile["MLFLOW_TRACKING_URI"]
    keyed = s3_client(
        profile,
        aws_access_key_id=profile["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=profile["AWS_SECRET_ACCESS_KEY"],
    )
    keyed.put_object(Bucket="dvc", Key="aigc/probe.txt", Body=b"kept across restarts")
    logged = mlflow_client(project, tracking_uri, "write")

    # A killed server: `status` says so; `up` stops the child it left on the port (MLflow's
    # uvicorn worker) and starts it again, on the same port.
    orphans = processes["mlflow"].children(recursive=True)
    processes["mlflow"].kill()
    processes["mlflow"].wait(10)
    assert orphans and not any(gone(orphan) for orphan in orphans)
    killed = aigc(project, "stack", "status")
    assert killed.returncode == 1 and "mlflow   " in killed.stdout
    assert "not running" in next(x for x in killed.stdout.splitlines() if x.startswith("mlflow"))
    restarted = ok(aigc(project, "stack", "up"))
    assert "mlflow: was not running; stopped 1 process(es) it had left behind" in restarted
    assert restarted.count("already running") == len(SERVICES) - 1
    assert all(gone(orphan) for orphan in orphans)
    assert read_env(paths.profile)["MLFLOW_TRACKING_URI"] == tracking_uri
    processes = recorded(project)

    # down returns once every process the stack started has exited (the recorded ones, their
    # descendants, whatever carries their markers); the decoys are untouched.
    family = stack_processes(project)
    assert {p.pid for p in processes.values()} <= {p.pid for p in family}
    markers = {record_of(project, name).marker for name in processes}
    bystanders = decoys(tmp_path)
    try:
        began = time.monotonic()
        said = ok(aigc(project, "stack", "down", timeout=120))
        down_seconds = time.monotonic() - began
        assert [p for p in family if not gone(p)] == []
        assert running_with_markers(markers - {""}) == []
        assert "every process of the stack has exited (" in said, said
        assert all(decoy.poll() is None for decoy in bystanders)
    finally:
        for decoy in bystanders:
            decoy.send_signal(signal.SIGKILL)
            decoy.wait()
    assert "nothing to stop" in ok(aigc(project, "stack", "down"))
    ports = json.loads(paths.state.read_text())["ports"]
    sockets = [
        f"seaweedfs-*-{ports[name]}.sock" for name in ports if name.startswith(("s3", "seaweedfs"))
    ]
    assert [path for pattern in sockets for path in Path("/tmp").glob(pattern)] == []
    assert json.loads(paths.state.read_text())["processes"] == {}

    # up again: the object and the run are still there.
    began = time.monotonic()
    ok(aigc(project, "stack", "up"))
    second_up_seconds = time.monotonic() - began
    profile = read_env(paths.profile)
    keyed = s3_client(
        profile,
        aws_access_key_id=profile["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=profile["AWS_SECRET_ACCESS_KEY"],
    )
    assert keyed.get_object(Bucket="dvc", Key="aigc/probe.txt")["Body"].read() == (
        b"kept across restarts"
    )
    read_back = mlflow_client(project, profile["MLFLOW_TRACKING_URI"], "read", logged["run_id"])
    assert read_back == {"loss": 0.25, "note": "logged through the tracking server"}
    assert ok(aigc(project, "stack", "status")).count("healthy (") == len(SERVICES)
    print(f"\nstack: down {down_seconds:.1f} s, up on existing data {second_up_seconds:.1f} s")
