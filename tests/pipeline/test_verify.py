"""The verification filter of ``ccaug synth --verify``: one-to-one matching, the detector wrapper, its training."""

from __future__ import annotations

import shutil
import socket
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from ccaug.data.formats import read_dataset
from ccaug.data.geometry import hbb_to_polygon, le90_to_polygon
from ccaug.datasets.aerial import make_aerial
from ccaug.detect import DetectorSettings
from ccaug.pipeline.verify import InstanceVerifier, _with_filled_epochs, match_instances, verify_detector

TINY = DetectorSettings(epochs=1, imgsz=64, batch=4, workers=0)
FILLED_EPOCH = 10  # the verifier's images per epoch in these tests: more than the aerial fixture's train images
# The detector's classes in another order than the layouts', with one the layouts do not use.
CATEGORIES = ["ship", "storage tank", "plane"]
DETECTOR_NAMES = {0: "plane", 1: "vehicle", 2: "ship", 3: "storage tank"}
# What the conftest's `no_network` blocks; it is per test, and the trained detector is shared by the module.
NETWORK_EXITS = [
    (socket, "getaddrinfo"),
    (socket, "create_connection"),
    (socket.socket, "connect"),
    (socket.socket, "connect_ex"),
]


def boxes(*hbbs: tuple[float, float, float, float]) -> np.ndarray:
    return hbb_to_polygon(np.array(hbbs, dtype=np.float64).reshape(-1, 4))


def match(true_labels, true_polygons, pred_labels, pred_polygons, pred_scores=None, **options) -> list[bool]:
    scores = np.ones(len(pred_labels)) if pred_scores is None else np.asarray(pred_scores)
    found = match_instances(
        np.array(true_labels), true_polygons, np.array(pred_labels), pred_polygons, scores, **options
    )
    assert found.dtype == bool and found.shape == (len(true_labels),)
    return found.tolist()


# --- match_instances -------------------------------------------------------------------------------------


@pytest.mark.parametrize("oriented", [False, True])
def test_predictions_on_the_instances_find_them(oriented):
    instances = boxes((0, 0, 10, 10), (20, 20, 40, 30), (50, 0, 60, 8))
    assert match([0, 1, 1], instances, [1, 0, 1], instances[[2, 0, 1]], oriented=oriented) == [
        True,
        True,
        True,
    ]


def test_a_prediction_of_another_class_finds_nothing():
    instances = boxes((0, 0, 10, 10), (20, 20, 40, 30))
    assert match([0, 1], instances, [1, 0], instances) == [False, False]


@pytest.mark.parametrize("oriented", [False, True])
def test_iou_at_or_above_the_threshold_finds_and_just_below_does_not(oriented):
    instance = boxes((0, 0, 10, 10))  # a prediction (0, 0, 10, h) has IoU h / 10 with it
    for height, expected in [(4.9, False), (5.0, True), (5.1, True)]:
        assert match([0], instance, [0], boxes((0, 0, 10, height)), oriented=oriented) == [expected], height
    assert match([0], instance, [0], boxes((0, 0, 10, 7.4)), iou=0.75) == [False]
    assert match([0], instance, [0], boxes((0, 0, 10, 7.6)), iou=0.75) == [True]


def test_one_prediction_finds_at_most_one_instance():
    instances = boxes((0, 0, 10, 10), (0, 0, 10, 10), (1, 0, 11, 10))
    assert sum(match([0, 0, 0], instances, [0], instances[:1])) == 1
    assert sum(match([0, 0, 0], instances, [0, 0], instances[:2])) == 2
    # the prediction takes its best-overlapping instance, not the first
    assert match([0, 0], boxes((0, 0, 10, 10), (1, 0, 11, 10)), [0], boxes((1, 0, 11, 10))) == [False, True]


