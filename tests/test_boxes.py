import numpy as np
import pytest

from course_lib import boxes as B


def test_conversions_round_trip():
    xyxy = np.array([[10, 20, 50, 80], [0, 0, 1, 1], [3.5, 4.5, 7.25, 9.0]], dtype=np.float32)
    for fmt in ("xywh", "center"):
        back = B.convert(B.convert(xyxy, "xyxy", fmt), fmt, "xyxy")
        np.testing.assert_allclose(back, xyxy, atol=1e-5)


def test_conversion_values():
    box = np.array([[10, 20, 50, 80]], dtype=np.float32)
    np.testing.assert_allclose(B.to_xywh(box), [[10, 20, 40, 60]])
    np.testing.assert_allclose(B.to_center(box), [[30, 50, 40, 60]])
    np.testing.assert_allclose(B.to_xyxy([[30, 50, 40, 60]], "center"), box)


def test_empty_boxes_shape():
    assert B.as_boxes([]).shape == (0, 4)
    assert B.to_xywh(np.zeros((0, 4))).shape == (0, 4)
    assert B.iou_matrix(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)


def test_unknown_format_rejected():
    with pytest.raises(ValueError, match="Unknown box format"):
        B.convert([[0, 0, 1, 1]], "xyxy", "yxyx")


def test_iou_hand_cases():
    a = np.array([[0, 0, 10, 10]], dtype=np.float32)
    others = np.array(
        [
            [0, 0, 10, 10],  # identical: 1
            [5, 0, 15, 10],  # half overlap: 50 / 150
            [20, 20, 30, 30],  # disjoint: 0
            [10, 0, 20, 10],  # touching edge: 0
            [2, 2, 4, 4],  # inside: 4 / 100
        ],
        dtype=np.float32,
    )
    np.testing.assert_allclose(B.iou_matrix(a, others)[0], [1.0, 1 / 3, 0.0, 0.0, 0.04], atol=1e-6)


def test_iou_matrix_symmetric():
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 100, (6, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(1, 30, (6, 2))], axis=1)
    matrix = B.iou_matrix(boxes, boxes)
    assert matrix.shape == (6, 6)
    np.testing.assert_allclose(matrix, matrix.T, atol=1e-6)
    np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-6)


def test_nms_hand_case():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 1, 10, 11], [21, 20, 31, 30]], dtype=np.float32)
    scores = np.array([0.9, 0.95, 0.8, 0.3, 0.85])
    assert B.nms(boxes, scores, iou_threshold=0.5).tolist() == [1, 4]
    assert B.nms(boxes, scores, iou_threshold=0.9).tolist() == [1, 0, 4, 2, 3]
    assert B.nms(boxes, scores, iou_threshold=0.5, max_output=1).tolist() == [1]


def test_nms_matches_tensorflow():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    corners = rng.uniform(0, 50, (40, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 20, (40, 2))], axis=1).astype(np.float32)
    scores = rng.uniform(size=40).astype(np.float32)
    # tf.image.non_max_suppression takes (y_min, x_min, y_max, x_max).
    expected = tf.image.non_max_suppression(boxes[:, [1, 0, 3, 2]], scores, max_output_size=40, iou_threshold=0.4).numpy()
    assert B.nms(boxes, scores, 0.4).tolist() == expected.tolist()


def test_batched_nms_keeps_classes_apart():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 10, 10]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7])
    classes = np.array([0, 1, 0])
    assert B.batched_nms(boxes, scores, classes, 0.5).tolist() == [0, 1]
    assert B.nms(boxes, scores, 0.5).tolist() == [0]


def test_clip_boxes():
    clipped = B.clip_boxes([[-5, -5, 20, 30], [50, 50, 60, 60]], (25, 15, 3))
    np.testing.assert_allclose(clipped, [[0, 0, 15, 25], [15, 25, 15, 25]])


def test_detections_sorted_and_empty():
    found = B.Detections([[0, 0, 1, 1], [2, 2, 3, 3]], [1, 0], [0.2, 0.7])
    assert found.scores.tolist() == pytest.approx([0.7, 0.2])
    assert found.classes.tolist() == [0, 1]
    assert B.Detections.empty().boxes.shape == (0, 4)
    assert len(found.above(0.5)) == 1
