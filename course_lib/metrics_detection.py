"""Detection metrics: per-class average precision and mAP, computed by pycocotools.

The numbers are COCO's. For each class, detections are sorted by score and
greedily matched to unmatched ground-truth boxes of the same image at an IoU
threshold. Average precision (AP) is the mean of the interpolated precision
at the 101 recall levels 0, 0.01, ..., 1. This is COCO's interpolation, which
differs slightly from PASCAL VOC's all-point AP. ``AP@0.5`` uses the IoU threshold 0.5;
``AP@[.5:.95]`` averages the ten thresholds 0.50, 0.55, ..., 0.95. mAP is the
mean over the classes that have ground truth in the evaluated images.

Class ids follow :data:`course_lib.data.records.MASK_CLASSES` (0, 1, 2). They
are shifted to COCO category ids 1, 2, 3 (and image ids start at 1) before
pycocotools sees them, because pycocotools treats a zero id as "not given" in
some of its look-ups. A class with no ground-truth box has AP NaN and a note.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import math
from typing import Sequence

import numpy as np

from .boxes import Detections, as_boxes, iou_matrix, to_xywh
from .data.records import MASK_CLASSES

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DetectionScores:
    """Average precision of a detector over a set of images.

    Attributes
    ----------
    class_names : tuple of str
    ap50 : dict of str to float
        AP at IoU 0.5 for each class; NaN for a class with no ground truth.
    ap50_95 : dict of str to float
        AP averaged over IoU 0.50:0.05:0.95 for each class; NaN as above.
    ground_truth_counts : dict of str to int
        Ground-truth boxes of each class.
    detection_counts : dict of str to int
        Detections of each class that took part (at most ``max_detections`` per image).
    notes : tuple of str
        Why a class has NaN, one sentence per such class.
    """

    class_names: tuple[str, ...]
    ap50: dict[str, float]
    ap50_95: dict[str, float]
    ground_truth_counts: dict[str, int]
    detection_counts: dict[str, int]
    notes: tuple[str, ...]

    @property
    def map50(self) -> float:
        """Mean of :attr:`ap50` over the classes with ground truth (NaN if none has)."""
        return _nanmean(self.ap50.values())

    @property
    def map50_95(self) -> float:
        """Mean of :attr:`ap50_95` over the classes with ground truth (NaN if none has)."""
        return _nanmean(self.ap50_95.values())

    @property
    def every_class_evaluated(self) -> bool:
        """True when every class has a finite AP or a note that explains its NaN."""
        explained = {note.split(":")[0] for note in self.notes}
        return all(math.isfinite(self.ap50[name]) or name in explained for name in self.class_names)

    def as_row(self) -> dict[str, float]:
        """Return ``{"mAP@0.5": ..., "mAP@[.5:.95]": ..., "AP@0.5 <class>": ...}`` for a results table."""
        row = {"mAP@0.5": self.map50, "mAP@[.5:.95]": self.map50_95}
        row.update({f"AP@0.5 {name}": value for name, value in self.ap50.items()})
        return row

    def __str__(self) -> str:
        lines = [f"mAP@0.5 = {self.map50:.3f}, mAP@[.5:.95] = {self.map50_95:.3f}"]
        for name in self.class_names:
            lines.append(
                f"  {name:<24} AP@0.5 = {self.ap50[name]:.3f}  AP@[.5:.95] = {self.ap50_95[name]:.3f}"
                f"  ({self.ground_truth_counts[name]} ground-truth boxes)"
            )
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def _nanmean(values) -> float:
    values = np.asarray(list(values), dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _ground_truth_arrays(item) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(item, "boxes") and hasattr(item, "labels"):
        return as_boxes(item.boxes), np.asarray(item.labels, dtype=np.int64).reshape(-1)
    boxes, labels = item
    return as_boxes(boxes), np.asarray(labels, dtype=np.int64).reshape(-1)


def evaluate_detections(
    ground_truth: Sequence,
    detections: Sequence[Detections],
    class_names: Sequence[str] = MASK_CLASSES,
    max_detections: int = 100,
) -> DetectionScores:
    """Compute per-class AP@0.5, AP@[.5:.95] and their means with pycocotools.

    Parameters
    ----------
    ground_truth : sequence
        One item per image: a :class:`~course_lib.data.records.DetectionRecord`
        or a ``(boxes, labels)`` pair, boxes ``(N, 4)`` ``"xyxy"`` in pixels
        and labels ``(N,)`` class ids in ``range(len(class_names))``.
    detections : sequence of Detections
        One per image, in the same order, in pixels of the same image.
    class_names : sequence of str
        Names of class ids 0, 1, ...
    max_detections : int
        Detections per image that count, highest scores first (COCO uses 100).

    Returns
    -------
    DetectionScores

    Raises
    ------
    ValueError
        If the two sequences differ in length or a class id is out of range.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(ground_truth) != len(detections):
        raise ValueError(
            f"Got ground truth for {len(ground_truth)} images but detections for {len(detections)}; "
            "pass one Detections per image, in the same order."
        )
    class_names = tuple(class_names)
    num_classes = len(class_names)
    images, annotations, results = [], [], []
    ground_truth_counts = np.zeros(num_classes, dtype=np.int64)
    detection_counts = np.zeros(num_classes, dtype=np.int64)
    for index, (item, found) in enumerate(zip(ground_truth, detections)):
        image_id = index + 1
        images.append({"id": image_id})
        boxes, labels = _ground_truth_arrays(item)
        _check_class_ids(labels, num_classes, "ground-truth label")
        for box, label in zip(to_xywh(boxes), labels):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label) + 1,
                    "bbox": [float(v) for v in box],
                    "area": float(box[2] * box[3]),
                    "iscrowd": 0,
                }
            )
            ground_truth_counts[label] += 1
        _check_class_ids(found.classes, num_classes, "detected class")
        # Detections are sorted by score, so the first max_detections are the ones COCOeval keeps.
        kept = slice(0, max_detections)
        for box, label, score in zip(to_xywh(found.boxes[kept]), found.classes[kept], found.scores[kept]):
            results.append(
                {
                    "id": len(results) + 1,
                    "image_id": image_id,
                    "category_id": int(label) + 1,
                    "bbox": [float(v) for v in box],
                    "area": float(box[2] * box[3]),
                    "score": float(score),
                }
            )
            detection_counts[label] += 1

    categories = [{"id": i + 1, "name": name} for i, name in enumerate(class_names)]
    coco_truth = _coco_from_dict(COCO, {"images": images, "annotations": annotations, "categories": categories})
    coco_found = _coco_from_dict(COCO, {"images": images, "annotations": results, "categories": categories})

    evaluation = COCOeval(coco_truth, coco_found, iouType="bbox")
    evaluation.params.maxDets = [1, 10, max_detections]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation.evaluate()
        evaluation.accumulate()
    # precision has shape (IoU thresholds, recall levels, classes, area ranges, max-detection settings);
    # area range 0 is "all" and the last max-detection setting is max_detections. -1 marks "no ground truth".
    precision = evaluation.eval["precision"][:, :, :, 0, -1]

    ap50, ap50_95, notes = {}, {}, []
    for class_id, name in enumerate(class_names):
        if ground_truth_counts[class_id] == 0:
            ap50[name] = ap50_95[name] = float("nan")
            notes.append(f"{name}: no ground-truth box in these {len(images)} images, so its AP is undefined (NaN).")
            continue
        per_threshold = precision[:, :, class_id].mean(axis=1)
        ap50[name] = float(per_threshold[0])
        ap50_95[name] = float(per_threshold.mean())
    return DetectionScores(
        class_names=class_names,
        ap50=ap50,
        ap50_95=ap50_95,
        ground_truth_counts={name: int(ground_truth_counts[i]) for i, name in enumerate(class_names)},
        detection_counts={name: int(detection_counts[i]) for i, name in enumerate(class_names)},
        notes=tuple(notes),
    )


