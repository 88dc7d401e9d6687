"""Which Ray this process uses: a local Ray of the project's own, or a cluster it joins.

    resources = connect(params.train.ray, paths.work)   # once per process, before any Ray work

A local Ray (`train.ray.address` null) runs on this machine only: every node address is the
loopback address and clients must present the project's own token (`.aigc/ray/auth-token`,
created once, mode 0600), never one from the home folder. A cluster (`address` set) is
joined with the token the environment names (RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from pathlib import Path

from aigc import runtime
from aigc.config import RayParams
from aigc.errors import UserError

TOKEN_FILE = Path("ray") / "auth-token"  # under the project's .aigc folder
LOOPBACK = "127.0.0.1"


def connect(params: RayParams, work_dir: Path) -> dict[str, float]:
    """Start a local Ray (or join `params.address`); returns the cluster's resources.

    `work_dir` is the project's `.aigc` folder: the local Ray's token lives there, and the
    processes of a local Ray are recorded in this process's run record (`aigc.runtime`).
    A process keeps the first Ray it connects to."""
    import ray

    if not ray.is_initialized():
        if params.address:
            _join_cluster(params.address)
        else:
            cpus = max(os.cpu_count() or 1, int(params.num_workers * params.cpus_per_worker))
            _start_local(cpus, work_dir)
            runtime.start(work_dir).note_children()
    return dict(ray.cluster_resources())


def local_token(work_dir: Path) -> Path:
    """The project's Ray token file: created once (mode 0600), then reused."""
    path = Path(work_dir) / TOKEN_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another run created it first
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_hex(32))
    return path


def wants_gpu(params: RayParams, resources: dict[str, float]) -> bool:
    if params.use_gpu == "auto":
        return resources.get("GPU", 0) >= 1
    return bool(params.use_gpu)


def _start_local(cpus: int, work_dir: Path) -> None:
    import ray

    # Token authentication with the project's own token: every process Ray starts (GCS,
    # raylet, workers) inherits these variables; a token in the environment or in the home
    # folder is never used, since RAY_AUTH_TOKEN would take precedence over the path.
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(local_token(work_dir).resolve())
    os.environ.pop("RAY_AUTH_TOKEN", None)
    _single_machine()
    _reload_auth_settings()
    ray.init(
        address="local",  # never RAY_ADDRESS: a null train.ray.address means this machine
        num_cpus=cpus,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address=LOOPBACK,
    )


def _single_machine() -> None:
    """Keep a local Ray on the loopback address: GCS, raylet, workers, agents, autoscaler.

    Ray rewrites 127.0.0.1 to the machine's address (so that other nodes could join) unless
    clusters are switched off, as they are on Windows and macOS; this is Ray's switch for that,
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0. Ray reads it into a constant when imported, which
    may have happened before this call: the constant is set too."""
    from ray._private import ray_constants

    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def _reload_auth_settings() -> None:
    # Ray caches the authentication mode and the token per process; a process that used
    # another token before (a test session with several projects) must read them again.
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _join_cluster(address: str) -> None:
    import ray
    from ray.exceptions import AuthenticationError

    mode = os.environ.get("RAY_AUTH_MODE", "").lower()
    token_path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    has_token = bool(os.environ.get("RAY_AUTH_TOKEN")) or bool(token_path)
    fix = (
        "export RAY_AUTH_TOKEN_PATH=FILE, a file holding the cluster's token (`ray "
        "get-auth-token` prints it on the head node), or RAY_AUTH_TOKEN=TOKEN; for a cluster "
        "started with RAY_AUTH_MODE=disabled, export RAY_AUTH_MODE=disabled"
    )
    if mode != "disabled":
        if not has_token:
            raise UserError(
                f"train.ray.address is {address!r}, and no token to join it: aigc takes a "
                f"cluster's token from the environment only; {fix}"
            )
        if token_path and not os.environ.get("RAY_AUTH_TOKEN") and not Path(token_path).is_file():
            raise UserError(
                f"RAY_AUTH_TOKEN_PATH={token_path} is not a file, so aigc has no token to join "
                f"the Ray cluster at {address!r}; {fix}"
            )
        os.environ["RAY_AUTH_MODE"] = "token"
        _reload_auth_settings()
        if _token_refused(address):
            source = "RAY_AUTH_TOKEN" if os.environ.get("RAY_AUTH_TOKEN") else token_path
            raise UserError(
                f"the Ray cluster at train.ray.address={address!r} refused the token from "
                f"{source}: it is not that cluster's token; {fix}"
            )
    try:
        ray.init(address=address, log_to_driver=False)
    except (ConnectionError, AuthenticationError, RuntimeError) as error:
        raise UserError(
            f"could not join the Ray cluster at train.ray.address={address!r} "
            f"({str(error).splitlines()[0]}); check that the cluster runs there and that the "
            f"token is the cluster's: {fix}"
        ) from None


def _token_refused(address: str) -> bool:
    """Whether the GCS at `address` rejects our token: known at once, where `ray.init` only
    gives up after about 20 seconds with a message that could mean anything."""
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return False  # "auto" or ray://: resolved by ray.init itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError:
        return False  # nothing answers there: ray.init says so (its client would wait 40 s)
    try:
        GcsClient(address=address)
    except AuthenticationError:
        return True
    except Exception:  # any other failure is ray.init's to report
        return False
    return False
