"""Configuration is checked at the edge: bad keys and types are named, overrides typed."""

from __future__ import annotations

import pytest
import yaml

from aigc.config import (
    ConfigError,
    FolderSource,
    Params,
    load_params,
    write_effective_params,
)
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


def test_a_wrong_model_key_is_named_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'train.model.n_layr'"):
        load_params(REPO / "params.yaml", ["train.model.n_layr=3"])
    with pytest.raises(ConfigError, match=r"train.model.n_head"):
        load_params(REPO / "params.yaml", ["train.model.family=lstm", "train.model.n_head=2"])
    with pytest.raises(ConfigError, match=r"train.model.n_layer.*'three'"):
        load_params(REPO / "params.yaml", ["train.model.n_layer=three"])


def test_model_config_is_typed_per_family():
    params = load_params(REPO / "params.yaml", ["train.model.family=lstm"])
    assert params.train.model.family == "lstm" and params.train.model.hidden_size > 0
    assert load_params(REPO / "params.yaml").train.model.family == "gpt"


def test_effective_params_round_trip_and_leave_the_users_file_alone(tmp_path):
    """The shipped params.yaml + overrides -> the effective file -> the same Params."""
    before = (REPO / "params.yaml").read_bytes()
    params = load_params(REPO / "params.yaml", ["train.loop.max_minutes=0.2"])
    effective = tmp_path / "params.effective.yaml"
    assert write_effective_params(params, effective) is True
    assert write_effective_params(params, effective) is False, "unchanged: not rewritten"
    assert load_params(effective) == params
    assert yaml.safe_load(effective.read_text())["train"]["loop"]["max_minutes"] == 0.2
    assert (REPO / "params.yaml").read_bytes() == before


def _leaves(data, prefix=()):
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _leaves(value, (*prefix, key))
    else:
        yield prefix, data


def test_params_yaml_restates_no_default():
    """Each default is written once, in the schema: params.yaml holds only real choices."""
    shipped = yaml.safe_load((REPO / "params.yaml").read_text())
    defaults = Params().model_dump(mode="json")
    restated = []
    for path, value in _leaves(shipped):
        node = defaults
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node == value or (isinstance(value, list) and node == list(value)):
            restated.append(".".join(path))
    assert restated == []


def test_image_defaults_are_the_digits_and_overrides_reach_them(tmp_path):
    path = write(tmp_path / "p.yaml", {})
    params = load_params(path, ["image.clean.size=[32, 32]", "image.clean.mode=RGB"])
    assert [source.type for source in params.image.collect.sources] == ["digits"]
    assert params.image.clean.size == (32, 32) and params.image.clean.mode == "RGB"
    bad = {"image": {"collect": {"sources": [{"name": "x", "type": "cifar100", "path": "."}]}}}
    with pytest.raises(ConfigError, match="image.collect.sources.0"):
        load_params(write(tmp_path / "bad.yaml", bad))


def test_switching_family_with_set_drops_the_files_keys_of_the_old_family(tmp_path):
    """`--set train.model.family=hf` on a file written for the GPT: the GPT's own keys go,
    the shared ones (block_size) stay, and a key given with --set is still checked."""
    gpt = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 48}
    path = write(tmp_path / "p.yaml", {"train": {"model": gpt}})
    params = load_params(path, ["train.model.family=hf", "train.model.path=models/base"])
    assert params.train.model.family == "hf" and params.train.model.block_size == 48
    with pytest.raises(ConfigError, match="unknown key 'train.model.n_layer'"):
        load_params(path, ["train.model.family=hf", "train.model.path=x", "train.model.n_layer=3"])
    lstm = load_params(path, ["train.model.family=lstm"]).train.model  # n_layer, no n_head
    assert (lstm.family, lstm.n_layer, lstm.n_embd) == ("lstm", 2, 32)
    with pytest.raises(ConfigError, match="unknown key 'train.model.n_head'"):
        load_params(write(tmp_path / "q.yaml", {"train": {"model": {"family": "lstm", **gpt}}}))