def _check_class_ids(ids: np.ndarray, num_classes: int, what: str) -> None:
    ids = np.asarray(ids)
    bad = ids[(ids < 0) | (ids >= num_classes)]
    if bad.size:
        raise ValueError(f"A {what} is {int(bad[0])}, outside the valid class ids 0 to {num_classes - 1}.")


def _coco_from_dict(coco_class, dataset: dict):
    coco = coco_class()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def split_records(records: Sequence, test_fraction: float = 0.2, seed: int = 0) -> tuple[list, list]:
    """Split detection records into a training and a held-out test list, reproducibly.

    The records are sorted by image file name and shuffled with ``seed``, so
    the split depends only on the set of files, never on the order the loader
    returns them in.

    Parameters
    ----------
    records : sequence of DetectionRecord
    test_fraction : float
        Share of images held out, in ``(0, 1)``; at least one image is held out.
    seed : int

    Returns
    -------
    train, test : list of DetectionRecord
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction is {test_fraction}; it must be strictly between 0 and 1.")
    ordered = sorted(records, key=lambda r: r.image_path.name)
    permutation = np.random.default_rng(seed).permutation(len(ordered))
    test_count = max(1, round(test_fraction * len(ordered)))
    test = [ordered[i] for i in sorted(permutation[:test_count])]
    train = [ordered[i] for i in sorted(permutation[test_count:])]
    return train, test


# --- running, tables and figures ---------------------------------------------------


def run_timed(detect, images: Sequence[np.ndarray], warmup: int = 1, desc: str = "Detecting") -> tuple[list[Detections], float]:
    """Run ``detect(image) -> Detections`` on every image and time it.

    The first ``warmup`` images are run once more before timing starts, so
    one-off costs (graph tracing, model loading) are not counted.

    Returns
    -------
    detections : list of Detections
    milliseconds : float
        Mean wall-clock milliseconds per image.
    """
    import time

    from tqdm.auto import tqdm

    for image in images[:warmup]:
        detect(image)
    results = []
    start = time.perf_counter()
    for image in tqdm(images, desc=desc, unit="img", leave=False):
        results.append(detect(image))
    milliseconds = 1000.0 * (time.perf_counter() - start) / max(len(images), 1)
    return results, milliseconds


def results_table(rows: dict[str, tuple[DetectionScores, float]]) -> str:
    """Format detectors' scores as a fixed-width text table.

    Parameters
    ----------
    rows : dict
        ``{detector name: (DetectionScores, milliseconds per image)}``.

    Returns
    -------
    str
        One line per detector: mAP@0.5, mAP@[.5:.95], AP@0.5 per class and
        milliseconds per image. NaN prints as ``nan``.
    """
    if not rows:
        raise ValueError("results_table needs at least one row.")
    class_names = next(iter(rows.values()))[0].class_names
    header = ["detector", "mAP@0.5", "mAP@.5:.95"] + [f"AP {name}" for name in class_names] + ["ms/image"]
    lines = []
    for name, (scores, milliseconds) in rows.items():
        values = [scores.map50, scores.map50_95] + [scores.ap50[c] for c in class_names]
        lines.append([name] + [f"{v:.3f}" for v in values] + [f"{milliseconds:.0f}"])
    widths = [max(len(row[i]) for row in [header] + lines) for i in range(len(header))]
    text = [" | ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in [header] + lines]
    text.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(text)


def plot_detection_comparison(
    image: np.ndarray,
    truth,
    results: dict[str, Detections],
    score_threshold: float = 0.3,
    class_names: Sequence[str] = MASK_CLASSES,
    size: float = 4.0,
):
    """Draw the ground truth and each detector's boxes on one image, side by side.

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
    truth : DetectionRecord or (boxes, labels)
    results : dict of str to Detections
        Detections of ``image`` per detector name.
    score_threshold : float
        Detections below this score are not drawn.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    from .plotting import draw_boxes

    boxes, labels = _ground_truth_arrays(truth)
    panels = len(results) + 1
    figure, axes = plt.subplots(1, panels, figsize=(size * panels, size * image.shape[0] / image.shape[1] + 0.5), squeeze=False)
    draw_boxes(image, boxes, labels, class_names=None, ax=axes[0, 0], title=f"ground truth ({len(boxes)} faces)")
    for axis, (name, found) in zip(axes[0, 1:], results.items()):
        shown = found.above(score_threshold)
        draw_boxes(image, shown.boxes, shown.classes, scores=shown.scores, ax=axis, title=f"{name} ({len(shown)} boxes)")
    figure.tight_layout()
    return figure


