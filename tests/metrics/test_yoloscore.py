"""YOLOScore: a detector trained on real images, scored on generated images against their layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ccaug.data.formats import read_dataset, write_dataset
from ccaug.datasets.aerial import make_aerial
from ccaug.detect import DetectorSettings
from ccaug.metrics.yoloscore import yolo_score

TINY = DetectorSettings(epochs=2, imgsz=128, batch=4, workers=0)


@pytest.fixture(scope="module")
def aerial(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("real") / "aerial"
    make_aerial(folder, n=16, size=128, seed=0, val_fraction=0.25, progress=False)
    return folder


@pytest.fixture(scope="module")
def real_val_as_generated(aerial, tmp_path_factory) -> Path:
    """The real validation images with their own labels, written as if they were a generated set."""
    folder = tmp_path_factory.mktemp("generated") / "val-only"
    write_dataset(read_dataset(aerial, "dota").split("val"), folder, "dota")
    return folder


@pytest.fixture(scope="module")
def scored(aerial, real_val_as_generated, tmp_path_factory):
    out = tmp_path_factory.mktemp("score") / "yoloscore"
    return yolo_score(aerial, real_val_as_generated, out, settings=TINY, real_format="dota"), out


def test_real_val_images_against_their_own_labels_score_the_detector_val_map(scored, real_val_as_generated):
    score, _ = scored
    assert score.synthetic.map50 == pytest.approx(score.real.map50, abs=1e-9)
    assert score.synthetic.map50_95 == pytest.approx(score.real.map50_95, abs=1e-9)
    assert score.synthetic.per_class.keys() == score.real.per_class.keys()
    for name, entry in score.synthetic.per_class.items():
        assert entry["ap50"] == pytest.approx(score.real.per_class[name]["ap50"], abs=1e-9)
    # the generated set's labels were read and matched class by class (a 2-epoch detector may score 0 here)
    val = read_dataset(real_val_as_generated, "dota").instances["category"].astype(str).value_counts()
    assert {name: entry["instances"] for name, entry in score.synthetic.per_class.items()} == val.to_dict()


def test_the_score_is_written_as_json_and_markdown(scored):
    score, out = scored
    saved = json.loads((out / "yoloscore.json").read_text())
    assert saved["synthetic"]["map50"] == score.synthetic.map50
    assert saved["synthetic_images"] == 4
    assert "real val (ceiling)" in (out / "yoloscore.md").read_text()


def test_a_given_detector_is_used_as_it_is(scored, aerial, real_val_as_generated, tmp_path):
    score, _ = scored
    again = yolo_score(aerial, real_val_as_generated, tmp_path / "again", detector=score.detector, settings=TINY)
    assert not (tmp_path / "again" / "detector").exists()
    assert again.real.map50 == pytest.approx(score.real.map50, abs=1e-9)


def test_a_detector_that_is_not_a_local_file_is_refused(aerial, real_val_as_generated, tmp_path):
    with pytest.raises(ValueError, match="local .pt file"):
        yolo_score(aerial, real_val_as_generated, tmp_path / "x", detector=tmp_path / "yolov8n.pt", settings=TINY)


def test_oriented_boxes_score_offline(aerial, real_val_as_generated, tmp_path, no_network):
    settings = DetectorSettings(task="obb", epochs=1, imgsz=128, batch=4, workers=0)
    score = yolo_score(aerial, real_val_as_generated, tmp_path / "obb", settings=settings)
    assert no_network == []
    assert score.synthetic.map50 == pytest.approx(score.real.map50, abs=1e-9)
