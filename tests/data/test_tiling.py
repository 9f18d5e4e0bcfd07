"""Tiling: which instances land in which tile, how cut ones are clipped, and what is written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from ccaug.data.dataset import Dataset
from ccaug.data.errors import DataError, Problems
from ccaug.data.formats.dota import read_dota
from ccaug.data.geometry import le90_to_polygon
from ccaug.data.tiling import tile_dataset, tile_windows, window_starts

WIDTH, HEIGHT, SIZE, OVERLAP, THRESHOLD = 900, 650, 256, 56, 0.7
# The windows of a 900 x 650 image at 256 / 56 (step 200), worked out by hand: the last is flush with the edge.
X_STARTS, Y_STARTS = [0, 200, 400, 600, 644], [0, 200, 394]
TILE_NAME = re.compile(r"(?P<stem>.+)__(?P<size>\d+)__(?P<x>\d+)___(?P<y>\d+)")


def noise_image(path: Path, width: int, height: int, seed: int = 0) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def scene(root: Path, seed: int = 0) -> Dataset:
    """One noisy 900 x 650 image and ~150 non-overlapping rotated boxes, each of its own class.

    Boxes sit on a jittered grid (so they never overlap) with sizes up to 2/3 of a tile, so many are cut by
    tile borders; one lies slightly beyond the image edge, one entirely outside it, and one has no area.
    """
    rng = np.random.default_rng(seed)
    noise_image(root / "train" / "scene.png", WIDTH, HEIGHT, seed)
    boxes = []
    for cx in range(40, WIDTH, 75):
        for cy in range(40, HEIGHT, 75):
            long = rng.uniform(4, 70)
            boxes.append(
                [
                    cx + rng.uniform(-5, 5),
                    cy + rng.uniform(-5, 5),
                    long,
                    rng.uniform(2, long),
                    rng.uniform(-1.6, 1.6),
                ]
            )
    polygons = list(le90_to_polygon(np.array(boxes)))
    polygons += [
        np.array([890, 300, 910, 300, 910, 320, 890, 320.0]),  # straddles the right edge of the image
        np.array([950, 10, 990, 10, 990, 30, 950, 30.0]),  # entirely outside the image
        np.array([100, 620, 100, 620, 100, 620, 100, 620.0]),  # zero area
    ]
    instances = [
        dict(image_id=0, category=f"c{index}", polygon=polygon, difficult=bool(index % 3 == 0))
        for index, polygon in enumerate(polygons)
    ]
    images = [dict(image_id=0, file="train/scene.png", width=WIDTH, height=HEIGHT, split="train", gsd=0.5)]
    return Dataset.from_records(images, instances, [f"c{index}" for index in range(len(polygons))], root=root)


def share_inside(polygon: np.ndarray, x: int, y: int) -> float:
    """Brute force, one pair at a time: the fraction of the instance inside the window's image pixels."""
    hull = shapely.MultiPoint(polygon.reshape(4, 2)).convex_hull
    if hull.area == 0:
        return 0.0
    window = shapely.box(x, y, min(x + SIZE, WIDTH), min(y + SIZE, HEIGHT))
    return hull.intersection(window).area / hull.area


def fully_inside(polygon: np.ndarray, x: int, y: int) -> bool:
    window = shapely.box(x, y, min(x + SIZE, WIDTH), min(y + SIZE, HEIGHT))
    return shapely.MultiPoint(polygon.reshape(4, 2)).covered_by(window)


def placements(tiled: Dataset) -> pd.DataFrame:
    """One row per (tile, instance) with the window origin parsed from the tile's file name."""
    origin = tiled.images.set_index("image_id")["file"].map(lambda file: TILE_NAME.fullmatch(Path(file).stem))
    table = tiled.instances.copy()
    table["x"] = table["image_id"].map(origin).map(lambda match: int(match["x"]))
    table["y"] = table["image_id"].map(origin).map(lambda match: int(match["y"]))
    table["source"] = table["category"].astype(str).str[1:].astype(int)
    return table


@pytest.fixture
def source(tmp_path: Path) -> Dataset:
    return scene(tmp_path / "src")


