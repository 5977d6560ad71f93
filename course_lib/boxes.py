"""Bounding boxes: format conversions, IoU, non-maximum suppression, clipping.

Every function takes and returns boxes as ``(N, 4)`` float32 arrays in pixels.
The package format is ``"xyxy"``: ``(x_min, y_min, x_max, y_max)``, with ``x``
along columns and ``y`` along rows, the format keras-cv calls ``"xyxy"``. The
two other formats here are ``"xywh"`` (``x_min, y_min, width, height``, the
format of COCO annotations) and ``"center"`` (``cx, cy, width, height``, the
format YOLO regresses). Areas use continuous coordinates, with no ``+ 1``: a box
from 0 to 10 is 10 pixels wide, as in COCO and keras-cv.

>>> import numpy as np
>>> box = np.array([[0, 0, 10, 10]], dtype=np.float32)
>>> to_xyxy(to_center(box), "center").tolist()
[[0.0, 0.0, 10.0, 10.0]]
>>> float(iou_matrix(box, box + [5, 0, 5, 0])[0, 0])
0.3333333432674408
"""

from __future__ import annotations

import dataclasses

import numpy as np

BOX_FORMATS = ("xyxy", "xywh", "center")
"""Box formats that :func:`convert` understands."""


def as_boxes(boxes) -> np.ndarray:
    """Return ``boxes`` as an ``(N, 4)`` float32 array; an empty input gives shape ``(0, 4)``.

    Raises
    ------
    ValueError
        If the input cannot be reshaped to ``(N, 4)``.
    """
    array = np.asarray(boxes, dtype=np.float32)
    if array.size == 0:
        return np.zeros((0, 4), dtype=np.float32)
    if array.ndim == 1 and array.shape[0] == 4:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"Expected boxes of shape (N, 4) or (4,), got shape {array.shape}.")
    return array


def convert(boxes, source: str, target: str) -> np.ndarray:
    """Convert boxes between ``"xyxy"``, ``"xywh"`` and ``"center"``.

    Parameters
    ----------
    boxes : (N, 4) array_like
        Boxes in pixels, in the ``source`` format.
    source, target : {"xyxy", "xywh", "center"}

    Returns
    -------
    (N, 4) ndarray of float32
    """
    for name in (source, target):
        if name not in BOX_FORMATS:
            raise ValueError(f"Unknown box format {name!r}: use one of {BOX_FORMATS}.")
    boxes = as_boxes(boxes)
    xyxy = _to_xyxy(boxes, source)
    if target == "xyxy":
        return xyxy
    x_min, y_min, x_max, y_max = xyxy.T
    width, height = x_max - x_min, y_max - y_min
    if target == "xywh":
        return np.stack([x_min, y_min, width, height], axis=1).astype(np.float32)
    return np.stack([x_min + width / 2, y_min + height / 2, width, height], axis=1).astype(np.float32)


def _to_xyxy(boxes: np.ndarray, source: str) -> np.ndarray:
    if source == "xyxy":
        return boxes.copy()
    a, b, width, height = boxes.T
    if source == "xywh":
        return np.stack([a, b, a + width, b + height], axis=1).astype(np.float32)
    return np.stack([a - width / 2, b - height / 2, a + width / 2, b + height / 2], axis=1).astype(np.float32)


def to_xyxy(boxes, source: str) -> np.ndarray:
    """Convert boxes from ``source`` (``"xywh"`` or ``"center"``) to the package format ``"xyxy"``."""
    return convert(boxes, source, "xyxy")


def to_xywh(boxes) -> np.ndarray:
    """Convert ``"xyxy"`` boxes to ``(x_min, y_min, width, height)``."""
    return convert(boxes, "xyxy", "xywh")


def to_center(boxes) -> np.ndarray:
    """Convert ``"xyxy"`` boxes to ``(cx, cy, width, height)``."""
    return convert(boxes, "xyxy", "center")


