"""Classical face detection with boosted cascades, and how masks defeat it.

Viola and Jones (2001) scan an image with a cascade of boosted classifiers on
Haar-like features: early stages reject most windows cheaply, later stages
look closer. The LBP cascade (Liao et al., 2007) runs the same scheme on
multi-block LBP features. Both cascades used here were trained on unmasked
frontal faces, and the features that fire most reliably include the dark
mouth and the shadows beside the nose, which a mask hides.

Cascades are loaded from the files the packages ship: the Haar cascade from
``opencv-contrib-python-headless`` (``cv2.data.haarcascades``), run with
:class:`cv2.CascadeClassifier`, and the LBP cascade from scikit-image
(``skimage.data.lbp_frontal_face_cascade_filename()``), run with
:class:`skimage.feature.Cascade` because ``cv2.CascadeClassifier`` in OpenCV
5.1 does not load LBP cascades.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from .images import to_gray

log = logging.getLogger(__name__)

CASCADES = ("haar", "lbp")
"""Cascade names understood by :func:`detect_faces_cascade`."""

CASCADE_TITLES = {"haar": "Viola-Jones (Haar cascade, OpenCV)", "lbp": "LBP cascade (scikit-image)"}


def cascade_path(cascade: str = "haar") -> Path:
    """Return the XML file of a packaged frontal-face cascade."""
    if cascade == "haar":
        import cv2

        return Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    if cascade == "lbp":
        from skimage.data import lbp_frontal_face_cascade_filename

        return Path(lbp_frontal_face_cascade_filename())
    raise ValueError(f"Unknown cascade {cascade!r}: use one of {', '.join(CASCADES)}.")


@functools.lru_cache(maxsize=None)
def _classifier(cascade: str):
    path = cascade_path(cascade)
    if not path.is_file():
        raise FileNotFoundError(
            f"The {cascade} cascade file {str(path)!r} is missing; reinstall opencv-contrib-python-headless and scikit-image."
        )
    if cascade == "lbp":
        from skimage.feature import Cascade

        return Cascade(str(path))
    import cv2

    classifier = cv2.CascadeClassifier(str(path))
    if classifier.empty():
        raise RuntimeError(f"OpenCV could not load the cascade file {str(path)!r}.")
    return classifier


def _detect_lbp(gray: np.ndarray, scale_factor: float, min_neighbors: int, min_size: tuple[int, int]) -> np.ndarray:
    found = _classifier("lbp").detect_multi_scale(
        img=gray.astype(np.float32) / 255.0,
        scale_factor=scale_factor,
        step_ratio=1,
        min_size=(int(min_size[1]), int(min_size[0])),
        max_size=gray.shape,
        min_neighbor_number=min_neighbors,
    )
    boxes = [[d["c"], d["r"], d["c"] + d["width"], d["r"] + d["height"]] for d in found]
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def detect_faces_cascade(
    image: np.ndarray,
    cascade: str = "haar",
    scale_factor: float = 1.1,
    min_neighbors: int = 5,
    min_size: tuple[int, int] = (24, 24),
) -> np.ndarray:
    """Detect frontal faces with a boosted cascade.

    Parameters
    ----------
    image : (H, W, 3) or (H, W) ndarray of uint8
        RGB or grayscale image.
    cascade : {"haar", "lbp"}
        Viola-Jones Haar cascade or LBP cascade.
    scale_factor : float
        Ratio between successive scales of the sliding window (> 1).
    min_neighbors : int
        Overlapping raw detections needed to keep a face; higher values give
        fewer false detections and more misses. scikit-image's LBP cascade
        counts neighbours differently from OpenCV, so equal values are not
        equally strict.
    min_size : (int, int)
        Smallest face searched for, ``(width, height)`` in pixels.

    Returns
    -------
    (N, 4) ndarray of float32
        Boxes ``(x_min, y_min, x_max, y_max)`` in pixels; ``N = 0`` when no
        face is found.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"Expected a uint8 image, got dtype {image.dtype}.")
    gray = to_gray(image)
    if cascade == "lbp":
        return _detect_lbp(gray, scale_factor, min_neighbors, min_size)
    found = _classifier(cascade).detectMultiScale(
        gray, scaleFactor=scale_factor, minNeighbors=min_neighbors, minSize=tuple(int(v) for v in min_size)
    )
    boxes = np.asarray(found, dtype=np.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    return boxes


def face_found(boxes: np.ndarray, landmarks: np.ndarray) -> bool:
    """Return True when one box contains both eyes and the nose tip of the face."""
    points = np.asarray(landmarks, dtype=np.float32)[:3]
    for x_min, y_min, x_max, y_max in np.asarray(boxes).reshape(-1, 4):
        inside = (points[:, 0] >= x_min) & (points[:, 0] < x_max) & (points[:, 1] >= y_min) & (points[:, 1] < y_max)
        if inside.all():
            return True
    return False


@dataclasses.dataclass(frozen=True)
class DetectionRates:
    """Share of faces a cascade misses with and without a mask.

    Attributes
    ----------
    cascade : str
    faces : int
        Number of faces tried, each once unmasked and once masked.
    missed_unmasked, missed_masked : float
        Share of faces in ``[0, 1]`` with no detection covering eyes and nose.
    """

    cascade: str
    faces: int
    missed_unmasked: float
    missed_masked: float

    def __str__(self) -> str:
        return (
            f"{CASCADE_TITLES.get(self.cascade, self.cascade)}: misses {100 * self.missed_unmasked:.0f}% of "
            f"{self.faces} unmasked faces and {100 * self.missed_masked:.0f}% of the same faces masked"
        )


def masked_miss_rates(
    images: Sequence[np.ndarray],
    landmarks: np.ndarray,
    mask_type: str = "surgical",
    cascades: Sequence[str] = CASCADES,
    pad: float = 0.25,
    seed: int = 0,
    min_size: tuple[int, int] = (48, 48),
    **detect_options,
) -> list[DetectionRates]:
    """Run the cascades on faces with and without a synthetic mask and count the misses.

    Parameters
    ----------
    images : sequence of (H, W, 3) ndarray of uint8
        Images with one face each.
    landmarks : (N, 5, 2) array
        The face's landmarks in each image; they decide where the mask goes
        and whether a detection hits the face (:func:`face_found`).
    mask_type : str
        A mask type of :data:`course_lib.masks.MASK_TYPES`.
    cascades : sequence of {"haar", "lbp"}
    pad : float
        Border added around each image, as a fraction of its size, filled with
        the image's edge pixels. Tight face crops such as AT&T leave the
        sliding window no room around the face without it.
    seed : int
        Mask of image ``i`` uses seed ``seed + i``.
    min_size : (int, int)
        Smallest face searched for, in pixels. The default suits AT&T and LFW,
        whose faces are 60 pixels wide or more, and makes scikit-image's LBP
        cascade about 15 times faster than a 24-pixel minimum.
    **detect_options
        Passed to :func:`detect_faces_cascade`.

    Returns
    -------
    list of DetectionRates
        One per cascade, in the order of ``cascades``.
    """
    import cv2

    from .masks import apply_mask

    landmarks = np.asarray(landmarks, dtype=np.float32)
    if len(images) != len(landmarks):
        raise ValueError(f"Got {len(images)} images but {len(landmarks)} landmark sets; pass one (5, 2) array per image.")
    missed = {c: np.zeros((len(images), 2), dtype=bool) for c in cascades}
    for index, (image, points) in enumerate(zip(images, landmarks)):
        masked = apply_mask(image, points, mask_type=mask_type, seed=seed + index).image
        top, left = int(round(pad * image.shape[0])), int(round(pad * image.shape[1]))
        shifted = points + np.array([left, top], dtype=np.float32)
        for column, version in enumerate((image, masked)):
            padded = cv2.copyMakeBorder(version, top, top, left, left, cv2.BORDER_REPLICATE)
            for cascade in cascades:
                boxes = detect_faces_cascade(padded, cascade, min_size=min_size, **detect_options)
                missed[cascade][index, column] = not face_found(boxes, shifted)
    rates = [DetectionRates(c, len(images), float(missed[c][:, 0].mean()), float(missed[c][:, 1].mean())) for c in cascades]
    for rate in rates:
        log.debug("%s", rate)
    return rates