def test_window_starts_follow_the_devkit_rule() -> None:
    assert window_starts(1000, 512, 100) == [0, 412, 488]
    assert window_starts(1024, 512, 0) == [0, 512]
    assert window_starts(1025, 512, 0) == [0, 512, 513]
    assert window_starts(512, 512, 100) == [0]
    assert window_starts(300, 512, 100) == [0]
    assert tile_windows(WIDTH, HEIGHT, SIZE, OVERLAP) == [(x, y) for x in X_STARTS for y in Y_STARTS]


@given(length=st.integers(1, 5000), size=st.integers(1, 1200), overlap_share=st.floats(0, 0.95))
def test_windows_cover_the_axis_with_at_least_the_overlap(
    length: int, size: int, overlap_share: float
) -> None:
    overlap = int(size * overlap_share)
    starts = window_starts(length, size, overlap)
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert starts[-1] + size >= length  # the last window reaches the edge
    if length > size:
        assert starts[-1] + size == length  # ... and not beyond it
        assert all(b - a <= size - overlap for a, b in zip(starts, starts[1:]))  # neighbours share >= overlap


def test_instances_go_exactly_into_the_tiles_that_hold_enough_of_them(
    source: Dataset, tmp_path: Path
) -> None:
    problems = Problems()
    tiled = tile_dataset(
        source,
        tmp_path / "out",
        size=SIZE,
        overlap=OVERLAP,
        keep_threshold=THRESHOLD,
        workers=1,
        problems=problems,
        progress=False,
    )
    placed = placements(tiled)
    polygons = source.polygons

    share = {
        (x, y, index): share_inside(polygon, x, y)
        for x in X_STARTS
        for y in Y_STARTS
        for index, polygon in enumerate(polygons)
    }
    assert not any(
        abs(value - THRESHOLD) < 1e-9 for value in share.values()
    )  # no coin flips at the threshold
    expected = sorted(key for key, value in share.items() if value >= THRESHOLD)
    actual = sorted(zip(placed["x"], placed["y"], placed["source"]))
    assert actual == expected  # each one exactly once per tile, none elsewhere
    assert len(expected) > len(polygons)  # the overlap does put instances into several tiles

    whole = placed[
        [
            fully_inside(polygons[index], x, y)
            for x, y, index in zip(placed["x"], placed["y"], placed["source"])
        ]
    ]
    offsets = np.tile(whole[["x", "y"]].to_numpy(), 4)
    np.testing.assert_array_equal(
        whole[["x1", "y1", "x2", "y2", "x3", "y3", "x4", "y4"]] + offsets, polygons[whole["source"]]
    )
    assert not whole["truncated"].any()
    assert placed["difficult"].tolist() == [index % 3 == 0 for index in placed["source"]]

    in_no_tile = {
        index
        for index in range(len(polygons))
        if all(share[x, y, index] < THRESHOLD for x in X_STARTS for y in Y_STARTS)
    }
    assert problems.dropped == {
        "zero area": 1,
        "outside the image": 1,
        "less than keep_threshold of its area in any tile": len(in_no_tile) - 2,
    }


def test_cut_instances_are_flagged_and_clipped_to_four_corners_inside_the_tile(
    source: Dataset, tmp_path: Path
) -> None:
    tiled = tile_dataset(source, tmp_path / "out", size=SIZE, overlap=OVERLAP, workers=1, progress=False)
    placed = placements(tiled)
    cut = placed[
        [
            not fully_inside(source.polygons[index], x, y)
            for index, x, y in zip(placed["source"], placed["x"], placed["y"])
        ]
    ]
    assert len(cut) > 20
    assert cut["truncated"].all()
    corners = cut[["x1", "y1", "x2", "y2", "x3", "y3", "x4", "y4"]].to_numpy().reshape(-1, 4, 2)
    extent = np.stack([np.minimum(SIZE, WIDTH - cut["x"]), np.minimum(SIZE, HEIGHT - cut["y"])], axis=1)
    assert (corners >= 0).all() and (corners <= extent[:, None, :]).all()
    for row, quad in zip(cut.itertuples(), corners):
        # the new box stands on the part inside the tile and covers most of it (clamping the rectangle's
        # corners into the tile trims a little; the worst of these ~125 cuts keeps 70%)
        hull = shapely.MultiPoint(source.polygons[row.source].reshape(4, 2)).convex_hull
        piece = shapely.affinity.translate(
            hull.intersection(shapely.box(row.x, row.y, row.x + SIZE, row.y + SIZE)), -row.x, -row.y
        )
        box = shapely.Polygon(quad)
        common = box.intersection(piece).area
        assert common >= 0.99 * box.area and common >= 0.7 * piece.area


