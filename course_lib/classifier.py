"""Mask-wearing classifier: face-crop data, near-duplicate-aware splits, save, load and predict.

Classes are :data:`course_lib.data.MASK_CLASSES` in id order: 0 ``with_mask``
(mask worn), 1 ``without_mask`` (no mask), 2 ``mask_weared_incorrect`` (mask
worn incorrectly). A classifier takes face crops in the package convention
(RGB uint8 ``(H, W, 3)``, any size) and resizes them to its square input size;
inside the model pixels are float32 in ``[0, 1]``.

Saving and loading (for the two-stage pipeline, detector then classifier)::

    save_classifier(model, "mask_classifier.keras", class_names=MASK_CLASSES, input_size=64)
    classifier = load_classifier("mask_classifier.keras")
    class_ids, probabilities = classifier.predict(face_crops)

The model is stored in the ``.keras`` format and its metadata (class names,
input size, pixel range) in a JSON file next to it with the suffix
``.json`` (``mask_classifier.json`` above).

Data: the with/without-mask classification set gives photos, each cut down to
its face when MTCNN finds a face that is small in the photo; FMD gives boxes of
all three classes, which are padded by a margin and cropped; RMFRD (optional)
gives real masked and unmasked face crops.
FMD faces are small (median side about 21 px), so crops whose shorter box side
is below ``min_side`` pixels are dropped and counted, and crops smaller than the
model input are counted as upscaled. Near-duplicate images are grouped by a
difference hash (dHash) so that a split never puts copies of one picture on
both sides.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from .config import cache_dir
from .data import MASK_CLASSES, MASK_CLASS_TITLES, load_fmd, load_mask_classification, load_rmfrd
from .images import SkippedFiles, read_images, resize, to_gray

log = logging.getLogger(__name__)

METADATA_SUFFIX = ".json"
FORMAT_VERSION = 1


# --- preparing crops for a model ---------------------------------------------------


def crop_face(image: np.ndarray, box: Sequence[float], margin: float = 0.2, square: bool = True) -> np.ndarray:
    """Cut a face out of an image, padding the box by a margin.

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
    box : (x_min, y_min, x_max, y_max)
        Face box in pixels, as returned by the detectors and FMD's annotations.
    margin : float
        Padding added on every side, as a fraction of the box side (0.2 adds
        20% of the width left and right, 20% of the height above and below).
    square : bool
        Grow the shorter side of the padded box to the longer one (around the
        same centre) so that resizing to a square input does not distort the face.

    Returns
    -------
    (h, w, 3) ndarray of uint8
        The crop, clipped to the image (so it can be smaller than the padded
        box near an edge); at least 1 pixel a side.
    """
    x_min, y_min, x_max, y_max = (float(v) for v in box)
    if x_max <= x_min or y_max <= y_min:
        raise ValueError(f"Box {tuple(box)} is empty: expected (x_min, y_min, x_max, y_max) with x_max > x_min and y_max > y_min.")
    width, height = x_max - x_min, y_max - y_min
    centre_x, centre_y = (x_min + x_max) / 2, (y_min + y_max) / 2
    width, height = width * (1 + 2 * margin), height * (1 + 2 * margin)
    if square:
        width = height = max(width, height)
    rows, cols = image.shape[:2]
    left = int(np.clip(np.floor(centre_x - width / 2), 0, cols - 1))
    top = int(np.clip(np.floor(centre_y - height / 2), 0, rows - 1))
    right = int(np.clip(np.ceil(centre_x + width / 2), left + 1, cols))
    bottom = int(np.clip(np.ceil(centre_y + height / 2), top + 1, rows))
    return image[top:bottom, left:right]


def prepare_batch(images, input_size: int) -> np.ndarray:
    """Resize face crops to the model input and convert them to float32 in ``[0, 1]``.

    Parameters
    ----------
    images : sequence of (H, W, 3) uint8 arrays, or (N, H, W, 3) array
        Crops of any size in the package convention. An array of float dtype
        is taken to be in ``[0, 1]`` already.
    input_size : int
        Side of the square model input, in pixels.

    Returns
    -------
    (N, input_size, input_size, 3) ndarray of float32 in [0, 1]
    """
    if isinstance(images, np.ndarray) and images.ndim == 3:
        raise ValueError(f"Got one image of shape {images.shape}; pass a list of images or an (N, H, W, 3) array.")
    batch = np.empty((len(images), input_size, input_size, 3), dtype=np.float32)
    for index, image in enumerate(images):
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"Image {index} has shape {image.shape}; expected an (H, W, 3) RGB image.")
        if image.dtype == np.uint8:
            if image.shape[:2] != (input_size, input_size):
                image = resize(image, (input_size, input_size))
            batch[index] = image.astype(np.float32) / 255.0
        else:
            image = image.astype(np.float32)
            if image.shape[:2] != (input_size, input_size):
                import cv2

                image = cv2.resize(image, (input_size, input_size), interpolation=cv2.INTER_LINEAR)
            batch[index] = np.clip(image, 0.0, 1.0)
    return batch


def predict_crops(model, images, input_size: int | None = None, batch_size: int = 64, flip_average: bool = False) -> np.ndarray:
    """Run batch inference on face crops.

    Parameters
    ----------
    model : keras.Model
        A classifier with a softmax output.
    images : sequence of (H, W, 3) uint8 arrays, or (N, H, W, 3) array
        Face crops of any size; see :func:`prepare_batch`.
    input_size : int, optional
        Side of the model input; read from ``model.input_shape`` when omitted.
    batch_size : int
    flip_average : bool
        Average the probabilities of each crop and its mirror image (test-time
        augmentation; twice the cost).

    Returns
    -------
    probabilities : (N, num_classes) ndarray of float32
        Rows sum to 1. ``N = 0`` gives an empty ``(0, num_classes)`` array.
    """
    if input_size is None:
        input_size = int(model.input_shape[1])
    num_classes = int(model.output_shape[-1])
    if len(images) == 0:
        return np.zeros((0, num_classes), dtype=np.float32)
    # A compiled forward pass avoids both Keras' per-call predict() set-up and eager dispatch,
    # which dominate the cost of the small batches of a live video.
    from .models import inference_function

    forward = inference_function(model)
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = prepare_batch(images[start : start + batch_size], input_size)
        probabilities = np.asarray(forward(batch), dtype=np.float32)
        if flip_average:
            mirrored = np.asarray(forward(np.ascontiguousarray(batch[:, :, ::-1])), dtype=np.float32)
            probabilities = (probabilities + mirrored) / 2
        outputs.append(probabilities)
    return np.concatenate(outputs)


@dataclasses.dataclass
class MaskClassifier:
    """A trained classifier with the metadata needed to use it.

    Attributes
    ----------
    model : keras.Model
    class_names : tuple of str
        Class name per class id, for example :data:`~course_lib.data.MASK_CLASSES`.
    input_size : int
        Side of the square model input, in pixels.
    """

    model: object
    class_names: tuple[str, ...]
    input_size: int

    def predict(self, images, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Classify face crops.

        Parameters
        ----------
        images : sequence of (H, W, 3) uint8 arrays, or (N, H, W, 3) array
            Face crops of any size (the detector's box padded by a margin,
            see :func:`crop_face`); they are resized to :attr:`input_size`.
        batch_size : int

        Returns
        -------
        class_ids : (N,) ndarray of int64
            Index into :attr:`class_names` of the most probable class.
        probabilities : (N, num_classes) ndarray of float32
            Softmax output; rows sum to 1.
        """
        probabilities = predict_crops(self.model, images, self.input_size, batch_size)
        return probabilities.argmax(axis=1).astype(np.int64), probabilities

    def titles(self, class_ids) -> list[str]:
        """Return plain-English titles (``"mask worn"``, ...) for class ids."""
        return [MASK_CLASS_TITLES.get(self.class_names[i], self.class_names[i]) for i in np.asarray(class_ids).ravel()]


