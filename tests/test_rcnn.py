import numpy as np
import pytest

from course_lib import rcnn, two_stage
from course_lib.data import load_fmd
from course_lib.images import read_image


@pytest.fixture(scope="module")
def records():
    records, _ = load_fmd()
    return records


def test_proposals_in_range(records):
    image = read_image(records[0].image_path)
    proposals = rcnn.selective_search(image, max_side=200, max_proposals=300)
    height, width = image.shape[:2]
    assert proposals.dtype == np.float32
    assert 0 < len(proposals) <= 300
    assert (proposals[:, :2] >= 0).all()
    assert (proposals[:, 2] <= width).all()
    assert (proposals[:, 3] <= height).all()
    assert (proposals[:, 2] > proposals[:, 0]).all()
    assert (proposals[:, 3] > proposals[:, 1]).all()


def test_proposal_recall_hand_case():
    truth = np.array([[0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    assert rcnn.proposal_recall(np.array([[0, 0, 10, 11]], np.float32), truth) == pytest.approx(0.5)
    assert np.isnan(rcnn.proposal_recall(truth, np.zeros((0, 4))))


def test_label_proposals_thresholds():
    truth = np.array([[0, 0, 10, 10]], np.float32)
    proposals = np.array([[0, 0, 10, 10], [0, 0, 10, 25], [50, 50, 60, 60]], np.float32)
    # IoU 1 -> class 2; IoU 0.4 -> ignored (-1); IoU 0 -> background 3.
    assert rcnn.label_proposals(proposals, truth, np.array([2]), background=3).tolist() == [2, -1, 3]


def test_warp_regions_shape():
    image = np.zeros((40, 60, 3), np.uint8)
    crops = rcnn.warp_regions(image, np.array([[0, 0, 5, 30], [10, 10, 60, 40]], np.float32), size=24)
    assert crops.shape == (2, 24, 24, 3)
    assert rcnn.warp_regions(image, np.zeros((0, 4)), size=24).shape == (0, 24, 24, 3)


def test_mini_rcnn_fit_and_detect(records):
    model = rcnn.MiniRCNN(max_side=160, max_proposals=150, background_per_image=20).fit(records[:3], epochs=1)
    image = read_image(records[3].image_path)
    found, times = model.detect(image, score_threshold=0.0)
    assert found.boxes.shape[1] == 4
    assert set(found.classes.tolist()) <= {0, 1, 2}
    assert times.regions > 0
    assert times.proposals > 0
    assert times.features > 0
    classes, scores = model.classify_crops([image[:30, :30], image[10:50, 20:40]])
    assert classes.shape == (2,)
    assert scores.shape == (2,)
    assert ((scores >= 0) & (scores <= 1)).all()


def _always_without_mask(crops):
    return np.ones(len(crops), np.int32), np.full(len(crops), 0.5, np.float32)


def test_two_stage_no_face_is_empty():
    found = two_stage.detect_and_classify(np.full((120, 160, 3), 128, np.uint8), _always_without_mask)
    assert found.boxes.shape == (0, 4)
    assert found.classes.shape == (0,)


@pytest.mark.parametrize("detector", ["mtcnn", "haar"])
def test_two_stage_on_fmd_image(records, detector):
    record = max(records[:20], key=lambda r: len(r.labels))
    image = read_image(record.image_path)
    found = two_stage.detect_and_classify(image, _always_without_mask, detector=detector, upscale=2.0)
    assert len(found) > 0
    assert (found.classes == 1).all()
    assert (found.boxes[:, [0, 2]] <= image.shape[1]).all()
    assert (found.boxes[:, [1, 3]] <= image.shape[0]).all()
    assert (found.scores <= 0.5).all()


def test_two_stage_rejects_bad_classifier(records):
    record = max(records[:20], key=lambda r: len(r.labels))
    with pytest.raises(ValueError, match="one class and one score per crop"):
        two_stage.detect_and_classify(read_image(record.image_path), lambda crops: (np.zeros(0), np.zeros(0)))
