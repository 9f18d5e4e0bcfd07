"""Recipes: YAML files under ``recipes/`` that name a complete configuration, validated on load.

A recipe has one section per stage of the job (today: ``tiling``; the generator, synthesis and detector
stages add theirs). Each section is a frozen dataclass (owned by its stage's module) with a default for every knob, so the CLI, the Python
API and saved runs speak the same names. Loading refuses unknown sections and keys, and values of the wrong
type or range, with a message naming the file and the key.

    tiling:
      size: 512          # tile side, px
      overlap: 100       # px shared by neighbouring tiles
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

from ccaug.data.tiling import TileSettings

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"


class RecipeError(ValueError):
    """A recipe file that cannot be used; the message names the file and the key."""


# Each section is the settings class of the stage that uses it, so validation lives beside the code.
SECTIONS: dict[str, type] = {"tiling": TileSettings}


@dataclass(frozen=True)
class Recipe:
    name: str
    tiling: TileSettings = TileSettings()


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Load ``recipes/<name>.yaml`` or a YAML file at a path, validating every section and key."""
    path = _locate(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of sections ({', '.join(SECTIONS)})")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise RecipeError(f"{path}: unknown section(s) {unknown}; expected some of {sorted(SECTIONS)}")
    sections = {name: _build_section(path, name, SECTIONS[name], raw[name]) for name in raw}
    return Recipe(name=path.stem, **sections)


def _locate(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = RECIPES_DIR / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))) or "none"
    raise RecipeError(f"no recipe file {name_or_path!r} and no recipes/{name_or_path}.yaml (known: {known})")


def _build_section(path: Path, section: str, config_class: type, values: object):
    if values is None:
        return config_class()
    if not isinstance(values, dict):
        raise RecipeError(f"{path}: section '{section}' must be a mapping of keys to values")
    fields = {field.name: field for field in dataclasses.fields(config_class)}
    for key, value in values.items():
        if key not in fields:
            raise RecipeError(f"{path}: unknown key '{section}.{key}'; expected one of {sorted(fields)}")
        expected = typing.get_type_hints(config_class)[key]
        if not _has_type(value, expected):
            raise RecipeError(f"{path}: '{section}.{key}' must be {_type_name(expected)}, got {value!r}")
    try:
        return config_class(**values)
    except ValueError as error:
        raise RecipeError(f"{path}: section '{section}': {error}") from error


def _has_type(value: object, expected: object) -> bool:
    if isinstance(expected, types.UnionType) or typing.get_origin(expected) is typing.Union:
        return any(_has_type(value, option) for option in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _type_name(expected: object) -> str:
    return getattr(expected, "__name__", str(expected))
