"""Two-stage mask detection: find faces with a face detector, then classify each face crop.

The face detector is MTCNN (:func:`course_lib.faces.detect_faces`) or the
OpenCV Haar cascade. The crop classifier is any callable that maps a list of
RGB face crops to ``(classes, scores)``. Examples are the notebook-03
classifier (through :func:`as_crop_classifier`) and
:meth:`course_lib.rcnn.MiniRCNN.classify_crops`.

FMD faces are small (median side about 20 px) and MTCNN's smallest search
window is 12 px, so the image can be upscaled before detection
(``upscale=2.0``); boxes are scaled back to the original image.
"""

from __future__ import annotations

import functools
import logging
from typing import Callable, Sequence

import numpy as np

from .boxes import Detections, as_boxes, clip_boxes
from .images import resize

log = logging.getLogger(__name__)

CropClassifier = Callable[[Sequence[np.ndarray]], tuple[np.ndarray, np.ndarray]]
"""``classifier(crops) -> (classes, scores)``: crops are RGB uint8 ``(h, w, 3)``
arrays, classes ``(N,)`` int ids into ``MASK_CLASSES``, scores ``(N,)`` in ``[0, 1]``."""


def detect_face_boxes(
    image: np.ndarray,
    detector: str = "mtcnn",
    upscale: float = 1.0,
    min_score: float = 0.8,
    min_face_size: int = 12,
) -> tuple[np.ndarray, np.ndarray]:
    """Find face boxes with MTCNN or the Haar cascade.

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
    detector : {"mtcnn", "haar"}
    upscale : float
        Resize factor applied before detection; boxes are mapped back.
    min_score : float
        MTCNN confidence threshold (ignored by the Haar cascade, which gives
        every face score 1).
    min_face_size : int
        Smallest face side searched for, in pixels of the upscaled image.

    Returns
    -------
    boxes : (N, 4) ndarray of float32
        ``"xyxy"`` in pixels of ``image``.
    scores : (N,) ndarray of float32
    """
    if upscale <= 0:
        raise ValueError(f"upscale is {upscale}; it must be positive (1.0 keeps the image size).")
    height, width = image.shape[:2]
    work = image if upscale == 1.0 else resize(image, (round(height * upscale), round(width * upscale)))
    if detector == "mtcnn":
        from .faces import detect_faces

        faces = detect_faces(work, min_score=min_score, min_face_size=min_face_size)
        boxes = as_boxes([face.box for face in faces])
        scores = np.asarray([face.score for face in faces], dtype=np.float32)
    elif detector == "haar":
        boxes = _haar_faces(work, min_face_size)
        scores = np.ones(len(boxes), dtype=np.float32)
    else:
        raise ValueError(f"Unknown face detector {detector!r}: use 'mtcnn' or 'haar'.")
    return clip_boxes(boxes / np.float32(upscale), image.shape), scores


@functools.lru_cache(maxsize=1)
def _haar_cascade():
    import cv2

    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"OpenCV could not load the Haar cascade {path!r}; reinstall opencv-contrib-python-headless.")
    return cascade


