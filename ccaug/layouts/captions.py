"""The global caption of a layout: a scene sentence, then a templated description of the objects.

This is the caption CC-Diff trains and samples with, rebuilt from its grammar, with the reference scripts'
bugs fixed: counts of any size, centres on or beyond the image border, no cap on the number of objects,
empty layouts, and angles on a bin boundary up to rounding noise.

Format (sentences are joined by single spaces; each ends with a period):

1. **Scene**: ``This is an aerial image of <scene>.``, or ``This is an aerial image.`` when no scene is known
   (see `scene_name`).
2. **Centre**: ``There is|are <class>[, <class>...] in the center of the image.``, where each ``<class>`` is
   ``<n> <noun><directions>``; or, with nothing there, ``The center of the image holds no salient object.``
   ("is" when the first, most numerous class counts one object: "There is one plane, one ship ...".)
3. **Border**, one sentence per class that has objects outside the centre:
   * in one bin: ``There is|are <n> <noun><directions> in the <position> of the image.``
   * in several: ``There are <total> <plural>, <n> in the <position><directions>[, ...].``

``<directions>`` is `` towards the <d> direction`` when the counted objects share one direction, otherwise
``, <n> towards the <d> direction`` for each direction. Numbers are words up to ninety-nine ("twenty-one"),
then digits; nouns are singular for one object, plural otherwise.

Bins (`position_bins`, `direction_bins`): the image is a 4×4 grid, ``x`` binned by the width and ``y`` by the
height (the reference code mixes rows and columns up, which only its square images hid), with bins outside
the image clamped to the nearest cell. The inner 2×2 cells are the "center", the corner cells the four
corners, and the two other cells along each side its edge ("top edge", "lower edge", "left edge", "right
edge"). The direction comes from the le90 angle of the long side, in degrees rounded to 1e-6:
[-67.5, -22.5) "northeast-southwest", [-22.5, 22.5) "east-west", [22.5, 67.5) "northwest-southeast",
anything else "north-south".

Order: classes by count, descending (border classes by their count outside the centre), then positions
within a class by count, then directions by count; ties always fall back to the order of the category list,
of `POSITIONS` and of `DIRECTIONS`, so a caption is a pure function of the layout.

Worked example: a 512×512 ``harbour`` layout over the aerial classes with, in the centre, ships at
(250, 260) and (300, 200) at θ = 0°, a ship at (200, 300) at θ = -90° and a storage tank at (260, 250) at
θ = 45°; ships at (60, 200) and (40, 300) at θ = -45° and at (300, 40) at θ = 0°; small vehicles at
(500, 500) at θ = 0° and (480, 470) at θ = -90°::

    This is an aerial image of harbor. There are three ships, two towards the east-west direction, one
    towards the north-south direction, one storage tank towards the northwest-southeast direction in the
    center of the image. There are three ships, two in the left edge towards the northeast-southwest
    direction, one in the top edge towards the east-west direction. There are two small vehicles, one
    towards the east-west direction, one towards the north-south direction in the lower-right corner of
    the image.

(a single line, wrapped here).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from ccaug.data.geometry import wrap_angle
from ccaug.layouts.layout import Layout

# What `scene_rule` accepts: `SceneRule` or any function of the same shape.
SceneRuleFunction = Callable[[Layout, Sequence[str]], "str | None"]

POSITIONS: tuple[str, ...] = (
    "center",
    "upper-left corner",
    "top edge",
    "upper-right corner",
    "left edge",
    "right edge",
    "lower-left corner",
    "lower edge",
    "lower-right corner",
)
# Index into POSITIONS of each cell of the 4x4 grid, as [row, column].
_GRID = np.array(
    [
        [1, 2, 2, 3],
        [4, 0, 0, 5],
        [4, 0, 0, 5],
        [6, 7, 7, 8],
    ]
)

DIRECTIONS: tuple[str, ...] = ("northeast-southwest", "east-west", "northwest-southeast", "north-south")
_DIRECTION_EDGES = np.array([-67.5, -22.5, 22.5, 67.5])  # degrees; each bin includes its lower edge
_DIRECTION_OF_INTERVAL = np.array([3, 0, 1, 2, 3])  # below -67.5, three bins, 67.5 and above

NO_CENTRE_SENTENCE = "The center of the image holds no salient object."

# The aerial data set's scene kinds, as the RESISC45 scene classes the paper's classifier would name them.
AERIAL_SCENE_NAMES: dict[str, str] = {
    "harbour": "harbor",
    "airport": "airport",
    "parking": "parking lot",
    "industrial": "industrial area",
    "rural": "farmland",
}


def caption(
    layout: Layout,
    categories: Sequence[str],
    *,
    scene: str | None = None,
    scene_rule: SceneRuleFunction | None = None,
    names: Mapping[str, tuple[str, str]] | None = None,
) -> str:
    """The global caption of `layout`, whose labels index `categories` (format: the module docstring).

    `scene` overrides the scene of the layout; `scene_rule` replaces `default_scene_rule`; `names` maps a
    category to its ``(singular, plural)`` nouns where the ones derived by `noun_forms` do not fit.
    """
    if len(layout.labels) and (layout.labels.min() < 0 or layout.labels.max() >= len(categories)):
        raise ValueError(
            f"labels must index the {len(categories)} categories, got {sorted(set(layout.labels.tolist()))}"
        )
    name = scene_name(layout, categories, scene=scene, scene_rule=scene_rule)
    sentences = [f"This is an aerial image of {name}." if name else "This is an aerial image."]
    sentences += _object_sentences(layout, categories, names or {})
    return " ".join(sentences)


def captions(layouts: Iterable[Layout], categories: Sequence[str], **options) -> list[str]:
    """`caption` of each layout, with the same options."""
    return [caption(layout, categories, **options) for layout in layouts]


# ---------------------------------------------------------------------------------------------- the scene


def _key(category: str) -> str:
    """A class name with case and separators dropped, so "Storage-Tank", "storage tank" and "storagetank" meet."""
    return re.sub(r"[\s_-]+", "", category.lower())


class SceneRule:
    """Names the scene from the classes present: a callable ``(layout, categories) -> scene | None``.

    `table` is ordered ``(class, scene)`` pairs (or a dict): the first row whose class is present names the
    scene. Otherwise each ``(classes, scene)`` of `only` applies when every present class is one of
    ``classes``. Class names match whatever their case, spaces, hyphens and underscores.
    """

    def __init__(
        self,
        table: Mapping[str, str] | Sequence[tuple[str, str]],
        only: Sequence[tuple[Sequence[str], str]] = (),
    ) -> None:
        rows = table.items() if isinstance(table, Mapping) else table
        self.table = tuple((_key(category), scene) for category, scene in rows)
        self.only = tuple(
            (frozenset(_key(category) for category in classes), scene) for classes, scene in only
        )

    def __call__(self, layout: Layout, categories: Sequence[str]) -> str | None:
        present = {_key(categories[label]) for label in set(layout.labels.tolist())}
        for category, scene in self.table:
            if category in present:
                return scene
        for classes, scene in self.only:
            if present and present <= classes:
                return scene
        return None


# Classes that are a scene in themselves (DIOR's override) come first, then classes that imply one.
DEFAULT_SCENE_TABLE: tuple[tuple[str, str], ...] = (
    ("airport", "airport"),
    ("golffield", "golf course"),
    ("harbor", "harbor"),
    ("harbour", "harbor"),
    ("Expressway-Service-area", "freeway"),
    ("Expressway-toll-station", "freeway"),
    ("plane", "airport"),
    ("airplane", "airport"),
    ("helicopter", "airport"),
    ("ship", "harbor"),
    ("storage-tank", "industrial area"),
)
DEFAULT_ONLY_SCENES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("small-vehicle", "large-vehicle", "vehicle"), "parking lot"),
)
default_scene_rule = SceneRule(DEFAULT_SCENE_TABLE, only=DEFAULT_ONLY_SCENES)


def scene_name(
    layout: Layout,
    categories: Sequence[str],
    *,
    scene: str | None = None,
    scene_rule: SceneRuleFunction | None = None,
) -> str | None:
    """The scene the caption names, the first that applies of:

    1. the explicit `scene`, as given;
    2. ``layout.scene``: an aerial scene kind through `AERIAL_SCENE_NAMES`, any other name with underscores
       as spaces (RESISC45 labels such as "parking_lot");
    3. `scene_rule` (`default_scene_rule` when None) applied to the classes of the layout;

    else None, and the caption says only "This is an aerial image." rather than name a scene it does not
    know: "aerial image" is the cue that matters to the text encoder, and a placeholder scene would be noise.
    """
    if scene is not None:
        return scene.strip() or None
    if layout.scene:
        return AERIAL_SCENE_NAMES.get(layout.scene, layout.scene.replace("_", " ").strip()) or None
    return (scene_rule or default_scene_rule)(layout, categories)


# ---------------------------------------------------------------------------------- the object description


def _object_sentences(
    layout: Layout, categories: Sequence[str], names: Mapping[str, tuple[str, str]]
) -> list[str]:
    nouns = [names.get(category) or noun_forms(category) for category in categories]
    counts = np.zeros((len(categories), len(POSITIONS), len(DIRECTIONS)), dtype=np.int64)
    np.add.at(counts, (layout.labels, _position_codes(layout), _direction_codes(layout)), 1)
    sentences = [_centre_sentence(counts[:, 0], nouns)]
    border = counts[:, 1:]
    for label in _by_count(border.sum(axis=(1, 2))):
        sentences.append(_border_sentence(border[label], nouns[label]))
    return sentences


def _by_count(counts: np.ndarray) -> list[int]:
    """Indices of the non-zero `counts`, largest first, ties in index order."""
    order = np.argsort(-counts, kind="stable")
    return [int(index) for index in order if counts[index] > 0]


def _centre_sentence(counts: np.ndarray, nouns: list[tuple[str, str]]) -> str:
    """`counts` is ``(categories, directions)`` for the centre bin."""
    totals = counts.sum(axis=1)
    if totals.sum() == 0:
        return NO_CENTRE_SENTENCE
    order = _by_count(totals)
    parts = [_counted(totals[label], nouns[label]) + _direction_phrase(counts[label]) for label in order]
    # The verb agrees with the first (most numerous) class: "There is one plane, one ship ...".
    verb = "is" if totals[order[0]] == 1 else "are"
    return f"There {verb} {', '.join(parts)} in the center of the image."


def _border_sentence(counts: np.ndarray, noun: tuple[str, str]) -> str:
    """`counts` is ``(positions other than the centre, directions)`` for one class."""
    totals = counts.sum(axis=1)
    bins = _by_count(totals)
    if len(bins) == 1:
        (only,) = bins
        verb = "is" if totals[only] == 1 else "are"
        return (
            f"There {verb} {_counted(totals[only], noun)}{_direction_phrase(counts[only])}"
            f" in the {POSITIONS[only + 1]} of the image."
        )
    parts = [
        f"{number_word(totals[index])} in the {POSITIONS[index + 1]}{_direction_phrase(counts[index])}"
        for index in bins
    ]
    return f"There are {_counted(totals.sum(), noun)}, {', '.join(parts)}."


def _direction_phrase(counts: np.ndarray) -> str:
    directions = _by_count(counts)
    if len(directions) == 1:
        return f" towards the {DIRECTIONS[directions[0]]} direction"
    return "".join(
        f", {number_word(counts[index])} towards the {DIRECTIONS[index]} direction" for index in directions
    )


def _counted(count: int, noun: tuple[str, str]) -> str:
    singular, plural = noun
    return f"{number_word(count)} {singular if count == 1 else plural}"


# ---------------------------------------------------------------------------------------- per-instance bins


def position_bins(layout: Layout) -> list[str]:
    """The position (one of `POSITIONS`) of each instance's OBB centre."""
    return [POSITIONS[code] for code in _position_codes(layout)]


