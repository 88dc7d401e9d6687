"""From params.yaml to `Params`: read the file, layer the overlay that AIGC_PARAMS_OVERLAY
names, apply `--set` overrides, validate (a bad key raises ConfigError naming it), and
record a run's effective configuration beside it (`write_effective_params`)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from aigc.config.base import ConfigError
from aigc.config.params import Params
from aigc.models.configs import FAMILY_CONFIGS, IMAGE_FAMILY_CONFIGS

DEFAULT_PARAMS_FILE = "params.yaml"
# Names a params file layered between params.yaml and --set (aigc.stack.profile sets it).
PARAMS_OVERLAY_VARIABLE = "AIGC_PARAMS_OVERLAY"


# --- loading ---------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """`section.key=value` → (["section", "key"], value parsed as YAML)."""
    key, sep, raw_value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form section.key=value")
    try:
        value = yaml.safe_load(raw_value) if raw_value.strip() else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({error})") from error
    return [part for part in key.strip().split(".")], value


def _child_key(container: Any, part: str, dotted: str) -> Any:
    """The index (list) or key (dict) that `part` names inside `container`."""
    if isinstance(container, list):
        if part.lstrip("-").isdigit():
            index = int(part)
            if -len(container) <= index < len(container):
                return index
            raise ConfigError(f"override {dotted!r}: index {index} is out of range")
        for index, item in enumerate(container):
            if isinstance(item, dict) and item.get("name") == part:
                return index
        names = [item.get("name") for item in container if isinstance(item, dict)]
        raise ConfigError(f"override {dotted!r}: no item named {part!r} (items: {names})")
    if isinstance(container, dict):
        return part
    raise ConfigError(f"override {dotted!r}: {part!r} is inside a value, not a section")


def apply_override(data: dict, path: list[str], value: Any) -> None:
    dotted = ".".join(path)
    node: Any = data
    for part in path[:-1]:
        key = _child_key(node, part, dotted)
        if isinstance(node, dict) and key not in node:
            node[key] = {}
        node = node[key]
    node[_child_key(node, path[-1], dotted)] = value


def _key_path(loc: tuple) -> list[str]:
    """The key as the user writes it: pydantic puts a union's tag (the family) in the path."""
    parts = [str(part) for part in loc]
    return [
        part
        for index, part in enumerate(parts)
        if not (index and parts[index - 1] == "model" and part in FAMILY_CONFIGS)
    ]


def _format_validation_error(error: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration in {origin}:"]
    for item in error.errors():
        location = ".".join(_key_path(item["loc"]))
        if item["type"] == "extra_forbidden":
            lines.append(f"  - unknown key {location!r}: remove it or check its spelling")
        else:
            given = item.get("input")
            shown = "" if isinstance(given, dict | list) else f" (got {given!r})"
            lines.append(f"  - {location}: {item['msg']}{shown}")
    return "\n".join(lines)


def read_overlay(path: Path) -> dict:
    """The params overlay a profile names; its settings apply as --set overrides would."""
    if not path.is_file():
        raise ConfigError(
            f"{PARAMS_OVERLAY_VARIABLE}={path}: no such file; bring the stack up "
            f"(`aigc stack up`) or unset {PARAMS_OVERLAY_VARIABLE}"
        )
    return read_params_data(path)


def _leaves(data: dict, prefix: tuple[str, ...] = ()) -> list[tuple[list[str], Any]]:
    """Every setting of a nested mapping as (key path, value); lists are values."""
    leaves = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            leaves += _leaves(value, (*prefix, str(key)))
        else:
            leaves.append(([*prefix, str(key)], value))
    return leaves


def read_params_data(path: Path | str | None) -> dict:
    """The raw mapping in a params file; a missing default file means all defaults."""
    if path is None:
        path = Path(DEFAULT_PARAMS_FILE)
        if not path.exists():
            return {}
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"params file {path} does not exist; pass --params FILE")
    if path.is_dir():
        raise ConfigError(f"params file {path} is a folder; pass --params FILE (a YAML file)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"params file {path} is not valid YAML: {error}") from error
    except UnicodeDecodeError as error:
        raise ConfigError(f"params file {path} is not UTF-8 text ({error.reason})") from None
    except OSError as error:
        raise ConfigError(
            f"params file {path} cannot be read: {error.strerror}; make it readable"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"params file {path} must hold a mapping of sections")
    return data


def load_params(
    path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Params:
    """Read, override and validate; the single way aigc turns configuration into Params."""
    data = copy.deepcopy(read_params_data(path))
    overlay = os.environ.get(PARAMS_OVERLAY_VARIABLE)
    if overlay:
        for keys, value in _leaves(read_overlay(Path(overlay))):
            apply_override(data, keys, value)
    overridden = []
    for text in overrides:
        keys, value = parse_override(text)
        apply_override(data, keys, value)
        overridden.append(keys)
    _forget_other_family(data, overridden)
    origin = str(path or DEFAULT_PARAMS_FILE)
    origin += f" with the overlay {overlay}" if overlay else ""
    origin += " with --set overrides" if overrides else ""
    try:
        return Params.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, origin)) from None


def _forget_other_family(data: dict, overridden: list[list[str]]) -> None:
    """`--set train.model.family=hf` on a file written for another family: the file's keys
    that the new family does not have (GPT's n_layer, say) are dropped, not reported as
    unknown; keys set by --set itself are always kept, and checked."""
    for keys in overridden:
        if keys[-2:] != ["model", "family"]:
            continue
        prefix = keys[:-1]  # the model section's path
        section: Any = data
        for key in prefix:
            section = section.get(key) if isinstance(section, dict) else None
        family = section.get("family") if isinstance(section, dict) else None
        known = (FAMILY_CONFIGS | IMAGE_FAMILY_CONFIGS).get(family)
        if known is None:
            continue
        set_here = {
            other[len(prefix)]
            for other in overridden
            if other[: len(prefix)] == prefix and len(other) > len(prefix)
        }
        for key in list(section):
            if key not in known.model_fields and key not in set_here:
                del section[key]


EFFECTIVE_HEADER = (
    "# Generated by aigc for each run: params.yaml with the run's --set overrides and every\n"
    "# default filled in. DVC's stages read it, so dvc.lock and `dvc params diff` show what\n"
    "# ran. Do not edit: change params.yaml or pass --set.\n"
)


def effective_yaml(params: Params) -> str:
    """The whole configuration as YAML, every default included."""
    data = params.model_dump(mode="json")
    return EFFECTIVE_HEADER + yaml.safe_dump(data, sort_keys=False, width=1000)


def write_effective_params(params: Params, path: Path) -> bool:
    """Record `params` where the DVC stages read them; False when the file already held them.

    The user's params.yaml is never written: a run's overrides live here only."""
    text = effective_yaml(params)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
    return True
