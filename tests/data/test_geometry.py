"""Property tests of the polygon / le90 / HBB conversions that every format and the tiler rely on."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ccaug.data.geometry import (
    hbb_to_polygon,
    le90_to_polygon,
    normalize_le90,
    polygon_area,
    polygon_to_hbb,
    polygon_to_le90,
    rectify_polygon,
    wrap_angle,
)

settings.register_profile("ccaug", max_examples=150, deadline=None)
settings.load_profile("ccaug")

coordinate = st.floats(-5000, 5000, allow_nan=False)
side = st.floats(0.5, 2000, allow_nan=False)
angle = st.floats(-10, 10, allow_nan=False)  # any angle: normalisation must handle every turn


@st.composite
def le90_boxes(draw, min_aspect: float = 1.0) -> np.ndarray:
    """One canonical le90 box ``(1, 5)`` whose long side is at least `min_aspect` times the short one."""
    h = draw(side)
    w = h * draw(st.floats(min_aspect, 20))
    theta = draw(st.floats(-np.pi / 2, np.pi / 2, exclude_max=True))
    return np.array([[draw(coordinate), draw(coordinate), w, h, theta]])


def tolerance(boxes: np.ndarray) -> float:
    """Absolute tolerance in pixels for a box: rounding grows with the coordinates' size."""
    return 1e-7 * (1 + np.abs(boxes[:, :4]).max())


def angle_difference(a: np.ndarray, b: np.ndarray, period: float = np.pi) -> np.ndarray:
    """Distance between angles on a circle of the given period (a box is unchanged by a half turn)."""
    difference = np.mod(a - b, period)
    return np.minimum(difference, period - difference)


def corners(polygons: np.ndarray) -> np.ndarray:
    return polygons.reshape(-1, 4, 2)


def same_corners_cyclic(a: np.ndarray, b: np.ndarray, atol: float) -> bool:
    """True when polygon b lists the corners of polygon a, starting at any corner, in the same direction."""
    ca, cb = corners(a)[0], corners(b)[0]
    return any(np.allclose(np.roll(cb, shift, axis=0), ca, atol=atol) for shift in range(4))


@given(le90_boxes(min_aspect=1.01))
def test_le90_to_polygon_to_le90_is_identity(box):
    back = polygon_to_le90(le90_to_polygon(box))
    np.testing.assert_allclose(back[:, :4], box[:, :4], atol=tolerance(box) * 10)
    assert angle_difference(back[:, 4], box[:, 4]) < 1e-6


@given(coordinate, coordinate, side, angle)
def test_square_round_trips_as_the_same_square(cx, cy, size, theta):
    # At w == h the angle is only defined modulo pi/2, so compare the boxes as shapes.
    box = np.array([[cx, cy, size, size, theta]])
    back = polygon_to_le90(le90_to_polygon(box))
    np.testing.assert_allclose(back[:, :4], box[:, :4], atol=tolerance(box) * 10)
    assert angle_difference(back[:, 4], box[:, 4], period=np.pi / 2) < 1e-6
    assert same_corners_cyclic(le90_to_polygon(box), le90_to_polygon(back), atol=tolerance(box) * 100)


@given(le90_boxes())
def test_rectify_keeps_the_corners_of_a_rectangle_up_to_cyclic_order(box):
    polygon = le90_to_polygon(box)
    assert same_corners_cyclic(polygon, rectify_polygon(polygon), atol=tolerance(box) * 100)


@given(le90_boxes())
def test_hbb_of_a_rotated_box_encloses_it_and_is_tight(box):
    polygon = le90_to_polygon(box)
    xmin, ymin, xmax, ymax = polygon_to_hbb(polygon)[0]
    xs, ys = corners(polygon)[0].T
    atol = tolerance(box)
    assert (xs >= xmin - atol).all() and (xs <= xmax + atol).all()
    assert (ys >= ymin - atol).all() and (ys <= ymax + atol).all()
    # Tight: every side of the HBB touches a corner, and its size is the projection of the box.
    assert np.isclose(xs.min(), xmin) and np.isclose(xs.max(), xmax)
    assert np.isclose(ys.min(), ymin) and np.isclose(ys.max(), ymax)
    _, _, w, h, theta = box[0]
    expected_width = w * abs(np.cos(theta)) + h * abs(np.sin(theta))
    assert np.isclose(xmax - xmin, expected_width, atol=atol * 10)