def _metadata_path(path: Path) -> Path:
    return path.with_suffix(METADATA_SUFFIX)


def save_classifier(model, path: os.PathLike | str, class_names: Sequence[str] = MASK_CLASSES, input_size: int | None = None) -> Path:
    """Save a classifier as a ``.keras`` file plus a JSON file of metadata.

    Parameters
    ----------
    model : keras.Model
    path : path ending in ``.keras``
        Parent folders are created.
    class_names : sequence of str
        One name per model output, in class-id order.
    input_size : int, optional
        Side of the square model input; read from ``model.input_shape`` when omitted.

    Returns
    -------
    Path
        The ``.keras`` file. The metadata is written to the same path with the
        suffix ``.json``.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"Classifier path {str(path)!r} must end in '.keras' (the Keras 3 model format).")
    num_outputs = int(model.output_shape[-1])
    if len(class_names) != num_outputs:
        raise ValueError(f"The model has {num_outputs} outputs but {len(class_names)} class names were given: {list(class_names)}.")
    if input_size is None:
        input_size = int(model.input_shape[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    metadata = {
        "format_version": FORMAT_VERSION,
        "class_names": list(class_names),
        "input_size": int(input_size),
        "input_range": [0.0, 1.0],
        "input_channels": "RGB",
    }
    _metadata_path(path).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    log.info("Saved classifier to %s (classes %s, input %d px).", path, list(class_names), input_size)
    return path


def load_classifier(path: os.PathLike | str) -> MaskClassifier:
    """Load a classifier written by :func:`save_classifier`.

    Parameters
    ----------
    path : path to the ``.keras`` file
        Its ``.json`` metadata file must sit next to it.

    Returns
    -------
    MaskClassifier
        Call ``.predict(images)`` for class ids and probabilities.
    """
    import keras

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Classifier file {str(path)!r} does not exist; train and save one with save_classifier first.")
    metadata_path = _metadata_path(path)
    if not metadata_path.is_file():
        raise FileNotFoundError(
            f"Metadata file {str(metadata_path)!r} is missing; it is written by save_classifier next to the .keras file."
        )
    metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{str(metadata_path)!r} has format_version {metadata.get('format_version')!r}; expected {FORMAT_VERSION}.")
    model = keras.saving.load_model(path, compile=False)
    return MaskClassifier(model=model, class_names=tuple(metadata["class_names"]), input_size=int(metadata["input_size"]))


# --- near-duplicate groups -------------------------------------------------------


def difference_hash(image: np.ndarray, hash_size: int = 8) -> np.ndarray:
    """Compute the difference hash (dHash) of an image.

    The image is converted to grayscale and shrunk to ``hash_size`` rows by
    ``hash_size + 1`` columns (area interpolation). Each bit records whether a
    pixel is brighter than its right neighbour. Resized, re-encoded or
    slightly edited copies of a picture get hashes a few bits apart.

    Parameters
    ----------
    image : (H, W, 3) or (H, W) ndarray of uint8
    hash_size : int

    Returns
    -------
    (hash_size * hash_size,) ndarray of bool
    """
    import cv2

    gray = to_gray(np.asarray(image))
    small = cv2.resize(gray, (hash_size + 1, hash_size), interpolation=cv2.INTER_AREA).astype(np.int16)
    return (small[:, 1:] > small[:, :-1]).ravel()


def hamming_distances(hashes: np.ndarray) -> np.ndarray:
    """Return the ``(N, N)`` matrix of Hamming distances between ``(N, B)`` boolean hashes."""
    bits = np.asarray(hashes, dtype=bool)
    packed = np.packbits(bits, axis=1)
    distances = np.zeros((len(bits), len(bits)), dtype=np.int32)
    for column in range(packed.shape[1]):
        byte = packed[:, column]
        distances += np.bitwise_count(byte[:, None] ^ byte[None, :]).astype(np.int32)
    return distances


def group_near_duplicates(hashes: np.ndarray, max_distance: int = 6, same_group: Sequence[tuple[int, str]] = ()) -> np.ndarray:
    """Cluster hashes whose Hamming distance is at most ``max_distance`` (union-find).

    Clustering is transitive: if A is near B and B is near C, all three share
    a group even when A and C are further apart.

    Parameters
    ----------
    hashes : (N, B) ndarray of bool
    max_distance : int
        Largest Hamming distance, in bits, still counted as a near duplicate.
    same_group : sequence of (index, key)
        Extra links: all indices that share a key (for example a person's
        name) are put in one group, whatever their hashes.

    Returns
    -------
    groups : (N,) ndarray of int64
        Group id per hash, numbered 0, 1, ... in order of first appearance.
    """
    count = len(hashes)
    parent = np.arange(count)

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    first, second = np.nonzero(np.triu(hamming_distances(hashes) <= max_distance, k=1))
    first_with_key: dict[str, int] = {}
    links = list(zip(first.tolist(), second.tolist()))
    links += [(first_with_key.setdefault(key, index), index) for index, key in same_group]
    for i, j in links:
        root_i, root_j = find(i), find(j)
        if root_i != root_j:
            parent[max(root_i, root_j)] = min(root_i, root_j)
    roots = np.array([find(i) for i in range(count)])
    _, groups = np.unique(roots, return_inverse=True)
    # Renumber in order of first appearance so ids do not depend on np.unique's sort.
    order = {}
    return np.array([order.setdefault(g, len(order)) for g in groups.tolist()], dtype=np.int64)


def grouped_split(
    labels: np.ndarray, groups: np.ndarray, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into train and test so that no group is on both sides.

    Uses scikit-learn's :class:`~sklearn.model_selection.StratifiedGroupKFold`
    with ``round(1 / test_fraction)`` folds and takes the first fold as the test
    set, which keeps class proportions close to those of the whole set.

    Returns
    -------
    train_indices, test_indices : ndarray of int64
        Sorted, disjoint, covering every index.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}.")
    folds = max(2, round(1 / test_fraction))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # A class rarer than the number of folds (FMD's incorrectly worn masks) is expected:
        # its few groups simply land in a few folds.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        train, test = next(splitter.split(np.zeros(len(labels)), labels, groups))
    return np.sort(train).astype(np.int64), np.sort(test).astype(np.int64)


# --- the face-crop data set --------------------------------------------------------


@dataclasses.dataclass
class MaskCrops:
    """Face crops with labels, near-duplicate groups and a record of what was left out.

    Attributes
    ----------
    images : (N, S, S, 3) ndarray of uint8
        Crops resized to the square input size ``S``.
    labels : (N,) ndarray of int64
        Indices into :attr:`class_names`.
    groups : (N,) ndarray of int64
        Near-duplicate group per crop; crops of one FMD image, and RMFRD crops
        of one person, share a group.
    sources : (N,) ndarray of str
        ``"mask_classification"``, ``"fmd"`` or ``"rmfrd"``.
    paths : (N,) ndarray of str
        Source image file of each crop.
    original_sides : (N,) ndarray of int64
        Shorter side of each crop before resizing, in pixels.
    class_names : tuple of str
    dropped_small : int
        FMD boxes dropped because their shorter side was below ``min_side``.
    cut_to_face : (N,) ndarray of bool
        True where a classification photo was cut down to its detected face;
        False for photos kept whole and for FMD and RMFRD crops.
    skipped_files : list of (str, str)
        Unreadable files (path, reason) that were skipped.
    """

    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    sources: np.ndarray
    paths: np.ndarray
    original_sides: np.ndarray
    class_names: tuple[str, ...]
    dropped_small: int = 0
    skipped_files: list = dataclasses.field(default_factory=list)
    cut_to_face: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.cut_to_face is None:
            self.cut_to_face = np.zeros(len(self.labels), dtype=bool)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_size(self) -> int:
        return int(self.images.shape[1])

    @property
    def upscaled(self) -> int:
        """Number of crops whose shorter side was below the input size, so resizing enlarged them."""
        return int(np.sum(self.original_sides < self.input_size))

    def class_counts(self) -> dict[str, int]:
        """Return the number of crops per class name."""
        return {name: int(np.sum(self.labels == i)) for i, name in enumerate(self.class_names)}

    def subset(self, indices) -> "MaskCrops":
        """Return the crops at ``indices`` (the counts of dropped and skipped files are kept)."""
        indices = np.asarray(indices)
        return dataclasses.replace(
            self,
            images=self.images[indices],
            labels=self.labels[indices],
            groups=self.groups[indices],
            sources=self.sources[indices],
            paths=self.paths[indices],
            original_sides=self.original_sides[indices],
            cut_to_face=self.cut_to_face[indices],
        )

    def summary(self) -> str:
        """Describe the set in a few deterministic lines: counts per class and source, dropped and upscaled crops."""
        lines = [f"{len(self)} crops of {self.input_size}x{self.input_size} px in {len(np.unique(self.groups))} near-duplicate groups"]
        for name, count in self.class_counts().items():
            lines.append(f"  {name}: {count}")
        for source in np.unique(self.sources):
            lines.append(f"  from {source}: {int(np.sum(self.sources == source))}")
        lines.append(f"FMD boxes dropped (shorter side too small): {self.dropped_small}")
        if np.any(self.sources == "mask_classification"):
            cut = [f"{name} {int(np.sum(self.cut_to_face & (self.labels == i)))}" for i, name in enumerate(self.class_names[:2])]
            lines.append(f"Classification photos cut to their face: {', '.join(cut)}")
        lines.append(f"Crops upscaled from below {self.input_size} px: {self.upscaled}")
        lines.append(f"Unreadable files skipped: {len(self.skipped_files)}")
        return "\n".join(lines)


FACE_SEARCH_SIDE = 320
FACE_MIN_SCORE = 0.95


def find_largest_faces(images, min_score: float = FACE_MIN_SCORE, search_side: int = FACE_SEARCH_SIDE) -> list[np.ndarray | None]:
    """Find the largest face in each image with MTCNN, to crop whole photos to their face.

    Each image is shrunk so that its longer side is at most ``search_side``
    pixels before detection, which keeps a 2,000-photo pass near a minute on
    two CPU cores. On the classification set MTCNN misses many masked faces
    that fill the frame and now and then fires on an arm or a shirt, so the
    default ``min_score`` is high.

    Parameters
    ----------
    images : sequence of (H, W, 3) ndarray of uint8
        RGB images of any size.
    min_score : float
        Detections with a lower MTCNN confidence are ignored.
    search_side : int
        Longer image side, in pixels, at which faces are searched for.

    Returns
    -------
    list of (4,) ndarray of float32 or None
        Per image, the ``(x_min, y_min, x_max, y_max)`` box of the largest
        face in the image's own pixels, clipped to the image; None when no face
        is found.
    """
    from .faces import detect_faces_batch

    scales, small = [], []
    for image in images:
        scale = min(1.0, search_side / max(image.shape[:2]))
        if scale < 1:
            image = resize(image, (max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale))))
        scales.append(scale)
        small.append(image)
    found: list[np.ndarray | None] = []
    for image, scale, detections in zip(images, scales, detect_faces_batch(small, min_score=min_score)):
        box = None
        if detections:
            largest = max(detections, key=lambda d: float((d.box[2] - d.box[0]) * (d.box[3] - d.box[1])))
            rows, cols = image.shape[:2]
            box = np.clip(largest.box / scale, 0, [cols, rows, cols, rows]).astype(np.float32)
            box = box if box[2] > box[0] and box[3] > box[1] else None
        found.append(box)
    return found


def _photo_key(path: Path) -> str:
    """Return the cache key of a classification photo: its class folder and file name."""
    return f"{path.parent.name}/{path.name}"


def classification_face_boxes(records, use_cache: bool = True, progress: bool = True) -> dict[str, np.ndarray | None]:
    """Return the largest face box of every classification photo, found once and cached.

    Boxes come from :func:`find_largest_faces`. They are stored as JSON in
    ``cache_dir("classifier")``, keyed by each file's class folder and name
    (``"with_mask/0-with-mask.jpg"``). Crops at every input size share this
    one detection pass, which takes about a minute for 2,000 photos on two
    CPU cores.

    Parameters
    ----------
    records : sequence of course_lib.data.FaceRecord
        Records of :func:`course_lib.data.load_mask_classification`.

    Returns
    -------
    dict of str to (4,) ndarray of float32 or None
        ``(x_min, y_min, x_max, y_max)`` in the photo's pixels per readable
        file; None where no face was found. Unreadable files are absent.
    """
    settings = {"version": 2, "min_score": FACE_MIN_SCORE, "search_side": FACE_SEARCH_SIDE}
    path = cache_dir("classifier") / "classification_face_boxes.json"
    stored: dict = {}
    if use_cache and path.is_file():
        content = json.loads(path.read_text())
        if content.get("settings") == settings:
            stored = content["boxes"]
    keys = [_photo_key(record.path) for record in records]
    todo = [i for i, key in enumerate(keys) if key not in stored]
    if todo:
        log.info("Looking for the face in %d classification photos with MTCNN.", len(todo))
        pending: list[tuple[int, np.ndarray]] = []
        paths = [records[i].path for i in todo]

        def detect_pending() -> None:
            for (index, _), box in zip(pending, find_largest_faces([picture for _, picture in pending])):
                stored[keys[todo[index]]] = None if box is None else [round(float(v), 1) for v in box]
            pending.clear()

        for index, picture in _iter_images(paths, [], progress, "Finding faces"):
            pending.append((index, picture))
            if len(pending) == 16:
                detect_pending()
        detect_pending()
        if use_cache:
            temporary = path.with_name(path.stem + ".partial.json")
            temporary.write_text(json.dumps({"settings": settings, "boxes": stored}, indent=0, sort_keys=True))
            os.replace(temporary, path)
    return {key: None if stored[key] is None else np.array(stored[key], dtype=np.float32) for key in keys if key in stored}


def load_labelled_files(
    paths: Sequence[os.PathLike | str], labels: Sequence[int], input_size: int, progress: bool = False
) -> tuple[np.ndarray, np.ndarray, SkippedFiles]:
    """Read labelled image files at the model input size, skipping unreadable files.

    Unreadable files (empty, truncated, not an image) are dropped with their
    labels, recorded in the returned :class:`~course_lib.images.SkippedFiles`,
    and reported once in a warning (the skip policy of
    :func:`course_lib.images.read_images`).

    Returns
    -------
    images : (N, input_size, input_size, 3) ndarray of uint8
    labels : (N,) ndarray of int64
    skipped : SkippedFiles
    """
    if len(paths) != len(labels):
        raise ValueError(f"Got {len(paths)} paths but {len(labels)} labels; expected one label per file.")
    images, kept, skipped = read_images(paths, on_error="skip", size=(input_size, input_size), progress=progress)
    stacked = np.stack(images) if images else np.zeros((0, input_size, input_size, 3), dtype=np.uint8)
    return stacked, np.asarray(labels, dtype=np.int64)[kept], skipped


def _cache_key(**settings) -> str:
    text = json.dumps(settings, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def build_mask_crops(
    input_size: int = 64,
    include_fmd: bool = True,
    include_rmfrd: bool = False,
    crop_to_face: bool = True,
    max_face_fraction: float = 0.6,
    min_side: int = 16,
    margin: float = 0.2,
    max_hash_distance: int = 6,
    use_cache: bool = True,
    progress: bool = True,
) -> MaskCrops:
    """Build the three-class face-crop set from the classification set, FMD and optionally RMFRD.

    The classification set contributes every photo as ``with_mask`` or
    ``without_mask``. A photo is cropped to its largest face, as found by
    MTCNN (:func:`classification_face_boxes`), when the face is small in it
    (see ``max_face_fraction``); otherwise it is kept whole and counted. Most
    photos kept whole are already tight face crops, in which MTCNN finds no
    masked face or only its upper half. FMD contributes its boxes of all three
    classes. Every box is padded by ``margin`` and made square
    (:func:`crop_face`); FMD boxes whose shorter side is below ``min_side`` pixels
    are dropped and counted. Every source image is hashed with
    :func:`difference_hash`, and images within ``max_hash_distance`` bits are
    grouped (:func:`group_near_duplicates`); all crops of one FMD image share
    its group.

    The result is cached as a compressed ``.npz`` in
    ``cache_dir("classifier")``, keyed by the settings, so a second call takes
    about a second.

    Parameters
    ----------
    input_size : int
        Side of the square crops, in pixels.
    include_fmd : bool
        False gives the two-class set of the classification images only.
    include_rmfrd : bool
        Add RMFRD's face crops (real masked photos as ``with_mask``, the
        others as ``without_mask``). All images of one RMFRD person share a
        group, so a person never spans a split.
    crop_to_face : bool
        Crop classification photos to their face, as the two-stage pipeline
        crops detected faces. False keeps every photo whole.
    max_face_fraction : float
        A photo is cropped only when its face box's longer side is below this
        fraction of the photo's shorter side.
    min_side : int
        Smallest shorter box side, in pixels, of the FMD faces that are kept.
    margin : float
        Padding around face boxes, as a fraction of the box side.
    max_hash_distance : int
        Hamming distance, in bits of the 64-bit dHash, up to which two images are near duplicates.
    use_cache : bool
    progress : bool
        Show progress bars while reading images.

    Returns
    -------
    MaskCrops
        ``class_names`` is :data:`~course_lib.data.MASK_CLASSES` with FMD, and
        its first two entries without.
    """
    class_names = tuple(MASK_CLASSES if include_fmd else MASK_CLASSES[:2])
    # NOTE: the key covers the settings and the size of the classification set only;
    # delete cache_dir("classifier") after changing FMD or RMFRD files.
    key = _cache_key(
        version=3, input_size=input_size, include_fmd=include_fmd, include_rmfrd=include_rmfrd, crop_to_face=crop_to_face,
        max_face_fraction=max_face_fraction, min_side=min_side, margin=margin,
        max_hash_distance=max_hash_distance, classification=len(load_mask_classification()),
    )
    cache_path = cache_dir("classifier") / f"mask_crops_{input_size}px_{key}.npz"
    if use_cache and cache_path.is_file():
        log.info("Loading cached face crops from %s.", cache_path)
        return _load_crops(cache_path, class_names)

    started = time.perf_counter()
    images, labels, sources, paths, sides, image_ids, hashes = [], [], [], [], [], [], []
    skipped_files: list[tuple[str, str]] = []
    identities: list[tuple[int, str]] = []

    records = load_mask_classification()
    face_boxes = classification_face_boxes(records, use_cache=use_cache, progress=progress) if crop_to_face else {}
    cut_to_face = []
    for index, picture in _iter_images([r.path for r in records], skipped_files, progress, "Classification set"):
        record = records[index]
        hashes.append(difference_hash(picture))
        image_ids.append(len(hashes) - 1)
        box = face_boxes.get(_photo_key(record.path))
        cut = box is not None and max(box[2] - box[0], box[3] - box[1]) < max_face_fraction * min(picture.shape[:2])
        if cut:
            picture = crop_face(picture, box, margin=margin)
        cut_to_face.append(cut)
        images.append(resize(picture, (input_size, input_size)))
        labels.append(MASK_CLASSES.index("with_mask" if record.masked else "without_mask"))
        sources.append("mask_classification")
        paths.append(str(record.path))
        sides.append(min(picture.shape[:2]))

    dropped_small = 0
    if include_fmd:
        fmd_records, _ = load_fmd()
        for index, picture in _iter_images([r.image_path for r in fmd_records], skipped_files, progress, "FMD"):
            record = fmd_records[index]
            hashes.append(difference_hash(picture))
            image_id = len(hashes) - 1
            for box, label in zip(record.boxes, record.labels):
                if min(box[2] - box[0], box[3] - box[1]) < min_side:
                    dropped_small += 1
                    continue
                crop = crop_face(picture, box, margin=margin)
                images.append(resize(crop, (input_size, input_size)))
                labels.append(int(label))
                sources.append("fmd")
                paths.append(str(record.image_path))
                sides.append(min(crop.shape[:2]))
                image_ids.append(image_id)

    if include_rmfrd:
        rmfrd_records = load_rmfrd()
        for index, picture in _iter_images([r.path for r in rmfrd_records], skipped_files, progress, "RMFRD"):
            record = rmfrd_records[index]
            hashes.append(difference_hash(picture))
            image_ids.append(len(hashes) - 1)
            identities.append((len(hashes) - 1, record.identity))
            images.append(resize(picture, (input_size, input_size)))
            labels.append(MASK_CLASSES.index("with_mask" if record.masked else "without_mask"))
            sources.append("rmfrd")
            paths.append(str(record.path))
            sides.append(min(picture.shape[:2]))

    image_groups = group_near_duplicates(np.array(hashes), max_distance=max_hash_distance, same_group=identities)
    crops = MaskCrops(
        images=np.stack(images),
        labels=np.array(labels, dtype=np.int64),
        groups=image_groups[np.array(image_ids)],
        sources=np.array(sources),
        paths=np.array(paths),
        original_sides=np.array(sides, dtype=np.int64),
        class_names=class_names,
        dropped_small=dropped_small,
        cut_to_face=np.concatenate([np.array(cut_to_face, dtype=bool), np.zeros(len(labels) - len(cut_to_face), dtype=bool)]),
        skipped_files=skipped_files,
    )
    log.info("Built %d face crops in %.1f s.", len(crops), time.perf_counter() - started)
    if use_cache:
        _save_crops(cache_path, crops)
    return crops


def _iter_images(paths: Sequence[Path], skipped_files: list, progress: bool, description: str, chunk: int = 32):
    """Yield ``(index, image)`` for readable files, reading ``chunk`` files at a time.

    Only one chunk of full-size images is in memory at once (the
    classification set alone is about 0.5 GB decoded). Unreadable files follow
    the skip policy of :func:`course_lib.images.read_images` and are appended
    to ``skipped_files`` as ``(path, reason)``.
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=len(paths), desc=description, unit="img", disable=not progress)
    for start in range(0, len(paths), chunk):
        pictures, kept, skipped = read_images(paths[start : start + chunk], on_error="skip")
        skipped_files += [(str(path), reason) for path, reason in skipped.items]
        for picture, offset in zip(pictures, kept):
            yield start + offset, picture
        bar.update(min(chunk, len(paths) - start))
    bar.close()