def test_written_tiles_read_back_as_the_returned_data_set(source: Dataset, tmp_path: Path) -> None:
    tiled = tile_dataset(source, tmp_path / "out", size=SIZE, overlap=OVERLAP, workers=1, progress=False)
    again = read_dota(tmp_path / "out")
    assert tiled.root == tmp_path / "out"
    assert again.categories == tiled.categories
    pd.testing.assert_frame_equal(again.images, tiled.images)
    # DOTA has no truncated flag, so only that column differs
    pd.testing.assert_frame_equal(
        again.instances.drop(columns="truncated"), tiled.instances.drop(columns="truncated"), atol=1e-9
    )
    assert set(tiled.images["split"]) == {"train"}
    assert (tmp_path / "out" / "train" / "images" / "scene__256__644___394.png").is_file()
    assert (
        (tmp_path / "out" / "train" / "labelTxt" / "scene__256__644___394.txt")
        .read_text()
        .startswith("gsd:0.5\n")
    )

    pixels = np.asarray(Image.open(source.image_path(0)))
    for _, tile in tiled.images.iterrows():
        match = TILE_NAME.fullmatch(Path(tile["file"]).stem)
        x, y = int(match["x"]), int(match["y"])
        crop = np.asarray(Image.open(tmp_path / "out" / tile["file"]))
        np.testing.assert_array_equal(crop, pixels[y : y + SIZE, x : x + SIZE])


def test_empty_tiles_are_skipped_unless_kept(tmp_path: Path) -> None:
    noise_image(tmp_path / "src" / "big.png", 600, 300)
    one_box = [dict(image_id=0, category="ship", polygon=[10, 10, 40, 10, 40, 30, 10, 30])]
    images = [dict(image_id=0, file="big.png", width=600, height=300)]
    source = Dataset.from_records(images, one_box, ["ship"], root=tmp_path / "src")

    sparse = tile_dataset(source, tmp_path / "sparse", size=256, overlap=0, workers=1, progress=False)
    assert sparse.images["file"].tolist() == ["images/big__256__0___0.png"]
    assert sorted(path.name for path in (tmp_path / "sparse" / "images").iterdir()) == ["big__256__0___0.png"]

    full = tile_dataset(
        source, tmp_path / "full", size=256, overlap=0, keep_empty=True, workers=1, progress=False
    )
    assert len(full.images) == 3 * 2  # x: 0, 256, 344; y: 0, 44
    assert len(full.instances) == 1
    assert (tmp_path / "full" / "labelTxt" / "big__256__344___44.txt").read_text() == ""


@pytest.mark.parametrize("pad", [True, False])
def test_small_images_are_padded_or_left_at_their_size(tmp_path: Path, pad: bool) -> None:
    pixels = noise_image(tmp_path / "src" / "small.png", 300, 200)
    # reaches 5 px below the image: clipped at the image edge, not at the padding
    box = [dict(image_id=0, category="ship", polygon=[100, 150, 140, 150, 140, 205, 100, 205])]
    images = [dict(image_id=0, file="small.png", width=300, height=200)]
    source = Dataset.from_records(images, box, ["ship"], root=tmp_path / "src")

    tiled = tile_dataset(source, tmp_path / "out", size=256, overlap=56, pad=pad, workers=1, progress=False)

    assert tiled.images["file"].tolist() == ["images/small__256__0___0.png", "images/small__256__44___0.png"]
    tile = np.asarray(Image.open(tmp_path / "out" / "images" / "small__256__0___0.png"))
    np.testing.assert_array_equal(tile[:200], pixels[:, :256])
    if pad:
        assert tile.shape == (256, 256, 3) and not tile[200:].any()
        assert tiled.images[["width", "height"]].values.tolist() == [[256, 256], [256, 256]]
    else:
        assert tile.shape == (200, 256, 3)
        assert tiled.images[["width", "height"]].values.tolist() == [[256, 200], [256, 200]]
    first = tiled.instances.iloc[0]
    assert first["truncated"]
    assert first[["y1", "y2", "y3", "y4"]].max() == pytest.approx(200)


