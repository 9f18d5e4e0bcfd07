"""Drawing instances on images, and contact sheets of a data set, for looking at data with one's own eyes.

Colours are a fixed palette indexed by a category's position in `Dataset.categories`, so a class keeps its
colour across images, grids, plots and runs. Line styles carry the two flags: a *difficult* instance is
dashed, a *truncated* one is drawn thinner (both: thin and dashed).

Small images are drawn at twice their size and scaled back down, which anti-aliases the lines and the text
well enough to read on a 256-pixel tile. Everything is drawn with PIL (no matplotlib): a 64-tile grid takes
a fraction of a second.
"""

from __future__ import annotations

import colorsys
import errno
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from ccaug.data.dataset import Dataset
from ccaug.data.geometry import POLY_COLUMNS
from ccaug.fileio import save_image

# Trubetskoy's "20 simple, distinct colours", most distinct first, dark ones last (aerial images are dark).
PALETTE: list[tuple[int, int, int]] = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (255, 250, 200),
    (170, 255, 195),
    (128, 128, 0),
    (255, 215, 180),
    (128, 0, 0),
    (0, 0, 128),
    (128, 128, 128),
]

LAYOUT_BACKGROUND = (56, 56, 56)  # the blank canvas of layout_only drawings
GRID_BACKGROUND = (24, 24, 24)
GRID_TEXT = (230, 230, 230)
GRID_GAP = 4  # pixels between tiles and around the grid
MAX_LABELLED_PER_TILE = 30  # grid tiles with more instances are drawn without class labels
_SUPERSAMPLE_BELOW = 1024  # images whose longer side is at most this are drawn at 2x


def category_colour(index: int) -> tuple[int, int, int]:
    """The RGB colour of the category at this position; past the palette, hues by the golden ratio."""
    if index < len(PALETTE):
        return PALETTE[index]
    hue = (index - len(PALETTE)) * 0.618033988749895 % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)


def default_font(size: float) -> ImageFont.FreeTypeFont:
    """PIL's bundled scalable font: nothing is looked up on the system or downloaded."""
    return ImageFont.load_default(size=max(1, int(size)))


# --------------------------------------------------------------------------------------------------------
# one image


def draw_instances(
    image: np.ndarray | Image.Image,
    instances: pd.DataFrame,
    categories: Sequence[str],
    *,
    labels: bool = True,
) -> Image.Image:
    """Draw each instance's polygon in its category's colour, with the class name near its first corner.

    `instances` needs ``category`` and ``x1..y4`` in the pixel frame of `image`; ``difficult`` and
    ``truncated`` are optional. Returns a new RGB image of the same size; the input is not changed.
    """
    base = _to_rgb(image)
    width, height = base.size
    scale = 2 if max(width, height) <= _SUPERSAMPLE_BELOW else 1
    canvas = (
        base.resize((width * scale, height * scale), Image.Resampling.NEAREST) if scale > 1 else base.copy()
    )
    draw = ImageDraw.Draw(canvas)
    # Sized by the longer side, so that every tile of a grid (all fitted to the same longer side) matches.
    longer = max(width, height)
    line_px = max(1.5, longer / 512) * scale
    font = default_font(max(10.0, 0.45 * math.sqrt(longer)) * scale)

    polygons = instances[POLY_COLUMNS].to_numpy(dtype=np.float64).reshape(-1, 4, 2) * scale
    names = instances["category"].astype(str).tolist()
    indices = _category_indices(names, categories)
    difficult = _flag(instances, "difficult")
    truncated = _flag(instances, "truncated")
    drawn = []
    for corners, name, index, is_difficult, is_truncated in zip(
        polygons, names, indices, difficult, truncated
    ):
        if not np.isfinite(corners).all():
            continue
        colour = category_colour(index)
        width_px = max(1, round(line_px * (0.5 if is_truncated else 1.0)))
        _draw_outline(draw, corners, colour, width_px, dashed=is_difficult, dash_px=4 * line_px)
        drawn.append((corners[0], name, colour))
    if labels:  # after all outlines, so that no outline crosses a label
        for corner, name, colour in drawn:
            _draw_label(draw, corner, name, colour, font, canvas.size)
    if scale > 1:
        canvas = canvas.resize((width, height), Image.Resampling.BOX)
    return canvas


