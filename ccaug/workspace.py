"""The workspace: named data sets that later commands find by name (``ccaug synth --source dota``).

The registry is one JSON file, ``datasets.json``, in the workspace folder: ``$CCAUG_HOME`` if set, else
``~/.ccaug``. A name maps to a folder and the format it was written in.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ccaug.fileio import write_json

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def workspace_dir() -> Path:
    return Path(os.environ.get("CCAUG_HOME", Path.home() / ".ccaug")).expanduser()


def _registry_path() -> Path:
    return workspace_dir() / "datasets.json"


def registered_datasets() -> dict[str, dict]:
    """``{name: {"path": str, "format": str}}`` of every registered data set."""
    path = _registry_path()
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: the workspace registry is not valid JSON ({error}); fix or delete it") from error


def register_dataset(name: str, path: str | Path, fmt: str) -> None:
    """Record that data set `name` lives in folder `path`, written in format `fmt` (replaces an old entry)."""
    if not _NAME.match(name):
        raise ValueError(f"data set name {name!r} must be letters, digits, '.', '_' or '-' (not starting with a symbol)")
    registry = registered_datasets()
    registry[name] = {"path": str(Path(path).resolve()), "format": fmt}
    write_json(_registry_path(), registry, indent=2)


def lookup_dataset(name: str) -> tuple[Path, str]:
    """``(folder, format)`` of a registered data set; a clear error listing the known names otherwise."""
    registry = registered_datasets()
    if name not in registry:
        known = ", ".join(sorted(registry)) or "none yet"
        raise KeyError(
            f"no data set named {name!r} in the workspace {workspace_dir()} (known: {known}); "
            f"register one with: ccaug data import SRC --format FMT --out DIR --name {name}"
        )
    entry = registry[name]
    return Path(entry["path"]), entry["format"]


def resolve_source(source: str | Path, fmt: str | None = None) -> tuple[Path, str]:
    """``(folder, format)`` of a data set given as a path or as a registered name.

    A path that exists wins over a registered name; its format is `fmt` or detected from its files.
    """
    from ccaug.data.formats import detect_format

    path = Path(source).expanduser()
    if path.exists():
        return path, fmt or detect_format(path)
    if isinstance(source, str) and _NAME.match(source) and source in registered_datasets():
        folder, registered_format = lookup_dataset(source)
        return folder, fmt or registered_format
    raise FileNotFoundError(
        f"{source}: neither a data set folder nor a name registered in the workspace {workspace_dir()} "
        f"(known: {', '.join(sorted(registered_datasets())) or 'none yet'})"
    )
