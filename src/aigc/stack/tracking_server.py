"""The stack's MLflow tracking server: runs and the registry in PostgreSQL, artifacts in S3.

Clients talk to `http://127.0.0.1:PORT` only: the server proxies artifacts
(`--serve-artifacts`) to `s3://mlflow`, so a client needs neither the database nor the
bucket's key. One worker and no job runner (`MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`): two
processes and about 0.5 GiB, where MLflow's defaults start 15 and 3.3 GiB. The first start
migrates the database (about 20 s).
"""

from __future__ import annotations

from aigc.stack.base import HOST, Health, Service, StackConfig, executable, http_health
from aigc.stack.postgres import connection_url
from aigc.stack.processes import ProcessRecord, spawn


class TrackingServer(Service):
    name = "mlflow"
    ports = ("mlflow",)
    start_timeout = 180.0

    def start(self, config: StackConfig, environment: dict[str, str]) -> ProcessRecord:
        environment = {
            **environment,
            # Read by `mlflow server` as its --backend-store-uri; the password is PGPASSWORD.
            "MLFLOW_BACKEND_STORE_URI": connection_url(config, "mlflow"),
            "PGPASSWORD": config.secrets.postgres_password,
            "MLFLOW_S3_ENDPOINT_URL": config.url("s3"),
            "AWS_ACCESS_KEY_ID": config.secrets.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": config.secrets.s3_secret_key,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        argv = [
            executable("mlflow"),
            "server",
            "--artifacts-destination",
            "s3://mlflow",
            "--serve-artifacts",
            "--host",
            HOST,
            "--port",
            str(config.ports["mlflow"]),
            "--workers",
            "1",
        ]
        return spawn(self.name, argv, environment, config.home, config.log(self.name))

    def health(self, config: StackConfig) -> Health:
        return http_health(f"{self.url(config)}/health")