def _to_rgb(image: np.ndarray | Image.Image) -> Image.Image:
    """An RGB PIL image from an array or image of any common mode (16-bit and float are min-max scaled)."""
    if isinstance(image, np.ndarray):
        array = image
        if array.dtype != np.uint8:
            array = _stretch_to_uint8(array)
        image = Image.fromarray(array)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        image = Image.fromarray(_stretch_to_uint8(np.asarray(image)))
    return image.convert("RGB")


def _stretch_to_uint8(array: np.ndarray) -> np.ndarray:
    array = array.astype(np.float64)
    if array.size == 0 or not np.isfinite(array).any():
        return np.zeros(array.shape, dtype=np.uint8)
    low, high = np.nanmin(array), np.nanmax(array)
    span = high - low if high > low else 1.0
    return np.clip((array - low) / span * 255.0, 0, 255).astype(np.uint8)


def _category_indices(names: list[str], categories: Sequence[str]) -> list[int]:
    """Each name's position in `categories`: the position, not the name, picks the colour."""
    index_of = {name: i for i, name in enumerate(categories)}
    unknown = sorted(set(names) - set(index_of))
    if unknown:
        raise ValueError(f"instances use categories {unknown} that are not in {list(categories)}")
    return [index_of[name] for name in names]


def _flag(instances: pd.DataFrame, column: str) -> np.ndarray:
    if column not in instances.columns:
        return np.zeros(len(instances), dtype=bool)
    return instances[column].fillna(False).to_numpy(dtype=bool)


def _draw_outline(
    draw: ImageDraw.ImageDraw,
    corners: np.ndarray,
    colour: tuple[int, int, int],
    width: int,
    *,
    dashed: bool,
    dash_px: float,
) -> None:
    closed = [tuple(point) for point in corners] + [tuple(corners[0])]
    if not dashed:
        draw.line(closed, fill=colour, width=width, joint="curve")
        return
    for start, end in zip(closed[:-1], closed[1:]):
        _draw_dashed_segment(draw, np.asarray(start), np.asarray(end), colour, width, dash_px)


def _draw_dashed_segment(
    draw: ImageDraw.ImageDraw,
    start: np.ndarray,
    end: np.ndarray,
    colour: tuple[int, int, int],
    width: int,
    dash_px: float,
) -> None:
    """Dashes of `dash_px` with gaps of the same length; PIL has no dashed lines."""
    length = float(np.linalg.norm(end - start))
    if length < 1e-9:
        return
    step = (end - start) / length
    position = 0.0
    while position < length:
        stop = min(position + dash_px, length)
        draw.line([tuple(start + step * position), tuple(start + step * stop)], fill=colour, width=width)
        position += 2 * dash_px


