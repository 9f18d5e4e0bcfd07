import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ccaug.data.dataset import Dataset
from ccaug.data.draw import (
    GRID_GAP,
    LAYOUT_BACKGROUND,
    PALETTE,
    category_colour,
    draw_instances,
    sample_image_ids,
    show_grid,
)
from ccaug.data.geometry import POLY_COLUMNS, hbb_to_polygon

CATEGORIES = ["car", "ship", "plane"]
TILE = 64


def _box(xmin, ymin, xmax, ymax):
    return hbb_to_polygon(np.array([[xmin, ymin, xmax, ymax]], dtype=float))[0]


def _instances(rows):
    """rows of (category, (xmin, ymin, xmax, ymax), difficult, truncated) -> an instances table."""
    records = []
    for category, box, difficult, truncated in rows:
        corners = dict(zip(POLY_COLUMNS, _box(*box)))
        records.append({"category": category, **corners, "difficult": difficult, "truncated": truncated})
    table = pd.DataFrame(records)
    table["category"] = pd.Categorical(table["category"], categories=CATEGORIES)
    return table


def _pixels_near(image, colour, tolerance=12):
    array = np.asarray(image.convert("RGB")).astype(int)
    return int((np.abs(array - np.array(colour)).max(axis=-1) <= tolerance).sum())


def _dataset(root, n_images=3, write_files=True):
    """n square 64-px images, black; image i holds one instance of category i % 3 (the last one none)."""
    images, instances = [], []
    for i in range(n_images):
        name = f"img_{i}.png"
        if write_files:
            Image.new("RGB", (64, 64)).save(root / name)
        images.append({"image_id": i, "file": name, "width": 64, "height": 64, "split": "train"})
        if i < n_images - 1:
            category = CATEGORIES[i % 3]
            polygon = _box(10, 10, 50, 40)
            instances.append(
                {
                    "image_id": i,
                    "category": category,
                    "polygon": polygon,
                    "difficult": False,
                    "truncated": False,
                }
            )
    return Dataset.from_records(images, instances, CATEGORIES, root=root)


# ----------------------------------------------------------------------------------------------------------
# draw_instances


def test_draw_instances_uses_the_category_colour_and_leaves_the_input_alone():
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    drawn = draw_instances(
        image, _instances([("ship", (10, 10, 50, 50), False, False)]), CATEGORIES, labels=False
    )
    assert drawn.size == (64, 64) and drawn.mode == "RGB"
    assert _pixels_near(drawn, category_colour(1)) > 40
    assert _pixels_near(drawn, category_colour(0)) == 0
    assert np.asarray(drawn)[30, 30].tolist() == [0, 0, 0]  # outline only, no fill
    assert not image.any()


def test_palette_is_stable_and_distinct_past_its_end():
    assert category_colour(0) == PALETTE[0]
    colours = [category_colour(i) for i in range(40)]
    assert len(set(colours)) == 40
    assert colours == [category_colour(i) for i in range(40)]


def test_labels_add_a_box_in_the_category_colour():
    image = Image.new("RGB", (128, 128))
    instances = _instances([("car", (30, 60, 100, 100), False, False)])
    with_label = draw_instances(image, instances, CATEGORIES, labels=True)
    without = draw_instances(image, instances, CATEGORIES, labels=False)
    above_box = (30, 35, 100, 57)
    assert not np.asarray(without.crop(above_box)).any()
    assert _pixels_near(with_label.crop(above_box), category_colour(0)) > 20


def test_difficult_is_dashed_and_truncated_is_thinner():
    image = np.zeros((128, 128, 3), dtype=np.uint8)

    def coloured_pixels(difficult, truncated):
        instances = _instances([("car", (20, 20, 100, 100), difficult, truncated)])
        drawn = draw_instances(image, instances, CATEGORIES, labels=False)
        return int((np.asarray(drawn).max(axis=-1) > 0).sum())

    solid = coloured_pixels(False, False)
    assert coloured_pixels(True, False) < 0.8 * solid
    assert coloured_pixels(False, True) < solid


def test_draw_instances_accepts_grey_16_bit_arrays():
    image = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)) * 10
    drawn = draw_instances(image, _instances([("plane", (5, 5, 30, 30), False, False)]), CATEGORIES)
    assert drawn.mode == "RGB" and drawn.size == (64, 64)


# ----------------------------------------------------------------------------------------------------------
# show_grid


def _tile_box(position, cols, caption_px):
    """(left, top, right, bottom) of a tile's picture area in the grid."""
    left = GRID_GAP + (position % cols) * (TILE + GRID_GAP)
    top = GRID_GAP + (position // cols) * (TILE + caption_px + GRID_GAP)
    return left, top, left + TILE, top + TILE


def test_show_grid_size_and_tile_colours(tmp_path):
    dataset = _dataset(tmp_path)
    out = show_grid(dataset, tmp_path / "out" / "grid.png", n=3, tile_px=TILE)
    assert out == tmp_path / "out" / "grid.png"
    with Image.open(out) as grid:
        grid.load()
    cols, rows = 2, 2  # ceil(sqrt(3)) columns
    assert grid.width == cols * TILE + (cols + 1) * GRID_GAP
    assert grid.height > rows * TILE + (rows + 1) * GRID_GAP
    caption_px = 10 + 6  # the caption font is clipped to 10 px for small tiles
    first = grid.crop(_tile_box(0, cols, caption_px))
    second = grid.crop(_tile_box(1, cols, caption_px))
    assert _pixels_near(first, category_colour(0)) > 20  # image 0 holds a "car"
    assert _pixels_near(first, category_colour(1)) == 0
    assert _pixels_near(second, category_colour(1)) > 20  # image 1 holds a "ship"
    empty = np.asarray(grid.crop(_tile_box(2, cols, caption_px)))
    assert not empty.any()  # image 2 is black and has no instances


def test_layout_only_needs_no_image_files(tmp_path):
    dataset = _dataset(tmp_path, write_files=False)
    out = show_grid(dataset, tmp_path / "layout.png", n=3, tile_px=TILE, layout_only=True, cols=3)
    with Image.open(out) as grid:
        assert grid.width == 3 * TILE + 4 * GRID_GAP
        tile = np.asarray(grid.convert("RGB").crop(_tile_box(2, 3, 16)))
    assert (tile == np.array(LAYOUT_BACKGROUND)).all()


def test_missing_image_file_names_the_file(tmp_path):
    dataset = _dataset(tmp_path)
    (tmp_path / "img_1.png").unlink()
    with pytest.raises(FileNotFoundError, match="img_1.png") as error:
        show_grid(dataset, tmp_path / "grid.png", n=3, tile_px=TILE)
    assert error.value.filename == str(tmp_path / "img_1.png")
    assert not (tmp_path / "grid.png").exists()


def test_grid_is_deterministic_for_a_seed(tmp_path):
    dataset = _dataset(tmp_path, n_images=10)
    first = show_grid(dataset, tmp_path / "a.png", n=4, seed=7, tile_px=TILE).read_bytes()
    second = show_grid(dataset, tmp_path / "b.png", n=4, seed=7, tile_px=TILE).read_bytes()
    assert first == second
    ids = sample_image_ids(dataset, 4, seed=7)
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert ids != sample_image_ids(dataset, 4, seed=8)
    assert sample_image_ids(dataset, 50, seed=0) == list(range(10))


def test_show_grid_refuses_an_empty_dataset(tmp_path):
    with pytest.raises(ValueError, match="no images"):
        show_grid(Dataset.empty(CATEGORIES, root=tmp_path), tmp_path / "grid.png")