def test_the_higher_scoring_prediction_is_matched_first():
    # Instances A = [0, 10] and B = [3, 13] along x. Prediction H = [2, 12] overlaps A (IoU 0.67) and B (IoU
    # 0.82); prediction L = [4, 13] overlaps only B (IoU 0.9; 0.46 with A). Taken first, H takes B and L is
    # left with nothing; taken first, L takes B and H still finds A.
    instances = boxes((0, 0, 10, 10), (3, 0, 13, 10))
    predictions = boxes((2, 0, 12, 10), (4, 0, 13, 10))
    assert match([0, 0], instances, [0, 0], predictions, [0.9, 0.3]) == [False, True]
    assert match([0, 0], instances, [0, 0], predictions, [0.3, 0.9]) == [True, True]
    assert match([0, 0], instances, [0, 0], predictions[::-1], [0.3, 0.9]) == [
        False,
        True,
    ]  # order is by score


def test_a_thin_box_at_45_degrees_is_found_by_its_bounding_box_but_not_by_its_polygon():
    thin = le90_to_polygon(np.array([[50.0, 50.0, 40.0, 4.0, np.pi / 4]]))
    crossing = le90_to_polygon(np.array([[50.0, 50.0, 40.0, 4.0, -np.pi / 4]]))  # same bounding box
    assert match([0], thin, [0], crossing, oriented=False) == [True]
    assert match([0], thin, [0], crossing, oriented=True) == [False]
    assert match([0], thin, [0], thin, oriented=True) == [True]


@pytest.mark.parametrize("oriented", [False, True])
def test_empty_inputs_give_an_array_per_instance(oriented):
    some = boxes((0, 0, 10, 10), (20, 20, 30, 30))
    nothing = np.zeros((0, 8))
    assert match([0, 1], some, [], nothing, oriented=oriented) == [False, False]
    assert match([], nothing, [0, 1], some, oriented=oriented) == []
    assert match([], nothing, [], nothing, oriented=oriented) == []
    assert match([], np.zeros(0), [], np.zeros(0), oriented=oriented) == []


def test_labels_and_polygons_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="polygons of shape"):
        match_instances(np.array([0, 1]), boxes((0, 0, 1, 1)), np.array([0]), boxes((0, 0, 1, 1)), np.ones(1))
    with pytest.raises(ValueError, match="scores"):
        match_instances(np.array([0]), boxes((0, 0, 1, 1)), np.array([0]), boxes((0, 0, 1, 1)), np.ones(2))


# --- a tiny real set, one detector trained on it, and untrained detectors with chosen class names ---------


@pytest.fixture(scope="module")
def aerial(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("real") / "aerial"
    make_aerial(folder, n=6, size=64, seed=0, val_fraction=0.34, workers=1, progress=False)
    return folder


@pytest.fixture(scope="module")
def trained(aerial, tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """(weights, run folder, network attempts while training): the conftest's `no_network`, module-wide."""
    out = tmp_path_factory.mktemp("verify") / "detector"
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise OSError("network blocked in tests")

    with pytest.MonkeyPatch.context() as patch:
        for owner, name in NETWORK_EXITS:
            patch.setattr(owner, name, refuse)
        weights = verify_detector(aerial, "dota", out, TINY, min_images_seen=FILLED_EPOCH)
    return weights, out, attempts


@pytest.fixture(scope="module")
def renamed(tmp_path_factory) -> dict[str, Path]:
    """Untrained detect and obb weights whose classes are `DETECTOR_NAMES` (predictions are faked with them)."""
    from ccaug.detect.offline import use_offline_ultralytics

    use_offline_ultralytics()
    from ultralytics import YOLO

    folder = tmp_path_factory.mktemp("renamed")
    files = {}
    for task, source in [("detect", "yolov8n.yaml"), ("obb", "yolov8n-obb.yaml")]:
        model = YOLO(source)
        model.model.names = dict(DETECTOR_NAMES)
        files[task] = folder / f"{task}.pt"
        model.save(files[task])
    return files


def real_val_images(aerial: Path) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], list[str]]:
    dataset = read_dataset(aerial, "dota")
    val = dataset.split("val")
    images, labels, polygons = [], [], []
    for image, instances in val.iter_images():
        images.append(np.asarray(Image.open(val.image_path(image)).convert("RGB")))
        labels.append(instances["category"].cat.codes.to_numpy())
        polygons.append(val.replace(instances=instances).polygons)
    return np.stack(images), labels, polygons, list(dataset.categories)