def _haar_faces(image: np.ndarray, min_face_size: int) -> np.ndarray:
    import cv2

    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    found = _haar_cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=4, minSize=(min_face_size, min_face_size))
    boxes = np.asarray(found, dtype=np.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    return boxes


def crop_faces(image: np.ndarray, boxes: np.ndarray, margin: float = 0.15) -> list[np.ndarray]:
    """Cut face boxes out of an image, each enlarged by ``margin`` of its size on every side (clipped to the image)."""
    boxes = as_boxes(boxes)
    sides = boxes[:, 2:] - boxes[:, :2]
    grown = clip_boxes(np.concatenate([boxes[:, :2] - margin * sides, boxes[:, 2:] + margin * sides], axis=1), image.shape)
    crops = []
    for x_min, y_min, x_max, y_max in np.round(grown).astype(int):
        crops.append(image[y_min : max(y_max, y_min + 1), x_min : max(x_max, x_min + 1)])
    return crops


def detect_and_classify(
    image: np.ndarray,
    classifier: CropClassifier,
    detector: str = "mtcnn",
    upscale: float = 2.0,
    min_score: float = 0.8,
    margin: float = 0.15,
) -> Detections:
    """Detect faces and classify how each one wears its mask.

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
    classifier : callable
        ``classifier(crops) -> (classes, scores)``, see :data:`CropClassifier`.
    detector : {"mtcnn", "haar"}
    upscale : float
        Upscaling before face detection (2.0 helps with FMD's small faces).
    min_score : float
        Face-detector confidence threshold.
    margin : float
        Context added around each face before classification.

    Returns
    -------
    Detections
        Score is face confidence times class probability; ``boxes.shape == (0, 4)``
        when no face is found.
    """
    boxes, face_scores = detect_face_boxes(image, detector=detector, upscale=upscale, min_score=min_score)
    if len(boxes) == 0:
        return Detections.empty()
    classes, class_scores = classifier(crop_faces(image, boxes, margin))
    classes = np.asarray(classes, dtype=np.int32).reshape(-1)
    class_scores = np.asarray(class_scores, dtype=np.float32).reshape(-1)
    if len(classes) != len(boxes) or len(class_scores) != len(boxes):
        raise ValueError(
            f"The classifier returned {len(classes)} classes and {len(class_scores)} scores for {len(boxes)} crops; "
            "it must return one class and one score per crop."
        )
    return Detections(boxes, classes, face_scores * class_scores)


def as_crop_classifier(mask_classifier) -> CropClassifier:
    """Wrap a :class:`course_lib.classifier.MaskClassifier` as a :data:`CropClassifier`.

    ``MaskClassifier.predict`` returns class ids and the full probability
    matrix; the wrapper returns the ids and the probability of each chosen id.
    """

    def classify(crops):
        if len(crops) == 0:
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        class_ids, probabilities = mask_classifier.predict(list(crops))
        class_ids = np.asarray(class_ids, dtype=np.int32)
        return class_ids, probabilities[np.arange(len(class_ids)), class_ids].astype(np.float32)

    return classify


def train_crop_classifier(
    held_out_images: Sequence,
    input_size: int = 64,
    architecture: str = "resnet_small",
    epochs: int = 20,
    max_seconds: float | None = None,
    seed: int = 0,
):
    """Train the notebook-03 mask classifier without the crops of held-out detection images.

    The crops come from :func:`course_lib.classifier.build_mask_crops` (the
    classification set plus FMD boxes). Crops cut from any image in
    ``held_out_images`` are removed first, so a detection test split stays
    unseen by the classifier of the two-stage pipeline.

    Parameters
    ----------
    held_out_images : sequence of paths
        Image files (for example ``[r.image_path for r in test_records]``).
    input_size : int
    architecture : str
        A key of :data:`course_lib.models.BUILDERS`.
    epochs : int
    max_seconds : float, optional
        Training time budget in seconds.
    seed : int

    Returns
    -------
    course_lib.classifier.MaskClassifier
        Save it with ``classifier.save_classifier(result.model, path)``.
    """
    from . import classifier, models, training

    crops = classifier.build_mask_crops(input_size, include_fmd=True)
    held_out = {str(path) for path in held_out_images}
    keep = np.flatnonzero([path not in held_out for path in crops.paths])
    log.info("Training the crop classifier on %d of %d crops (%d from held-out images removed).", len(keep), len(crops), len(crops) - len(keep))
    training.configure_device(seed)
    model = models.BUILDERS[architecture]((input_size, input_size, 3), num_classes=len(crops.class_names))
    training.train_classifier(
        model,
        (crops.images[keep], crops.labels[keep]),
        epochs=epochs,
        augment=True,
        seed=seed,
        class_weight="balanced",
        max_seconds=max_seconds,
    )
    return classifier.MaskClassifier(model=model, class_names=crops.class_names, input_size=input_size)