def _draw_label(
    draw: ImageDraw.ImageDraw,
    corner: np.ndarray,
    text: str,
    colour: tuple[int, int, int],
    font: ImageFont.FreeTypeFont,
    canvas_size: tuple[int, int],
) -> None:
    """The class name on a box of its colour, just above the first corner, kept inside the image."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(1, round(font.size * 0.15))
    box_w, box_h = right - left + 2 * pad, bottom - top + 2 * pad
    x = float(np.clip(corner[0], 0, max(0, canvas_size[0] - box_w)))
    y = float(np.clip(corner[1] - box_h, 0, max(0, canvas_size[1] - box_h)))
    draw.rectangle([x, y, x + box_w - 1, y + box_h - 1], fill=colour)
    draw.text((x + pad - left, y + pad - top), text, fill=_text_colour_on(colour), font=font)


def _text_colour_on(background: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


# --------------------------------------------------------------------------------------------------------
# a grid of images


def show_grid(
    dataset: Dataset,
    out_png: str | Path,
    *,
    n: int = 16,
    seed: int = 0,
    layout_only: bool = False,
    cols: int | None = None,
    tile_px: int = 256,
) -> Path:
    """Save a contact sheet of `n` images (a seeded sample, in image-id order) with their instances drawn.

    Each tile is the image fitted into ``tile_px`` squared, captioned with its file name and instance count;
    a legend of category colours runs along the bottom. Tiles with more than `MAX_LABELLED_PER_TILE`
    instances get no class labels (colours only), which would otherwise cover the objects. With ``layout_only=True`` the instances are drawn on
    a blank dark canvas of the image's size, so layouts without images (sampled ones) can be shown too.
    """
    grid = render_grid(dataset, n=n, seed=seed, layout_only=layout_only, cols=cols, tile_px=tile_px)
    save_image(out_png, grid)
    return Path(out_png)


def render_grid(
    dataset: Dataset, *, n: int = 16, seed: int = 0, layout_only: bool = False, cols: int | None = None, tile_px: int = 256,
    bare: bool = False,
) -> Image.Image:
    """The contact sheet of `show_grid`, as an image; ``bare=True`` shows the images without their instances."""
    image_ids = sample_image_ids(dataset, n, seed)
    if not image_ids:
        raise ValueError("the data set has no images to show")
    images = dataset.images.set_index("image_id", drop=False).loc[image_ids]
    groups = dict(tuple(dataset.instances[dataset.instances["image_id"].isin(image_ids)].groupby("image_id")))
    empty = dataset.instances.iloc[0:0]

    tiles, captions = [], []
    for _, row in images.iterrows():
        instances = groups.get(row["image_id"], empty)
        tiles.append(_render_tile(dataset, row, empty if bare else instances, tile_px, layout_only))
        captions.append(f"{Path(row['file']).name}: {len(instances)} objects")
    return _compose_grid(tiles, captions, dataset.categories, cols or math.ceil(math.sqrt(len(tiles))), tile_px)


def show_side_by_side(
    datasets: Sequence[Dataset], titles: Sequence[str], out_png: str | Path, *, n: int = 8, seed: int = 0, cols: int = 2, tile_px: int = 200
) -> Path:
    """Layout-only grids of several data sets next to each other under their titles (e.g. real | sampled).

    The sets share one class-to-colour mapping (the union of their categories, first set's order first).
    """
    categories = list(dict.fromkeys(name for dataset in datasets for name in dataset.categories))
    grids = [
        render_grid(dataset.replace(categories=categories), n=n, seed=seed, layout_only=True, cols=cols, tile_px=tile_px)
        for dataset in datasets
    ]
    font = default_font(18)
    title_px = font.size + 12
    width = sum(grid.width for grid in grids) + GRID_GAP * (len(grids) - 1)
    sheet = Image.new("RGB", (width, title_px + max(grid.height for grid in grids)), GRID_BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    left = 0
    for grid, title in zip(grids, titles):
        draw.text((left + GRID_GAP + 2, 6), title, fill=GRID_TEXT, font=font)
        sheet.paste(grid, (left, title_px))
        left += grid.width + GRID_GAP
    save_image(out_png, sheet)
    return Path(out_png)


def show_layouts_beside_images(
    dataset: Dataset, out_png: str | Path, *, n: int = 8, seed: int = 0, cols: int = 2, tile_px: int = 200
) -> Path:
    """Each image's layout (its instances on a blank canvas) beside the bare image: what was asked for and
    what was drawn, for images rendered from layouts."""
    grids = [
        render_grid(dataset, n=n, seed=seed, layout_only=True, cols=cols, tile_px=tile_px),
        render_grid(dataset, n=n, seed=seed, cols=cols, tile_px=tile_px, bare=True),
    ]
    font = default_font(18)
    title_px = font.size + 12
    sheet = Image.new("RGB", (grids[0].width + grids[1].width + GRID_GAP, title_px + grids[0].height), GRID_BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for left, grid, title in ((0, grids[0], "layouts"), (grids[0].width + GRID_GAP, grids[1], "generated")):
        draw.text((left + GRID_GAP + 2, 6), title, fill=GRID_TEXT, font=font)
        sheet.paste(grid, (left, title_px))
    save_image(out_png, sheet)
    return Path(out_png)


def sample_image_ids(dataset: Dataset, n: int, seed: int) -> list[int]:
    """`n` image ids drawn without replacement (all of them if fewer), sorted; the same for the same seed."""
    ids = np.sort(dataset.images["image_id"].to_numpy())
    if n >= len(ids):
        return ids.tolist()
    chosen = np.random.default_rng(seed).choice(ids, size=n, replace=False)
    return np.sort(chosen).tolist()


def _render_tile(
    dataset: Dataset, row: pd.Series, instances: pd.DataFrame, tile_px: int, layout_only: bool
) -> Image.Image:
    """The image (or a blank canvas) fitted into the tile, with the instances scaled to it and drawn."""
    width, height = int(row["width"]), int(row["height"])
    fit = tile_px / max(width, height, 1)
    size = (max(1, round(width * fit)), max(1, round(height * fit)))
    if layout_only:
        picture = Image.new("RGB", size, LAYOUT_BACKGROUND)
    else:
        picture = _load_fitted(dataset.image_path(row), size)
    # Scale by the table's size, not the decoded one: the polygons are in the table's pixel frame.
    scaled = instances.copy()
    scaled[POLY_COLUMNS[0::2]] = scaled[POLY_COLUMNS[0::2]] * (size[0] / max(width, 1))
    scaled[POLY_COLUMNS[1::2]] = scaled[POLY_COLUMNS[1::2]] * (size[1] / max(height, 1))
    # On a crowded tile the labels would hide the objects; the legend still names the colours.
    return draw_instances(picture, scaled, dataset.categories, labels=len(instances) <= MAX_LABELLED_PER_TILE)


def _load_fitted(path: Path, size: tuple[int, int]) -> Image.Image:
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "image file not found", str(path))
    with Image.open(path) as image:
        image.draft("RGB", size)  # JPEG decodes at a reduced scale: large scenes load fast
        return _to_rgb(image).resize(size, Image.Resampling.LANCZOS)


def _compose_grid(
    tiles: list[Image.Image], captions: list[str], categories: Sequence[str], cols: int, tile_px: int
) -> Image.Image:
    cols = max(1, min(cols, len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    font = default_font(int(np.clip(round(tile_px / 21), 10, 18)))
    caption_px = font.size + 6
    cell_h = tile_px + caption_px
    width = cols * tile_px + (cols + 1) * GRID_GAP
    legend = _legend_strip(categories, width, font)
    height = GRID_GAP + rows * (cell_h + GRID_GAP) + legend.height
    grid = Image.new("RGB", (width, height), GRID_BACKGROUND)
    draw = ImageDraw.Draw(grid)
    for position, (tile, caption) in enumerate(zip(tiles, captions)):
        left = GRID_GAP + (position % cols) * (tile_px + GRID_GAP)
        top = GRID_GAP + (position // cols) * (cell_h + GRID_GAP)
        grid.paste(tile, (left + (tile_px - tile.width) // 2, top + (tile_px - tile.height) // 2))
        text = _fit_text(draw, caption, font, tile_px)
        draw.text((left + 2, top + tile_px + 3), text, fill=GRID_TEXT, font=font)
    grid.paste(legend, (0, height - legend.height))
    return grid


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, max_px: int) -> str:
    """The text, shortened in the middle with '...' until it fits in `max_px`."""
    if draw.textlength(text, font=font) <= max_px - 4:
        return text
    keep = len(text)
    while keep > 1:
        keep -= 1
        shortened = text[: keep // 2] + "..." + text[len(text) - (keep - keep // 2) :]
        if draw.textlength(shortened, font=font) <= max_px - 4:
            return shortened
    return "..."


def _legend_strip(categories: Sequence[str], width: int, font: ImageFont.FreeTypeFont) -> Image.Image:
    """Swatch-and-name entries for every category, flowed left to right into as many rows as needed."""
    swatch = font.size
    line_h = font.size + 8
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    entries, x, y = [], GRID_GAP, 0
    for index, name in enumerate(categories):
        entry_w = swatch + 4 + round(measure.textlength(name, font=font)) + 14
        if x + entry_w > width - GRID_GAP and x > GRID_GAP:
            x, y = GRID_GAP, y + line_h
        entries.append((x, y, index, name))
        x += entry_w
    height = (y + line_h + GRID_GAP) if entries else 0
    strip = Image.new("RGB", (width, height), GRID_BACKGROUND)
    draw = ImageDraw.Draw(strip)
    for x, y, index, name in entries:
        top = y + (line_h - swatch) // 2
        draw.rectangle([x, top, x + swatch - 1, top + swatch - 1], fill=category_colour(index))
        draw.text((x + swatch + 4, top + swatch // 2), name, fill=GRID_TEXT, font=font, anchor="lm")
    return strip