@given(le90_boxes())
def test_area_of_a_rotated_box_polygon_is_w_times_h(box):
    _, _, w, h, _ = box[0]
    assert np.isclose(polygon_area(le90_to_polygon(box))[0], w * h, rtol=1e-9, atol=tolerance(box) * (w + h))


@given(arrays(np.float64, (8, 5), elements=st.floats(-1000, 1000, allow_nan=False)))
def test_normalize_le90_is_canonical_and_keeps_the_box(boxes):
    boxes[:, 2:4] = np.abs(boxes[:, 2:4])
    normal = normalize_le90(boxes)
    assert (normal[:, 2] >= normal[:, 3]).all()
    assert ((normal[:, 4] >= -np.pi / 2) & (normal[:, 4] < np.pi / 2)).all()
    np.testing.assert_array_equal(normal[:, :2], boxes[:, :2])
    before, after = le90_to_polygon(boxes), le90_to_polygon(normal)
    for row in range(len(boxes)):  # the same rectangle, possibly starting at another corner
        assert same_corners_cyclic(before[row : row + 1], after[row : row + 1], atol=1e-6)


@given(coordinate, coordinate, side, st.floats(1.01, 10), st.floats(-1e-6, 1e-6), st.sampled_from([-1, 1]))
def test_boxes_across_the_90_degree_boundary_round_trip(cx, cy, h, aspect, epsilon, sign):
    box = np.array([[cx, cy, h * aspect, h, sign * np.pi / 2 + epsilon]])
    canonical = normalize_le90(box)
    assert -np.pi / 2 <= canonical[0, 4] < np.pi / 2
    back = polygon_to_le90(le90_to_polygon(box))
    assert angle_difference(back[:, 4], box[:, 4]) < 1e-6
    assert -np.pi / 2 <= back[0, 4] < np.pi / 2
    assert same_corners_cyclic(le90_to_polygon(box), le90_to_polygon(back), atol=tolerance(box) * 100)


@given(arrays(np.float64, (1, 8), elements=st.floats(-1000, 1000, allow_nan=False)))
def test_min_area_rectangle_of_any_quadrilateral_encloses_it_and_is_no_larger_than_its_hbb(polygon):
    box = polygon_to_le90(polygon)
    cx, cy, w, h, theta = box[0]
    # The points in the rectangle's own frame lie within its half-sides.
    offsets = corners(polygon)[0] - [cx, cy]
    along = offsets @ [np.cos(theta), np.sin(theta)]
    across = offsets @ [-np.sin(theta), np.cos(theta)]
    atol = 1e-6 * (1 + np.abs(polygon).max())
    assert (np.abs(along) <= w / 2 + atol).all() and (np.abs(across) <= h / 2 + atol).all()
    xmin, ymin, xmax, ymax = polygon_to_hbb(polygon)[0]
    assert w * h <= (xmax - xmin) * (ymax - ymin) + atol * (1 + xmax - xmin + ymax - ymin)


@given(arrays(np.float64, (6, 8), elements=st.floats(-1000, 1000, allow_nan=False)))
def test_batched_conversion_equals_row_by_row(polygons):
    batched = polygon_to_le90(polygons)
    for row in range(len(polygons)):
        np.testing.assert_array_equal(batched[row], polygon_to_le90(polygons[row : row + 1])[0])


def test_axis_aligned_box_round_trips_through_the_polygon():
    hbb = np.array([[10.0, 20.0, 50.0, 30.0]])
    polygon = hbb_to_polygon(hbb)
    np.testing.assert_array_equal(polygon, [[10, 20, 50, 20, 50, 30, 10, 30]])
    np.testing.assert_array_equal(polygon_to_hbb(polygon), hbb)
    np.testing.assert_allclose(polygon_to_le90(polygon), [[30, 25, 40, 10, 0]])


def test_coincident_corners_give_an_empty_box_at_the_point():
    box = polygon_to_le90(np.array([[3.0, 4.0] * 4]))
    np.testing.assert_array_equal(box, [[3, 4, 0, 0, 0]])


def test_wrap_angle_maps_a_half_turn_to_the_same_angle():
    angles = np.array([-np.pi / 2, np.pi / 2, np.pi, 3 * np.pi / 4, -3 * np.pi / 4])
    np.testing.assert_allclose(
        wrap_angle(angles), [-np.pi / 2, -np.pi / 2, 0, -np.pi / 4, np.pi / 4], atol=1e-12
    )
