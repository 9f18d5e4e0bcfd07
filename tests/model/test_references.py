"""Instance bank, background bank and feature cache: what the generator relies on when it picks references."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import safetensors.numpy
import torch
from PIL import Image
from safetensors import safe_open
from shapely.geometry import Point, Polygon

from ccaug.data.dataset import Dataset
from ccaug.data.geometry import polygon_to_le90
from ccaug.datasets import make_aerial
from ccaug.model.background_bank import BackgroundBank
from ccaug.model.instance_bank import InstanceBank
from ccaug.model.references import FeatureCache, cache_key

# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def aerial(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return make_aerial(tmp_path_factory.mktemp("aerial"), n=12, seed=0, workers=1, progress=False)


@pytest.fixture(scope="module")
def bank(aerial: Dataset) -> InstanceBank:
    return InstanceBank.build(aerial, crop_size=32, max_per_class=20, progress=False)


def rotated_rectangle(cx: float, cy: float, w: float, h: float, angle: float) -> list[float]:
    """Pixel corners x1 y1 … x4 y4 of a w×h rectangle turned by `angle` radians about (cx, cy)."""
    c, s = math.cos(angle), math.sin(angle)
    corners = []
    for dx, dy in [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]:
        corners += [cx + c * dx - s * dy, cy + s * dx + c * dy]
    return corners


def one_image_dataset(
    root: Path, pixels: np.ndarray, polygons: list[list[float]], labels: list[str]
) -> Dataset:
    """A data set of one PNG (written from `pixels`) with the given instances; classes ``car``, ``ship``."""
    root.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(root / "scene.png")
    height, width = pixels.shape[:2]
    images = [{"image_id": 7, "file": "scene.png", "width": width, "height": height, "split": "train"}]
    instances = [
        {"image_id": 7, "category": label, "polygon": polygon} for polygon, label in zip(polygons, labels)
    ]
    return Dataset.from_records(images, instances, ["car", "ship"], root)


def uniform_image(value: int = 200, size: int = 128) -> np.ndarray:
    return np.full((size, size, 3), value, dtype=np.uint8)


# ------------------------------------------------------------------------------------------- instance bank


def test_bank_holds_every_class_and_at_most_max_per_class(aerial: Dataset, bank: InstanceBank) -> None:
    eligible = aerial.instances["category"][polygon_to_le90(aerial.polygons)[:, 3] >= 4].value_counts()
    expected = np.minimum(eligible.reindex(aerial.categories).fillna(0).to_numpy(), 20)
    assert (expected > 0).all()
    assert bank.counts().to_numpy().tolist() == expected.tolist()
    assert (bank.table["category"] == [aerial.categories[label] for label in bank.table["label"]]).all()


def test_bank_keeps_the_largest_instances_of_a_class(aerial: Dataset, bank: InstanceBank) -> None:
    label = aerial.categories.index("small-vehicle")
    areas = aerial.area[(aerial.category_index() == label) & ~aerial.instances["truncated"].to_numpy()]
    kept = bank.table.loc[bank.table["label"] == label, "area"].to_numpy()
    np.testing.assert_allclose(kept, np.sort(areas)[::-1][:20])


def test_crops_are_square_uint8_rgb_with_masks(bank: InstanceBank) -> None:
    assert bank.crops.shape == (len(bank), 32, 32, 3) and bank.crops.dtype == np.uint8
    assert bank.masks.shape == (len(bank), 32, 32)
    assert (bank.crops[bank.masks == 0] == 0).all()
    assert (bank.masks.reshape(len(bank), -1).sum(axis=1) > 0).all()


def test_hbb_crop_of_a_rotated_vehicle_is_zero_outside_its_polygon(tmp_path: Path) -> None:
    polygon = rotated_rectangle(64, 64, 40, 14, math.radians(35))
    dataset = one_image_dataset(tmp_path, uniform_image(), [polygon], ["car"])
    bank = InstanceBank.build(dataset, crop_size=32, crop="hbb", progress=False)
    crop = bank.crops[0]
    assert (crop[0, 0] == 0).all() and (crop[-1, -1] == 0).all()  # HBB corners lie outside the vehicle
    assert (crop[16, 16] == 200).all()
    # Pixels whose centres lie well inside the polygon are kept, those well outside it are zero.
    corners = np.array(polygon).reshape(4, 2)
    shape = Polygon((corners - 64) * 32 / np.ptp(corners, axis=0).max() + 16)  # the polygon in the crop
    for row in range(32):
        for col in range(32):
            centre = Point(col + 0.5, row + 0.5)
            if shape.buffer(-1).contains(centre):
                assert bank.masks[0, row, col] == 1
            elif not shape.buffer(1).contains(centre):
                assert bank.masks[0, row, col] == 0


def test_rotated_crop_turns_the_object_upright(tmp_path: Path) -> None:
    polygon = rotated_rectangle(64, 64, 48, 12, math.radians(-60))
    dataset = one_image_dataset(tmp_path, uniform_image(), [polygon], ["car"])
    bank = InstanceBank.build(dataset, crop_size=32, progress=False)
    mask = bank.masks[0]
    # A 48 x 12 box becomes a horizontal band 8 pixels high across the whole square.
    assert mask[12:20].all()
    assert not mask[:11].any() and not mask[21:].any()
    assert (bank.crops[0][0, 0] == 0).all()
    assert bank.table["aspect"].iat[0] == pytest.approx(4.0)


def test_elongated_instance_is_not_cut_by_the_square(tmp_path: Path) -> None:
    ship = rotated_rectangle(64, 64, 100, 8, math.radians(20))
    dataset = one_image_dataset(tmp_path, uniform_image(), [ship], ["ship"])
    for crop in ("rotated", "hbb"):
        bank = InstanceBank.build(dataset, crop_size=32, crop=crop, progress=False)
        columns = np.flatnonzero(bank.masks[0].any(axis=0))
        rows = np.flatnonzero(bank.masks[0].any(axis=1))
        assert columns[0] == 0 and columns[-1] == 31, crop  # both ends of the ship are in the square
        assert rows[0] > 0 and rows[-1] < 31, crop  # padded above and below, not stretched


def test_crops_keep_rgb_order(tmp_path: Path) -> None:
    pixels = np.zeros((128, 128, 3), dtype=np.uint8)
    pixels[:, :64] = (255, 0, 0)  # left half red
    pixels[:, 64:] = (0, 0, 255)  # right half blue
    left = rotated_rectangle(32, 64, 30, 12, 0.3)
    right = rotated_rectangle(96, 64, 20, 12, 0.3)
    dataset = one_image_dataset(tmp_path, pixels, [left, right], ["car", "car"])
    bank = InstanceBank.build(dataset, crop_size=16, progress=False)
    red = bank.crops[bank.table["instance"] == 0][0]
    blue = bank.crops[bank.table["instance"] == 1][0]
    assert red[8, 8].tolist() == [255, 0, 0]
    assert blue[8, 8].tolist() == [0, 0, 255]
    tensor = bank.images(np.array([0, 1]))
    assert tensor.shape == (2, 3, 16, 16) and tensor.dtype == torch.float32
    assert float(tensor.max()) == 1.0 and float(tensor.min()) == 0.0
    torch.testing.assert_close(tensor[0].permute(1, 2, 0), torch.from_numpy(bank.crops[0]).float() / 255)


def test_sam_masks_replace_the_polygon_where_given(tmp_path: Path) -> None:
    pixels = uniform_image()
    polygons = [rotated_rectangle(40, 40, 30, 30, 0.0), rotated_rectangle(90, 90, 30, 30, 0.0)]
    dataset = one_image_dataset(tmp_path / "data", pixels, polygons, ["car", "car"])
    masks_dir = tmp_path / "sam"
    masks_dir.mkdir()
    sam = np.zeros((128, 128), dtype=np.uint8)
    sam[25:55, 25:40] = 255  # the left half of instance 0 only
    Image.fromarray(sam).save(masks_dir / "scene_0.png")
    bank = InstanceBank.build(dataset, crop_size=30, masks_dir=masks_dir, progress=False)
    first = bank.table.index[bank.table["instance"] == 0][0]
    second = bank.table.index[bank.table["instance"] == 1][0]
    assert bank.table["mask"].tolist()[first] == "sam" and bank.table["mask"].tolist()[second] == "polygon"
    assert bank.masks[first][:, :14].all() and not bank.masks[first][:, 16:].any()
    assert bank.masks[second].all()


def test_sam_mask_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    dataset = one_image_dataset(
        tmp_path / "data", uniform_image(), [rotated_rectangle(40, 40, 20, 9, 0)], ["car"]
    )
    (tmp_path / "sam").mkdir()
    Image.fromarray(np.zeros((30, 30), dtype=np.uint8)).save(tmp_path / "sam" / "scene_0.png")
    with pytest.raises(ValueError, match="scene_0.png"):
        InstanceBank.build(dataset, masks_dir=tmp_path / "sam", progress=False)


def test_aspect_ratios_follow_the_crop_mode(bank: InstanceBank) -> None:
    polygon = np.array([rotated_rectangle(50, 50, 30, 10, math.radians(90))])
    assert bank.aspect_ratios(polygon)[0] == pytest.approx(3.0)
    hbb_bank = InstanceBank(bank.crops, bank.masks, bank.table, bank.categories, crop="hbb")
    assert hbb_bank.aspect_ratios(polygon)[0] == pytest.approx(1 / 3)


def test_pick_returns_crops_of_the_requested_classes(bank: InstanceBank) -> None:
    labels = np.array([0, 1, 2, 3, 4, 5, 1, 1])
    picks = bank.pick(labels, np.full(8, 2.0), np.random.default_rng(0))
    assert picks.shape == (8,)
    assert bank.table["label"].to_numpy()[picks].tolist() == labels.tolist()


def test_pick_prefers_the_nearest_aspect_ratio(bank: InstanceBank) -> None:
    label = bank.categories.index("small-vehicle")
    rows = np.flatnonzero(bank.table["label"] == label)
    aspects = bank.table["aspect"].to_numpy()[rows]
    for target in (1.2, 2.0, 3.5):
        nearest = rows[np.argmin(np.abs(np.log(aspects / target)))]
        assert (
            bank.pick(np.array([label]), np.array([target]), np.random.default_rng(1), top_k=1)[0] == nearest
        )


def test_pick_samples_within_the_top_k_and_is_reproducible(bank: InstanceBank) -> None:
    label = bank.categories.index("small-vehicle")
    rows = np.flatnonzero(bank.table["label"] == label)
    distance = np.abs(np.log(bank.table["aspect"].to_numpy()[rows] / 2.0))
    top3 = set(rows[np.argsort(distance, kind="stable")[:3]].tolist())
    labels, aspects = np.full(50, label), np.full(50, 2.0)
    picks = bank.pick(labels, aspects, np.random.default_rng(5), top_k=3)
    assert set(picks.tolist()) == top3  # every candidate drawn, nothing outside them
    again = bank.pick(labels, aspects, np.random.default_rng(5), top_k=3)
    other = bank.pick(labels, aspects, np.random.default_rng(6), top_k=3)
    assert picks.tolist() == again.tolist()
    assert picks.tolist() != other.tolist()


def test_pick_excludes_the_training_image(bank: InstanceBank) -> None:
    label = bank.categories.index("small-vehicle")
    nearest = bank.pick(np.array([label]), np.array([2.0]), np.random.default_rng(0), top_k=1)[0]
    own_image = int(bank.table["image_id"].iat[nearest])
    picks = bank.pick(np.full(40, label), np.full(40, 2.0), np.random.default_rng(0), exclude_image=own_image)
    assert own_image not in bank.table["image_id"].to_numpy()[picks]
    assert bank.table["label"].to_numpy()[picks].tolist() == [label] * 40


def test_pick_excludes_near_duplicates_of_the_training_image(aerial: Dataset) -> None:
    bank = InstanceBank.build(aerial, crop_size=16, max_per_class=40, group_by="scene", progress=False)
    label = bank.categories.index("small-vehicle")
    scene_of = dict(zip(aerial.images["image_id"], aerial.images["scene"]))
    image = int(bank.table.loc[bank.table["label"] == label, "image_id"].iat[0])
    picks = bank.pick(np.full(40, label), np.full(40, 2.0), np.random.default_rng(0), exclude_image=image)
    picked_scenes = {scene_of[image_id] for image_id in bank.table["image_id"].to_numpy()[picks]}
    assert scene_of[image] not in picked_scenes


def test_pick_falls_back_to_the_image_itself_when_it_holds_the_only_crops(tmp_path: Path) -> None:
    dataset = one_image_dataset(tmp_path, uniform_image(), [rotated_rectangle(40, 40, 20, 9, 0)], ["car"])
    bank = InstanceBank.build(dataset, crop_size=16, progress=False)
    assert bank.pick(np.array([0]), np.array([2.0]), np.random.default_rng(0), exclude_image=7).tolist() == [
        0
    ]


def test_pick_of_a_class_without_crops_names_it(tmp_path: Path) -> None:
    dataset = one_image_dataset(tmp_path, uniform_image(), [rotated_rectangle(40, 40, 20, 9, 0)], ["car"])
    bank = InstanceBank.build(dataset, crop_size=16, progress=False)
    with pytest.raises(ValueError, match="'ship'.*min_side_px"):
        bank.pick(np.array([0, 1]), np.array([2.0, 2.0]), np.random.default_rng(0))


def test_instance_bank_round_trips_through_one_file(bank: InstanceBank, tmp_path: Path) -> None:
    path = tmp_path / "instances.safetensors"
    bank.save(path)
    assert list(tmp_path.iterdir()) == [path]
    loaded = InstanceBank.load(path)
    np.testing.assert_array_equal(loaded.crops, bank.crops)
    np.testing.assert_array_equal(loaded.masks, bank.masks)
    pd.testing.assert_frame_equal(loaded.table, bank.table)
    assert (loaded.categories, loaded.crop, loaded.image_groups) == (
        bank.categories,
        bank.crop,
        bank.image_groups,
    )
    labels, aspects = np.array([1, 1, 2, 3]), np.array([1.5, 2.5, 3.0, 4.0])
    assert (
        loaded.pick(labels, aspects, np.random.default_rng(3)).tolist()
        == bank.pick(labels, aspects, np.random.default_rng(3)).tolist()
    )


def rewrite_header(path: Path, **changes: object) -> None:
    with safe_open(path, framework="np") as file:
        arrays = {name: file.get_tensor(name) for name in file.keys()}
        header = json.loads(file.metadata()["ccaug"])
    header.update(changes)
    safetensors.numpy.save_file(arrays, path, metadata={"ccaug": json.dumps(header)})


def test_bank_of_another_version_or_kind_is_refused(bank: InstanceBank, tmp_path: Path) -> None:
    path = tmp_path / "instances.safetensors"
    bank.save(path)
    rewrite_header(path, version=999)
    with pytest.raises(ValueError, match=r"instances\.safetensors.*version 999"):
        InstanceBank.load(path)
    rewrite_header(path, version=1, format="ccaug.background_bank")
    with pytest.raises(ValueError, match=r"instances\.safetensors.*not a 'ccaug\.instance_bank'"):
        InstanceBank.load(path)
    plain = tmp_path / "weights.safetensors"
    safetensors.numpy.save_file({"w": np.zeros(3)}, plain)
    with pytest.raises(ValueError, match=r"weights\.safetensors.*not a ccaug bank"):
        InstanceBank.load(plain)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match=r"garbage\.safetensors"):
        InstanceBank.load(garbage)


# ----------------------------------------------------------------------------------------- background bank

DIM = 4096  # wide enough that the scene words and image numbers of the tests do not collide


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A stand-in text encoder: word counts hashed into DIM bins (not normalised: the bank must do it)."""
    embeddings = np.zeros((len(texts), DIM), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in text.lower().split():
            embeddings[row, zlib.crc32(word.encode()) % DIM] += 1.0
    return embeddings


def scene_captions(dataset: Dataset) -> list[str]:
    """Captions that share words with the other images of the same scene and one word of their own."""
    return [f"{scene} {scene} {scene} image{i}" for i, scene in enumerate(dataset.images["scene"])]


@pytest.fixture(scope="module")
def backgrounds(aerial: Dataset) -> BackgroundBank:
    return BackgroundBank.build(aerial, bag_of_words, scene_captions(aerial), image_size=16, progress=False)


def test_background_bank_has_one_normalised_entry_per_image(
    aerial: Dataset, backgrounds: BackgroundBank
) -> None:
    assert len(backgrounds) == len(aerial.images)
    np.testing.assert_allclose(np.linalg.norm(backgrounds.embeddings, axis=1), 1.0, rtol=1e-6)
    assert backgrounds.pixels.shape == (len(aerial.images), 16, 16, 3)
    assert backgrounds.images(np.array([0, 3])).shape == (2, 3, 16, 16)


def test_retrieve_returns_the_nearest_caption(aerial: Dataset, backgrounds: BackgroundBank) -> None:
    queries = bag_of_words(scene_captions(aerial))
    picks = backgrounds.retrieve(queries, np.random.default_rng(0), top_k=1)
    assert picks.tolist() == list(range(len(aerial.images)))


def test_retrieve_excludes_the_image_itself(aerial: Dataset, backgrounds: BackgroundBank) -> None:
    queries = bag_of_words(scene_captions(aerial))
    ids = aerial.images["image_id"].tolist()
    scenes = aerial.images["scene"].to_numpy()
    for seed in range(5):
        picks = backgrounds.retrieve(queries, np.random.default_rng(seed), top_k=1, exclude=ids)
        assert (picks != np.arange(len(ids))).all()
        assert (scenes[picks] == scenes).all()  # the nearest other image is one of the same scene


def test_retrieve_samples_within_the_top_k(aerial: Dataset, backgrounds: BackgroundBank) -> None:
    query = bag_of_words([scene_captions(aerial)[0]]).repeat(60, axis=0)
    similarity = backgrounds.embeddings @ (query[0] / np.linalg.norm(query[0]))
    top3 = set(np.argsort(-similarity, kind="stable")[:3].tolist())
    picks = backgrounds.retrieve(query, np.random.default_rng(2), top_k=3)
    assert set(picks.tolist()) == top3
    assert picks.tolist() == backgrounds.retrieve(query, np.random.default_rng(2), top_k=3).tolist()


def test_retrieve_excludes_near_duplicate_groups(aerial: Dataset) -> None:
    bank = BackgroundBank.build(
        aerial, bag_of_words, scene_captions(aerial), image_size=8, group_by="scene", progress=False
    )
    queries = bag_of_words(scene_captions(aerial))
    picks = bank.retrieve(
        queries, np.random.default_rng(0), top_k=1, exclude=aerial.images["image_id"].tolist()
    )
    scenes = aerial.images["scene"].to_numpy()
    assert (scenes[picks] != scenes).all()


def test_retrieve_refuses_when_everything_is_excluded(tmp_path: Path) -> None:
    dataset = one_image_dataset(tmp_path, uniform_image(), [], [])
    bank = BackgroundBank.build(dataset, bag_of_words, ["a field"], image_size=8, progress=False)
    assert bank.retrieve(bag_of_words(["a field"]), np.random.default_rng(0), exclude=[None]).tolist() == [0]
    with pytest.raises(ValueError, match="only the excluded"):
        bank.retrieve(bag_of_words(["a field"]), np.random.default_rng(0), exclude=[7])


def test_background_bank_round_trips_and_refuses_an_instance_bank(
    backgrounds: BackgroundBank, bank: InstanceBank, tmp_path: Path
) -> None:
    path = tmp_path / "backgrounds.safetensors"
    backgrounds.save(path)
    loaded = BackgroundBank.load(path)
    for name in ("embeddings", "pixels", "image_ids", "groups"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(backgrounds, name))
    bank.save(tmp_path / "instances.safetensors")
    with pytest.raises(ValueError, match="not a 'ccaug.background_bank'"):
        BackgroundBank.load(tmp_path / "instances.safetensors")


# ------------------------------------------------------------------------------------------- feature cache


class CountingEncoder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> dict[str, torch.Tensor]:
        self.calls += 1
        return {"tokens": torch.arange(12.0).reshape(3, 4) * self.calls, "pooled": torch.ones(4)}


def test_feature_cache_computes_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache, encoder = FeatureCache(tmp_path), CountingEncoder()
    key = cache_key("dinov2-large", "weights-sha1", 17, 3)
    first = cache.get_or_compute(key, encoder)
    monkeypatch.setattr(torch, "load", None)  # a second read must not unpickle anything
    second = cache.get_or_compute(key, encoder)
    assert encoder.calls == 1
    assert key in cache and cache.path(key).suffix == ".safetensors"
    for name in ("tokens", "pooled"):
        torch.testing.assert_close(second[name], first[name])


def test_feature_cache_keys_map_to_separate_files(tmp_path: Path) -> None:
    cache, encoder = FeatureCache(tmp_path), CountingEncoder()
    first = cache.get_or_compute(cache_key("enc", 1, 0), encoder)
    second = cache.get_or_compute(cache_key("enc", 1, 1), encoder)
    assert encoder.calls == 2
    assert cache.path(cache_key("enc", 1, 0)) != cache.path(cache_key("enc", 1, 1))
    assert len(list(tmp_path.rglob("*.safetensors"))) == 2
    assert not torch.equal(first["tokens"], second["tokens"])


def test_feature_cache_recomputes_a_corrupted_file(tmp_path: Path) -> None:
    cache, encoder = FeatureCache(tmp_path), CountingEncoder()
    key = cache_key("enc", 5)
    cache.get_or_compute(key, encoder)
    cache.path(key).write_bytes(b"\x00garbage")
    with pytest.warns(UserWarning, match="unreadable"):
        features = cache.get_or_compute(key, encoder)
    assert encoder.calls == 2
    torch.testing.assert_close(features["tokens"], torch.arange(12.0).reshape(3, 4) * 2)
    assert cache.get_or_compute(key, encoder)["tokens"].shape == (3, 4) and encoder.calls == 2


def test_feature_cache_refuses_keys_that_are_not_file_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cache_key"):
        FeatureCache(tmp_path).get_or_compute("../escape", CountingEncoder())


def test_cache_key_separates_parts_types_and_arrays() -> None:
    assert cache_key("enc", 1, 2) == cache_key("enc", 1, 2)
    assert len(cache_key("x")) == 40
    distinct = {
        cache_key("ab", "c"),
        cache_key("a", "bc"),
        cache_key("1"),
        cache_key(1),
        cache_key(1.0),
        cache_key(True),
        cache_key(np.zeros(3, dtype=np.float32)),
        cache_key(np.zeros(3, dtype=np.float64)),
        cache_key(np.zeros((3, 1), dtype=np.float32)),
        cache_key(torch.zeros(3)),
        cache_key(torch.zeros(3, dtype=torch.bfloat16)),
    }
    assert len(distinct) == 11
    with pytest.raises(TypeError, match="cannot hash"):
        cache_key(object())
