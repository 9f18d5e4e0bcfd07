"""The copy-paste baseline: labels match the pasted pixels, pastes fit, obey terrain, and the output is
deterministic and reads back as the returned data set."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from PIL import Image

from ccaug.data.dataset import Dataset
from ccaug.data.formats import read_dataset
from ccaug.data.geometry import POLY_COLUMNS, le90_to_polygon, polygon_area, polygon_to_hbb
from ccaug.datasets.aerial import ALLOWED_TERRAIN, make_aerial
from ccaug.detect.copy_paste import (
    MAX_DONOR_SHARE,
    MIN_DONOR_AREA,
    PROVENANCE_FILE,
    TERRAIN_MASK_SHARE,
    TerrainMaps,
    allowed_terrain,
    copy_paste_dataset,
    polygon_mask,
)

SIZE = 96
BACKGROUND = (60, 110, 60)
COLOURS = {"car": (230, 30, 30), "ship": (30, 30, 230)}
TRUNCATED_COLOUR = (240, 240, 20)  # a truncated car: never a donor
BIG_COLOUR = (230, 30, 230)  # a ship longer than half the image side: never a donor


# --------------------------------------------------------------------------------------------------------
# data
def box(cx: float, cy: float, w: float, h: float, theta: float) -> np.ndarray:
    return le90_to_polygon(np.array([[cx, cy, w, h, theta]]))[0]


def centre_mask(polygons: np.ndarray, size: int) -> np.ndarray:
    """Pixels whose centre lies inside any of the polygons (exact, by shapely; PIL rounds corners to pixels)."""
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    mask = np.zeros((size, size), dtype=bool)
    for polygon in np.asarray(polygons, dtype=float).reshape(-1, 8):
        mask |= shapely.contains_xy(shapely.Polygon(polygon.reshape(4, 2)), xs, ys)
    return mask


def write_colour_dataset(root: Path, background=None) -> Dataset:
    """Three plain images whose objects are solid colour boxes: colour tells class and donor eligibility.

    `background(pixels, index)` may paint the ground first; by default it is plain `BACKGROUND`.
    """
    specs = [
        [
            ("car", box(72, 82, 16, 8, 0.3), COLOURS["car"], False),
            ("ship", box(26, 55, 22, 9, -0.7), COLOURS["ship"], False),
            ("car", box(80, 20, 14, 7, 1.2), TRUNCATED_COLOUR, True),
        ],
        [
            ("ship", box(30, 70, 20, 8, 1.0), COLOURS["ship"], False),
            ("car", box(75, 80, 3.5, 3, 0.0), COLOURS["car"], False),  # tiny: area < 16 px²
            ("ship", box(50, 25, 60, 10, 0.05), BIG_COLOUR, False),
        ],
        [],
    ]
    images, instances = [], []
    for index, spec in enumerate(specs):
        file = f"src/img{index}.png"
        pixels = np.full((SIZE, SIZE, 3), BACKGROUND, dtype=np.uint8)
        if background is not None:
            background(pixels, index)
        for category, polygon, colour, truncated in spec:
            pixels[centre_mask(polygon, SIZE)] = colour
            instances.append(
                dict(
                    image_id=index,
                    category=category,
                    polygon=polygon,
                    difficult=index == 1,
                    truncated=truncated,
                )
            )
        (root / "src").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / file)
        images.append(
            dict(
                image_id=index, file=file, width=SIZE, height=SIZE, split="train", gsd=0.5, imagesource="test"
            )
        )
    return Dataset.from_records(images, instances, ["car", "ship"], root=root)


@pytest.fixture(scope="module")
def aerial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Dataset]:
    root = tmp_path_factory.mktemp("aerial")
    return root, make_aerial(root, n=12, size=128, seed=0, workers=1, progress=False).split("train")


def pasted_rows(out: Path, written: Dataset) -> list[tuple[dict, pd.DataFrame, pd.DataFrame]]:
    """Per output image: its provenance record, its original instances and its pasted instances."""
    provenance = json.loads((out / PROVENANCE_FILE).read_text())["images"]
    result = []
    for (image, instances), record in zip(written.iter_images(), provenance):
        assert record["file"] == image["file"]
        count = len(instances) - len(record["pasted"])
        result.append((record, instances.iloc[:count], instances.iloc[count:]))
    return result


def signed_area(polygon: np.ndarray) -> float:
    """Shoelace area with sign: positive for corners clockwise on screen (y down), as le90_to_polygon gives."""
    x, y = np.asarray(polygon, dtype=float).reshape(4, 2).T
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def shift_all(mask: np.ndarray, combine) -> np.ndarray:
    """Combine a mask with its 8 one-pixel shifts (erosion with np.logical_and, dilation with np.logical_or)."""
    padded = np.pad(mask, 1, constant_values=combine is np.logical_or)
    result = mask.copy()
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            result = combine(result, padded[dy : dy + mask.shape[0], dx : dx + mask.shape[1]])
    return result


def centre_terrain(terrain: np.ndarray, polygons: np.ndarray) -> np.ndarray:
    centres = np.asarray(polygons).reshape(-1, 4, 2).mean(axis=1)
    return terrain[np.floor(centres[:, 1]).astype(int), np.floor(centres[:, 0]).astype(int)]


def read_terrain(root: Path, source_file: str) -> np.ndarray:
    return np.array(Image.open(root / "train" / "terrain" / f"{Path(source_file).stem}.png"))


# --------------------------------------------------------------------------------------------------------
# tests
def test_pasted_labels_cover_exactly_the_pasted_pixels(tmp_path: Path) -> None:
    dataset = write_colour_dataset(tmp_path)
    out = tmp_path / "cp"
    written = copy_paste_dataset(dataset, out, n_images=6, seed=0, pastes_per_image=(2, 4))

    sources = dataset.instances.groupby("image_id").size()
    total_pasted = 0
    for (image, _), (record, originals, pasted) in zip(written.iter_images(), pasted_rows(out, written)):
        source_id = dataset.images.loc[dataset.images["file"] == record["source"], "image_id"].item()
        assert len(originals) == sources.get(source_id, 0)
        pixels = np.array(Image.open(out / image["file"]))
        for _, row in pasted.iterrows():
            polygon = row[POLY_COLUMNS].to_numpy(dtype=float)
            inner = shift_all(centre_mask(polygon, SIZE), np.logical_and)
            assert inner.sum() > 0
            assert (pixels[inner] == COLOURS[row["category"]]).all(), "pasted pixels are not the donor's"
            assert polygon_area(polygon[None])[0] >= MIN_DONOR_AREA
            assert signed_area(polygon) > 0, "a flip must keep the corners' winding (clockwise on screen)"
            extent = np.ptp(polygon.reshape(4, 2), axis=0).max()
            assert extent <= MAX_DONOR_SHARE * SIZE
        # nothing was pasted outside the labels: away from every polygon the ground is untouched
        labelled = shift_all(
            centre_mask(written.polygons[written.instances["image_id"] == image["image_id"]], SIZE),
            np.logical_or,
        )
        assert (pixels[~labelled] == BACKGROUND).all()
        total_pasted += len(pasted)
    assert total_pasted >= 6
    assert len(written.instances) == sum(sources.get(i, 0) for i in _source_ids(dataset, out)) + total_pasted


def _source_ids(dataset: Dataset, out: Path) -> list[int]:
    ids = dataset.images.set_index("file")["image_id"]
    return [
        int(ids[record["source"]]) for record in json.loads((out / PROVENANCE_FILE).read_text())["images"]
    ]


@pytest.mark.parametrize("use_terrain", [False, True])
def test_pastes_lie_inside_the_image_and_overlap_nothing(
    aerial: tuple[Path, Dataset], tmp_path: Path, use_terrain: bool
) -> None:
    root, dataset = aerial
    terrain = TerrainMaps.from_aerial(root, dataset) if use_terrain else None
    written = copy_paste_dataset(
        dataset, tmp_path, n_images=8, seed=3, pastes_per_image=(4, 6), terrain=terrain
    )

    count = 0
    for record, originals, pasted in pasted_rows(tmp_path, written):
        everything = pd.concat([originals, pasted])[POLY_COLUMNS].to_numpy(dtype=float)
        shapes = [shapely.Polygon(polygon.reshape(4, 2)).convex_hull for polygon in everything]
        for offset in range(len(originals), len(everything)):
            xmin, ymin, xmax, ymax = polygon_to_hbb(everything[offset][None])[0]
            assert xmin >= 0 and ymin >= 0 and xmax <= 128 and ymax <= 128
            others = shapes[:offset] + shapes[offset + 1 :]
            assert not any(shapes[offset].intersects(other) for other in others), record["file"]
            count += 1
    assert count >= 8


def test_with_terrain_maps_centres_land_on_terrain_the_class_stands_on(
    aerial: tuple[Path, Dataset], tmp_path: Path
) -> None:
    root, dataset = aerial
    terrain = TerrainMaps.from_aerial(root, dataset)
    learned = allowed_terrain(dataset, terrain)
    assert learned == _allowed_terrain_by_hand(root, dataset)
    for name, ids in learned.items():
        assert ids <= ALLOWED_TERRAIN[name]  # the aerial set's own rule, seen through its real instances
    assert terrain.names[1] == "water"

    written = copy_paste_dataset(
        dataset, tmp_path, n_images=10, seed=1, pastes_per_image=(3, 6), terrain=terrain
    )
    count = 0
    for record, _, pasted in pasted_rows(tmp_path, written):
        ground = read_terrain(root, record["source"])
        polygons = pasted[POLY_COLUMNS].to_numpy(dtype=float)
        for category, polygon, under_centre in zip(
            pasted["category"], polygons, centre_terrain(ground, polygons)
        ):
            allowed = sorted(learned[category])
            assert under_centre in allowed, f"{category} pasted on terrain {under_centre} in {record['file']}"
            mask = polygon_mask(polygon, 128, 128)
            assert np.isin(ground[mask], allowed).mean() >= TERRAIN_MASK_SHARE
            count += 1
    assert count >= 10


def _allowed_terrain_by_hand(root: Path, dataset: Dataset) -> dict[str, frozenset[int]]:
    under: dict[str, list[int]] = {name: [] for name in dataset.categories}
    for image, instances in dataset.iter_images():
        ground = read_terrain(root, image["file"])
        polygons = instances[POLY_COLUMNS].to_numpy(dtype=float)
        for category, terrain_id in zip(instances["category"], centre_terrain(ground, polygons)):
            under[category].append(int(terrain_id))
    allowed = {}
    for name, ids in under.items():
        counts = Counter(ids)
        few = len(ids) < 20
        allowed[name] = frozenset(i for i, n in counts.items() if few or n >= 0.05 * len(ids))
    return allowed


def test_terrain_maps_are_found_only_where_they_exist(aerial: tuple[Path, Dataset], tmp_path: Path) -> None:
    root, dataset = aerial
    assert TerrainMaps.find(root, dataset) is not None
    assert TerrainMaps.find(tmp_path, dataset) is None
    with pytest.raises(FileNotFoundError, match="terrain map"):
        TerrainMaps.from_aerial(tmp_path, dataset)


def test_background_similarity_keeps_pastes_on_ground_like_their_donors(tmp_path: Path) -> None:
    """Without terrain maps: where half the ground is water, ships stay on water and cars on grass; the
    image without water (the last) gets no ship, as no position's surroundings look like a ship's."""

    def water_on_the_left(pixels: np.ndarray, index: int) -> None:
        if index < 2:
            pixels[:, : SIZE // 2] = (40, 70, 140)

    dataset = write_colour_dataset(tmp_path, background=water_on_the_left)
    centre_x = dataset.polygons.reshape(-1, 4, 2)[:, :, 0].mean(axis=1)
    keep = (dataset.instances["category"] == "ship").to_numpy() == (centre_x < SIZE / 2)
    dataset = dataset.replace(instances=dataset.instances[keep])  # ships on water, cars on grass only
    written = copy_paste_dataset(dataset, tmp_path / "cp", n_images=8, seed=2, pastes_per_image=(2, 4))

    pasted = Counter()
    for record, _, rows in pasted_rows(tmp_path / "cp", written):
        all_grass = record["source"] == "src/img2.png"
        for category, polygon in zip(rows["category"], rows[POLY_COLUMNS].to_numpy(dtype=float)):
            xs = polygon.reshape(4, 2)[:, 0]
            if category == "ship":
                assert not all_grass and xs.max() <= SIZE / 2, "a ship was pasted on grass"
            else:
                assert all_grass or xs.min() >= SIZE / 2, "a car was pasted on water"
            pasted[category, all_grass] += 1
    assert pasted["ship", False] >= 2 and pasted["car", False] >= 2 and pasted["car", True] >= 1


def test_same_seed_same_bytes_and_a_shorter_run_is_a_prefix(tmp_path: Path) -> None:
    dataset = write_colour_dataset(tmp_path)
    runs = {}
    for name, seed, n in (("a", 0, 5), ("b", 0, 5), ("c", 1, 5)):
        copy_paste_dataset(dataset, tmp_path / name, n_images=n, seed=seed)
        runs[name] = _file_bytes(tmp_path / name)
    assert runs["a"] == runs["b"]
    assert runs["a"].keys() == runs["c"].keys() and runs["a"] != runs["c"]

    # a shorter run into the same folder: the first images are unchanged and the stale ones are gone
    copy_paste_dataset(dataset, tmp_path / "a", n_images=3, seed=0)
    shorter = _file_bytes(tmp_path / "a")
    images = sorted(path for path in shorter if path.startswith("train/"))
    assert images == sorted(
        f"train/{kind}/cp_{i:06d}.{ext}"
        for i in range(3)
        for kind, ext in (("images", "png"), ("labelTxt", "txt"))
    )
    assert all(shorter[path] == runs["a"][path] for path in images)


def _file_bytes(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()
    }


def test_the_written_folder_reads_back_as_the_returned_dataset(tmp_path: Path) -> None:
    dataset = write_colour_dataset(tmp_path)
    written = copy_paste_dataset(dataset, tmp_path / "cp", n_images=4, seed=5)
    back = read_dataset(tmp_path / "cp", "dota")

    assert back.categories == written.categories == dataset.categories
    pd.testing.assert_frame_equal(back.images, written.images)
    assert list(written.images.columns) == [
        "image_id",
        "file",
        "width",
        "height",
        "split",
        "imagesource",
        "gsd",
    ]
    assert (written.images["split"] == "train").all()
    assert list(written.images["file"]) == [f"train/images/cp_{i:06d}.png" for i in range(4)]
    columns = ["image_id", "category", "difficult", "truncated"]
    pd.testing.assert_frame_equal(back.instances[columns], written.instances[columns])
    np.testing.assert_allclose(back.polygons, written.polygons, atol=1e-3)
    assert not written.instances["truncated"].any()  # DOTA stores no truncated flag
    assert written.instances["difficult"].any()  # the difficult flags of image 1 travel with its instances


def test_bad_requests_are_refused(tmp_path: Path) -> None:
    dataset = write_colour_dataset(tmp_path)
    with pytest.raises(ValueError, match="n_images"):
        copy_paste_dataset(dataset, tmp_path / "cp", n_images=0)
    with pytest.raises(ValueError, match="no images"):
        copy_paste_dataset(Dataset.empty(["car"], root=tmp_path), tmp_path / "cp", n_images=1)
    truncated_only = dataset.replace(instances=dataset.instances.assign(truncated=True))
    with pytest.raises(ValueError, match="no usable donor"):
        copy_paste_dataset(truncated_only, tmp_path / "cp", n_images=1)
    with pytest.raises(ValueError, match="pastes_per_image"):
        copy_paste_dataset(dataset, tmp_path / "cp", n_images=1, pastes_per_image=(3, 1))
    assert not (tmp_path / "cp").exists()
