import math

import numpy as np
import pytest

from course_lib import yolo
from course_lib.data import load_fmd
from course_lib.images import read_image

SMALL = yolo.YoloConfig(image_size=128, stackwise_channels=(16, 32, 64, 128), stackwise_depth=(1, 1, 1, 1), max_boxes=64)


@pytest.fixture(scope="module")
def records():
    records, _ = load_fmd()
    return records[:4]


@pytest.fixture(scope="module")
def trained(records):
    model = yolo.build_detector(SMALL)
    history = yolo.train_detector(model, records, epochs=1, batch_size=4, warmup_epochs=0)
    return model, history


def test_letterbox_scale_and_padding():
    image = np.full((100, 200, 3), 7, dtype=np.uint8)
    canvas, scale = yolo.letterbox(image, 128)
    assert canvas.shape == (128, 128, 3)
    assert scale == pytest.approx(0.64)
    assert canvas[0, 0, 0] == 7
    assert canvas[127, 0, 0] == yolo.PAD_VALUE


def test_pad_boxes_marks_padding():
    boxes, classes = yolo.pad_boxes([np.array([[1, 2, 3, 4]], np.float32), np.zeros((0, 4), np.float32)], [np.array([2]), np.array([])], 3)
    assert boxes.shape == (2, 3, 4)
    assert classes.tolist() == [[2, -1, -1], [-1, -1, -1]]
    assert (boxes[0, 1:] == -1).all()


def test_dataset_batches_are_dense(records):
    examples = yolo.prepare_examples(records, SMALL.image_size)
    images, targets = next(iter(yolo.make_dataset(examples, SMALL, batch_size=4, augment=True)))
    assert images.shape == (4, 128, 128, 3)
    assert float(images.numpy().max()) <= 1.0
    assert targets["boxes"].shape == (4, SMALL.max_boxes, 4)
    assert targets["classes"].shape == (4, SMALL.max_boxes)
    classes = targets["classes"].numpy()
    assert set(np.unique(classes)) <= {-1.0, 0.0, 1.0, 2.0}
    assert (classes >= 0).sum() > 0


def test_one_training_step_loss_finite(trained):
    _, history = trained
    assert len(history["loss"]) == 1
    assert math.isfinite(history["loss"][0])


def test_predict_in_image_pixels(trained, records):
    model, _ = trained
    images = [read_image(r.image_path) for r in records[:2]]
    results = yolo.predict_detector(model, images)
    assert len(results) == 2
    for image, found in zip(images, results):
        assert found.boxes.shape[1] == 4
        assert (found.boxes[:, [0, 2]] <= image.shape[1]).all()
        assert (found.boxes[:, [1, 3]] <= image.shape[0]).all()
        assert (found.boxes >= 0).all()
        assert set(found.classes.tolist()) <= {0, 1, 2}


def test_save_load_round_trip(trained, records, tmp_path):
    model, _ = trained
    images = [read_image(r.image_path) for r in records[:2]]
    before = yolo.predict_detector(model, images)
    folder = yolo.save_detector(model, tmp_path / "detector")
    loaded = yolo.load_detector(folder)
    assert loaded.course_config == SMALL
    after = yolo.predict_detector(loaded, images)
    for first, second in zip(before, after):
        np.testing.assert_allclose(first.boxes, second.boxes, atol=1e-3)
        np.testing.assert_allclose(first.scores, second.scores, atol=1e-5)
        np.testing.assert_array_equal(first.classes, second.classes)


def test_load_missing_folder_fails(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_detector"):
        yolo.load_detector(tmp_path)


def test_nothing_found_gives_empty(trained, tmp_path):
    model, _ = trained
    strict = yolo.YoloConfig(**{**SMALL.__dict__, "confidence_threshold": 0.9999})
    yolo.save_detector(model, tmp_path / "d")
    (tmp_path / "d" / yolo.CONFIG_FILE).write_text(strict.to_json())
    found = yolo.predict_detector(yolo.load_detector(tmp_path / "d"), [np.zeros((90, 120, 3), np.uint8)])[0]
    assert found.boxes.shape == (0, 4)
    assert found.scores.shape == (0,)


def test_image_size_must_be_multiple_of_32():
    with pytest.raises(ValueError, match="multiple of 32"):
        yolo.YoloConfig(image_size=100)