def _save_crops(path: Path, crops: MaskCrops) -> None:
    temporary = path.with_name(path.stem + ".partial.npz")
    np.savez_compressed(
        temporary,
        images=crops.images,
        labels=crops.labels,
        groups=crops.groups,
        sources=crops.sources,
        paths=crops.paths,
        original_sides=crops.original_sides,
        dropped_small=np.array(crops.dropped_small),
        cut_to_face=crops.cut_to_face,
        skipped_files=np.array(crops.skipped_files, dtype=str).reshape(-1, 2),
    )
    # Renaming is atomic, so a notebook interrupted while writing leaves no half-written cache.
    os.replace(temporary, path)


def _load_crops(path: Path, class_names: tuple[str, ...]) -> MaskCrops:
    with np.load(path) as stored:
        return MaskCrops(
            images=stored["images"],
            labels=stored["labels"],
            groups=stored["groups"],
            sources=stored["sources"],
            paths=stored["paths"],
            original_sides=stored["original_sides"],
            class_names=class_names,
            dropped_small=int(stored["dropped_small"]),
            cut_to_face=stored["cut_to_face"],
            skipped_files=[tuple(row) for row in stored["skipped_files"].tolist()],
        )


# --- evaluation and the full-mode experiment ----------------------------------------


@dataclasses.dataclass
class Evaluation:
    """Accuracy, confusion matrix and per-class recall of a classifier on labelled crops.

    Attributes
    ----------
    accuracy : float
    confusion : (C, C) ndarray of int64
        Rows are true classes, columns predicted classes (scikit-learn's convention).
    recall : dict of class name to float
        Share of each true class predicted correctly; NaN for a class with no examples.
    support : dict of class name to int
        Number of examples per true class.
    predictions : (N,) ndarray of int64
    probabilities : (N, C) ndarray of float32
    """

    accuracy: float
    confusion: np.ndarray
    recall: dict
    support: dict
    predictions: np.ndarray
    probabilities: np.ndarray