def box_area(boxes) -> np.ndarray:
    """Return the ``(N,)`` float32 areas of ``"xyxy"`` boxes; inverted boxes have area 0."""
    boxes = as_boxes(boxes)
    width = np.clip(boxes[:, 2] - boxes[:, 0], 0, None)
    height = np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    return (width * height).astype(np.float32)


def iou_matrix(boxes_a, boxes_b) -> np.ndarray:
    """Compute the intersection over union of every pair of boxes.

    Parameters
    ----------
    boxes_a : (N, 4) array_like
        ``"xyxy"`` boxes.
    boxes_b : (M, 4) array_like
        ``"xyxy"`` boxes.

    Returns
    -------
    (N, M) ndarray of float32
        IoU in ``[0, 1]``; a pair whose union is empty (two zero-area boxes)
        has IoU 0.
    """
    a = as_boxes(boxes_a)
    b = as_boxes(boxes_b)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    sides = np.clip(bottom_right - top_left, 0, None)
    intersection = sides[..., 0] * sides[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, intersection / union, 0.0)
    return iou.astype(np.float32)


def clip_boxes(boxes, image_shape) -> np.ndarray:
    """Clip ``"xyxy"`` boxes to an image.

    Parameters
    ----------
    boxes : (N, 4) array_like
    image_shape : tuple
        ``(height, width)`` or ``(height, width, channels)``, as ``image.shape``.

    Returns
    -------
    (N, 4) ndarray of float32
        ``x`` in ``[0, width]`` and ``y`` in ``[0, height]``; a box entirely
        outside the image becomes a zero-area box on the border.
    """
    boxes = as_boxes(boxes).copy()
    height, width = image_shape[:2]
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
    return boxes


def nms(boxes, scores, iou_threshold: float = 0.5, max_output: int | None = None) -> np.ndarray:
    """Select boxes by class-agnostic non-maximum suppression (greedy, NumPy).

    The highest-scoring box is kept, every remaining box whose IoU with it is
    greater than ``iou_threshold`` is discarded, and the step repeats on what
    is left. Ties in score keep the earlier box.

    Parameters
    ----------
    boxes : (N, 4) array_like
        ``"xyxy"`` boxes.
    scores : (N,) array_like
    iou_threshold : float
        Overlap above which the lower-scoring box is suppressed.
    max_output : int, optional
        Keep at most this many boxes.

    Returns
    -------
    (K,) ndarray of int64
        Indices into ``boxes`` of the kept boxes, by decreasing score.
    """
    boxes = as_boxes(boxes)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if len(scores) != len(boxes):
        raise ValueError(f"Got {len(boxes)} boxes but {len(scores)} scores; pass one score per box.")
    order = np.argsort(-scores, kind="stable")
    overlaps = iou_matrix(boxes, boxes)
    suppressed = np.zeros(len(boxes), dtype=bool)
    keep = []
    for index in order:
        if suppressed[index]:
            continue
        keep.append(index)
        if max_output is not None and len(keep) >= max_output:
            break
        suppressed |= overlaps[index] > iou_threshold
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes, scores, classes, iou_threshold: float = 0.5, max_output: int | None = None) -> np.ndarray:
    """Select boxes by non-maximum suppression within each class.

    Boxes of different classes never suppress each other, so a face detected
    as both "with_mask" and "without_mask" keeps one box per class.

    Parameters
    ----------
    boxes : (N, 4) array_like
    scores : (N,) array_like
    classes : (N,) array_like of int
    iou_threshold : float
    max_output : int, optional
        Keep at most this many boxes over all classes, highest scores first.

    Returns
    -------
    (K,) ndarray of int64
        Indices of the kept boxes, by decreasing score.
    """
    boxes = as_boxes(boxes)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    classes = np.asarray(classes).reshape(-1)
    if not len(boxes) == len(scores) == len(classes):
        raise ValueError(f"Got {len(boxes)} boxes, {len(scores)} scores and {len(classes)} classes; pass one of each per box.")
    keep = []
    for class_id in np.unique(classes):
        members = np.flatnonzero(classes == class_id)
        keep.extend(members[nms(boxes[members], scores[members], iou_threshold)])
    keep = np.asarray(keep, dtype=np.int64)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    if max_output is not None:
        keep = keep[:max_output]
    return keep


