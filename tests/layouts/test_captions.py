"""The global caption: hand-worked captions for layouts with exact boxes, and a property test that every
caption counts every object of every class."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccaug.data.geometry import le90_to_polygon
from ccaug.datasets.aerial.classes import AERIAL_CLASSES, SCENE_KINDS
from ccaug.layouts.captions import (
    AERIAL_SCENE_NAMES,
    DIRECTIONS,
    POSITIONS,
    SceneRule,
    caption,
    captions,
    direction_bins,
    noun_forms,
    number_word,
    position_bins,
    scene_name,
)
from ccaug.layouts.layout import Layout

CLASSES = list(AERIAL_CLASSES)  # plane, small-vehicle, large-vehicle, ship, storage-tank, helicopter
PLANE, SMALL, LARGE, SHIP, TANK, HELI = range(6)
NO_CENTRE = "The center of the image holds no salient object."


def make_layout(rows, width: int = 512, height: int = 512, scene: str | None = "airport") -> Layout:
    """`rows` of ``(label, cx, cy, theta in degrees)``; every box is 30 x 10 px."""
    boxes = np.array([[cx, cy, 30.0, 10.0, np.radians(theta)] for _, cx, cy, theta in rows]).reshape(-1, 5)
    return Layout(width, height, [row[0] for row in rows], le90_to_polygon(boxes), scene)


# ------------------------------------------------------------------------------------ hand-worked captions


def test_one_object_in_the_centre():
    layout = make_layout([(PLANE, 256, 256, 0)])
    assert caption(layout, CLASSES) == (
        "This is an aerial image of airport. "
        "There is one plane towards the east-west direction in the center of the image."
    )


def test_single_objects_of_several_classes_in_the_centre_take_is():
    layout = make_layout([(PLANE, 240, 250, 0), (SHIP, 280, 260, 90)])
    assert caption(layout, CLASSES) == (
        "This is an aerial image of airport. "
        "There is one plane towards the east-west direction, one ship towards the north-south direction "
        "in the center of the image."
    )


def test_several_classes_in_the_centre_by_count_with_mixed_directions():
    layout = make_layout(
        [
            (SHIP, 200, 200, 0),
            (PLANE, 300, 300, 45),
            (SHIP, 250, 250, 90),
            (SHIP, 140, 370, 0),
            (PLANE, 260, 200, 45),
            (TANK, 200, 300, -45),
        ]
    )
    assert caption(layout, CLASSES) == (
        "This is an aerial image of airport. "
        "There are three ships, two towards the east-west direction, one towards the north-south direction, "
        "two planes towards the northwest-southeast direction, "
        "one storage tank towards the northeast-southwest direction in the center of the image."
    )


def test_a_class_in_several_border_bins_with_one_and_several_directions():
    layout = make_layout(
        [
            (SMALL, 20, 200, 0),  # left edge
            (SMALL, 20, 300, 0),  # left edge
            (SMALL, 20, 330, 90),  # left edge
            (SMALL, 300, 500, 0),  # lower edge
            (SMALL, 500, 10, -45),  # upper-right corner
            (SMALL, 490, 30, -45),  # upper-right corner
        ]
    )
    assert caption(layout, CLASSES) == (
        "This is an aerial image of airport. " + NO_CENTRE + " "
        "There are six small vehicles, "
        "three in the left edge, two towards the east-west direction, one towards the north-south direction, "
        "two in the upper-right corner towards the northeast-southwest direction, "
        "one in the lower edge towards the east-west direction."
    )


def test_border_classes_ordered_by_border_count_each_in_one_bin():
    layout = make_layout(
        [
            (PLANE, 30, 30, 0),  # upper-left corner
            (SHIP, 480, 250, 0),  # right edge
            (SHIP, 490, 260, 80),  # right edge
            (PLANE, 256, 256, 0),  # centre
        ]
    )
    assert caption(layout, CLASSES) == (
        "This is an aerial image of airport. "
        "There is one plane towards the east-west direction in the center of the image. "
        "There are two ships, one towards the east-west direction, one towards the north-south direction "
        "in the right edge of the image. "
        "There is one plane towards the east-west direction in the upper-left corner of the image."
    )


def test_singular_for_one_object_plural_otherwise():
    one = make_layout([(HELI, 256, 20, 0)])
    two = make_layout([(HELI, 256, 20, 0), (HELI, 200, 20, 0)])
    assert caption(one, CLASSES).endswith(
        "There is one helicopter towards the east-west direction in the top edge of the image."
    )
    assert caption(two, CLASSES).endswith(
        "There are two helicopters towards the east-west direction in the top edge of the image."
    )


def test_centres_on_or_beyond_the_border_fall_in_the_outer_bins():
    layout = make_layout(
        [
            (PLANE, 512, 256, 0),
            (PLANE, 0, 256, 0),
            (PLANE, 256, 512, 0),
            (PLANE, 256, 0, 0),
            (PLANE, 512, 512, 0),
            (PLANE, 600, -40, 0),
            (PLANE, 384, 128, 0),  # on the inner grid lines: columns and rows start at their lower edge
        ]
    )
    assert position_bins(layout) == [
        "right edge",
        "left edge",
        "lower edge",
        "top edge",
        "lower-right corner",
        "upper-right corner",
        "right edge",
    ]


# Binning x by the height and y by the width would put these in other bins (the first in the upper-right corner).
@pytest.mark.parametrize(
    ("width", "height", "centre", "expected"),
    [
        (800, 200, (700, 100), "right edge"),
        (800, 200, (100, 190), "lower-left corner"),
        (800, 200, (300, 20), "top edge"),
        (200, 800, (100, 700), "lower edge"),
        (200, 800, (190, 300), "right edge"),
    ],
)
def test_non_square_layouts_bin_x_by_width_and_y_by_height(width, height, centre, expected):
    layout = make_layout([(SHIP, *centre, 0)], width=width, height=height)
    assert position_bins(layout) == [expected]


def test_counts_above_ten_are_words():
    layout = make_layout([(SMALL, 300, 200, 0)] * 11 + [(LARGE, 40, 200, 0)] * 23)
    assert caption(layout, CLASSES) == (
        "This is an aerial image of airport. "
        "There are eleven small vehicles towards the east-west direction in the center of the image. "
        "There are twenty-three large vehicles towards the east-west direction in the left edge of the image."
    )


@pytest.mark.parametrize(
    ("count", "word"),
    [(1, "one"), (10, "ten"), (11, "eleven"), (19, "nineteen"), (20, "twenty"), (21, "twenty-one"),
     (40, "forty"), (99, "ninety-nine"), (100, "100"), (1234, "1234")],
)  # fmt: skip
def test_number_words(count, word):
    assert number_word(count) == word


def test_more_than_six_objects_are_all_counted():
    rows = [(SHIP, 40, 20 + 25 * index, 0) for index in range(4)] + [(TANK, 250, 250, 0)] * 5
    rows += [(PLANE, 480, 480, 90)]
    assert caption(make_layout(rows), CLASSES) == (
        "This is an aerial image of airport. "
        "There are five storage tanks towards the east-west direction in the center of the image. "
        "There are four ships towards the east-west direction in the upper-left corner of the image. "
        "There is one plane towards the north-south direction in the lower-right corner of the image."
    )


def test_empty_layout_has_the_scene_and_the_no_object_sentence():
    empty = make_layout([], scene="rural")
    assert caption(empty, CLASSES) == "This is an aerial image of farmland. " + NO_CENTRE
    assert position_bins(empty) == [] and direction_bins(empty) == []


@pytest.mark.parametrize(
    ("theta", "expected"),
    [
        (-90, "north-south"),
        (-67.501, "north-south"),
        (-67.5, "northeast-southwest"),
        (-22.501, "northeast-southwest"),
        (-22.5, "east-west"),
        (22.499, "east-west"),
        (22.5, "northwest-southeast"),
        (67.499, "northwest-southeast"),
        (67.5, "north-south"),
        (89.99, "north-south"),
    ],
)
def test_direction_bin_boundaries(theta, expected):
    assert direction_bins(make_layout([(PLANE, 256, 256, theta)])) == [expected]


def test_degenerate_boxes_still_get_a_direction():
    points = Layout(512, 512, [PLANE], np.full((1, 8), 100.0))  # all corners at one point
    assert direction_bins(points) == ["east-west"] and position_bins(points) == ["upper-left corner"]


def test_worked_example_of_the_module_docstring():
    rows = [(SHIP, 250, 260, 0), (SHIP, 300, 200, 0), (SHIP, 200, 300, -90), (TANK, 260, 250, 45)]
    rows += [(SHIP, 60, 200, -45), (SHIP, 40, 300, -45), (SHIP, 300, 40, 0)]
    rows += [(SMALL, 500, 500, 0), (SMALL, 480, 470, -90)]
    assert caption(make_layout(rows, scene="harbour"), CLASSES) == (
        "This is an aerial image of harbor. There are three ships, two towards the east-west direction, one "
        "towards the north-south direction, one storage tank towards the northwest-southeast direction in the "
        "center of the image. There are three ships, two in the left edge towards the northeast-southwest "
        "direction, one in the top edge towards the east-west direction. There are two small vehicles, one "
        "towards the east-west direction, one towards the north-south direction in the lower-right corner of "
        "the image."
    )


# ------------------------------------------------------------------------------------------------ scenes


def test_every_aerial_scene_kind_has_a_scene_name():
    assert set(AERIAL_SCENE_NAMES) == set(SCENE_KINDS)


def test_explicit_scene_wins_over_the_layout_and_the_rule():
    layout = make_layout([(PLANE, 256, 256, 0)], scene="harbour")
    assert caption(layout, CLASSES, scene="golf course").startswith(
        "This is an aerial image of golf course. "
    )


@pytest.mark.parametrize(
    ("kind", "name"),
    [("harbour", "harbor"), ("parking", "parking lot"), ("industrial", "industrial area"), ("rural", "farmland"),
     ("parking_lot", "parking lot"), ("dense residential", "dense residential")],
)  # fmt: skip
def test_layout_scene_is_mapped_when_an_aerial_kind_else_used_as_is(kind, name):
    layout = make_layout([(SHIP, 256, 256, 0)], scene=kind)
    assert scene_name(layout, CLASSES) == name


@pytest.mark.parametrize(
    ("labels", "categories", "name"),
    [
        ([SMALL, HELI], CLASSES, "airport"),
        ([SMALL, SHIP, TANK], CLASSES, "harbor"),
        ([SMALL, TANK, LARGE], CLASSES, "industrial area"),
        ([PLANE, SHIP], CLASSES, "airport"),
        ([SMALL, LARGE], CLASSES, "parking lot"),
        ([0, 1], ["vehicle", "harbor"], "harbor"),
        ([0, 1], ["airplane", "golffield"], "golf course"),
        ([0], ["Expressway-toll-station"], "freeway"),
        ([0], ["storagetank"], "industrial area"),
    ],
)
def test_default_scene_rule_by_priority(labels, categories, name):
    layout = make_layout([(label, 256, 256, 0) for label in labels], scene=None)
    assert scene_name(layout, categories) == name


def test_no_known_scene_keeps_only_the_aerial_image_sentence():
    layout = make_layout([(0, 256, 256, 0), (1, 20, 20, 0)], scene=None)
    assert caption(layout, ["vehicle", "bridge"]).startswith(
        "This is an aerial image. There is one vehicle towards the east-west direction in the center"
    )
    assert caption(make_layout([], scene=None), CLASSES) == "This is an aerial image. " + NO_CENTRE


def test_custom_scene_table_and_rule():
    layout = make_layout([(0, 256, 256, 0), (1, 20, 20, 0)], scene=None)
    categories = ["vehicle", "bridge"]
    assert scene_name(layout, categories, scene_rule=SceneRule({"Bridge": "river"})) == "river"
    only = SceneRule([], only=[(["vehicle", "bridge"], "road")])
    assert scene_name(layout, categories, scene_rule=only) == "road"

    def always_beach(layout: Layout, categories: list[str]) -> str:
        return "beach"

    assert caption(layout, categories, scene_rule=always_beach).startswith(
        "This is an aerial image of beach. "
    )


# ------------------------------------------------------------------------------------------------- nouns


@pytest.mark.parametrize(
    ("category", "forms"),
    [
        ("small-vehicle", ("small vehicle", "small vehicles")),
        ("storagetank", ("storage tank", "storage tanks")),
        ("Expressway-Service-area", ("expressway service area", "expressway service areas")),
        ("golffield", ("golf field", "golf fields")),
        ("tenniscourt", ("tennis court", "tennis courts")),
        ("soccer_ball_field", ("soccer ball field", "soccer ball fields")),
        ("overpass", ("overpass", "overpasses")),
        ("box", ("box", "boxes")),
        ("church", ("church", "churches")),
        ("factory", ("factory", "factories")),
        ("chimney", ("chimney", "chimneys")),
    ],
)
def test_noun_forms(category, forms):
    assert noun_forms(category) == forms


def test_names_override_the_derived_nouns():
    layout = make_layout([(SHIP, 256, 256, 0), (SHIP, 250, 250, 0)])
    text = caption(layout, CLASSES, names={"ship": ("vessel", "vessels")})
    assert "There are two vessels towards" in text


def test_captions_of_many_layouts_share_the_options():
    layouts = [make_layout([(SHIP, 256, 256, 0)]), make_layout([])]
    assert [text.split(". ")[0] for text in captions(layouts, CLASSES, scene="lake")] == [
        "This is an aerial image of lake"
    ] * 2


def test_labels_outside_the_categories_and_non_finite_boxes_are_errors():
    with pytest.raises(ValueError, match="categories"):
        caption(make_layout([(6, 256, 256, 0)]), CLASSES)
    with pytest.raises(ValueError, match="non-finite"):
        caption(Layout(512, 512, [0], np.full((1, 8), np.nan)), CLASSES)


# ------------------------------------------------------------------------------------------ property test

_UNITS = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen \
seventeen eighteen nineteen".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def parse_number(word: str) -> int | None:
    """The inverse of the caption's number words, written independently; None if `word` is no number."""
    if word.isdigit():
        return int(word)
    tens, _, units = word.partition("-")
    if tens in _UNITS and not units:
        return _UNITS.index(tens) + 1
    if tens in _TENS and (not units or units in _UNITS[:9]):
        return 10 * (_TENS.index(tens) + 2) + (_UNITS.index(units) + 1 if units else 0)
    return None


