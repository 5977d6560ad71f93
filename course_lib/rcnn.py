"""A mini R-CNN: selective search, a small CNN per warped region, a linear classifier, NMS.

The pipeline follows R-CNN (Girshick et al., 2014) at toy scale:

1. **Proposals**: selective search (OpenCV's ``ximgproc`` implementation, fast
   mode) on a downscaled copy of the image gives a few hundred class-agnostic
   candidate boxes.
2. **Features**: every proposal is cropped and warped to a fixed square and
   passed through a small CNN, once per region, which is what made R-CNN slow.
   Fast R-CNN later ran the CNN once per image and pooled each region from the
   shared feature map; Faster R-CNN also replaced selective search with a
   learned proposal network on the same feature map.
3. **Classification**: a multinomial logistic regression (scikit-learn) on the
   CNN features scores each region as one of the mask classes or background.
4. **NMS** per class removes duplicate boxes.

:meth:`MiniRCNN.detect` returns the time spent in each stage, so the cost of
per-region features can be measured.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Sequence

import numpy as np

from .boxes import Detections, as_boxes, clip_boxes, iou_matrix
from .data.records import MASK_CLASSES
from .images import read_image, resize

log = logging.getLogger(__name__)


def selective_search(
    image: np.ndarray,
    max_side: int = 256,
    max_proposals: int = 500,
    min_side: float = 6.0,
    max_aspect: float = 2.5,
) -> np.ndarray:
    """Propose candidate object boxes with selective search (fast mode).

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
        RGB image.
    max_side : int
        The image is downscaled so that its longer side is at most this many
        pixels before the search, which sets the speed (about 0.25 s at 200 px
        and 0.65 s at 400 px on one core for FMD images).
    max_proposals : int
        Keep at most this many proposals, in the order selective search ranks them.
    min_side : float
        Drop proposals narrower or shorter than this, in original-image pixels.
    max_aspect : float
        Drop proposals whose width/height or height/width exceeds this (faces
        are roughly square).

    Returns
    -------
    (N, 4) ndarray of float32
        ``"xyxy"`` boxes in pixels of ``image``, inside the image.
    """
    import cv2

    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    small = resize(image, (max(1, round(height * scale)), max(1, round(width * scale)))) if scale < 1 else image
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    search.switchToSelectiveSearchFast()
    rectangles = np.asarray(search.process(), dtype=np.float32).reshape(-1, 4)
    boxes = rectangles.copy()
    boxes[:, 2:] += boxes[:, :2]
    boxes = clip_boxes(boxes / scale, image.shape)
    sides = boxes[:, 2:] - boxes[:, :2]
    aspect = np.maximum(sides[:, 0], 1e-6) / np.maximum(sides[:, 1], 1e-6)
    keep = (sides.min(axis=1) >= min_side) & (aspect <= max_aspect) & (aspect >= 1.0 / max_aspect)
    return boxes[keep][:max_proposals]


def proposal_recall(proposals: np.ndarray, ground_truth: np.ndarray, iou_threshold: float = 0.5) -> float:
    """Return the share of ground-truth boxes that some proposal overlaps with IoU at least ``iou_threshold`` (NaN if none)."""
    ground_truth = as_boxes(ground_truth)
    if len(ground_truth) == 0:
        return float("nan")
    if len(as_boxes(proposals)) == 0:
        return 0.0
    return float((iou_matrix(ground_truth, proposals).max(axis=1) >= iou_threshold).mean())


def warp_regions(image: np.ndarray, boxes: np.ndarray, size: int = 32, context: float = 0.1) -> np.ndarray:
    """Crop regions and warp each one to a ``size`` x ``size`` square, ignoring aspect ratio as R-CNN does.

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
    boxes : (N, 4) array
        ``"xyxy"`` boxes in pixels.
    size : int
    context : float
        Each box is enlarged by this fraction of its size on every side before
        cropping, so the CNN sees a little of the surroundings.

    Returns
    -------
    (N, size, size, 3) ndarray of uint8
    """
    boxes = as_boxes(boxes)
    crops = np.zeros((len(boxes), size, size, 3), dtype=np.uint8)
    if len(boxes) == 0:
        return crops
    margins = (boxes[:, 2:] - boxes[:, :2]) * context
    grown = clip_boxes(np.concatenate([boxes[:, :2] - margins, boxes[:, 2:] + margins], axis=1), image.shape)
    for index, (x_min, y_min, x_max, y_max) in enumerate(np.round(grown).astype(int)):
        region = image[y_min : max(y_max, y_min + 1), x_min : max(x_max, x_min + 1)]
        crops[index] = resize(region, (size, size))
    return crops


def label_proposals(
    proposals: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    background: int,
    positive_iou: float = 0.5,
    negative_iou: float = 0.3,
) -> np.ndarray:
    """Give each proposal a training label by its best overlap with the ground truth.

    Returns
    -------
    (N,) ndarray of int32
        The class of the best-overlapping ground-truth box when IoU is at least
        ``positive_iou``, ``background`` when IoU is below ``negative_iou``,
        and -1 (ignored in training) in between, as in R-CNN.
    """
    proposals = as_boxes(proposals)
    result = np.full(len(proposals), background, dtype=np.int32)
    if len(as_boxes(boxes)) == 0 or len(proposals) == 0:
        return result
    overlaps = iou_matrix(proposals, boxes)
    best = overlaps.argmax(axis=1)
    best_iou = overlaps.max(axis=1)
    result[best_iou >= negative_iou] = -1
    positive = best_iou >= positive_iou
    result[positive] = np.asarray(labels)[best[positive]]
    return result


def build_feature_cnn(input_size: int = 32, feature_size: int = 64, num_outputs: int = 4):
    """Build a small Keras CNN whose penultimate layer gives region features.

    Returns
    -------
    classifier : keras.Model
        ``(B, S, S, 3)`` float32 in ``[0, 1]`` to ``(B, num_outputs)`` softmax
        probabilities; used to train the features.
    features : keras.Model
        Same layers up to the ``feature_size``-wide ``"features"`` layer.
    """
    import keras
    from keras import layers

    inputs = keras.Input((input_size, input_size, 3))
    x = inputs
    for filters in (16, 32, 64):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    features = layers.Dense(feature_size, activation="relu", name="features")(x)
    outputs = layers.Dense(num_outputs, activation="softmax")(layers.Dropout(0.3)(features))
    classifier = keras.Model(inputs, outputs, name="region_cnn")
    return classifier, keras.Model(inputs, features, name="region_features")


@dataclasses.dataclass
class StageTimes:
    """Milliseconds spent in each R-CNN stage for one image."""

    proposals: float
    features: float
    classification: float
    nms: float
    regions: int

    @property
    def total(self) -> float:
        return self.proposals + self.features + self.classification + self.nms


class MiniRCNN:
    """A trainable mini R-CNN for the mask classes plus background.

    Parameters
    ----------
    class_names : sequence of str
        Object classes; the background class gets id ``len(class_names)``
        internally and never appears in the output.
    region_size : int
        Side of the square each region is warped to.
    max_side : int
        Longer image side for selective search (see :func:`selective_search`).
    max_proposals : int
    background_per_image : int
        Background regions sampled from each training image.
    seed : int
    """

    def __init__(
        self,
        class_names: Sequence[str] = MASK_CLASSES,
        region_size: int = 32,
        max_side: int = 256,
        max_proposals: int = 500,
        background_per_image: int = 40,
        seed: int = 0,
    ):
        self.class_names = tuple(class_names)
        self.background = len(self.class_names)
        self.region_size = region_size
        self.max_side = max_side
        self.max_proposals = max_proposals
        self.background_per_image = background_per_image
        self.seed = seed
        self.cnn = None
        self.feature_model = None
        self.head = None

    def collect_regions(self, records: Sequence) -> tuple[np.ndarray, np.ndarray]:
        """Warp ground-truth boxes, positive proposals and sampled background proposals of training images.

        Returns
        -------
        crops : (N, S, S, 3) ndarray of uint8
        labels : (N,) ndarray of int32
            Class ids, with :attr:`background` for background regions.
        """
        from tqdm.auto import tqdm

        rng = np.random.default_rng(self.seed)
        all_crops, all_labels = [], []
        for record in tqdm(records, desc="Proposals on training images", unit="img", leave=False):
            image = read_image(record.image_path)
            proposals = selective_search(image, self.max_side, self.max_proposals)
            labels = label_proposals(proposals, record.boxes, record.labels, self.background)
            positives = np.flatnonzero((labels >= 0) & (labels != self.background))
            negatives = np.flatnonzero(labels == self.background)
            negatives = rng.choice(negatives, size=min(len(negatives), self.background_per_image), replace=False)
            boxes = np.concatenate([as_boxes(record.boxes), proposals[positives], proposals[negatives]])
            all_labels.append(np.concatenate([record.labels, labels[positives], labels[negatives]]).astype(np.int32))
            all_crops.append(warp_regions(image, boxes, self.region_size))
        return np.concatenate(all_crops), np.concatenate(all_labels)

    def fit(self, records: Sequence, epochs: int = 8, batch_size: int = 64, verbose: int = 0) -> "MiniRCNN":
        """Train the region CNN on warped regions, then the logistic-regression head on its features.

        Classes are weighted by inverse frequency in both stages, because
        background regions and ``with_mask`` faces far outnumber the rest.
        """
        import keras
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        crops, labels = self.collect_regions(records)
        counts = np.bincount(labels, minlength=self.background + 1)
        log.info("R-CNN training regions per class (background last): %s", counts.tolist())
        weights = {i: float(len(labels) / (len(counts) * max(c, 1))) for i, c in enumerate(counts)}

        keras.utils.set_random_seed(self.seed)
        self.cnn, self.feature_model = build_feature_cnn(self.region_size, num_outputs=self.background + 1)
        self.cnn.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        inputs = crops.astype(np.float32) / 255.0
        self.cnn.fit(inputs, labels, epochs=epochs, batch_size=batch_size, class_weight=weights, shuffle=True, verbose=verbose)

        features = self.feature_model.predict(inputs, batch_size=256, verbose=0)
        self.head = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
        self.head.fit(features, labels)
        return self

    def detect(self, image: np.ndarray, score_threshold: float = 0.05, iou_threshold: float = 0.3) -> tuple[Detections, StageTimes]:
        """Detect faces and their mask class in one image.

        Parameters
        ----------
        image : (H, W, 3) ndarray of uint8
        score_threshold : float
            Regions whose best non-background probability is lower are dropped.
        iou_threshold : float
            NMS threshold within each class.

        Returns
        -------
        detections : Detections
            Boxes in pixels of ``image``; ``boxes.shape == (0, 4)`` if nothing is found.
        times : StageTimes
            Milliseconds per stage.
        """
        if self.head is None:
            raise RuntimeError("This MiniRCNN is not trained yet; call fit(records) first.")
        start = time.perf_counter()
        proposals = selective_search(image, self.max_side, self.max_proposals)
        after_proposals = time.perf_counter()
        crops = warp_regions(image, proposals, self.region_size).astype(np.float32) / 255.0
        features = self.feature_model.predict_on_batch(crops) if len(crops) else np.zeros((0, 1), np.float32)
        features = np.asarray(features)
        after_features = time.perf_counter()
        if len(proposals):
            probabilities = self.head.predict_proba(features)
            object_probabilities = probabilities[:, self.head.classes_ != self.background]
            object_classes = self.head.classes_[self.head.classes_ != self.background]
            best = object_probabilities.argmax(axis=1)
            found = Detections(proposals, object_classes[best], object_probabilities[np.arange(len(best)), best])
        else:
            found = Detections.empty()
        after_classification = time.perf_counter()
        found = found.above(score_threshold).suppress(iou_threshold, per_class=True)
        end = time.perf_counter()
        times = StageTimes(
            proposals=1000 * (after_proposals - start),
            features=1000 * (after_features - after_proposals),
            classification=1000 * (after_classification - after_features),
            nms=1000 * (end - after_classification),
            regions=len(proposals),
        )
        return found, times

    def classify_crops(self, crops: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Classify face crops into the mask classes, ignoring the background class.

        This lets the trained region classifier serve as the crop classifier of
        :func:`course_lib.two_stage.detect_and_classify`.

        Parameters
        ----------
        crops : sequence of (h, w, 3) uint8 arrays

        Returns
        -------
        classes : (N,) ndarray of int32
        scores : (N,) ndarray of float32
            Probability of the chosen class, renormalised without background.
        """
        if len(crops) == 0:
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        warped = np.stack([resize(np.ascontiguousarray(c), (self.region_size, self.region_size)) for c in crops])
        features = np.asarray(self.feature_model.predict_on_batch(warped.astype(np.float32) / 255.0))
        probabilities = self.head.predict_proba(features)
        is_object = self.head.classes_ != self.background
        object_probabilities = probabilities[:, is_object]
        object_probabilities /= np.maximum(object_probabilities.sum(axis=1, keepdims=True), 1e-12)
        best = object_probabilities.argmax(axis=1)
        classes = self.head.classes_[is_object][best].astype(np.int32)
        return classes, object_probabilities[np.arange(len(best)), best].astype(np.float32)
