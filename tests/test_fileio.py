"""Atomic writes: an interrupted write leaves the old file (or nothing) and no temporary file behind."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ccaug.fileio import atomic_path, copy_file, save_image, swap_in_folder, write_json, write_text


def test_write_text_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    write_text(target, "one")
    write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_a_failed_write_keeps_the_old_content_and_cleans_up(tmp_path):
    target = tmp_path / "a.json"
    write_json(target, {"ok": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half writ")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == '{"ok": 1}'
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_save_image_picks_the_format_from_the_suffix(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 255, (8, 9, 3), dtype=np.uint8)
    save_image(tmp_path / "a.png", pixels)
    with Image.open(tmp_path / "a.png") as image:
        assert image.format == "PNG"
        assert np.array_equal(np.asarray(image), pixels)


def test_copy_file_copies_the_bytes(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"abc")
    copy_file(tmp_path / "a.bin", tmp_path / "out" / "b.bin")
    assert (tmp_path / "out" / "b.bin").read_bytes() == b"abc"


def test_written_files_get_the_usual_permissions_not_private_temp_ones(tmp_path):
    import os

    write_text(tmp_path / "a.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_swap_in_folder_replaces_the_whole_folder_and_leaves_no_old_copy(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "stale.bin").write_text("old")
    (tmp_path / "model.tmp").mkdir()
    (tmp_path / "model.tmp" / "weights.bin").write_text("new")
    swap_in_folder(tmp_path / "model.tmp", tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["weights.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    (tmp_path / "first.tmp").mkdir()
    swap_in_folder(tmp_path / "first.tmp", tmp_path / "first")  # no folder there yet
    assert (tmp_path / "first").is_dir() and not (tmp_path / "first.tmp").exists()
