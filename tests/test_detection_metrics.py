import math

import numpy as np
import pytest

from course_lib.boxes import Detections
from course_lib.data import MASK_CLASSES, load_fmd
from course_lib.metrics_detection import evaluate_detections, split_records


def test_perfect_detections_score_one():
    truth = [
        (np.array([[0, 0, 10, 10], [20, 20, 40, 40]]), np.array([0, 1])),
        (np.array([[5, 5, 25, 25]]), np.array([2])),
    ]
    found = [Detections(b, l, np.full(len(l), 0.9)) for b, l in truth]
    scores = evaluate_detections(truth, found)
    assert scores.map50 == pytest.approx(1.0)
    assert scores.map50_95 == pytest.approx(1.0)
    assert all(value == pytest.approx(1.0) for value in scores.ap50.values())


def test_hand_computed_ap():
    # Two ground-truth faces; detections by score are TP, FP, TP.
    # Precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1. COCO interpolation gives
    # precision 1 at the 51 recall levels 0.00-0.50 and 2/3 at the 50 levels 0.51-1.00.
    truth = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([0, 0]))]
    found = [Detections([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], [0, 0, 0], [0.9, 0.8, 0.7])]
    scores = evaluate_detections(truth, found)
    assert scores.ap50["with_mask"] == pytest.approx((51 + 50 * 2 / 3) / 101)


def test_class_zero_counts():
    truth = [(np.array([[0, 0, 10, 10]]), np.array([0])), (np.array([[0, 0, 10, 10]]), np.array([1]))]
    # Class 0 is missed (its face is detected as class 1, at a lower score than
    # the true class-1 face), so class 0 has AP 0 and class 1 has AP 1.
    found = [Detections([[0, 0, 10, 10]], [1], [0.5]), Detections([[0, 0, 10, 10]], [1], [0.9])]
    scores = evaluate_detections(truth, found, class_names=MASK_CLASSES[:2])
    assert scores.ap50["with_mask"] == pytest.approx(0.0)
    assert scores.ap50["without_mask"] == pytest.approx(1.0)
    assert scores.map50 == pytest.approx(0.5)


def test_class_without_ground_truth_is_nan():
    truth = [(np.array([[0, 0, 10, 10]]), np.array([0]))]
    found = [Detections([[0, 0, 10, 10]], [0], [0.9])]
    scores = evaluate_detections(truth, found)
    assert math.isnan(scores.ap50["mask_weared_incorrect"])
    assert any(note.startswith("mask_weared_incorrect:") for note in scores.notes)
    assert scores.every_class_evaluated
    assert scores.map50 == pytest.approx(1.0)


def test_empty_detections_score_zero():
    truth = [(np.array([[0, 0, 10, 10]]), np.array([0]))]
    scores = evaluate_detections(truth, [Detections.empty()])
    assert scores.ap50["with_mask"] == pytest.approx(0.0)


def test_length_mismatch_rejected():
    with pytest.raises(ValueError, match="one Detections per image"):
        evaluate_detections([(np.zeros((0, 4)), np.zeros(0))], [])


def test_out_of_range_class_rejected():
    truth = [(np.array([[0, 0, 10, 10]]), np.array([0]))]
    with pytest.raises(ValueError, match="outside the valid class ids"):
        evaluate_detections(truth, [Detections([[0, 0, 10, 10]], [3], [0.9])])


def test_split_is_fixed_and_disjoint():
    records, _ = load_fmd()
    train, test = split_records(records, test_fraction=0.2, seed=0)
    again_train, again_test = split_records(list(reversed(records)), test_fraction=0.2, seed=0)
    assert [r.image_path for r in test] == [r.image_path for r in again_test]
    assert len(train) + len(test) == len(records)
    assert not {r.image_path for r in train} & {r.image_path for r in test}
    assert len(test) == round(0.2 * len(records))
