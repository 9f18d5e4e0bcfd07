"""Layout perturbations: each transform does what it says, p=0 leaves a layout alone, and perturbed sets are
reproducible and always satisfy the constraints."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccaug.data.geometry import le90_to_polygon, polygon_to_le90
from ccaug.layouts.constraints import LayoutConstraints, enforce, satisfies
from ccaug.layouts.layout import Layout
from ccaug.layouts.perturb import PerturbConfig, RealInstanceSource, build_pipeline, perturb_layouts
from ccaug.layouts.transforms import (
    Compose,
    Drop,
    DropConfig,
    Duplicate,
    DuplicateConfig,
    Flip,
    FlipConfig,
    Insert,
    InsertConfig,
    Jitter,
    JitterConfig,
    Rotate,
    RotateConfig,
    Scale,
    ScaleConfig,
    Translate,
    TranslateConfig,
)

CATEGORIES = ["ship", "small vehicle", "storage tank"]
FAST = settings(max_examples=25, deadline=None)


def layout_of(
    boxes: list[tuple[float, ...]], labels: list[int], width: int = 100, height: int = 100
) -> Layout:
    return Layout(
        width, height, np.array(labels), le90_to_polygon(np.array(boxes, dtype=float).reshape(-1, 5))
    )


def harbour(width: int = 200, height: int = 160) -> Layout:
    """A row of moored ships (across their long axis), two parked cars in a line, one tank: a real-looking layout."""
    ships = [(60.0, 30.0 + 16 * k, 40.0, 10.0, 0.0) for k in range(4)]
    cars = [(150.0, 40.0, 12.0, 6.0, math.pi / 2 - 0.1), (150.0, 56.0, 12.0, 6.0, math.pi / 2 - 0.1)]
    tank = [(150.0, 120.0, 20.0, 20.0, 0.0)]
    return layout_of(ships + cars + tank, [0, 0, 0, 0, 1, 1, 2], width, height)


REAL = [harbour(), harbour(160, 200), layout_of([(50, 50, 30, 12, 0.4)], [0])]


def assert_le90_consistent(layout: Layout) -> None:
    """Polygons are rectangles that le90 reproduces, and le90 is canonical (w >= h, theta in range)."""
    boxes = layout.le90
    assert np.all(boxes[:, 2] >= boxes[:, 3] - 1e-9)
    assert np.all((boxes[:, 4] >= -math.pi / 2) & (boxes[:, 4] < math.pi / 2))
    # The same four corners (a square's le90 may start from another corner).
    rebuilt = le90_to_polygon(boxes).reshape(-1, 1, 4, 2)
    distance = np.linalg.norm(layout.polygons.reshape(-1, 4, 1, 2) - rebuilt, axis=3)
    assert np.all(distance.min(axis=2) < 1e-6)


# --- each transform ---------------------------------------------------------------------------------


def test_translate_shifts_every_centre_by_the_same_drawn_amount():
    layout = harbour()
    moved = Translate(p=1.0, max_fraction=0.1)(layout, np.random.default_rng(3))
    shift = moved.le90[:, :2] - layout.le90[:, :2]
    np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape), atol=1e-9)
    assert abs(shift[0, 0]) <= 0.1 * layout.width and abs(shift[0, 1]) <= 0.1 * layout.height
    assert np.abs(shift[0]).sum() > 0
    np.testing.assert_allclose(moved.le90[:, 2:], layout.le90[:, 2:], atol=1e-9)
    exact = Translate(p=1.0, max_fraction=0.1).apply(layout, dx=5.0, dy=-3.0)
    np.testing.assert_allclose(exact.polygons, layout.polygons + np.tile([5.0, -3.0], 4), atol=1e-9)


def test_horizontal_flip_mirrors_x_and_negates_theta():
    layout = layout_of([(30, 20, 10, 4, 0.3), (70, 60, 12, 6, -1.2)], [0, 1])
    flipped = Flip(p=1.0, horizontal=True, vertical=False)(layout, np.random.default_rng(0))
    np.testing.assert_allclose(flipped.le90, [[70, 20, 10, 4, -0.3], [30, 60, 12, 6, 1.2]], atol=1e-9)
    vertical = Flip(p=1.0, horizontal=False, vertical=True)(layout, np.random.default_rng(0))
    np.testing.assert_allclose(vertical.le90, [[30, 80, 10, 4, -0.3], [70, 40, 12, 6, 1.2]], atol=1e-9)


def test_flip_with_both_axes_draws_each_mirror():
    layout = layout_of([(30, 20, 10, 4, 0.3)], [0])
    flip = Flip(p=1.0)
    centres = {tuple(np.round(flip(layout, np.random.default_rng(seed)).le90[0, :2])) for seed in range(30)}
    assert centres == {(70.0, 20.0), (30.0, 80.0), (70.0, 80.0)}


def test_quarter_turn_maps_theta_zero_to_minus_ninety_and_turns_the_centre_clockwise():
    layout = layout_of([(30, 20, 10, 4, 0.0)], [0])
    turned = Rotate(p=1.0, max_deg=0.0, right_angles=True).apply(layout, degrees=90.0)
    # Clockwise on screen about (50, 50): (x, y) -> (height - y, x).
    np.testing.assert_allclose(turned.le90, [[80, 30, 10, 4, -math.pi / 2]], atol=1e-9)
    assert (turned.width, turned.height) == (100, 100)


def test_quarter_turn_of_a_non_square_layout_turns_the_image_too():
    layout = harbour(width=200, height=160)
    turned = Rotate(p=1.0).apply(layout, degrees=90.0)
    assert (turned.width, turned.height) == (160, 200)
    np.testing.assert_allclose(turned.le90[:, 0], 160 - layout.le90[:, 1], atol=1e-9)
    np.testing.assert_allclose(turned.le90[:, 1], layout.le90[:, 0], atol=1e-9)
    assert len(enforce(turned, CATEGORIES, LayoutConstraints())[0]) == len(layout)


def test_small_rotation_turns_about_the_image_centre():
    layout = layout_of([(50, 30, 10, 4, 0.0)], [0])
    turned = Rotate(p=1.0, max_deg=10.0, right_angles=False).apply(layout, degrees=10.0)
    angle = math.radians(10.0)
    np.testing.assert_allclose(
        turned.le90[0], [50 + 20 * math.sin(angle), 50 - 20 * math.cos(angle), 10, 4, angle]
    )


def test_per_instance_rotation_keeps_centres_and_turns_each_box():
    layout = harbour()
    turned = Rotate(p=1.0, max_deg=30.0, per_instance=True, right_angles=False)(
        layout, np.random.default_rng(1)
    )
    np.testing.assert_allclose(turned.le90[:, :2], layout.le90[:, :2], atol=1e-9)
    assert len(np.unique(np.round(turned.le90[:4, 4], 6))) == 4  # every ship drew its own angle


def test_scale_multiplies_sizes_and_distances_from_the_centre():
    layout = harbour()
    scaled = Scale(p=1.0, min_factor=0.9, max_factor=1.1).apply(layout, factor=1.1)
    centre = np.array([100.0, 80.0])
    np.testing.assert_allclose(scaled.le90[:, :2] - centre, 1.1 * (layout.le90[:, :2] - centre), atol=1e-9)
    np.testing.assert_allclose(scaled.le90[:, 2:4], 1.1 * layout.le90[:, 2:4], atol=1e-9)
    drawn = Scale(p=1.0, min_factor=0.9, max_factor=1.1)(layout, np.random.default_rng(0))
    factor = drawn.le90[0, 2] / layout.le90[0, 2]
    assert 0.9 <= factor <= 1.1


def test_jitter_moves_each_instance_a_little():
    layout = harbour()
    jittered = Jitter(p=1.0, position_px=2.0, size_fraction=0.05, angle_deg=3.0)(
        layout, np.random.default_rng(0)
    )
    moved = np.linalg.norm(jittered.le90[:, :2] - layout.le90[:, :2], axis=1)
    assert np.all(moved > 0) and np.all(moved < 12)  # 6 standard deviations
    np.testing.assert_array_equal(jittered.labels, layout.labels)


@given(seed=st.integers(0, 2**32 - 1), fraction=st.floats(0.0, 1.0))
@FAST
def test_drop_removes_at_most_max_fraction(seed, fraction):
    layout = harbour()
    dropped = Drop(p=1.0, max_fraction=fraction)(layout, np.random.default_rng(seed))
    assert len(layout) - len(dropped) <= math.floor(fraction * len(layout) + 1e-9)
    assert len(dropped) < len(layout) or math.floor(fraction * len(layout) + 1e-9) == 0


def test_duplicate_continues_a_row_away_from_the_neighbour_and_survives_enforce():
    layout = harbour()
    last_ship = 3  # at y = 78, its neighbour at y = 62: the row continues to y = 94
    duplicate = Duplicate(p=1.0, max_count=1, size_fraction=0.0, angle_deg=0.0)
    copied = duplicate.apply(
        layout,
        indices=np.array([last_ship]),
        size_factors=np.ones((1, 2)),
        angles=np.zeros(1),
        sides=np.ones(1),
    )
    assert len(copied) == len(layout) + 1 and copied.labels[-1] == layout.labels[last_ship]
    np.testing.assert_allclose(copied.le90[-1], [60, 94, 40, 10, 0], atol=1e-9)
    kept, counts = enforce(copied, CATEGORIES, LayoutConstraints())
    assert len(kept) == len(copied) and not any(counts.values())


def test_duplicate_continues_a_line_along_the_long_axis():
    cars = layout_of([(20, 50, 12, 6, 0.0), (35, 50, 12, 6, 0.0)], [1, 1])
    duplicate = Duplicate(p=1.0, max_count=1, size_fraction=0.0, angle_deg=0.0)
    copied = duplicate.apply(
        cars, indices=np.array([1]), size_factors=np.ones((1, 2)), angles=np.zeros(1), sides=np.ones(1)
    )
    np.testing.assert_allclose(copied.le90[-1, :2], [50, 50], atol=1e-9)


def test_duplicate_of_a_lone_instance_goes_beside_it_across_its_long_axis():
    lone = layout_of([(50, 50, 30, 10, 0.0), (20, 20, 10, 10, 0.0)], [0, 2])  # the tank is another class
    duplicate = Duplicate(p=1.0, max_count=1, size_fraction=0.0, angle_deg=0.0)
    copied = duplicate.apply(
        lone, indices=np.array([0]), size_factors=np.ones((1, 2)), angles=np.zeros(1), sides=-np.ones(1)
    )
    np.testing.assert_allclose(copied.le90[-1, :2], [50, 50 - 1.3 * 10], atol=1e-9)
    assert satisfies(copied, CATEGORIES, LayoutConstraints())


@given(seed=st.integers(0, 2**32 - 1))
@FAST
def test_drawn_duplicates_keep_class_size_and_orientation_roughly(seed):
    layout = harbour()
    copied = Duplicate(p=1.0, max_count=3)(layout, np.random.default_rng(seed))
    added = len(copied) - len(layout)
    assert 1 <= added <= 3
    np.testing.assert_array_equal(copied.polygons[: len(layout)], layout.polygons)
    originals = layout.le90
    for box, label in zip(copied.le90[len(layout) :], copied.labels[len(layout) :]):
        same = np.flatnonzero((layout.labels == label) & np.isclose(originals[:, 2], box[2], rtol=0.2))
        assert len(same)


def test_insert_appends_what_the_source_gives():
    calls = []

    def source(rng, layout, n):
        calls.append(n)
        return np.full(n, 2), le90_to_polygon(np.tile([[80.0, 80.0, 10.0, 10.0, 0.0]], (n, 1)))

    layout = layout_of([(20, 20, 10, 4, 0.0)], [0])
    inserted = Insert(p=1.0, max_count=3, source=source)(layout, np.random.default_rng(0))
    assert len(calls) == 1 and 1 <= calls[0] <= 3
    assert len(inserted) == 1 + calls[0]
    np.testing.assert_array_equal(inserted.labels[1:], 2)
    np.testing.assert_array_equal(inserted.polygons[0], layout.polygons[0])


def test_real_instance_source_copies_real_instances_inside_the_image():
    source = RealInstanceSource(REAL)
    labels, polygons = source(np.random.default_rng(0), Layout(64, 48), 20)
    assert labels.shape == (20,) and polygons.shape == (20, 8)
    pool = {
        (label, round(w, 6), round(h, 6))
        for layout in REAL
        for label, (w, h) in zip(layout.labels, layout.le90[:, 2:4])
    }
    assert all(
        (label, round(w, 6), round(h, 6)) in pool
        for label, (w, h) in zip(labels, polygon_to_le90(polygons)[:, 2:4])
    )
    assert polygons[:, 0::2].min() >= -1e-9 and polygons[:, 0::2].max() <= 64 + 1e-9


ALL_TRANSFORMS = [
    Jitter(p=1.0),
    Translate(p=1.0, max_fraction=0.1),
    Rotate(p=1.0, max_deg=20.0),
    Rotate(p=1.0, max_deg=20.0, per_instance=True),
    Scale(p=1.0),
    Flip(p=1.0),
    Drop(p=1.0, max_fraction=0.5),
    Duplicate(p=1.0),
    Insert(p=1.0, source=RealInstanceSource(REAL)),
]


@pytest.mark.parametrize("transform", ALL_TRANSFORMS, ids=lambda transform: type(transform).__name__)
def test_p_zero_is_the_identity(transform):
    layout = harbour()
    assert replace(transform, p=0.0)(layout, np.random.default_rng(0)) is layout


@pytest.mark.parametrize("transform", ALL_TRANSFORMS, ids=lambda transform: type(transform).__name__)
@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=10, deadline=None)
def test_every_transform_keeps_polygons_and_le90_consistent(transform, seed):
    out = transform(harbour(), np.random.default_rng(seed))
    assert_le90_consistent(out)
    assert out.labels.dtype == np.int64 and out.polygons.shape == (len(out), 8)


def test_transforms_accept_an_empty_layout():
    empty = Layout(50, 40)
    for transform in ALL_TRANSFORMS:
        out = transform(empty, np.random.default_rng(0))
        assert out.polygons.shape == (len(out), 8)


def test_compose_applies_in_order():
    layout = layout_of([(30, 20, 10, 4, 0.0)], [0])
    pipeline = Compose([Translate(p=1.0, max_fraction=0.0), Flip(p=1.0, horizontal=True, vertical=False)])
    np.testing.assert_allclose(pipeline(layout, np.random.default_rng(0)).le90[0, :2], [70, 20])


def test_without_an_instance_source_the_pipeline_has_no_insert():
    assert not any(isinstance(transform, Insert) for transform in build_pipeline(PerturbConfig()).transforms)
    with_source = build_pipeline(PerturbConfig(), RealInstanceSource(REAL))
    assert isinstance(with_source.transforms[-1], Insert)


# --- configs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: JitterConfig(p=1.5), "JitterConfig.p is a probability in [0, 1]"),
        (lambda: JitterConfig(p=float("nan")), "JitterConfig.p is a probability"),
        (lambda: JitterConfig(angle_deg=-1.0), "JitterConfig.angle_deg must be at least 0"),
        (lambda: TranslateConfig(max_fraction=2.0), "TranslateConfig.max_fraction is in [0, 1]"),
        (lambda: RotateConfig(max_deg=200.0), "RotateConfig.max_deg is in [0, 180]"),
        (lambda: ScaleConfig(min_factor=0.0), "needs 0 < min_factor <= max_factor"),
        (lambda: ScaleConfig(min_factor=1.2, max_factor=1.1), "needs 0 < min_factor <= max_factor"),
        (lambda: FlipConfig(horizontal=False, vertical=False), "needs horizontal or vertical"),
        (lambda: DropConfig(max_fraction=-0.1), "DropConfig.max_fraction is in [0, 1]"),
        (lambda: InsertConfig(max_count=-1), "InsertConfig.max_count is a whole number"),
        (lambda: DuplicateConfig(max_count=2.5), "DuplicateConfig.max_count is a whole number"),
        (lambda: PerturbConfig(min_kept_fraction=1.5), "min_kept_fraction is in [0, 1]"),
        (lambda: Scale(p=-0.1), "Scale.p is a probability"),
        (lambda: Insert(p=0.5), "Insert needs an instance source"),
    ],
)
def test_a_wrong_config_is_refused_with_a_clear_message(make, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make()


def test_a_flip_that_never_fires_may_have_no_axis():
    assert FlipConfig(p=0.0, horizontal=False, vertical=False).p == 0.0


# --- perturbing sets of layouts -----------------------------------------------------------------------

probabilities = st.floats(0.0, 1.0)
configs = st.builds(
    PerturbConfig,
    flip=st.builds(FlipConfig, p=probabilities),
    rotate=st.builds(RotateConfig, p=probabilities, max_deg=st.floats(0, 45), per_instance=st.booleans()),
    scale=st.builds(
        ScaleConfig, p=probabilities, min_factor=st.floats(0.5, 1.0), max_factor=st.floats(1.0, 1.5)
    ),
    translate=st.builds(TranslateConfig, p=probabilities, max_fraction=st.floats(0, 0.3)),
    jitter=st.builds(
        JitterConfig, p=probabilities, position_px=st.floats(0, 10), size_fraction=st.floats(0, 0.3)
    ),
    drop=st.builds(DropConfig, p=probabilities, max_fraction=st.floats(0, 1)),
    duplicate=st.builds(DuplicateConfig, p=probabilities, max_count=st.integers(0, 5)),
    insert=st.builds(InsertConfig, p=probabilities, max_count=st.integers(0, 5)),
)
constraint_sets = st.builds(
    LayoutConstraints,
    min_size=st.floats(0, 8),
    max_overlap=st.floats(0, 0.5),
    pair_overlap=st.sampled_from([{}, {"ship/ship": 0.3}]),
    max_retries=st.integers(0, 3),
)


@given(seed=st.integers(0, 2**32 - 1), config=configs, constraints=constraint_sets)
@settings(max_examples=30, deadline=None)
def test_every_perturbed_layout_satisfies_the_constraints(seed, config, constraints):
    result = perturb_layouts(
        REAL,
        CATEGORIES,
        4,
        seed=seed,
        config=config,
        constraints=constraints,
        instance_source=RealInstanceSource(REAL),
    )
    assert len(result.layouts) == 4
    np.testing.assert_array_equal(result.sources, [0, 1, 2, 0])
    for layout in result.layouts:
        assert satisfies(layout, CATEGORIES, constraints)
        assert_le90_consistent(layout)
    assert np.all((1 <= result.attempts) & (result.attempts <= constraints.max_retries + 1))


@given(seed=st.integers(0, 2**32 - 1))
@FAST
def test_same_seed_gives_identical_layouts_and_another_seed_different_ones(seed):
    first = perturb_layouts(REAL, CATEGORIES, 3, seed=seed)
    again = perturb_layouts(REAL, CATEGORIES, 3, seed=seed)
    other = perturb_layouts(REAL, CATEGORIES, 3, seed=seed + 1)
    for a, b in zip(first.layouts, again.layouts):
        assert (a.width, a.height) == (b.width, b.height)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.polygons, b.polygons)
    assert first.reports == again.reports
    assert any(
        a.polygons.shape != b.polygons.shape or not np.array_equal(a.polygons, b.polygons)
        for a, b in zip(first.layouts, other.layouts)
    )


def test_layout_j_does_not_depend_on_how_many_are_made():
    few = perturb_layouts(REAL, CATEGORIES, 2, seed=7)
    many = perturb_layouts(REAL, CATEGORIES, 9, seed=7)
    for a, b in zip(few.layouts, many.layouts):
        np.testing.assert_array_equal(a.polygons, b.polygons)
    assert list(many.sources) == [j % len(REAL) for j in range(9)]


def test_a_layout_that_cannot_keep_enough_is_reported_after_bounded_retries():
    # Every draw drops at least one instance and none adds any, but all must be kept: no draw is good enough.
    config = PerturbConfig(
        drop=DropConfig(p=1.0, max_fraction=0.5), duplicate=DuplicateConfig(p=0.0), min_kept_fraction=1.0
    )
    result = perturb_layouts(
        REAL[:1], CATEGORIES, 2, seed=0, config=config, constraints=LayoutConstraints(max_retries=3)
    )
    assert list(result.attempts) == [4, 4] and result.failed.all()
    assert all("no draw in 4 kept 7 instances" in report for report in result.reports)
    assert all(4 <= len(layout) <= 6 for layout in result.layouts)  # the best draw is kept, not an empty one


def test_an_unperturbed_run_reports_nothing_and_keeps_the_real_layouts():
    nothing = PerturbConfig(
        flip=FlipConfig(p=0.0),
        rotate=RotateConfig(p=0.0),
        scale=ScaleConfig(p=0.0),
        translate=TranslateConfig(p=0.0),
        jitter=JitterConfig(p=0.0),
        drop=DropConfig(p=0.0),
        duplicate=DuplicateConfig(p=0.0),
    )
    result = perturb_layouts(REAL, CATEGORIES, 3, seed=0, config=nothing)
    assert result.reports == ["", "", ""] and not result.failed.any()
    for layout, real in zip(result.layouts, REAL):
        np.testing.assert_array_equal(layout.polygons, real.polygons)


def test_perturbing_nothing_is_refused():
    with pytest.raises(ValueError, match="at least one real layout"):
        perturb_layouts([], CATEGORIES, 1, seed=0)
    assert perturb_layouts([], CATEGORIES, 0, seed=0).layouts == []
