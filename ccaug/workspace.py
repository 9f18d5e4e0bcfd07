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
EMBEDDED = "aerial"  # the source name of the embedded data set


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


def _embedded_folder() -> Path:
    return workspace_dir() / "datasets" / EMBEDDED


def embedded_aerial(progress: bool = True) -> Path:
    """The embedded aerial data set (300 images of 256 px, seed 0) in the workspace, rendered on first use."""
    from ccaug.datasets import make_aerial

    folder = _embedded_folder()
    if not (folder / "scenes.json").is_file():  # make_aerial writes it last
        make_aerial(folder, n=300, size=256, seed=0, progress=progress)
    return folder


def resolve_source(source: str | Path, fmt: str | None = None, *, render: bool = True) -> tuple[Path, str]:
    """``(folder, format)`` of a data set given as a path or as a registered name.

    A path that exists wins over a registered name, and a registered name over the embedded data set
    (``aerial``); a path's format is `fmt` or detected from its files.
    """
    from ccaug.data.formats import detect_format

    path = Path(source).expanduser()
    if path.exists():
        return path, fmt or detect_format(path)
    if isinstance(source, str) and _NAME.match(source) and source in registered_datasets():
        folder, registered_format = lookup_dataset(source)
        return folder, fmt or registered_format
    if source == EMBEDDED:  # render=False: only its folder (e.g. to check something before rendering it)
        return (embedded_aerial() if render else _embedded_folder()), "dota"
    raise FileNotFoundError(
        f"{source}: neither a data set folder nor a name registered in the workspace {workspace_dir()} "
        f"(known: {', '.join(sorted(registered_datasets())) or 'none yet'})"
    )


# --------------------------------------------------------------------------------------------------------
# generators: the default model of a source for `ccaug synth`


def _generators_path() -> Path:
    return workspace_dir() / "generators.json"


def source_key(folder: str | Path) -> str:
    """How a data set is known to the generator registry: its resolved folder."""
    return str(Path(folder).expanduser().resolve())


def register_generator(source_folder: str | Path, checkpoint: str | Path) -> None:
    """Make `checkpoint` (a folder with config.json and model.safetensors) the default generator for the data
    set in `source_folder`; the newest registration wins."""
    registry = _read_generators()
    registry[source_key(source_folder)] = str(Path(checkpoint).resolve())
    write_json(_generators_path(), registry, indent=2)


def registered_generator(source_folder: str | Path) -> Path | None:
    """The checkpoint registered for the data set in `source_folder`, or None."""
    entry = _read_generators().get(source_key(source_folder))
    return Path(entry) if entry else None


def _read_generators() -> dict[str, str]:
    path = _generators_path()
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: the generator registry is not valid JSON ({error}); fix or delete it") from error
