"""The layout constraints every sampled or perturbed layout obeys: inside, big enough, no stacked instances."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccaug.data.geometry import le90_to_polygon
from ccaug.layouts.constraints import LayoutConstraints, enforce, oversized, satisfies, violations
from ccaug.layouts.layout import Layout

CATEGORIES = ["car", "ship"]


def layout_of(boxes: list[list[float]], labels: list[int] | None = None, size: int = 100) -> Layout:
    """A layout from le90 boxes ``cx, cy, w, h, theta`` (all cars unless labels are given)."""
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 5)
    labels = labels if labels is not None else [0] * len(boxes)
    return Layout(size, size, labels, le90_to_polygon(boxes))


@st.composite
def random_layouts(draw) -> Layout:
    """Up to 40 boxes of two classes, some overlapping, some too small, some sticking out of the image."""
    n = draw(st.integers(0, 40))
    size = draw(st.integers(32, 200))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    long_side = rng.uniform(1, size / 3, n)
    boxes = np.column_stack(
        [
            rng.uniform(-5, size + 5, n),
            rng.uniform(-5, size + 5, n),
            long_side,
            long_side / rng.uniform(1, 4, n),
            rng.uniform(-np.pi / 2, np.pi / 2, n),
        ]
    )
    return Layout(size, size, rng.integers(0, 2, n), le90_to_polygon(boxes))


constraint_sets = st.builds(
    LayoutConstraints,
    min_size=st.floats(0, 8),
    inside_tolerance=st.floats(0, 3),
    max_overlap=st.floats(0, 1),
    pair_overlap=st.fixed_dictionaries({"ship/car": st.floats(0, 1)}),
)


@settings(max_examples=150, deadline=None)
@given(layout=random_layouts(), constraints=constraint_sets)
def test_enforced_layouts_satisfy_every_rule(layout: Layout, constraints: LayoutConstraints) -> None:
    clean, dropped = enforce(layout, CATEGORIES, constraints)
    assert satisfies(clean, CATEGORIES, constraints)
    assert not any(mask.any() for mask in violations(clean, CATEGORIES, constraints).values())
    assert sum(dropped.values()) == len(layout) - len(clean)


@settings(max_examples=100, deadline=None)
@given(layout=random_layouts())
def test_enforce_keeps_instances_in_order_and_keeps_clean_layouts_whole(layout: Layout) -> None:
    constraints = LayoutConstraints()
    clean, _ = enforce(layout, CATEGORIES, constraints)
    kept_rows = [np.flatnonzero((layout.polygons == row).all(axis=1))[0] for row in clean.polygons]
    assert kept_rows == sorted(kept_rows)
    again, dropped = enforce(clean, CATEGORIES, constraints)
    assert len(again) == len(clean) and sum(dropped.values()) == 0


def test_the_earlier_of_two_overlapping_instances_is_kept() -> None:
    first, second = [40, 40, 20, 10, 0], [45, 42, 20, 10, 0.2]
    clean, dropped = enforce(layout_of([first, second]), CATEGORIES, LayoutConstraints())
    np.testing.assert_allclose(clean.le90[0, :2], [40, 40])
    assert dropped == {"too_small": 0, "outside": 0, "overlap": 1}
    clean, _ = enforce(layout_of([second, first]), CATEGORIES, LayoutConstraints())
    np.testing.assert_allclose(clean.le90[0, :2], [45, 42])


def test_a_dropped_instance_does_not_block_later_ones() -> None:
    # b overlaps a and c, a and c are apart: a wins over b, so c stays.
    a, b, c = [30, 50, 20, 10, 0], [42, 50, 20, 10, 0], [54, 50, 20, 10, 0]
    clean, dropped = enforce(layout_of([a, b, c]), CATEGORIES, LayoutConstraints())
    np.testing.assert_allclose(clean.le90[:, 0], [30, 54])
    assert dropped["overlap"] == 1
    assert violations(layout_of([a, b, c]), CATEGORIES, LayoutConstraints())["overlap"].tolist() == [
        False,
        True,
        True,
    ]


def test_overlap_is_measured_on_the_smaller_instance() -> None:
    big, small = [50, 50, 60, 40, 0], [50, 50, 8, 5, 0]  # the small one lies wholly on the big one
    masks = violations(layout_of([big, small]), CATEGORIES, LayoutConstraints(max_overlap=0.9))
    assert masks["overlap"].tolist() == [False, True]


def test_touching_instances_do_not_overlap_even_at_threshold_zero() -> None:
    layout = layout_of([[30, 50, 20, 10, 0], [50, 50, 20, 10, 0]])
    assert satisfies(layout, CATEGORIES, LayoutConstraints(max_overlap=0.0))


def test_pair_thresholds_do_not_depend_on_the_order_of_the_names() -> None:
    # A car half on a ship: 50 % of the car's area.
    layout = layout_of([[50, 50, 40, 20, 0], [50, 60, 10, 20, np.pi / 2 - 1e-9]], labels=[1, 0])
    for key in ("car/ship", "ship/car"):
        assert satisfies(layout, CATEGORIES, LayoutConstraints(pair_overlap={key: 0.6}))
        assert not satisfies(layout, CATEGORIES, LayoutConstraints(pair_overlap={key: 0.4}))
    # The pair's threshold applies to that pair only.
    same_class = layout_of([[50, 50, 40, 20, 0], [50, 60, 10, 20, np.pi / 2 - 1e-9]], labels=[0, 0])
    assert not satisfies(same_class, CATEGORIES, LayoutConstraints(pair_overlap={"car/ship": 0.6}))
    matrix = LayoutConstraints(max_overlap=0.1, pair_overlap={"ship/car": 0.3}).pair_thresholds(CATEGORIES)
    np.testing.assert_allclose(matrix, [[0.1, 0.3], [0.3, 0.1]])


def test_pair_keys_are_checked_against_the_categories() -> None:
    with pytest.raises(ValueError, match="'car/plane' does not name two known classes"):
        LayoutConstraints(pair_overlap={"car/plane": 0.2}).pair_thresholds(CATEGORIES)
    with pytest.raises(ValueError, match="twice with different thresholds"):
        LayoutConstraints(pair_overlap={"car/ship": 0.2, "ship/car": 0.3}).pair_thresholds(CATEGORIES)
    names = ["small/vehicle", "ship"]  # a name with a slash still parses
    assert LayoutConstraints(pair_overlap={"small/vehicle/ship": 0.5}).pair_thresholds(names)[0, 1] == 0.5


def test_too_small_and_outside_instances_are_dropped() -> None:
    layout = layout_of(
        [
            [20, 20, 10, 3, 0],  # short side 3 px < 4
            [99, 50, 10, 6, 0],  # sticks out 4 px on the right
            [50, 50, 10, 6, 0],  # fine
            [4.5, 50, 10, 6, 0],  # sticks out 0.5 px: within the 1 px tolerance
        ]
    )
    masks = violations(layout, CATEGORIES, LayoutConstraints())
    assert masks["too_small"].tolist() == [True, False, False, False]
    assert masks["outside"].tolist() == [False, True, False, False]
    clean, dropped = enforce(layout, CATEGORIES, LayoutConstraints())
    np.testing.assert_allclose(clean.le90[:, 0], [50, 4.5])
    assert dropped == {"too_small": 1, "outside": 1, "overlap": 0}
    assert not violations(layout, CATEGORIES, LayoutConstraints(inside_tolerance=0))["outside"][2]
    assert violations(layout, CATEGORIES, LayoutConstraints(inside_tolerance=0))["outside"][3]


def test_non_finite_polygons_are_dropped_not_crashed_on() -> None:
    layout = layout_of([[50, 50, 10, 6, 0], [50, 50, 10, 6, 0]])
    layout.polygons[1, 3] = np.nan
    clean, dropped = enforce(layout, CATEGORIES, LayoutConstraints())
    assert len(clean) == 1 and dropped["too_small"] == 1


def test_an_instance_larger_than_the_image_is_oversized() -> None:
    layout = layout_of(
        [[50, 50, 120, 10, 0], [50, 50, 120, 10, np.pi / 4], [50, 50, 90, 10, 0], [0, 0, 8, 4, 0]]
    )
    # The long box fits diagonally only if its bounding box does: 120 * cos 45° + 10 * sin 45° = 92 px.
    assert oversized(layout, LayoutConstraints()).tolist() == [True, False, False, False]
    assert oversized(layout_of([]), LayoutConstraints()).tolist() == []


def test_empty_layouts_satisfy_everything() -> None:
    clean, dropped = enforce(layout_of([]), CATEGORIES, LayoutConstraints())
    assert len(clean) == 0 and dropped == {"too_small": 0, "outside": 0, "overlap": 0}


def test_labels_outside_the_category_list_are_refused() -> None:
    with pytest.raises(ValueError, match="index the 2 categories"):
        enforce(layout_of([[50, 50, 10, 6, 0]], labels=[5]), CATEGORIES, LayoutConstraints())


@pytest.mark.parametrize(
    "options, message",
    [
        ({"min_size": -1}, "min_size"),
        ({"inside_tolerance": float("nan")}, "inside_tolerance"),
        ({"max_overlap": 1.5}, "max_overlap"),
        ({"pair_overlap": {"carship": 0.2}}, "'class_a/class_b'"),
        ({"pair_overlap": {"car/ship": -0.1}}, "pair_overlap"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 2.5}, "max_retries"),
    ],
)
def test_constraint_values_out_of_range_are_refused(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LayoutConstraints(**options)
