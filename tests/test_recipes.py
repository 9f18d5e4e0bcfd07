"""Recipes load into validated configs, and every wrong key or value is refused with the file and key named."""

from __future__ import annotations

import pytest

from ccaug.data.tiling import TileSettings
from ccaug.recipes import RECIPES_DIR, RecipeError, load_recipe


@pytest.mark.parametrize("path", sorted(RECIPES_DIR.glob("*.yaml")), ids=lambda path: path.stem)
def test_every_shipped_recipe_loads(path):
    assert load_recipe(path.stem).name == path.stem


def test_dota_512_recipe_is_the_cc_diff_tiling():
    assert load_recipe("dota-512").tiling == TileSettings(size=512, overlap=100, keep_threshold=0.7)


def test_missing_keys_take_their_defaults(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("tiling:\n  size: 256\n")
    assert load_recipe(path).tiling == TileSettings(size=256)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tilling:\n  size: 256\n", "unknown section(s) ['tilling']"),
        ("tiling:\n  sise: 256\n", "unknown key 'tiling.sise'"),
        ("tiling:\n  size: big\n", "'tiling.size' must be int"),
        ("tiling:\n  size: true\n", "'tiling.size' must be int"),
        ("tiling:\n  size: 256\n  overlap: 256\n", "overlap must be at least 0 and less than the tile size"),
        ("tiling:\n  keep_threshold: 1.5\n", "keep_threshold is a fraction of an instance's area in (0, 1]"),
        ("tiling: [1, 2]\n", "section 'tiling' must be a mapping"),
        ("tiling:\n  size: [\n", "not valid YAML"),
        ("perturb:\n  flip:\n    pp: 0.5\n", "unknown key 'perturb.flip.pp'"),
        ("perturb:\n  flip:\n    p: 1.5\n", "section 'perturb.flip'"),
        ("perturb:\n  flip: 0.5\n", "section 'perturb.flip' must be a mapping"),
        ("constraints:\n  pair_overlap: {ship/ship: lots}\n", "'constraints.pair_overlap' must be dict[str, float]"),
    ],
)
def test_a_wrong_recipe_is_refused_naming_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as error:
        load_recipe(path)
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_an_unknown_recipe_name_lists_the_known_ones():
    with pytest.raises(RecipeError, match="dota-512"):
        load_recipe("no-such-recipe")


def test_nested_sections_and_class_pair_tables_load(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("perturb:\n  flip: {p: 0.25}\nconstraints:\n  pair_overlap: {ship/ship: 0.2}\n")
    recipe = load_recipe(path)
    assert recipe.perturb.flip.p == 0.25 and recipe.perturb.flip.horizontal  # unnamed keys keep defaults
    assert recipe.constraints.pair_overlap == {"ship/ship": 0.2}


def test_a_tiling_recipe_does_not_import_the_generator_stack():
    """Sections load on demand: `ccaug data tile --recipe` must not pay seconds for diffusers and torch."""
    import subprocess
    import sys

    script = "import sys; from ccaug.recipes import load_recipe; load_recipe('dota-512').tiling; print('diffusers' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_an_unknown_section_attribute_is_a_clear_error():
    with pytest.raises(AttributeError, match="recipes have no section 'tilling'"):
        getattr(load_recipe("dota-512"), "tilling")  # noqa: B009
