"""Frozen inputs of the generator, computed once and kept on disk: the reference-bank file format and a
feature cache.

The reference code recomputes everything deterministic at every step (VAE latents, both text encodings,
DINOv2 features of the reference crops, the background retrieval) and rebuilds its crop index when a module
is imported (its weak points §8.14 and §8.13). ccaug builds each thing once and stores it:

* `ccaug.model.instance_bank.InstanceBank`: real object crops per class, the foreground references;
* `ccaug.model.background_bank.BackgroundBank`: training images keyed by caption embedding, the background
  reference;
* `FeatureCache` (here): any frozen encoder output, one safetensors file per content key (`cache_key`).

Both banks are stored in the one format of this module: a single safetensors file whose arrays are the bank's
arrays and whose header metadata holds a JSON document with ``format`` (what kind of bank), ``version`` and
the bank's table. One file means a bank is written atomically and its arrays and table cannot drift apart.
Nothing here ever unpickles: safetensors holds raw arrays only, so loading a file cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import safetensors.numpy
import safetensors.torch
import torch
from safetensors import SafetensorError, safe_open

from ccaug.fileio import atomic_path

BANK_VERSION = 1
_HEADER_KEY = "ccaug"


# --------------------------------------------------------------------------------------------------------
# bank files


def write_bank(path: str | Path, kind: str, arrays: dict[str, np.ndarray], header: dict[str, Any]) -> None:
    """Write `arrays` and a JSON `header` as one safetensors file, atomically.

    `kind` (e.g. ``"instance_bank"``) goes into the header as ``format: "ccaug.<kind>"`` with the version,
    so that `read_bank` can refuse a file of another kind or version.
    """
    document = {"format": f"ccaug.{kind}", "version": BANK_VERSION, **header}
    contiguous = {name: np.ascontiguousarray(array) for name, array in arrays.items()}
    with atomic_path(path) as tmp:
        safetensors.numpy.save_file(contiguous, tmp, metadata={_HEADER_KEY: json.dumps(document)})


def read_bank(path: str | Path, kind: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and header of a bank file written by `write_bank` for the same `kind`.

    Raises ``ValueError`` naming the path when the file is not a ccaug bank, is a bank of another kind, or
    was written by another format version (rebuilding the bank is the fix: banks are derived data).
    """
    path = Path(path)
    try:
        with safe_open(path, framework="np") as file:
            metadata = file.metadata() or {}
            arrays = {name: file.get_tensor(name) for name in file.keys()}
    except SafetensorError as error:
        raise ValueError(f"{path} is not a readable safetensors file ({error})") from error
    if _HEADER_KEY not in metadata:
        raise ValueError(f"{path} is a safetensors file but not a ccaug bank (no '{_HEADER_KEY}' header)")
    header = json.loads(metadata[_HEADER_KEY])
    expected = f"ccaug.{kind}"
    if header.get("format") != expected:
        raise ValueError(f"{path} holds a {header.get('format')!r}, not a {expected!r}")
    if header.get("version") != BANK_VERSION:
        raise ValueError(
            f"{path} is {expected} format version {header.get('version')!r}, but this ccaug reads version "
            f"{BANK_VERSION}; rebuild the bank from the data set"
        )
    return arrays, header


def table_to_json(table: pd.DataFrame) -> dict[str, list]:
    """A table as ``{column: list of values}`` (plain Python values, so that json can write it)."""
    return {column: table[column].tolist() for column in table.columns}


def check_lengths(path: str | Path, rows: int, arrays: dict[str, np.ndarray]) -> None:
    """Refuse a bank file whose arrays do not have one entry per table row (a file edited by hand)."""
    for name, array in arrays.items():
        if len(array) != rows:
            raise ValueError(
                f"{path} is inconsistent: its table has {rows} rows but '{name}' has {len(array)}"
            )


# --------------------------------------------------------------------------------------------------------
# feature cache