def direction_bins(layout: Layout) -> list[str]:
    """The direction (one of `DIRECTIONS`) of each instance's long side."""
    return [DIRECTIONS[code] for code in _direction_codes(layout)]


def _position_codes(layout: Layout) -> np.ndarray:
    if layout.width <= 0 or layout.height <= 0:
        raise ValueError(f"a layout needs a positive size, got {layout.width}x{layout.height}")
    centres = _finite_le90(layout)[:, :2]
    column = np.clip(np.floor(centres[:, 0] * 4 / layout.width), 0, 3).astype(np.int64)
    row = np.clip(np.floor(centres[:, 1] * 4 / layout.height), 0, 3).astype(np.int64)
    return _GRID[row, column]


def _direction_codes(layout: Layout) -> np.ndarray:
    # Rounding absorbs the float noise of a polygon round trip, so a box drawn at 22.5 degrees stays there.
    degrees = np.round(np.degrees(wrap_angle(_finite_le90(layout)[:, 4])), 6)
    return _DIRECTION_OF_INTERVAL[np.searchsorted(_DIRECTION_EDGES, degrees, side="right")]


def _finite_le90(layout: Layout) -> np.ndarray:
    boxes = layout.le90
    bad = np.flatnonzero(~np.isfinite(boxes).all(axis=1))
    if len(bad):
        raise ValueError(
            f"instances {bad.tolist()} have non-finite polygons; drop or fix them before captioning"
        )
    return boxes