def evaluate_classifier(model, images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], flip_average: bool = False) -> Evaluation:
    """Predict ``images`` and compare with ``labels`` (see :class:`Evaluation`).

    ``flip_average`` averages each prediction with that of the mirrored image (:func:`predict_crops`).
    """
    probabilities = predict_crops(model, images, flip_average=flip_average)
    return evaluate_probabilities(probabilities, labels, class_names)


def evaluate_probabilities(probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> Evaluation:
    """Compare class probabilities with ``labels`` (see :class:`Evaluation`).

    Parameters
    ----------
    probabilities : (N, C) ndarray of float
        Class probabilities per crop, for example the mean of several models' outputs.
    labels : (N,) ndarray of int
    class_names : sequence of C str
    """
    from sklearn.metrics import confusion_matrix

    probabilities = np.asarray(probabilities, dtype=np.float32)
    labels = np.asarray(labels)
    if probabilities.ndim != 2 or len(probabilities) != len(labels) or probabilities.shape[1] != len(class_names):
        raise ValueError(
            f"Expected probabilities of shape ({len(labels)}, {len(class_names)}) for {len(labels)} labels "
            f"and {len(class_names)} classes, got {probabilities.shape}."
        )
    predictions = probabilities.argmax(axis=1).astype(np.int64)
    confusion = confusion_matrix(labels, predictions, labels=np.arange(len(class_names)))
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.diag(confusion) / support
    return Evaluation(
        accuracy=float(np.mean(predictions == labels)),
        confusion=confusion,
        recall={name: float(value) for name, value in zip(class_names, recall)},
        support={name: int(value) for name, value in zip(class_names, support)},
        predictions=predictions,
        probabilities=probabilities,
    )


def default_classifier_path(input_size: int = 64) -> Path:
    """Return where :func:`full_mode_experiment` saves the three-class classifier in the cache."""
    return cache_dir("classifier") / f"mask_classifier_3class_{input_size}px.keras"


def split_for_test_source(crops: MaskCrops, test_source: str | None, test_fraction: float = 0.2, seed: int = 0):
    """Split crops into train and test, testing on one source only.

    With ``test_source=None`` this is :func:`grouped_split` over all crops.
    Otherwise the test groups are drawn from the crops of ``test_source``, and
    the test set is those crops. The training set is every crop (of any
    source) in the other groups. Crops of other sources that share a group
    with a test crop (near duplicates across datasets) are left out of both.

    Returns
    -------
    train_indices, test_indices : ndarray of int64
    """
    if test_source is None:
        return grouped_split(crops.labels, crops.groups, test_fraction, seed)
    candidates = np.flatnonzero(crops.sources == test_source)
    if len(candidates) == 0:
        raise ValueError(f"No crops come from {test_source!r}; the sources are {sorted(set(crops.sources.tolist()))}.")
    _, test_part = grouped_split(crops.labels[candidates], crops.groups[candidates], test_fraction, seed)
    test = candidates[test_part]
    test_groups = np.unique(crops.groups[test])
    train = np.flatnonzero(~np.isin(crops.groups, test_groups))
    return train.astype(np.int64), np.sort(test).astype(np.int64)


def _train_and_evaluate(
    crops: MaskCrops,
    train: np.ndarray,
    test: np.ndarray,
    architecture: str,
    epochs: int,
    batch_size: int,
    seed: int,
    max_seconds,
    class_weight,
    label_smoothing: float = 0.0,
):
    import keras

    from . import models, training

    fit_part, val_part = grouped_split(crops.labels[train], crops.groups[train], test_fraction=0.1, seed=seed)
    fit, val = train[fit_part], train[val_part]

    training.configure_device(seed)
    model = models.BUILDERS[architecture]((crops.input_size, crops.input_size, 3), num_classes=len(crops.class_names))
    steps = epochs * -(-len(fit) // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=steps, alpha=0.02)
    result = training.train_classifier(
        model,
        (crops.images[fit], crops.labels[fit]),
        (crops.images[val], crops.labels[val]),
        epochs=epochs,
        batch_size=batch_size,
        augment=True,
        seed=seed,
        learning_rate=schedule,
        # The learning rate decays to near zero at the last epoch, where the
        # model is usually best, so early stopping only ends runs that stall for half of them.
        patience=max(5, epochs // 2),
        weight_decay=1e-4,
        class_weight=class_weight,
        max_seconds=max_seconds,
        label_smoothing=label_smoothing,
    )
    evaluation = evaluate_classifier(model, crops.images[test], crops.labels[test], crops.class_names)
    flipped = evaluate_classifier(model, crops.images[test], crops.labels[test], crops.class_names, flip_average=True)
    summary = {
        "architecture": architecture,
        "train_sources": {str(k): int(v) for k, v in zip(*np.unique(crops.sources[fit], return_counts=True))},
        "test_sources": {str(k): int(v) for k, v in zip(*np.unique(crops.sources[test], return_counts=True))},
        "parameters": int(model.count_params()),
        "train_images": int(len(fit)),
        "validation_images": int(len(val)),
        "test_images": int(len(test)),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped_by_time_budget": result.stopped_by_budget,
        "training_seconds": round(sum(result.seconds_per_epoch), 1),
        "seconds_per_epoch": round(result.mean_seconds_per_epoch, 1),
        "train_images_per_second": round(result.images_per_second, 1),
        "final_train_accuracy": round(result.history["accuracy"][-1], 4),
        **_test_summary(evaluation, flipped),
    }
    return model, summary, evaluation, flipped


def _test_summary(evaluation: Evaluation, flipped: Evaluation) -> dict:
    """Return the rounded test accuracy (plain and flip-averaged), recall, support and confusion matrix."""
    return {
        "test_accuracy": round(evaluation.accuracy, 4),
        "test_accuracy_flip_average": round(flipped.accuracy, 4),
        "test_recall": {name: round(value, 4) for name, value in evaluation.recall.items()},
        "test_support": evaluation.support,
        "test_confusion": evaluation.confusion.tolist(),
    }


def full_mode_experiment(
    input_size: int = 64,
    architecture: str = "resnet_small",
    epochs: int = 40,
    batch_size: int = 32,
    seed: int = 0,
    max_seconds_per_model: float | None = None,
    tasks: Sequence[str] = ("two_class", "three_class"),
    include_rmfrd: bool = True,
    label_smoothing: float = 0.1,
    ensemble: int = 1,
    save: bool = True,
) -> dict:
    """Train and evaluate the two-class and the three-class classifier from scratch.

    The crops come from :func:`build_mask_crops`, so classification photos
    with a small face are cut down to that face.

    Two-class (mask worn / no mask): the test set is a grouped 20% of the
    classification set; training uses the rest of it, plus, with
    ``include_rmfrd``, RMFRD's real masked and unmasked faces and FMD's
    with/without-mask crops (:func:`split_for_test_source`). ``ensemble``
    networks are trained with seeds ``seed``, ``seed + 1``, ... on that same
    split, and the ensemble predicts the mean of their class probabilities.
    Three-class: all crops, split 80/20 with :func:`grouped_split`, with
    balanced class weights for the rare incorrectly-worn class. It is a
    single network, the one that is saved. In both, 10% of each network's
    training groups (drawn with its own seed) are held out for early
    stopping. Training uses augmentation, label smoothing, AdamW with a
    cosine-decaying learning rate, and restores the weights of the epoch
    with the lowest validation loss. The test split is never seen during
    training or model selection.

    Parameters
    ----------
    input_size : int
    architecture : {"alexnet_small", "vgg_small", "resnet_small"}
    epochs : int
        Maximum epochs per model (early stopping may end sooner).
    batch_size : int
    seed : int
        Seed of the test split and of the first network.
    max_seconds_per_model : float, optional
        Time budget per model, in seconds of wall-clock time.
    tasks : sequence of {"two_class", "three_class"}
    include_rmfrd : bool
        Add RMFRD's face crops to the training data (and, for three classes, to the test data).
    label_smoothing : float
        See :func:`course_lib.training.train_classifier`.
    ensemble : int
        Number of two-class networks (at least 1). Three networks cost three
        times the training time; in the benchmark's run they scored 98.0%
        together and 98.0% to 98.25% alone: their errors largely overlap.
    save : bool
        Save the three-class model to :func:`default_classifier_path`.

    Returns
    -------
    dict
        A summary per task (test accuracy with and without flip averaging,
        per-class recall, confusion matrix, timings) and ``"conditions"``
        (CPU count, GPUs, versions). The two-class summary is that of the
        ensemble, with each network's own summary under ``"members"``.
    """
    import keras
    import tensorflow as tf

    unknown = set(tasks) - {"two_class", "three_class"}
    if unknown:
        raise ValueError(f"Unknown task(s) {sorted(unknown)}: use 'two_class' and/or 'three_class'.")
    if ensemble < 1:
        raise ValueError(f"ensemble must be at least 1 network, got {ensemble}.")
    results: dict = {}
    crops = build_mask_crops(input_size, include_fmd=True, include_rmfrd=include_rmfrd)
    if "two_class" in tasks:
        two_class = crops.subset(np.flatnonzero(crops.labels < 2))
        two_class.class_names = crops.class_names[:2]
        train, test = split_for_test_source(two_class, "mask_classification", 0.2, seed)
        members, plain, flipped = [], [], []
        for member in range(ensemble):
            log.info("Two-class network %d of %d (seed %d).", member + 1, ensemble, seed + member)
            _, summary, evaluation, flipped_evaluation = _train_and_evaluate(
                two_class, train, test, architecture, epochs, batch_size, seed + member, max_seconds_per_model, None, label_smoothing
            )
            members.append(summary)
            plain.append(evaluation.probabilities)
            flipped.append(flipped_evaluation.probabilities)
        combined = evaluate_probabilities(np.mean(plain, axis=0), two_class.labels[test], two_class.class_names)
        combined_flipped = evaluate_probabilities(np.mean(flipped, axis=0), two_class.labels[test], two_class.class_names)
        results["two_class"] = {
            **{key: members[0][key] for key in ("architecture", "train_sources", "test_sources", "parameters", "train_images", "test_images")},
            "ensemble": ensemble,
            "label_smoothing": label_smoothing,
            "epochs_run": [m["epochs_run"] for m in members],
            "training_seconds": round(sum(m["training_seconds"] for m in members), 1),
            **_test_summary(combined, combined_flipped),
            "members": members,
        }
        log.info("Two-class result: %s", results["two_class"])
    if "three_class" in tasks:
        train, test = split_for_test_source(crops, None, 0.2, seed)
        model, results["three_class"], _, _ = _train_and_evaluate(
            crops, train, test, architecture, epochs, batch_size, seed, max_seconds_per_model, "balanced", label_smoothing
        )
        results["three_class"]["label_smoothing"] = label_smoothing
        log.info("Three-class result: %s", results["three_class"])
        if save:
            results["three_class"]["saved_to"] = str(save_classifier(model, default_classifier_path(input_size), crops.class_names))
    results["conditions"] = {
        "input_size": input_size,
        "cpu_count": os.cpu_count(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    return results


def load_or_train_classifier(input_size: int = 64, seed: int = 0) -> MaskClassifier:
    """Load the cached three-class classifier, training and caching a quick one when there is none.

    The cache contains the model of :func:`full_mode_experiment` at
    :func:`default_classifier_path` when that has run. Otherwise a ResNet-style
    model is trained for 8 epochs, with augmentation, on 1,200 of the three-class
    training crops (about a minute on two idle CPU cores) and saved next to it with the suffix ``_quick``, so
    notebooks that only need *a* classifier (the two-stage detection
    pipeline) stay fast. Its accuracy is lower than the full model's.
    """
    full_path = default_classifier_path(input_size)
    if full_path.is_file():
        return load_classifier(full_path)
    quick_path = full_path.with_name(full_path.stem + "_quick.keras")
    if quick_path.is_file():
        return load_classifier(quick_path)

    from . import models, training

    log.info("No cached mask classifier found; training a quick one (a few epochs at %d px).", input_size)
    crops = build_mask_crops(input_size, include_fmd=True)
    train, _ = grouped_split(crops.labels, crops.groups, test_fraction=0.2, seed=seed)
    train = np.random.default_rng(seed).permutation(train)[:1200]
    training.configure_device(seed)
    model = models.build_resnet_small((input_size, input_size, 3), num_classes=len(crops.class_names))
    training.train_classifier(model, (crops.images[train], crops.labels[train]), epochs=8, augment=True, seed=seed)
    save_classifier(model, quick_path, crops.class_names, input_size)
    return load_classifier(quick_path)


# --- figures and the hand-over-mouth test image ------------------------------------------


def plot_confusion_matrix(evaluation: Evaluation, class_names: Sequence[str], title: str | None = None, ax=None):
    """Plot a confusion matrix with counts (scikit-learn's ``ConfusionMatrixDisplay``); returns the Axes."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4))
    labels = [MASK_CLASS_TITLES.get(name, name) for name in class_names]
    ConfusionMatrixDisplay(evaluation.confusion, display_labels=labels).plot(ax=ax, cmap="Blues", colorbar=False, xticks_rotation=20)
    ax.set_title(title or f"accuracy {evaluation.accuracy:.1%}")
    return ax


def cover_mouth_with_hand(face: np.ndarray, mouth: tuple[float, float] | None = None) -> np.ndarray:
    """Draw a skin-coloured, hand-like shape over the mouth and chin of a face.

    The hand is a palm (an ellipse) with four fingers (thick lines with
    rounded ends) pointing up and sideways. It is filled with the median
    colour of the cheeks and nose, so it matches the person's skin, and has a
    darker outline and lightly blurred edges.

    Parameters
    ----------
    face : (H, W, 3) ndarray of uint8
        A tightly cropped, frontal, unmasked face.
    mouth : (x, y), optional
        Mouth centre in pixels; ``(0.5 W, 0.74 H)`` when omitted, where the
        mouth sits in a tight face crop.

    Returns
    -------
    (H, W, 3) ndarray of uint8
        A copy of ``face`` with the hand drawn on it.
    """
    import cv2

    face = np.ascontiguousarray(face)
    height, width = face.shape[:2]
    centre_x, centre_y = mouth if mouth is not None else (0.5 * width, 0.74 * height)
    cheeks = face[int(0.45 * height) : int(0.6 * height), int(0.3 * width) : int(0.7 * width)].reshape(-1, 3)
    skin = tuple(int(v) for v in np.median(cheeks, axis=0))
    outline = tuple(int(v * 0.7) for v in skin)

    layer = face.copy()
    scale = width / 100.0
    palm_axes = (int(30 * scale), int(18 * scale))
    palm_centre = (int(centre_x + 8 * scale), int(centre_y + 10 * scale))
    finger_width = max(2, int(9 * scale))
    for index in range(4):
        start = (int(palm_centre[0] - 22 * scale + index * 12 * scale), int(palm_centre[1] - 6 * scale))
        end = (int(start[0] - 20 * scale), int(start[1] - (22 - 3 * abs(index - 1.5)) * scale))
        cv2.line(layer, start, end, outline, finger_width + 2, lineType=cv2.LINE_AA)
        cv2.line(layer, start, end, skin, finger_width, lineType=cv2.LINE_AA)
    cv2.ellipse(layer, palm_centre, palm_axes, -15, 0, 360, outline, -1, lineType=cv2.LINE_AA)
    cv2.ellipse(layer, palm_centre, (palm_axes[0] - 2, palm_axes[1] - 2), -15, 0, 360, skin, -1, lineType=cv2.LINE_AA)

    mask = np.any(layer != face, axis=2).astype(np.float32)
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.5, scale))[..., None]
    blended = face.astype(np.float32) * (1 - mask) + cv2.GaussianBlur(layer, (0, 0), 0.6 * scale + 0.1).astype(np.float32) * mask
    return (blended + 0.5).astype(np.uint8)