def scale_boxes(boxes, scale_x: float, scale_y: float | None = None) -> np.ndarray:
    """Multiply ``x`` coordinates by ``scale_x`` and ``y`` coordinates by ``scale_y`` (default ``scale_x``)."""
    scale_y = scale_x if scale_y is None else scale_y
    return (as_boxes(boxes) * np.array([scale_x, scale_y, scale_x, scale_y], dtype=np.float32)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Detections:
    """The detections of one image, in the package convention.

    Attributes
    ----------
    boxes : (N, 4) ndarray of float32
        ``"xyxy"`` boxes in pixels of the original image.
    classes : (N,) ndarray of int32
        Class ids, indices into :data:`course_lib.data.records.MASK_CLASSES`.
    scores : (N,) ndarray of float32
        Confidence in ``[0, 1]``, sorted in decreasing order.

    An image with nothing detected has ``boxes.shape == (0, 4)``.
    """

    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray

    def __post_init__(self):
        boxes = as_boxes(self.boxes)
        classes = np.asarray(self.classes, dtype=np.int32).reshape(-1)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if not len(boxes) == len(classes) == len(scores):
            raise ValueError(
                f"Got {len(boxes)} boxes, {len(classes)} classes and {len(scores)} scores; "
                "a detection needs one of each."
            )
        order = np.argsort(-scores, kind="stable")
        object.__setattr__(self, "boxes", boxes[order])
        object.__setattr__(self, "classes", classes[order])
        object.__setattr__(self, "scores", scores[order])

    @classmethod
    def empty(cls) -> "Detections":
        """Return detections of an image where nothing was found."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.int32), np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.scores)

    def above(self, score_threshold: float) -> "Detections":
        """Return the detections whose score is at least ``score_threshold``."""
        keep = self.scores >= score_threshold
        return Detections(self.boxes[keep], self.classes[keep], self.scores[keep])

    def suppress(self, iou_threshold: float, per_class: bool = True) -> "Detections":
        """Return the detections left by NMS at ``iou_threshold`` (within each class unless ``per_class`` is False)."""
        if per_class:
            keep = batched_nms(self.boxes, self.scores, self.classes, iou_threshold)
        else:
            keep = nms(self.boxes, self.scores, iou_threshold)
        return Detections(self.boxes[keep], self.classes[keep], self.scores[keep])


# --- exercises --------------------------------------------------------------------

IOU_EXERCISE_BOXES = (np.array([10, 10, 50, 50], np.float32), np.array([30, 20, 70, 60], np.float32))
"""The two ``"xyxy"`` boxes of :func:`iou_exercise`."""

NMS_EXERCISE_BOXES = np.array(
    [[10, 10, 50, 50], [12, 12, 52, 52], [60, 10, 100, 50], [30, 30, 70, 70], [62, 8, 102, 48]],
    dtype=np.float32,
)
NMS_EXERCISE_SCORES = np.array([0.80, 0.90, 0.75, 0.60, 0.70], dtype=np.float32)
"""Boxes and scores of :func:`nms_exercise`; the IoU threshold is 0.5."""


def iou_exercise():
    """Return an exercise: the IoU of the two boxes in :data:`IOU_EXERCISE_BOXES`."""
    from .exercises import Exercise, IncorrectAnswer, expect_number

    first, second = IOU_EXERCISE_BOXES
    intersection = 20.0 * 30.0
    union = 1600.0 + 1600.0 - intersection
    expected = intersection / union

    def check(answer):
        value = float(answer)
        if abs(value - intersection) < 1e-3:
            raise IncorrectAnswer(f"{value:g} is the intersection area in pixels; IoU divides it by the area of the union.")
        if abs(value - intersection / 1600.0) < 1e-4:
            raise IncorrectAnswer("you divided the intersection by the area of one box; divide by the union of both boxes.")
        if abs(value - intersection / 3200.0) < 1e-4:
            raise IncorrectAnswer("the union is area A + area B minus the intersection, which the sum of the areas counts twice.")
        if not 0.0 <= value <= 1.0:
            raise IncorrectAnswer(f"IoU is a ratio between 0 and 1, got {value:g}.")
        expect_number(value, expected, what="the IoU", atol=1e-3)
        return f"IoU = {intersection:.0f} / {union:.0f} = {expected:.3f}."

    return Exercise(
        name="IoU of two boxes",
        checker=check,
        hint="Intersection: overlap of the x ranges times overlap of the y ranges (0 if either is negative). "
        "Union: area A + area B - intersection.",
        solution="""
        (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = IOU_EXERCISE_BOXES
        overlap_w = max(0, min(ax1, bx1) - max(ax0, bx0))
        overlap_h = max(0, min(ay1, by1) - max(ay0, by0))
        intersection = overlap_w * overlap_h
        union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - intersection
        answer = intersection / union
        """,
    )


def nms_exercise(iou_threshold: float = 0.5):
    """Return an exercise: the indices that greedy NMS keeps from :data:`NMS_EXERCISE_BOXES`."""
    from .exercises import Exercise, IncorrectAnswer

    expected = nms(NMS_EXERCISE_BOXES, NMS_EXERCISE_SCORES, iou_threshold).tolist()
    overlaps = iou_matrix(NMS_EXERCISE_BOXES, NMS_EXERCISE_BOXES)

    def check(answer):
        try:
            kept = [int(i) for i in np.asarray(answer).reshape(-1)]
        except (TypeError, ValueError):
            raise IncorrectAnswer(f"expected a list of box indices, got {answer!r}.") from None
        for index in kept:
            if not 0 <= index < len(NMS_EXERCISE_BOXES):
                raise IncorrectAnswer(f"index {index} is not a box; the indices run from 0 to {len(NMS_EXERCISE_BOXES) - 1}.")
        if len(set(kept)) != len(kept):
            raise IncorrectAnswer(f"{kept} lists a box twice; each kept box appears once.")
        for index in kept:
            if index not in expected:
                stronger = [j for j in expected if NMS_EXERCISE_SCORES[j] > NMS_EXERCISE_SCORES[index] and overlaps[index, j] > iou_threshold]
                if stronger:
                    j = stronger[0]
                    raise IncorrectAnswer(
                        f"box {index} should be suppressed: it overlaps the kept, higher-scoring box {j} "
                        f"with IoU {overlaps[index, j]:.2f} > {iou_threshold}."
                    )
                raise IncorrectAnswer(f"box {index} should be suppressed.")
        for index in expected:
            if index not in kept:
                raise IncorrectAnswer(
                    f"box {index} is missing: no kept box with a higher score overlaps it by more than IoU {iou_threshold}. "
                    "A suppressed box cannot suppress others."
                )
        if kept != expected:
            raise IncorrectAnswer(f"the right boxes, but list them by decreasing score: {expected}.")
        return f"NMS keeps {expected}."

    return Exercise(
        name="Non-maximum suppression",
        checker=check,
        hint="Sort by score. Keep the best box, drop every remaining box with IoU above the threshold with it, repeat.",
        solution="""
        order = list(np.argsort(-NMS_EXERCISE_SCORES))
        answer = []
        while order:
            best = order.pop(0)
            answer.append(int(best))
            order = [i for i in order if iou_matrix(NMS_EXERCISE_BOXES[best], NMS_EXERCISE_BOXES[i])[0, 0] <= 0.5]
        """,
    )
