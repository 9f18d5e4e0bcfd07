"""Data sets registered by name are found again by name; unknown names say how to register one."""

from __future__ import annotations

import pytest

from ccaug.workspace import lookup_dataset, register_dataset, registered_datasets


@pytest.fixture(autouse=True)
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("CCAUG_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_a_registered_dataset_is_found_by_name(tmp_path):
    register_dataset("dota", tmp_path / "DOTA-512", "dota")
    assert lookup_dataset("dota") == ((tmp_path / "DOTA-512").resolve(), "dota")


def test_registering_again_replaces_the_entry(tmp_path):
    register_dataset("d", tmp_path / "a", "dota")
    register_dataset("d", tmp_path / "b", "coco")
    assert registered_datasets() == {"d": {"path": str((tmp_path / "b").resolve()), "format": "coco"}}


def test_an_unknown_name_says_how_to_register():
    with pytest.raises(KeyError, match="ccaug data import SRC --format FMT --out DIR --name dior"):
        lookup_dataset("dior")


@pytest.mark.parametrize("name", ["../x", "", "-x", "a b"])
def test_names_that_are_not_plain_words_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="must be letters"):
        register_dataset(name, tmp_path, "dota")


def test_a_corrupted_registry_is_a_clear_error(workspace):
    workspace.mkdir()
    (workspace / "datasets.json").write_text("{not json")
    with pytest.raises(ValueError, match="datasets.json: the workspace registry is not valid JSON"):
        registered_datasets()
