"""Recipes: YAML files under ``recipes/`` that name a complete configuration, validated on load.

A recipe has one section per stage of the job (``tiling``, ``constraints``, ``perturb``, ``generator``,
``training``, ``synth``). Each section is a frozen dataclass owned by its stage's module, with a default for every knob,
so the CLI, the Python API and saved runs speak the same names. A section's module is imported only when the
recipe names it or the code reads it: a tiling recipe does not import diffusers. Loading refuses unknown sections and keys, and values of the wrong
type or range, with a message naming the file and the key.

    tiling:
      size: 512          # tile side, px
      overlap: 100       # px shared by neighbouring tiles
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"


class RecipeError(ValueError):
    """A recipe file that cannot be used; the message names the file and the key."""


# Each section is the settings class of the stage that uses it, so validation lives beside the code.
SECTIONS: dict[str, str] = {
    "tiling": "ccaug.data.tiling:TileSettings",
    "constraints": "ccaug.layouts.constraints:LayoutConstraints",
    "perturb": "ccaug.layouts.perturb:PerturbConfig",
    "generator": "ccaug.model.generator_config:GeneratorConfig",
    "training": "ccaug.pipeline.training_config:TrainingConfig",
    "synth": "ccaug.pipeline.synth_plan:SynthSettings",
}


def section_class(name: str) -> type:
    """The settings class of section `name`, imported on first use."""
    module, _, attribute = SECTIONS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class Recipe:
    """A loaded recipe: ``recipe.tiling``, ``recipe.training``, ... (a section the file omits has its defaults)."""

    name: str
    sections: dict = dataclasses.field(default_factory=dict)

    def __getattr__(self, section: str):
        if section not in SECTIONS:
            raise AttributeError(f"recipes have no section {section!r}; they have {sorted(SECTIONS)}")
        if section not in self.sections:
            self.sections[section] = section_class(section)()
        return self.sections[section]


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
    sections = {name: _build_section(path, name, section_class(name), raw[name]) for name in raw}
    return Recipe(name=path.stem, sections=sections)


def _locate(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = RECIPES_DIR / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))) or "none"
    raise RecipeError(f"no recipe file {name_or_path!r} and no recipes/{name_or_path}.yaml (known: {known})")


def _build_section(path: Path, name: str, config_class: type, values: object):
    """Validate a mapping against a config dataclass (recursively for dataclass-typed keys) and build it."""
    if values is None:
        return config_class()
    if not isinstance(values, dict):
        raise RecipeError(f"{path}: section '{name}' must be a mapping of keys to values")
    fields = {field.name for field in dataclasses.fields(config_class)}
    hints = typing.get_type_hints(config_class)
    built = {}
    for key, value in values.items():
        if key not in fields:
            raise RecipeError(f"{path}: unknown key '{name}.{key}'; expected one of {sorted(fields)}")
        expected = hints[key]
        if dataclasses.is_dataclass(expected):
            built[key] = _build_section(path, f"{name}.{key}", expected, value)
        elif _has_type(value, expected):
            built[key] = value
        else:
            raise RecipeError(f"{path}: '{name}.{key}' must be {_type_name(expected)}, got {value!r}")
    try:
        return config_class(**built)
    except ValueError as error:
        raise RecipeError(f"{path}: section '{name}': {error}") from error


def _has_type(value: object, expected: object) -> bool:
    origin, arguments = typing.get_origin(expected), typing.get_args(expected)
    if isinstance(expected, types.UnionType) or origin is typing.Union:
        return any(_has_type(value, option) for option in arguments)
    if origin is dict:
        return isinstance(value, dict) and all(
            _has_type(key, arguments[0]) and _has_type(item, arguments[1]) for key, item in value.items()
        )
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)) and all(_has_type(item, arguments[0]) for item in value)
    if expected is type(None):
        return value is None
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _type_name(expected: object) -> str:
    return str(expected) if typing.get_args(expected) else getattr(expected, "__name__", str(expected))