def cache_key(*parts: Any) -> str:
    """A sha1 hex digest identifying a frozen feature by everything it depends on.

    Typical parts: an encoder's name and a hash of its weights (or their file's sha1), the preprocessing
    settings, an image id and a crop index. Parts may be ``str``, ``bytes``, ``int``, ``float``, ``bool``,
    ``None``, paths, NumPy arrays, torch tensors (hashed by dtype, shape and bytes) and tuples or lists of
    these. Every part is written with its type and length, so ``("ab", "c")`` and ``("a", "bc")`` differ.
    """
    digest = hashlib.sha1()
    for part in parts:
        _feed(digest, part)
    return digest.hexdigest()


def _feed(digest: Any, part: Any) -> None:
    if isinstance(part, (tuple, list)):
        tag, payload = b"L", struct.pack("<q", len(part))
        digest.update(tag + payload)
        for item in part:
            _feed(digest, item)
        return
    if part is None:
        tag, payload = b"N", b""
    elif isinstance(part, bool):  # before int: True is an int
        tag, payload = b"B", bytes([part])
    elif isinstance(part, (int, np.integer)):
        tag, payload = b"I", str(int(part)).encode()
    elif isinstance(part, (float, np.floating)):
        tag, payload = b"F", struct.pack("<d", float(part))
    elif isinstance(part, str):
        tag, payload = b"S", part.encode("utf-8")
    elif isinstance(part, Path):
        tag, payload = b"P", part.as_posix().encode("utf-8")
    elif isinstance(part, bytes):
        tag, payload = b"Y", part
    elif isinstance(part, np.ndarray):
        array = np.ascontiguousarray(part)
        tag, payload = b"A", f"{array.dtype.str}{array.shape}".encode() + array.tobytes()
    elif isinstance(part, torch.Tensor):
        tensor = part.detach().cpu().contiguous().reshape(-1)
        raw = tensor.view(torch.uint8).numpy().tobytes()  # any dtype, bfloat16 included
        tag, payload = b"T", f"{tensor.dtype}{tuple(part.shape)}".encode() + raw
    else:
        raise TypeError(f"cache_key cannot hash a {type(part).__name__}; pass str, numbers, bytes or arrays")
    digest.update(tag + struct.pack("<q", len(payload)) + payload)


class FeatureCache:
    """Frozen features on disk, one safetensors file per key: ``folder/<key[:2]>/<key>.safetensors``.

    `get_or_compute` returns the stored tensors when the file exists and computes, stores and returns them
    otherwise. Keys come from `cache_key`, so a change of encoder, preprocessing or input gives a new key
    rather than a stale hit; nothing is ever invalidated in place.

    A file that cannot be read (a crash of another process cannot leave one, since writes are atomic, but a
    full disk or a copy gone wrong can) is **recomputed and overwritten with a warning** rather than raising:
    the cache holds derived data only, so recomputing is always correct, and a training run should not stop
    for it. Values are returned on the CPU, contiguous, as stored.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        if not re.fullmatch(r"[0-9A-Za-z_.-]{2,200}", key) or key.startswith("."):
            raise ValueError(f"cache key {key!r} is not a plain file name; build keys with cache_key(...)")
        return self.folder / key[:2] / f"{key}.safetensors"

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    def get_or_compute(
        self, key: str, compute: Callable[[], dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        path = self.path(key)
        if path.is_file():
            try:
                return safetensors.torch.load_file(path)
            except (SafetensorError, OSError) as error:
                warnings.warn(
                    f"feature cache file {path} is unreadable ({error}); recomputing it", stacklevel=2
                )
        features = compute()
        if not isinstance(features, dict) or not all(
            isinstance(name, str) and isinstance(value, torch.Tensor) for name, value in features.items()
        ):
            raise TypeError("the compute function of FeatureCache must return a dict of str -> torch.Tensor")
        # Own copies on the CPU: safetensors refuses views that share memory, and the caller may reuse buffers.
        stored = {name: value.detach().to("cpu", copy=True).contiguous() for name, value in features.items()}
        with atomic_path(path) as tmp:
            safetensors.torch.save_file(stored, tmp)
        return stored