def test_parallel_workers_give_the_inline_result(tmp_path: Path) -> None:
    datasets = []
    for index in range(3):
        part = scene(tmp_path / "src", seed=index)
        datasets.append(
            part.replace(
                images=part.images.assign(file=f"train/scene{index}.png", image_id=index),
                instances=part.instances.assign(image_id=index),
            )
        )
        (tmp_path / "src" / "train" / "scene.png").rename(tmp_path / "src" / "train" / f"scene{index}.png")
    images = pd.concat([part.images for part in datasets], ignore_index=True)
    instances = pd.concat([part.instances for part in datasets], ignore_index=True)
    source = Dataset(images, instances, datasets[0].categories, root=tmp_path / "src")

    inline_problems, parallel_problems = Problems(), Problems()
    inline = tile_dataset(
        source,
        tmp_path / "inline",
        size=SIZE,
        overlap=OVERLAP,
        workers=1,
        problems=inline_problems,
        progress=False,
    )
    parallel = tile_dataset(
        source,
        tmp_path / "parallel",
        size=SIZE,
        overlap=OVERLAP,
        workers=2,
        problems=parallel_problems,
        progress=False,
    )

    pd.testing.assert_frame_equal(parallel.images, inline.images)
    pd.testing.assert_frame_equal(parallel.instances, inline.instances)
    assert parallel_problems.dropped == inline_problems.dropped and sum(inline_problems.dropped.values()) >= 9
    inline_labels = sorted((tmp_path / "inline").rglob("*.txt"))
    parallel_labels = sorted((tmp_path / "parallel").rglob("*.txt"))
    assert [path.relative_to(tmp_path / "inline") for path in inline_labels] == [
        path.relative_to(tmp_path / "parallel") for path in parallel_labels
    ]
    assert [path.read_text() for path in inline_labels] == [path.read_text() for path in parallel_labels]


@pytest.mark.parametrize("workers", [1, 2])
def test_unreadable_image_raises_or_is_skipped(source: Dataset, tmp_path: Path, workers: int) -> None:
    second = noise_image(tmp_path / "src" / "train" / "broken.png", 300, 300)
    del second
    (tmp_path / "src" / "train" / "broken.png").write_bytes(b"not an image")
    images = pd.concat(
        [
            source.images,
            pd.DataFrame(
                [dict(image_id=1, file="train/broken.png", width=300, height=300, split="train", gsd=0.5)]
            ),
        ]
    )
    instances = pd.concat([source.instances, source.instances.iloc[:3].assign(image_id=1)])
    with_broken = source.replace(images=images, instances=instances)

    with pytest.raises(DataError, match="broken.png: image cannot be read"):
        tile_dataset(
            with_broken, tmp_path / "strict", size=SIZE, overlap=OVERLAP, workers=workers, progress=False
        )

    problems = Problems(skip_invalid=True)
    tiled = tile_dataset(
        with_broken,
        tmp_path / "lenient",
        size=SIZE,
        overlap=OVERLAP,
        workers=workers,
        problems=problems,
        progress=False,
    )
    assert [Path(error.path).name for error in problems.errors] == ["broken.png"]
    assert len(tiled.images) > 0 and not tiled.images["file"].str.contains("broken").any()


def test_refuses_a_folder_that_is_not_empty_and_bad_settings(source: Dataset, tmp_path: Path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "old.txt").write_text("")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        tile_dataset(source, tmp_path / "used", progress=False)
    with pytest.raises(ValueError, match="overlap must be"):
        tile_dataset(source, tmp_path / "a", size=100, overlap=100, progress=False)
    with pytest.raises(ValueError, match="keep_threshold"):
        tile_dataset(source, tmp_path / "b", keep_threshold=0, progress=False)
