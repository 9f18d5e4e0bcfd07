"""The embedded aerial data set: deterministic, in context, non-overlapping, written as DOTA with terrain."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from PIL import Image

from ccaug.data import read_dataset
from ccaug.data.geometry import polygon_to_le90
from ccaug.datasets import (
    AERIAL_CLASSES,
    ALLOWED_TERRAIN,
    SCENE_KINDS,
    TERRAIN_CLASSES,
    make_aerial,
    render_scene,
)
from ccaug.datasets.aerial import DIFFICULT_LENGTH, DIFFICULT_OCCLUSION

SIZE = 256


@pytest.fixture(scope="module")
def scenes():
    """30 scenes, six of every kind."""
    return [render_scene(100 + i, SIZE, SCENE_KINDS[i % len(SCENE_KINDS)]) for i in range(30)]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("aerial")
    dataset = make_aerial(out, n=10, size=SIZE, seed=4, workers=1, progress=False)
    return out, dataset


def all_instances(scenes):
    return [(scene, instance) for scene in scenes for instance in scene.instances]


def test_the_same_seed_renders_the_same_bytes_and_labels():
    first, second = render_scene(11, SIZE, "harbour"), render_scene(11, SIZE, "harbour")
    assert first.image.tobytes() == second.image.tobytes()
    assert first.terrain.tobytes() == second.terrain.tobytes()
    assert [(i.category, i.polygon.tolist(), i.difficult) for i in first.instances] == [
        (i.category, i.polygon.tolist(), i.difficult) for i in second.instances
    ]


def test_a_different_seed_renders_a_different_scene():
    assert (
        render_scene(11, SIZE, "harbour").image.tobytes() != render_scene(12, SIZE, "harbour").image.tobytes()
    )


def test_without_a_kind_the_seed_picks_one_and_a_wrong_kind_is_refused():
    assert render_scene(3, SIZE).kind in SCENE_KINDS
    with pytest.raises(ValueError, match="unknown scene kind"):
        render_scene(3, SIZE, "moon")


def test_images_and_terrain_maps_have_the_documented_types(scenes):
    for scene in scenes:
        assert scene.image.shape == (SIZE, SIZE, 3) and scene.image.dtype == np.uint8
        assert scene.terrain.shape == (SIZE, SIZE) and scene.terrain.dtype == np.uint8
        assert set(np.unique(scene.terrain)) <= set(TERRAIN_CLASSES)


def test_every_class_appears_in_thirty_images(scenes):
    assert {instance.category for _, instance in all_instances(scenes)} == set(AERIAL_CLASSES)


def test_every_box_lies_inside_the_image_and_is_at_least_8_px_long(scenes):
    for _, instance in all_instances(scenes):
        corners = instance.polygon.reshape(4, 2)
        assert corners.min() >= 0 and corners.max() <= SIZE
        assert polygon_to_le90(instance.polygon[None])[0, 2] >= 8


def test_objects_stand_on_terrain_where_they_belong(scenes):
    for scene, instance in all_instances(scenes):
        x, y = instance.polygon.reshape(4, 2).mean(axis=0)
        assert scene.terrain[int(y), int(x)] in ALLOWED_TERRAIN[instance.category], (
            scene.kind,
            instance.category,
        )


def test_objects_do_not_overlap(scenes):
    for scene in scenes:
        boxes = np.array([shapely.Polygon(instance.polygon.reshape(4, 2)) for instance in scene.instances])
        for index, box in enumerate(boxes[:-1]):
            others = boxes[index + 1 :]
            iou = shapely.area(shapely.intersection(box, others)) / shapely.area(shapely.union(box, others))
            assert iou.max(initial=0) < 0.05


def test_difficult_marks_tiny_or_mostly_hidden_objects(scenes):
    for _, instance in all_instances(scenes):
        length = polygon_to_le90(instance.polygon[None])[0, 2]
        expected = length < DIFFICULT_LENGTH or instance.occlusion > DIFFICULT_OCCLUSION
        assert instance.difficult == expected
    assert any(instance.difficult for _, instance in all_instances(scenes))


def test_a_larger_image_holds_more_objects_of_the_same_size():
    small = [render_scene(40 + i, 256, kind) for i, kind in enumerate(SCENE_KINDS)]
    large = [render_scene(40 + i, 512, kind) for i, kind in enumerate(SCENE_KINDS)]
    assert all(scene.image.shape == (512, 512, 3) for scene in large)
    assert sum(len(s.instances) for s in large) > 2 * sum(len(s.instances) for s in small)
    lengths = [
        polygon_to_le90(np.array([i.polygon for i in s.instances]))[:, 2].mean()
        for s in (small + large)
        if s.instances
    ]
    assert max(lengths[5:]) < 2 * max(lengths[:5])


def test_make_aerial_writes_dota_folders_with_terrain_maps(written):
    out, dataset = written
    assert (out / "classes.txt").read_text().split() == list(AERIAL_CLASSES)
    legend = json.loads((out / "terrain_classes.json").read_text())
    assert {int(k): v for k, v in legend["terrain_classes"].items()} == TERRAIN_CLASSES
    assert {k: set(v) for k, v in legend["allowed_terrain"].items()} == {
        k: set(v) for k, v in ALLOWED_TERRAIN.items()
    }
    for _, image in dataset.images.iterrows():
        split, stem = image["split"], f"aerial_{image['image_id']:06d}"
        assert image["file"] == f"{split}/images/{stem}.png"
        assert (out / split / "labelTxt" / f"{stem}.txt").is_file()
        terrain = np.asarray(Image.open(out / split / "terrain" / f"{stem}.png"))
        assert terrain.shape == (SIZE, SIZE) and terrain.dtype == np.uint8
    assert set(dataset.splits) == {"train", "val"} and (dataset.images["split"] == "val").sum() == 2
    assert list(dataset.images["scene"]) == [SCENE_KINDS[i % 5] for i in range(10)]
    assert json.loads((out / "scenes.json").read_text()) == dict(
        zip(dataset.images["file"], dataset.images["scene"])
    )


def test_the_written_labels_read_back_as_the_returned_dataset(written):
    out, dataset = written
    again = read_dataset(out, "dota")
    assert again.categories == list(AERIAL_CLASSES)
    assert len(again) == len(dataset) and len(again.instances) == len(dataset.instances)
    assert sorted(again.instances["difficult"]) == sorted(dataset.instances["difficult"])


def test_worker_count_does_not_change_the_output(tmp_path):
    one = make_aerial(tmp_path / "one", n=5, seed=9, workers=1, progress=False)
    two = make_aerial(tmp_path / "two", n=5, seed=9, workers=2, progress=False)
    for file in one.images["file"]:
        assert (tmp_path / "one" / file).read_bytes() == (tmp_path / "two" / file).read_bytes()
        label = file.replace("/images/", "/labelTxt/").replace(".png", ".txt")
        assert (tmp_path / "one" / label).read_text() == (tmp_path / "two" / label).read_text()
    assert one.instances.equals(two.instances)


def test_a_smaller_second_run_removes_the_first_runs_extra_images(tmp_path):
    make_aerial(tmp_path, n=4, seed=1, workers=1, progress=False, val_fraction=0)
    dataset = make_aerial(tmp_path, n=2, seed=1, workers=1, progress=False, val_fraction=0)
    assert len(read_dataset(tmp_path, "dota")) == len(dataset) == 2


@pytest.mark.parametrize("bad", [dict(n=0), dict(size=32), dict(val_fraction=1.0)])
def test_bad_arguments_are_refused(tmp_path, bad):
    with pytest.raises(ValueError):
        make_aerial(tmp_path, **{"n": 2, "workers": 1, "progress": False, **bad})


def test_the_val_split_is_the_same_in_every_python_process():
    """String hashing is salted per process; the split must not depend on it (it once looped over a set)."""
    import os
    import subprocess
    import sys

    script = "from ccaug.datasets.aerial.build import plan; print([job.split for job in plan(40, 256, 0, 0.2)])"
    splits = {
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": str(hash_seed)},
        ).stdout
        for hash_seed in (1, 2, 3)
    }
    assert len(splits) == 1
