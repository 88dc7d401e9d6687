"""`aigc stack up|status|down` for real: each server checked through its own API.

One test, in order (starting the servers is most of its time): `up` in a temporary project;
S3 with the profile's key, and anonymous or wrong-key requests refused; an MLflow run with an
artifact through http only (the object lands in the `mlflow` bucket, nothing in the project's
mlflow/); PostgreSQL, Prefect's health, work pool and worker; `status`; a second `up` starts
nothing; a killed server is restarted on its port, the child it left stopped; `down` leaves
no recorded process (nor a child of one) alive and spares decoys named like the servers; `up`
again finds the object and the run. Timings and memory are printed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from aigc.stack.stack import StackPaths, status
from tests.conftest import REPO

pytestmark = [pytest.mark.stack, pytest.mark.slow]

SERVICES = ("postgres", "s3", "mlflow", "prefect", "worker", "ray-head", "ray-node")


def aigc(cwd: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    """The real CLI in a fresh process, importing this checkout's code."""
    path = [str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
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


@pytest.fixture
def project(tmp_path: Path):
    root = tmp_path / "project"
    root.mkdir()
    yield root
    aigc(root, "stack", "down", timeout=120)  # whatever the test did, nothing stays up


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
    import json, sys, tempfile
    from pathlib import Path
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=sys.argv[1])
    if sys.argv[2] == "write":
        experiment = client.create_experiment("stack-test")
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


def get_json(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def recorded(project: Path) -> dict[str, psutil.Process]:
    state = json.loads(StackPaths(project).state.read_text())
    processes = {}
    for name, entry in state["processes"].items():
        process = psutil.Process(entry["pid"])
        assert abs(process.create_time() - entry["started"]) < 0.05
        processes[name] = process
    return processes


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


def test_stack_up_status_down_up(project: Path, tmp_path: Path):
    began = time.monotonic()
    first_up = ok(aigc(project, "stack", "up"))
    first_up_seconds = time.monotonic() - began
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
    assert sorted(path.name for path in project.iterdir()) == [".aigc"]  # no mlflow/, no mlruns/

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
    assert get_json(f"{api}/health") is True
    assert get_json(f"{api}/work_pools/aigc")["type"] == "process"
    workers = get_json(f"{api}/work_pools/aigc/workers/filter", {})
    assert [(w["name"], w["status"]) for w in workers] == [("aigc-stack", "ONLINE")]
    worker_environment = processes["worker"].environ()
    assert worker_environment["MLFLOW_TRACKING_URI"] == tracking_uri
    assert worker_environment["AIGC_PROJECT_DIR"] == str(project.resolve())

    # No key in a log or on a command line.
    logs = "".join(log.read_text(errors="replace") for log in (paths.home / "logs").iterdir())
    command_lines = " ".join(" ".join(p.cmdline()) for p in psutil.process_iter())
    for name in ("s3_secret_key", "postgres_password"):
        assert secrets[name] not in logs, name
        assert secrets[name] not in command_lines, name

    # status: every service healthy; memory measured.
    status_output = ok(aigc(project, "stack", "status"))
    for service in SERVICES:
        (line,) = [line for line in status_output.splitlines() if line.startswith(service + " ")]
        assert "healthy (" in line and "unhealthy" not in line, status_output
    statuses = status(project)
    rss = sum(item.rss for item in statuses)
    pss = sum(item.pss for item in statuses)

    # A second `up` starts nothing.
    again = ok(aigc(project, "stack", "up"))
    assert again.count("already running") == len(SERVICES), again
    assert {n: p.pid for n, p in recorded(project).items()} == {
        n: p.pid for n, p in processes.items()
    }

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

    # down: every recorded process and its children gone, the decoys untouched.
    family = [p for process in processes.values() for p in (process, *process.children(True))]
    bystanders = decoys(tmp_path)
    try:
        began = time.monotonic()
        ok(aigc(project, "stack", "down", timeout=120))
        down_seconds = time.monotonic() - began
        assert [p for p in family if not gone(p)] == []
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
    second_up = ok(aigc(project, "stack", "up"))
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

    print(
        f"\nstack: first up {first_up_seconds:.1f} s, down {down_seconds:.1f} s, "
        f"up on existing data {second_up_seconds:.1f} s; memory {pss / 2**30:.2f} GiB PSS, "
        f"{rss / 2**30:.2f} GiB RSS summed\n{first_up}\n{second_up}"
    )