def faked_predict(monkeypatch, verifier: InstanceVerifier, results: list) -> list[tuple[list, dict]]:
    calls = []

    def predict(source, **options):
        calls.append((source, options))
        return results

    monkeypatch.setattr(verifier.model, "predict", predict)
    return calls


def result(verifier: InstanceVerifier, **predictions):
    from ultralytics.engine.results import Results

    return Results(np.zeros((64, 64, 3), np.uint8), "image.png", verifier.model.names, **predictions)


# --- verify_detector ---------------------------------------------------------------------------------------


def test_the_verification_detector_is_trained_offline_once_and_then_reused(trained, aerial):
    weights, out, attempts = trained
    assert attempts == []
    assert weights == out / "weights" / "last.pt" and weights.is_file()
    stamp = weights.stat().st_mtime_ns
    assert verify_detector(aerial, "dota", out, TINY, min_images_seen=FILLED_EPOCH) == weights
    assert weights.stat().st_mtime_ns == stamp


def test_a_scarce_real_set_is_repeated_within_each_epoch_of_the_verifier(trained, aerial):
    _, out, _ = trained
    train_images = {path.resolve() for path in (out / "data" / "images" / "train").iterdir()}
    listed = [Path(line) for line in (out / "data" / "train-epoch.txt").read_text().splitlines()]
    assert len(listed) == FILLED_EPOCH and set(listed) == train_images
    counts = [listed.count(path) for path in train_images]
    assert min(counts) >= FILLED_EPOCH // len(train_images) and max(counts) - min(counts) <= 1
    trained_on = yaml.safe_load((out / "args.yaml").read_text())["data"]
    assert yaml.safe_load(Path(trained_on).read_text())["train"] == str((out / "data" / "train-epoch.txt").resolve())


def test_reusing_a_verifier_trained_on_unfilled_epochs_warns_and_reusing_a_filled_one_does_not(
    trained, aerial, tmp_path
):
    weights, out, _ = trained
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert verify_detector(aerial, "dota", out, TINY, min_images_seen=FILLED_EPOCH) == weights
    old = tmp_path / "old-verifier"
    shutil.copytree(out, old)
    args = yaml.safe_load((old / "args.yaml").read_text())
    (old / "args.yaml").write_text(yaml.safe_dump({**args, "data": str(old / "data" / "data.yaml")}))
    with pytest.warns(UserWarning, match="once per epoch.*Delete the folder"):
        assert verify_detector(aerial, "dota", old, TINY, min_images_seen=FILLED_EPOCH) == old / "weights" / "last.pt"


def test_a_real_set_larger_than_the_epoch_is_listed_once(trained, tmp_path):
    _, out, _ = trained
    data_yaml = tmp_path / "score.yaml"  # its `path` is absolute: the copy points at the same images
    data_yaml.write_text((out / "data" / "score.yaml").read_text())
    filled = _with_filled_epochs(data_yaml, epoch_size=1)
    listed = Path(yaml.safe_load(filled.read_text())["train"]).read_text().splitlines()
    assert sorted(listed) == sorted(str(path.resolve()) for path in (out / "data" / "images" / "train").iterdir())


def test_a_real_set_without_val_images_is_refused(tmp_path):
    make_aerial(tmp_path / "train-only", n=1, size=64, seed=0, val_fraction=0.0, workers=1, progress=False)
    with pytest.raises(ValueError, match="no 'val' images"):
        verify_detector(tmp_path / "train-only", "dota", tmp_path / "out", TINY)
    assert not (tmp_path / "out" / "weights").exists()


# --- InstanceVerifier --------------------------------------------------------------------------------------


