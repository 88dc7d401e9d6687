"""Mistakes found by a hostile tester end in one line naming the input and the fix, exit 2.

Each case runs `cli.main.main([...])` in process, in a small project folder (a params.yaml
with one folder source, no git or DVC unless the case needs them), and checks that nothing
was written: no `.aigc/`, no `data/`, no tracking store. A traceback means a bug.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
import yaml

from cli.main import main
from tests.conftest import make_documents, write_documents

NOBODY = 65534


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """The one `error: ` line of a command that refused its input (exit code 2)."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert exited.value.code == 2, output
    assert "Traceback" not in output, output
    (line,) = [line for line in output.splitlines() if line.startswith("error: ")]
    return line


def listing(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder (the working directory) with a params.yaml and no data yet."""
    root = tmp_path / "project"
    root.mkdir()
    sources = [{"name": "inbox", "type": "folder", "path": "inbox"}]
    (root / "params.yaml").write_text(yaml.safe_dump({"collect": {"sources": sources}}))
    monkeypatch.chdir(root)
    return root


# --- input: options and files ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named", "fix"),
    [
        (["--cron", "99 99 * * *"], "--cron '99 99 * * *'", 'e.g. "0 3 * * *"'),
        (["--cron", "0 3 * * *", "--timezone", "Bogus/Zone"], "--timezone 'Bogus/Zone'", "UTC"),
    ],
)
def test_schedule_refuses_a_bad_cron_or_time_zone(project, capsys, options, named, fix) -> None:
    before = listing(project)
    line = refused(capsys, "schedule", *options)
    assert named in line and fix in line, line
    assert listing(project) == before


def test_a_params_folder_is_named(project, capsys) -> None:
    (project / "settings").mkdir()
    before = listing(project)
    line = refused(capsys, "data", "status", "--params", "settings")
    assert line == "error: params file settings is a folder; pass --params FILE (a YAML file)"
    assert listing(project) == before


def test_generate_refuses_an_out_file_in_a_missing_folder(project, capsys) -> None:
    out = project / "nonexistent" / "dir" / "x.png"
    uri = "models:/aigc-text@champion"
    line = refused(capsys, "generate", "--model-uri", uri, "--out", str(out))
    assert f"--out {out}: the folder {out.parent} does not exist; create it first" in line
    assert listing(project) == ["params.yaml"], "no folder, and no tracking store"


def test_evaluate_never_creates_the_store_it_looks_a_model_up_in(project, capsys) -> None:
    line = refused(capsys, "evaluate", "--model-uri", "models:/aigc-text/99")
    assert f"there is no tracking store at {project}/mlflow/mlflow.db" in line, line
    assert "point tracking.tracking_uri at the store" in line
    assert listing(project) == ["params.yaml"]


# --- where a command runs -------------------------------------------------------------------


PROJECT_COMMANDS = [
    ["data", "collect"],
    ["data", "clean"],
    ["data", "label"],
    ["data", "version"],
    ["data", "refresh"],
    ["data", "status"],
    ["data", "checkout", "abc123"],
    ["train"],
    ["evaluate", "--model-uri", "models:/aigc-text@champion"],
    ["promote"],
    ["run"],
    ["schedule", "--cron", "0 3 * * *"],
    ["reproduce", "aigc-text/1"],
    ["params", "--write"],
]


@pytest.mark.parametrize("command", PROJECT_COMMANDS, ids=" ".join)
def test_a_project_command_outside_a_project_writes_nothing(
    tmp_path, monkeypatch, capsys, command
) -> None:
    monkeypatch.chdir(tmp_path)
    line = refused(capsys, *command)
    assert f"{tmp_path} is not an aigc project: it has no params.yaml or dvc.yaml" in line
    assert "cd into the project's folder" in line
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["registry", "show"], "{root} is not an aigc project and there is no tracking store at"),
        (["generate", "--model-uri", "models:/aigc-text@champion"], "there is no tracking store"),
    ],
)
def test_tracking_commands_outside_a_project_create_no_store(
    tmp_path, monkeypatch, capsys, command, expected
) -> None:
    """They work anywhere on a store that exists; the default one is relative to the folder."""
    monkeypatch.chdir(tmp_path)
    line = refused(capsys, *command)
    assert expected.format(root=tmp_path) in line and f"{tmp_path}/mlflow/mlflow.db" in line
    assert "tracking.tracking_uri" in line
    assert listing(tmp_path) == []


def test_params_prints_the_defaults_anywhere(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["params"])
    assert exited.value.code == 0
    assert "prefect_start_timeout_seconds: 120.0" in capsys.readouterr().out
    assert listing(tmp_path) == []


# --- the machine: permissions and the file-size limit ---------------------------------------


def refused_unprivileged(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """`refused`, as user nobody when the tests run as root: root writes anywhere, whatever
    the modes, so a read-only folder is read-only only to another user.

    Nobody may not read this Python's installation (it can live under /root), so the same
    command first runs as root outside a project, where it stops once its modules are
    imported and its error printed."""
    if os.geteuid() != 0:
        return refused(capsys, *args)
    with tempfile.TemporaryDirectory() as elsewhere, contextlib.chdir(elsewhere):
        refused(capsys, *args)
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        return refused(capsys, *args)
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def shared_project(monkeypatch: pytest.MonkeyPatch):
    """A project with the default sources (builtin `stdlib`) in a folder that another user
    can reach (pytest's tmp_path is its owner's alone)."""
    top = Path(tempfile.mkdtemp(prefix="aigc-read-only-"))
    top.chmod(0o755)
    root = top / "project"
    root.mkdir()
    (root / "params.yaml").write_text("")
    monkeypatch.chdir(root)
    yield root
    for path in [root, *root.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    shutil.rmtree(top)


READ_ONLY = stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH


WRITING = [["run"], ["data", "refresh"], ["data", "collect"]]


@pytest.mark.parametrize("command", WRITING, ids=" ".join)
def test_a_read_only_project_is_named_with_the_fix(shared_project, capsys, command) -> None:
    shared_project.chmod(READ_ONLY)
    before = listing(shared_project)
    line = refused_unprivileged(capsys, *command)
    assert line == (
        f"error: cannot write {shared_project}: Permission denied. Fix: make it writable "
        f"(`chmod -R u+w {shared_project}`) or run aigc in a copy you may write"
    )
    assert listing(shared_project) == before


def test_a_cache_aigc_cannot_write_is_not_blamed_on_the_source(shared_project, capsys) -> None:
    cache = shared_project / ".aigc" / "cache"
    cache.mkdir(parents=True)
    for folder in (shared_project, shared_project / ".aigc"):
        folder.chmod(0o777)
    cache.chmod(READ_ONLY)
    line = refused_unprivileged(capsys, "data", "collect")
    assert line.startswith(f"error: cannot write {cache}: Permission denied. Fix: "), line
    assert "stdlib" not in line
    assert listing(shared_project) == [".aigc", ".aigc/cache", "params.yaml"]


@contextlib.contextmanager
def file_size_limit(size: int):
    """`ulimit -f`: a write past `size` bytes fails with EFBIG (Python ignores SIGXFSZ)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_snapshot_past_the_file_size_limit_leaves_nothing_to_version(
    project, capsys, tmp_path
) -> None:
    """The failed write is one line naming the snapshot and leaves no part of it; what a
    collection killed mid-write leaves is deleted by the next one and never versioned."""
    from aigc.data.version import init_project

    write_documents(project / "inbox", make_documents(60))
    init_project(project)
    with file_size_limit(4096):
        line = refused(capsys, "data", "collect")
    assert line.startswith(f"error: cannot write {project}/data/raw/snapshot-"), line
    assert ".parquet: File too large (the file-size limit is 4096 bytes). Fix: raise" in line
    assert "`ulimit -f unlimited`" in line
    raw = project / "data" / "raw"
    assert list(raw.iterdir()) == [], "no snapshot, no report, no temporary file"

    left = raw / "snapshot-20240101T000000Z.parquet.tmp"
    left.write_bytes(b"half a snapshot, as a killed collection leaves it")
    with pytest.raises(SystemExit) as exited:
        main(["data", "collect"])
    assert exited.value.code == 0, capsys.readouterr()
    names = sorted(path.name for path in raw.iterdir())
    assert len(names) == 2 and names[0].endswith(".parquet"), names
    assert names[1] == names[0].replace(".parquet", ".report.json")
    tracked = yaml.safe_load((project / "data" / "raw.dvc").read_text())["outs"][0]
    assert tracked["nfiles"] == 2, "DVC versions the snapshot and its report only"


def test_a_builtin_cache_past_the_file_size_limit_is_not_blamed_on_the_source(
    project, capsys
) -> None:
    sources = [{"name": "stdlib", "type": "builtin", "include": ["topics"]}]
    (project / "params.yaml").write_text(yaml.safe_dump({"collect": {"sources": sources}}))
    with file_size_limit(4096):
        line = refused(capsys, "data", "collect")
    assert line.startswith(f"error: cannot write {project}/.aigc/cache"), line
    assert "File too large (the file-size limit is 4096 bytes)" in line and "stdlib" not in line
    assert not (project / "data").exists()
