"""Instance masks, soft ellipse maps, background masks and their per-resolution cache."""

import math

import numpy as np
import pytest
import torch
from shapely.geometry import Point, Polygon

from ccaug.model.masks import (
    LayoutMasks,
    background_mask,
    layout_attention_mask,
    polygon_masks,
    soft_ellipse_maps,
    token_grid,
)


def rotated_rectangle(cx: float, cy: float, w: float, h: float, angle: float) -> list[float]:
    """Normalised corners x1 y1 … x4 y4 of a w×h rectangle turned by `angle` radians about (cx, cy)."""
    c, s = math.cos(angle), math.sin(angle)
    corners = []
    for dx, dy in [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]:
        corners += [cx + c * dx - s * dy, cy + s * dx + c * dy]
    return corners


def one_polygon(corners: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([[corners]], dtype=torch.float32), torch.ones(1, 1, dtype=torch.bool)


def shapely_centre_coverage(corners: list[float], height: int, width: int) -> np.ndarray:
    polygon = Polygon(np.asarray(corners).reshape(4, 2))
    return np.array(
        [
            [polygon.covers(Point((col + 0.5) / width, (row + 0.5) / height)) for col in range(width)]
            for row in range(height)
        ]
    )


@pytest.mark.parametrize("height, width", [(16, 16), (13, 9), (8, 8)])
def test_rotated_rectangle_mask_matches_shapely_cell_centres(height: int, width: int) -> None:
    corners = rotated_rectangle(0.47, 0.55, 0.6, 0.23, 0.61)
    polygons, valid = one_polygon(corners)
    mask = polygon_masks(polygons, valid, height, width, min_cells=0)[0, 0].numpy().astype(bool)
    expected = shapely_centre_coverage(corners, height, width)
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(mask, expected)


def test_mask_does_not_depend_on_corner_order() -> None:
    corners = rotated_rectangle(0.5, 0.4, 0.5, 0.3, -0.3)
    reversed_corners = np.asarray(corners).reshape(4, 2)[::-1].ravel().tolist()
    forward = polygon_masks(*one_polygon(corners), 16, 16)
    backward = polygon_masks(*one_polygon(reversed_corners), 16, 16)
    assert torch.equal(forward, backward)
    assert forward.sum() > 10


def test_minimum_coverage_keeps_a_one_pixel_object_at_8x8() -> None:
    # A 1-px object at 512 px, centred in cell (row 5, col 2) of an 8×8 grid but far from its centre.
    x, y = 2.9 / 8, 5.1 / 8
    corners = [x, y, x + 1 / 512, y, x + 1 / 512, y + 1 / 512, x, y + 1 / 512]
    polygons, valid = one_polygon(corners)
    assert polygon_masks(polygons, valid, 8, 8, min_cells=0).sum() == 0  # what the reference would get
    mask = polygon_masks(polygons, valid, 8, 8)[0, 0]
    assert mask.sum() == 1 and mask[5, 2] == 1
    assert polygon_masks(polygons, valid, 8, 8, min_cells=3).sum() == 3


def test_minimum_coverage_leaves_large_objects_alone() -> None:
    polygons, valid = one_polygon(rotated_rectangle(0.5, 0.5, 0.5, 0.4, 0.2))
    assert torch.equal(
        polygon_masks(polygons, valid, 8, 8, min_cells=1), polygon_masks(polygons, valid, 8, 8, 0)
    )


def test_degenerate_valid_polygon_gets_its_centre_cell() -> None:
    polygons, valid = one_polygon([0.3, 0.3] * 4)  # all four corners at one point: zero area
    mask = polygon_masks(polygons, valid, 4, 4)[0, 0]
    assert mask.sum() == 1 and mask[1, 1] == 1


def test_padded_slots_are_zero_whatever_they_hold() -> None:
    polygons = torch.tensor(
        [
            [
                rotated_rectangle(0.5, 0.5, 0.4, 0.4, 0.0),
                [float("nan")] * 8,
                [0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0],
            ]
        ]
    )
    valid = torch.tensor([[True, False, False]])
    masks = polygon_masks(polygons, valid, 8, 8)
    soft = soft_ellipse_maps(polygons, valid, 8, 8)
    assert masks[0, 0].sum() > 0 and soft[0, 0].sum() > 0
    for maps in (masks, soft):
        assert torch.isfinite(maps).all()
        assert maps[0, 1:].abs().sum() == 0


def test_soft_map_is_one_inside_half_on_the_ellipse_zero_outside() -> None:
    # HBB x ∈ [0.1875, 0.8125], y ∈ [0.3125, 0.8125]: centre (0.5, 0.5625), half-axes 0.3125 and 0.25.
    # Row 4 has v = 0.5625 = cy; column 1 has u = 0.1875 = cx − w/2, so cell (4, 1) lies on the ellipse.
    corners = [0.1875, 0.3125, 0.8125, 0.3125, 0.8125, 0.8125, 0.1875, 0.8125]
    polygons, valid = one_polygon(corners)
    soft = soft_ellipse_maps(polygons, valid, 8, 8, min_radius_cells=0.0)[0, 0]
    assert soft[4, 4] > 0.999
    assert soft[4, 1] == pytest.approx(0.5, abs=1e-6)
    assert soft[0, 7] < 1e-6
    # Against the formula at every cell centre (columns / W, rows / H).
    u = (np.arange(8) + 0.5) / 8
    d2 = ((u[None, :] - 0.5) / 0.3125) ** 2 + ((u[:, None] - 0.5625) / 0.25) ** 2
    np.testing.assert_allclose(soft.numpy(), 1 / (1 + np.exp(-10 * (1 - d2))), rtol=1e-5, atol=1e-7)


def test_soft_map_uses_columns_over_width_and_rows_over_height() -> None:
    corners = rotated_rectangle(0.3, 0.7, 0.2, 0.1, 0.0)
    polygons, valid = one_polygon(corners)
    soft = soft_ellipse_maps(polygons, valid, 6, 12, min_radius_cells=0.0)[0, 0]  # 6 rows, 12 columns
    row, col = divmod(int(soft.argmax()), 12)
    assert (row, col) == (4, 3)  # v = 4.5/6 = 0.75, u = 3.5/12 ≈ 0.29: the cell nearest to (0.3, 0.7)


def test_soft_map_of_a_tiny_object_keeps_its_nearest_cell() -> None:
    x, y = 2.9 / 8, 5.1 / 8
    polygons, valid = one_polygon([x, y, x + 1 / 512, y, x + 1 / 512, y + 1 / 512, x, y + 1 / 512])
    assert soft_ellipse_maps(polygons, valid, 8, 8, min_radius_cells=0.0).max() < 1e-3
    assert soft_ellipse_maps(polygons, valid, 8, 8)[0, 0, 5, 2] > 0.99


def test_zero_size_box_has_zero_soft_map() -> None:
    polygons, valid = one_polygon([0.2, 0.2, 0.6, 0.2, 0.6, 0.2, 0.2, 0.2])  # zero height
    assert soft_ellipse_maps(polygons, valid, 8, 8).abs().sum() == 0


def test_background_is_one_minus_union_of_valid_masks() -> None:
    masks = torch.zeros(1, 3, 2, 2)
    masks[0, 0, 0, 0] = 1
    masks[0, 1, 0, :] = 1
    masks[0, 2] = 1  # padded: ignored
    background = background_mask(masks, torch.tensor([[True, True, False]]))
    assert torch.equal(background, torch.tensor([[[0.0, 0.0], [1.0, 1.0]]]))


def test_layout_attention_mask_groups_tokens_by_region() -> None:
    polygons = torch.tensor(
        [[[0.0, 0.0, 0.5, 0.0, 0.5, 0.5, 0.0, 0.5], [0.5, 0.5, 1.0, 0.5, 1.0, 1.0, 0.5, 1.0], [0.0] * 8]]
    )
    valid = torch.tensor([[True, True, False]])
    grid = LayoutMasks(polygons, valid).at(2, 2)
    # Tokens (row-major): 0 = instance 0, 3 = instance 1, 1 and 2 = background.
    expected = torch.tensor(
        [
            [True, False, False, False],
            [False, True, True, False],
            [False, True, True, False],
            [False, False, False, True],
        ]
    )
    assert torch.equal(grid.attention[0], expected)
    assert torch.equal(layout_attention_mask(grid.instance, grid.background), grid.attention)


def test_layout_masks_are_cached_per_resolution() -> None:
    polygons, valid = one_polygon(rotated_rectangle(0.5, 0.5, 0.3, 0.2, 0.4))
    masks = LayoutMasks(polygons, valid)
    first = masks.at(8, 8)
    assert masks.at(8, 8) is first
    assert masks.for_tokens(64) is first
    assert first.instance.shape == (1, 1, 64) and first.soft.shape == (1, 1, 64)
    assert first.background.shape == (1, 64) and first.attention.shape == (1, 64, 64)
    half = masks.at(8, 8, torch.float64)
    assert half.soft.dtype == torch.float64 and torch.equal(half.soft.float(), first.soft)


def test_token_grid_finds_square_and_downsampled_grids() -> None:
    assert token_grid(64) == (8, 8)
    assert token_grid(7 * 5, latent_size=(13, 9)) == (7, 5)  # 13×9 → 7×5 (stride 2 rounds up)
    assert token_grid(4 * 3, latent_size=(13, 9)) == (4, 3)
    with pytest.raises(ValueError, match="latent_size"):
        token_grid(35)
    with pytest.raises(ValueError, match="no downsampling"):
        token_grid(36, latent_size=(13, 9))


def test_masks_are_batched_over_samples_and_slots() -> None:
    boxes = [rotated_rectangle(0.2 + 0.1 * i, 0.3 + 0.05 * i, 0.2, 0.1, 0.3 * i) for i in range(6)]
    polygons = torch.tensor(boxes).view(2, 3, 8)
    valid = torch.ones(2, 3, dtype=torch.bool)
    batched = polygon_masks(polygons, valid, 16, 16)
    for b in range(2):
        for n in range(3):
            single = polygon_masks(polygons[b : b + 1, n : n + 1], valid[:1, :1], 16, 16)
            assert torch.equal(batched[b, n], single[0, 0])


def test_bad_shapes_are_reported() -> None:
    with pytest.raises(ValueError, match=r"\(B, N, 8\)"):
        polygon_masks(torch.zeros(2, 4), torch.ones(2, dtype=torch.bool), 4, 4)
    with pytest.raises(ValueError, match="valid"):
        polygon_masks(torch.zeros(1, 2, 8), torch.ones(1, 2), 4, 4)