def test_found_gives_one_bool_array_per_image_offline(trained, aerial, no_network):
    images, labels, polygons, categories = real_val_images(aerial)
    labels.append(np.zeros(0, dtype=np.int64))  # and an image with nothing in it
    polygons.append(np.zeros((0, 8)))
    images = np.concatenate([images, np.zeros_like(images[:1])])
    verifier = InstanceVerifier(trained[0], categories, imgsz=64)
    found = verifier.found(images, labels, polygons)
    assert no_network == []
    assert [array.shape for array in found] == [(len(array),) for array in labels]
    assert all(array.dtype == bool for array in found)
    assert verifier.found(images[:0], [], []) == []


def test_images_reach_ultralytics_as_bgr_copies_in_one_call(trained, aerial, monkeypatch, no_network):
    images, labels, polygons, categories = real_val_images(aerial)
    images[0, :8, :8] = (255, 0, 0)  # a red corner, so that the channel order shows
    verifier = InstanceVerifier(trained[0], categories, imgsz=64, conf=0.4, device="cpu")
    calls = []
    predict = verifier.model.predict

    def spy(source, **options):
        calls.append((source, options))
        return predict(source, **options)

    monkeypatch.setattr(verifier.model, "predict", spy)
    verifier.found(images, labels, polygons)
    assert len(calls) == 1
    source, options = calls[0]
    assert isinstance(source, list) and len(source) == len(images)
    for received, image in zip(source, images):
        assert received.flags.c_contiguous
        np.testing.assert_array_equal(received, image[..., ::-1])
    assert tuple(source[0][0, 0]) == (0, 0, 255)
    assert options == {"imgsz": 64, "conf": 0.4, "device": "cpu", "verbose": False}


def test_predicted_classes_are_mapped_onto_the_categories_by_name(renamed, monkeypatch):
    verifier = InstanceVerifier(renamed["detect"], CATEGORIES, iou=0.5)
    # ship, plane and storage tank instances; the detector predicts "ship" (2) and "plane" (0) on the first
    # two and "vehicle" (1), a class the layouts do not have, on the storage tank.
    polygons = boxes((0, 0, 10, 10), (20, 20, 40, 30), (40, 40, 60, 60))
    predictions = torch.tensor([[0, 0, 10, 10, 0.9, 2], [20, 20, 40, 30, 0.8, 0], [40, 40, 60, 60, 0.7, 1]])
    calls = faked_predict(monkeypatch, verifier, [result(verifier, boxes=predictions)])
    found = verifier.found(np.zeros((1, 64, 64, 3), np.uint8), [np.array([0, 2, 1])], [polygons])
    assert len(calls) == 1
    assert found[0].tolist() == [True, True, False]


def test_oriented_predictions_are_matched_polygon_to_polygon(renamed, monkeypatch):
    verifier = InstanceVerifier(renamed["obb"], CATEGORIES, task="obb")
    thin = le90_to_polygon(np.array([[30.0, 30.0, 40.0, 4.0, np.pi / 4], [30.0, 30.0, 40.0, 4.0, np.pi / 4]]))
    # "ship" on the first thin box; "plane" on the box crossing the second, with the same bounding box
    predictions = torch.tensor([[30, 30, 40, 4, np.pi / 4, 0.9, 2], [30, 30, 40, 4, -np.pi / 4, 0.9, 0]])
    faked_predict(monkeypatch, verifier, [result(verifier, obb=predictions)])
    found = verifier.found(np.zeros((1, 64, 64, 3), np.uint8), [np.array([0, 2])], [thin])
    assert found[0].tolist() == [True, False]


def test_a_category_the_detector_does_not_know_is_refused(renamed):
    with pytest.raises(ValueError, match=r"'submarine'.*") as error:
        InstanceVerifier(renamed["detect"], ["ship", "submarine"])
    assert "detect.pt" in str(error.value)


def test_weights_of_another_task_are_refused(renamed):
    with pytest.raises(ValueError, match="'obb' model, not 'detect'"):
        InstanceVerifier(renamed["obb"], CATEGORIES, task="detect")


def test_weights_that_are_not_a_local_file_are_refused_without_a_download(tmp_path, no_network):
    with pytest.raises(ValueError, match="local file"):
        InstanceVerifier(tmp_path / "yolov8n.pt", CATEGORIES)
    assert no_network == []
