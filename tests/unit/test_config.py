"""Configuration is checked at the edge: bad keys and types are named, overrides typed."""

from __future__ import annotations

import pytest
import yaml

from aigc.config import ConfigError, FolderSource, load_params, materialize_params
from tests.conftest import REPO


def write(path, data) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_repository_params_file_is_valid():
    params = load_params(REPO / "params.yaml")
    assert params.collect.sources[0].type == "builtin"
    assert len(params.label.topics) >= 6


def test_unknown_key_is_named(tmp_path):
    path = write(tmp_path / "p.yaml", {"clean": {"length": {"min_char": 3}}})
    with pytest.raises(ConfigError, match=r"unknown key 'clean.length.min_char'"):
        load_params(path)


def test_wrong_type_names_key_and_value(tmp_path):
    path = write(tmp_path / "p.yaml", {"split": {"test_fraction": "lots"}})
    with pytest.raises(ConfigError, match=r"split.test_fraction.*'lots'"):
        load_params(path)


def test_overrides_are_parsed_as_yaml_and_validated(tmp_path):
    path = write(tmp_path / "p.yaml", {})
    params = load_params(path, ["clean.length.min_chars=5", "clean.near_duplicate.enabled=false"])
    assert params.clean.length.min_chars == 5 and params.clean.near_duplicate.enabled is False
    with pytest.raises(ConfigError, match="not of the form"):
        load_params(path, ["clean.length.min_chars"])


def test_override_selects_a_source_by_name(tmp_path):
    data = {"collect": {"sources": [{"name": "inbox", "type": "folder", "path": "a"}]}}
    params = load_params(write(tmp_path / "p.yaml", data), ["collect.sources.inbox.path=b"])
    assert params.collect.sources[0] == FolderSource(name="inbox", path="b")
    with pytest.raises(ConfigError, match="no item named 'web'"):
        load_params(tmp_path / "p.yaml", ["collect.sources.web.path=b"])


def test_unknown_source_type_and_duplicate_names_are_errors(tmp_path):
    bad_type = {"collect": {"sources": [{"name": "x", "type": "ftp"}]}}
    with pytest.raises(ConfigError, match="collect.sources.0"):
        load_params(write(tmp_path / "a.yaml", bad_type))
    twice = {"collect": {"sources": [{"name": "x", "type": "builtin"}] * 2}}
    with pytest.raises(ConfigError, match="unique"):
        load_params(write(tmp_path / "b.yaml", twice))


def test_missing_params_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")


def test_materialize_writes_overrides_keeping_comments(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("# the rules\nclean:\n  length:\n    min_chars: 10  # short\n")
    params, changed = materialize_params(path, None, ["clean.length.min_chars=20"])
    assert changed and params.clean.length.min_chars == 20
    text = path.read_text()
    assert "# the rules" in text and "min_chars: 20" in text
    assert materialize_params(path, None, ["clean.length.min_chars=20"])[1] is False
