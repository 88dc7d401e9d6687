"""Profiles: an environment file that points aigc (and MLflow, Prefect, DVC, boto3) at servers.

A profile is KEY=VALUE lines (`#` comments; `export KEY=VALUE` and quoted values are read
too, so a shell can `set -a; . profile.env` it). `aigc stack up` writes one for its stack,
`.aigc/stack/profile.env`; a team with its own servers writes the same keys by hand. The key
AIGC_PARAMS_OVERLAY names a params file layered over params.yaml (`aigc.config.load_params`):
non-secret settings such as the tracking URI. Secrets stay in the environment only.

    aigc --profile stack run                 # the project's stack
    aigc --profile ~/team/prod.env run       # any profile file
    apply_profile(resolve_profile("stack", root))   # the same from Python
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

from aigc.config import PARAMS_OVERLAY_VARIABLE
from aigc.errors import UserError

STACK_PROFILE = Path(".aigc") / "stack" / "profile.env"


def resolve_profile(name: str, root: Path) -> Path:
    """The file of a profile: `stack` is the project's stack, anything else a path."""
    path = root / STACK_PROFILE if name == "stack" else Path(name).expanduser()
    if not path.is_file():
        hint = "bring the stack up first: `aigc stack up`" if name == "stack" else "check the path"
        raise UserError(f"profile {name!r}: no file {path}; {hint}")
    return path.resolve()


def read_profile(path: Path) -> dict[str, str]:
    """The variables of a profile; a relative AIGC_PARAMS_OVERLAY is taken from its folder."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        text = text.removeprefix("export ").strip()
        key, sep, value = text.partition("=")
        if not sep or not key.strip().replace("_", "").isalnum():
            raise UserError(f"profile {path}, line {number}: expected KEY=VALUE, got {line!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    overlay = values.get(PARAMS_OVERLAY_VARIABLE)
    if overlay:
        values[PARAMS_OVERLAY_VARIABLE] = str((path.parent / overlay).resolve())
    return values


def apply_profile(path: Path, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Export a profile's variables into `environ` (the process environment by default); the
    profile wins over what was there. Returns the variables."""
    values = read_profile(path)
    (os.environ if environ is None else environ).update(values)
    return values


def write_profile(path: Path, values: dict[str, str], header: str) -> None:
    """Write a profile readable by its owner only (it may hold keys)."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += [f"{key}={value}" for key, value in values.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.touch(mode=0o600)
    temporary.chmod(0o600)
    temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    temporary.replace(path)