# ------------------------------------------------------------------------------------------------- words


# DIOR and DOTA class names written as one word, by `_key`.
_RUN_TOGETHER: dict[str, str] = {
    "storagetank": "storage tank",
    "groundtrackfield": "ground track field",
    "baseballfield": "baseball field",
    "tenniscourt": "tennis court",
    "basketballcourt": "basketball court",
    "golffield": "golf field",
    "trainstation": "train station",
    "expresswayservicearea": "expressway service area",
    "expresswaytollstation": "expressway toll station",
}


def noun_forms(category: str) -> tuple[str, str]:
    """``(singular, plural)`` of a class name: "small-vehicle" -> ("small vehicle", "small vehicles")."""
    singular = _RUN_TOGETHER.get(_key(category)) or " ".join(re.split(r"[\s_-]+", category.lower())).strip()
    return singular, plural_noun(singular)


def plural_noun(noun: str) -> str:
    """English plural of the last word: +es after s, x, ch, sh; y -> ies after a consonant; else +s."""
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and len(noun) > 1 and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


_UNITS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def number_word(count: int) -> str:
    """A count in words up to ninety-nine ("twenty-one"), in digits from 100."""
    count = int(count)
    if count < 0:
        raise ValueError(f"a count cannot be negative, got {count}")
    if count < 20:
        return _UNITS[count]
    if count < 100:
        tens, units = divmod(count, 10)
        return _TENS[tens] + (f"-{_UNITS[units]}" if units else "")
    return str(count)