def detection_explorer(images: Sequence[np.ndarray], truths: Sequence, results: dict[str, Sequence[Detections]], class_names: Sequence[str] = MASK_CLASSES):
    """Show an ipywidgets explorer that redraws detections for a chosen image, detector, score and IoU threshold.

    The IoU slider re-runs per-class NMS on the stored detections, so a
    lower value merges more overlapping boxes. Headless execution draws the
    initial view once.

    Parameters
    ----------
    images : sequence of (H, W, 3) uint8 arrays
    truths : sequence of DetectionRecord or (boxes, labels)
    results : dict of str to sequence of Detections
        Per detector, one Detections per image.

    Returns
    -------
    ipywidgets.Widget
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from .plotting import draw_boxes

    image_choice = widgets.IntSlider(value=0, min=0, max=len(images) - 1, description="image")
    detector_choice = widgets.Dropdown(options=list(results), description="detector")
    score_choice = widgets.FloatSlider(value=0.3, min=0.0, max=1.0, step=0.05, description="min score")
    iou_choice = widgets.FloatSlider(value=0.5, min=0.05, max=1.0, step=0.05, description="NMS IoU")

    def redraw(index, detector, score_threshold, iou_threshold):
        found = results[detector][index].above(score_threshold).suppress(iou_threshold)
        boxes, labels = _ground_truth_arrays(truths[index])
        matched = int((iou_matrix(found.boxes, boxes).max(axis=1, initial=0.0) >= 0.5).sum())
        figure, axis = plt.subplots(figsize=(6, 6 * images[index].shape[0] / images[index].shape[1]))
        draw_boxes(images[index], found.boxes, found.classes, scores=found.scores, ax=axis,
                   title=f"{detector}: {len(found)} boxes, {matched} overlap a true face (IoU >= 0.5), {len(boxes)} true faces")
        plt.show()

    return widgets.interactive(redraw, index=image_choice, detector=detector_choice, score_threshold=score_choice, iou_threshold=iou_choice)



def face_recall(ground_truth: Sequence, detections: Sequence[Detections], iou_threshold: float = 0.5) -> float:
    """Return the share of ground-truth faces that some detection overlaps with IoU at least ``iou_threshold``, ignoring classes."""
    found, total = 0, 0
    for item, result in zip(ground_truth, detections):
        boxes, _ = _ground_truth_arrays(item)
        total += len(boxes)
        if len(boxes) and len(result):
            found += int((iou_matrix(boxes, result.boxes).max(axis=1) >= iou_threshold).sum())
    return found / total if total else float("nan")
