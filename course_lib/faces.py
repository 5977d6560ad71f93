"""Face detection with five landmarks (MTCNN) and landmark-based alignment.

MTCNN (Zhang et al., 2016) is used through the ``mtcnn`` package, which ships
its trained weights, so detection works offline. Landmarks are returned as a
``(5, 2)`` float32 array of ``(x, y)`` pixel coordinates in the order of
:data:`LANDMARK_NAMES`. "Left" and "right" are as seen in the image: the
``left_eye`` point is the eye nearer the image's left edge.
"""

from __future__ import annotations

import dataclasses
import functools
import logging

import numpy as np

log = logging.getLogger(__name__)

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
"""Reference landmark positions, in :data:`LANDMARK_NAMES` order, of a 112x112
aligned face as used by ArcFace (Deng et al., 2019) and its public training sets."""


@dataclasses.dataclass(frozen=True)
class FaceDetection:
    """One detected face.

    Attributes
    ----------
    box : (4,) ndarray of float32
        ``(x_min, y_min, x_max, y_max)`` in pixels, clipped to the image.
    score : float
        Detector confidence in ``[0, 1]``.
    landmarks : (5, 2) ndarray of float32
        ``(x, y)`` of the points in :data:`LANDMARK_NAMES` order.
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    def landmark(self, name: str) -> np.ndarray:
        """Return the ``(x, y)`` of one landmark by name, for example ``"nose"``."""
        return self.landmarks[LANDMARK_NAMES.index(name)]


@functools.lru_cache(maxsize=1)
def mtcnn_detector():
    """Return the process-wide ``mtcnn.MTCNN`` instance, loading it on the first call.

    Each process loads its own copy (about a second and 100 MB), so worker
    processes should call this once at start-up.
    """
    from mtcnn import MTCNN

    log.info("Loading the MTCNN face detector (weights ship with the mtcnn package).")
    return MTCNN(device="CPU:0")


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"Expected a uint8 image, got dtype {image.dtype}; convert with course_lib.images.to_uint8.")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"Expected an (H, W, 3) RGB or (H, W) grayscale image, got shape {image.shape}.")


def detect_faces(image: np.ndarray, min_score: float = 0.9, min_face_size: int = 20) -> list[FaceDetection]:
    """Detect faces and their five landmarks with MTCNN.

    Parameters
    ----------
    image : (H, W, 3) or (H, W) ndarray of uint8
        RGB or grayscale image.
    min_score : float
        Faces with a lower confidence are dropped.
    min_face_size : int
        Smallest face side, in pixels, that the detector searches for.

    Returns
    -------
    list of FaceDetection
        Sorted by decreasing score; empty when there is no face. The first
        call loads the detector (about a second).
    """
    return detect_faces_batch([image], min_score=min_score, min_face_size=min_face_size)[0]


def detect_faces_batch(images, min_score: float = 0.9, min_face_size: int = 20) -> list[list[FaceDetection]]:
    """Detect faces in several images in one MTCNN call.

    Batching lets MTCNN's later stages run once for all images, which is many
    times faster than one call per image on small faces. Arguments and
    results are as in :func:`detect_faces`, one list of detections per image.
    """
    rgbs = [np.ascontiguousarray(_as_rgb(image)) for image in images]
    results: list[list[FaceDetection]] = [[] for _ in rgbs]
    usable = [index for index, rgb in enumerate(rgbs) if min(rgb.shape[:2]) >= 12]
    if not usable:
        return results
    batch = [rgbs[index] for index in usable]
    raw = mtcnn_detector().detect_faces(batch if len(batch) > 1 else batch[0], min_face_size=min_face_size, box_format="xyxy")
    if len(batch) == 1:
        raw = [raw]
    for index, faces in zip(usable, raw):
        results[index] = _to_detections(faces, rgbs[index].shape, min_score)
    return results


def _to_detections(raw_faces, shape, min_score: float) -> list[FaceDetection]:
    height, width = shape[:2]
    detections = []
    for face in raw_faces:
        score = float(face["confidence"])
        if score < min_score:
            continue
        x_min, y_min, x_max, y_max = (float(v) for v in face["box"])
        box = np.array(
            [max(0.0, x_min), max(0.0, y_min), min(float(width), x_max), min(float(height), y_max)],
            dtype=np.float32,
        )
        points = face["keypoints"]
        landmarks = np.array([points[name] for name in LANDMARK_NAMES], dtype=np.float32)
        detections.append(FaceDetection(box=box, score=score, landmarks=landmarks))
    detections.sort(key=lambda d: -d.score)
    return detections


def detect_largest_face(image: np.ndarray, min_score: float = 0.9) -> FaceDetection | None:
    """Return the detection with the largest box, or None when no face is found."""
    detections = detect_faces(image, min_score=min_score)
    if not detections:
        return None
    return max(detections, key=lambda d: float((d.box[2] - d.box[0]) * (d.box[3] - d.box[1])))


def alignment_matrix(landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """Estimate the 2x3 similarity transform that maps ``landmarks`` onto the ArcFace template.

    Parameters
    ----------
    landmarks : (5, 2) array
        ``(x, y)`` points in :data:`LANDMARK_NAMES` order.
    size : int
        Side of the aligned square face; the 112-pixel template is scaled to it.

    Returns
    -------
    (2, 3) ndarray of float64
        Forward transform, usable with ``cv2.warpAffine``.
    """
    from skimage.transform import SimilarityTransform

    source = np.asarray(landmarks, dtype=np.float64)
    if source.shape != (5, 2):
        raise ValueError(f"Expected landmarks of shape (5, 2), got {source.shape}.")
    target = ARCFACE_TEMPLATE_112.astype(np.float64) * (size / 112.0)
    transform = SimilarityTransform.from_estimate(source, target) if hasattr(SimilarityTransform, "from_estimate") else None
    if transform is None or not bool(transform):
        transform = SimilarityTransform()
        if not transform.estimate(source, target):
            raise ValueError("The landmarks are degenerate (for example all at one point); cannot align the face.")
    return transform.params[:2]


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """Warp a face so that its five landmarks land on the ArcFace template.

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
    landmarks : (5, 2) array
        ``(x, y)`` points in :data:`LANDMARK_NAMES` order, in ``image`` pixels.
    size : int
        Side of the output square, in pixels.

    Returns
    -------
    (size, size, 3) ndarray of uint8
        Aligned face; pixels that fall outside the source image are black.
    """
    import cv2

    matrix = alignment_matrix(landmarks, size)
    return cv2.warpAffine(_as_rgb(image), matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine ``matrix`` to ``(N, 2)`` points; returns ``(N, 2)`` float32."""
    points = np.asarray(points, dtype=np.float64)
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)