def parse_class_counts(text: str, categories: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Counts per class read back from a caption: over the whole text, and in the centre sentence."""
    nouns = {form: category for category in categories for form in noun_forms(category)}
    pattern = re.compile(
        r"([\w-]+) (" + "|".join(sorted(map(re.escape, nouns), key=len, reverse=True)) + r")\b"
    )
    total = dict.fromkeys(categories, 0)
    centre = dict.fromkeys(categories, 0)
    for sentence in text.split(". "):
        for word, noun in pattern.findall(sentence):
            count = parse_number(word)
            if count is not None:
                total[nouns[noun]] += count
                if sentence.endswith("in the center of the image") or sentence.endswith(
                    "center of the image."
                ):
                    centre[nouns[noun]] += count
    return total, centre


@st.composite
def random_layouts(draw) -> Layout:
    width, height = draw(st.integers(1, 2000)), draw(st.integers(1, 2000))
    n = draw(st.integers(0, 40))
    labels = draw(st.lists(st.integers(0, len(CLASSES) - 1), min_size=n, max_size=n))
    fraction = st.floats(-0.2, 1.2, allow_nan=False)
    boxes = [
        [draw(fraction) * width, draw(fraction) * height, draw(st.floats(0, 300)), draw(st.floats(0, 300)),
         draw(st.floats(-10, 10))]
        for _ in range(n)
    ]  # fmt: skip
    polygons = le90_to_polygon(np.array(boxes).reshape(-1, 5))
    return Layout(width, height, labels, polygons, draw(st.sampled_from([None, *SCENE_KINDS])))


@settings(max_examples=150, deadline=None)
@given(random_layouts())
def test_every_caption_counts_every_object_of_every_class(layout):
    text = caption(layout, CLASSES)
    total, centre = parse_class_counts(text, CLASSES)
    bins = position_bins(layout)
    assert total == {category: int((layout.labels == k).sum()) for k, category in enumerate(CLASSES)}
    assert centre == {
        category: sum(label == k and where == "center" for label, where in zip(layout.labels, bins))
        for k, category in enumerate(CLASSES)
    }
    assert set(bins) <= set(POSITIONS) and set(direction_bins(layout)) <= set(DIRECTIONS)
    assert text.endswith(".") and "  " not in text and ".." not in text and text == text.strip()
    assert all(sentence[0].isupper() for sentence in text.split(". "))
