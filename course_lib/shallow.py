"""Masked-probe face recognition with shallow descriptors.

The experiment of notebook 02: enrol a gallery of unmasked faces, then identify
probe faces of the same people, once unmasked and once with a synthetic mask
(:func:`course_lib.masks.apply_mask`), and compare the rank-1 accuracy of
hand-crafted descriptors on the whole face and on the upper face only.

Pipeline
--------
1. :func:`load_face_set` reads a dataset and finds five landmarks per face with
   MTCNN (cached in ``config.cache_dir("shallow")``). Where MTCNN finds no
   face, the dataset's mean landmark positions are used instead
   (:data:`FALLBACK_LANDMARKS`); AT&T and deep-funneled LFW faces are roughly
   centred and frontal, so the mean is a fair stand-in.
2. :func:`prepare_experiment` splits each person's images into gallery (the
   first ``k``) and probes (the rest), draws a mask on every probe, and aligns
   all faces to 112x112 grayscale crops (:func:`course_lib.faces.align_face`).
3. :func:`evaluate` describes the crops and identifies the probes:

   * ``"lbp"``: LBP histograms of uniform patterns in an 8x8 grid, nearest
     neighbour by chi-square distance (Ahonen et al., 2006);
   * ``"hog"``: HOG, linear SVM trained on the gallery;
   * ``"sift"``: dense SIFT encoded as a bag of visual words, nearest
     neighbour by chi-square distance;
   * ``"lbph"``: OpenCV's ``cv2.face.LBPHFaceRecognizer``, the reference
     implementation of LBP face recognition.

   The result is a :class:`ResultsTable` of rank-1 accuracies, the share of
   probes whose nearest gallery identity is correct.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from . import descriptors as desc
from .config import cache_dir, pick
from .images import read_images, to_gray

log = logging.getLogger(__name__)

CONDITIONS = ("unmasked", "masked")
"""Probe conditions of the experiment."""

DESCRIPTORS = {
    "lbp": "LBP histograms (59 uniform codes, 8x8 cells) + nearest neighbour by chi-square",
    "hog": "HOG (8x8-pixel cells, 2x2-cell blocks) + linear SVM",
    "sift": "dense SIFT, bag of 100 visual words + nearest neighbour by chi-square",
    "lbph": "OpenCV LBPH recogniser (256 codes, 8x8 cells), the reference",
}
"""Descriptor-and-classifier pairs of :func:`evaluate`, by key."""

LBP_PARAMETERS = {"radius": 1, "points": 8, "grid": (8, 8), "method": "nri_uniform"}
"""LBP settings of the experiment. ``"nri_uniform"`` keeps the orientation of
each uniform pattern (59 codes for 8 points). On aligned AT&T faces it reaches
a rank-1 accuracy of 0.96, against 0.86 for the rotation-invariant
``"uniform"`` codes (10 codes), because those discard the direction of edges."""

ALIGNED_SIZE = 112
"""Side of the aligned face crops, in pixels (the ArcFace template size)."""

FALLBACK_LANDMARKS = {
    "att_faces": np.array([[0.310, 0.461], [0.667, 0.465], [0.481, 0.623], [0.325, 0.759], [0.637, 0.763]], dtype=np.float32),
    "lfw": np.array([[0.417, 0.450], [0.583, 0.446], [0.501, 0.547], [0.429, 0.632], [0.577, 0.628]], dtype=np.float32),
}
"""Mean MTCNN landmarks per dataset, as fractions of image width and height.

Used for faces where MTCNN finds none. Measured with ``mtcnn`` 1.0 on all 400
AT&T faces (it missed 3) and on 2,282 deep-funneled LFW images, the first 10
of each DevTrain person with at least 5 images (it missed 1).
"""


# --- data ----------------------------------------------------------------------------


@dataclasses.dataclass
class FaceSet:
    """Face images of known people with five landmarks each.

    Attributes
    ----------
    dataset : str
        Registry name, ``"att_faces"`` or ``"lfw"``.
    images : list of (H, W, 3) ndarray of uint8
        RGB images as stored (AT&T grayscale is expanded to RGB).
    labels : (N,) ndarray of int64
        Identity index of each image, into ``identities``.
    identities : tuple of str
        Person names.
    landmarks : (N, 5, 2) ndarray of float32
        ``(x, y)`` landmarks in :data:`course_lib.faces.LANDMARK_NAMES` order.
    detected : (N,) ndarray of bool
        False where MTCNN found no face and :data:`FALLBACK_LANDMARKS` were used.
    paths : list of Path
    """

    dataset: str
    images: list
    labels: np.ndarray
    identities: tuple
    landmarks: np.ndarray
    detected: np.ndarray
    paths: list

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: Sequence[int]) -> "FaceSet":
        """Return the faces at ``indices`` (labels keep their numbering)."""
        indices = np.asarray(indices, dtype=np.int64)
        return FaceSet(
            dataset=self.dataset,
            images=[self.images[i] for i in indices],
            labels=self.labels[indices],
            identities=self.identities,
            landmarks=self.landmarks[indices],
            detected=self.detected[indices],
            paths=[self.paths[i] for i in indices],
        )


def _pick_central(faces: list[dict], width: int, height: int) -> dict:
    centre = np.array([width / 2, height / 2])
    return min(faces, key=lambda face: float(np.linalg.norm((np.asarray(face["box"][:2]) + face["box"][2:]) / 2 - centre)))


def detect_landmarks(
    images: Sequence[np.ndarray],
    fallback: np.ndarray,
    min_score: float = 0.8,
    batch_size: int = 32,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Find five landmarks per image with MTCNN, falling back to fixed positions.

    Images are passed to MTCNN in batches, which on AT&T runs about 15 times
    faster than one image at a time. When an image contains several faces, the one
    whose box centre is nearest the image centre is kept (the datasets used
    here are centred face crops).

    Parameters
    ----------
    images : sequence of (H, W, 3) ndarray of uint8
        Images of one size batch best; ``mtcnn`` pads mixed sizes.
    fallback : (5, 2) array
        Landmarks as fractions of image width and height, used where MTCNN
        finds no face with at least ``min_score`` confidence.
    min_score : float
        Lowest MTCNN confidence accepted.
    batch_size : int
        Images per MTCNN call.
    progress : bool
        Show a progress bar.

    Returns
    -------
    landmarks : (N, 5, 2) ndarray of float32
        ``(x, y)`` in :data:`course_lib.faces.LANDMARK_NAMES` order. ``mtcnn``
        1.0 rounds its landmarks to whole pixels.
    detected : (N,) ndarray of bool
    """
    from tqdm.auto import tqdm

    # The detector instance that course_lib.faces.detect_faces uses, loaded once.
    from .faces import LANDMARK_NAMES, mtcnn_detector

    detector = mtcnn_detector()
    landmarks = np.zeros((len(images), 5, 2), dtype=np.float32)
    detected = np.zeros(len(images), dtype=bool)
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc="MTCNN landmarks", unit="batch", disable=not progress):
        batch = [np.ascontiguousarray(image) for image in images[start : start + batch_size]]
        found = detector.detect_faces(batch, box_format="xyxy")
        for offset, (image, faces) in enumerate(zip(batch, found)):
            index = start + offset
            height, width = image.shape[:2]
            faces = [face for face in faces if float(face["confidence"]) >= min_score]
            if faces:
                points = _pick_central(faces, width, height)["keypoints"]
                landmarks[index] = np.array([points[name] for name in LANDMARK_NAMES], dtype=np.float32)
                detected[index] = True
            else:
                landmarks[index] = np.asarray(fallback, dtype=np.float32) * np.array([width, height], dtype=np.float32)
    missing = int((~detected).sum())
    if missing:
        log.info("MTCNN found no face in %d of %d images; fixed landmark positions were used for them.", missing, len(images))
    return landmarks, detected


def _cache_key(paths: Sequence[Path]) -> str:
    digest = hashlib.sha1()
    for path in paths:
        digest.update(f"{path.parent.name}/{path.name}\n".encode())
    return digest.hexdigest()[:16]


def cached_landmarks(dataset: str, images: Sequence[np.ndarray], paths: Sequence[Path], progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Return :func:`detect_landmarks` results, computed once and stored in the cache folder.

    The cache file ``shallow/landmarks-<dataset>-<key>.npz`` is keyed by the
    list of file names, so a different subset gets its own file.
    """
    path = cache_dir("shallow") / f"landmarks-{dataset}-{_cache_key(paths)}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return stored["landmarks"], stored["detected"]
    log.info("Detecting landmarks in %d %s images with MTCNN (cached in %s).", len(images), dataset, path)
    landmarks, detected = detect_landmarks(images, FALLBACK_LANDMARKS[dataset], progress=progress)
    temporary = path.with_suffix(".tmp.npz")
    np.savez(temporary, landmarks=landmarks, detected=detected)
    temporary.replace(path)
    return landmarks, detected


def load_face_set(dataset: str = "att_faces", people: int | None = None, min_images: int = 5, max_images: int = 10, progress: bool = True) -> FaceSet:
    """Load a recognition dataset with landmarks.

    Parameters
    ----------
    dataset : {"att_faces", "lfw"}
        ``"att_faces"``: the 400 AT&T faces, 40 people x 10. ``"lfw"``: LFW
        DevTrain people with at least ``min_images`` images, at most
        ``max_images`` each (the first ones by number).
    people : int, optional
        Keep only the first ``people`` identities (sorted by name); all when None.
    min_images, max_images : int
        LFW only: people with fewer images are left out, people with more are
        cut to the first ``max_images``.
    progress : bool
        Show progress bars.

    Returns
    -------
    FaceSet
    """
    from .data import load_att_faces, load_lfw_people

    if dataset == "att_faces":
        records = load_att_faces()
    elif dataset == "lfw":
        records = load_lfw_people("DevTrain", min_images=min_images)
    else:
        raise ValueError(f"Unknown recognition dataset {dataset!r}: use 'att_faces' or 'lfw'.")

    identities = sorted({r.identity for r in records}, key=lambda name: (len(name), name) if dataset == "att_faces" else name)
    if people is not None:
        identities = identities[:people]
    keep = set(identities)
    per_person: dict[str, int] = {}
    chosen = []
    for record in records:
        if record.identity in keep and per_person.get(record.identity, 0) < max_images:
            per_person[record.identity] = per_person.get(record.identity, 0) + 1
            chosen.append(record)

    paths = [r.path for r in chosen]
    images, kept, skipped = read_images(paths, progress=progress)
    if skipped:
        chosen = [chosen[i] for i in kept]
        paths = [r.path for r in chosen]
    index_of = {name: i for i, name in enumerate(identities)}
    labels = np.array([index_of[r.identity] for r in chosen], dtype=np.int64)
    landmarks, detected = cached_landmarks(dataset, images, paths, progress=progress)
    return FaceSet(dataset, images, labels, tuple(identities), landmarks, detected, paths)


def split_gallery_probes(labels: np.ndarray, gallery_per_person: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices per person: the first ``gallery_per_person`` images enrol, the rest probe.

    Returns
    -------
    gallery, probes : (G,) and (P,) ndarray of int64
        Indices into ``labels``, in the original order. People with no image
        left for probing contribute to the gallery only.
    """
    if gallery_per_person < 1:
        raise ValueError(f"gallery_per_person must be at least 1, got {gallery_per_person}.")
    seen: dict[int, int] = {}
    gallery, probes = [], []
    for index, label in enumerate(np.asarray(labels)):
        count = seen.get(int(label), 0)
        (gallery if count < gallery_per_person else probes).append(index)
        seen[int(label)] = count + 1
    return np.array(gallery, dtype=np.int64), np.array(probes, dtype=np.int64)


def align_gray(image: np.ndarray, landmarks: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """Align a face to the ArcFace template and convert it to ``(size, size)`` uint8 grayscale.

    The same similarity transform as :func:`course_lib.faces.align_face`, but
    pixels outside the source image are filled by reflecting the image at its
    border instead of black. A black wedge changes with the roll of the head
    and would dominate the LBP histograms of the cells it falls in (on AT&T,
    rank-1 accuracy of uniform LBP drops from 0.86 to 0.59 with black borders).
    """
    import cv2

    from .faces import alignment_matrix

    matrix = alignment_matrix(landmarks, size)
    warped = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return to_gray(warped)


def align_region(region: np.ndarray, landmarks: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """Warp a boolean ``(H, W)`` mask region the way :func:`align_gray` warps its image."""
    import cv2

    from .faces import alignment_matrix

    matrix = alignment_matrix(landmarks, size)
    warped = cv2.warpAffine(region.astype(np.uint8) * 255, matrix, (size, size), flags=cv2.INTER_NEAREST)
    return warped > 127


@dataclasses.dataclass
class ExperimentData:
    """Aligned gallery and probe crops of one recognition experiment.

    Attributes
    ----------
    dataset : str
    gallery : (G, S, S) ndarray of uint8
        Aligned grayscale gallery faces, unmasked.
    gallery_labels : (G,) ndarray of int64
    probes : dict of str to (P, S, S) ndarray of uint8
        Aligned grayscale probes per condition (:data:`CONDITIONS`); the same
        faces in the same order under each condition.
    probe_labels : (P,) ndarray of int64
    mask_regions : (P, S, S) ndarray of bool
        Pixels covered by the synthetic mask in each aligned masked probe.
    mask_type : str
    """

    dataset: str
    gallery: np.ndarray
    gallery_labels: np.ndarray
    probes: dict
    probe_labels: np.ndarray
    mask_regions: np.ndarray
    mask_type: str

    def subset_people(self, people: int) -> "ExperimentData":
        """Keep the first ``people`` identities (labels ``0 .. people - 1``)."""
        gallery_keep = self.gallery_labels < people
        probe_keep = self.probe_labels < people
        return ExperimentData(
            dataset=self.dataset,
            gallery=self.gallery[gallery_keep],
            gallery_labels=self.gallery_labels[gallery_keep],
            probes={c: p[probe_keep] for c, p in self.probes.items()},
            probe_labels=self.probe_labels[probe_keep],
            mask_regions=self.mask_regions[probe_keep],
            mask_type=self.mask_type,
        )


def prepare_experiment(
    faces: FaceSet,
    gallery_per_person: int = 5,
    mask_type: str = "surgical",
    size: int = ALIGNED_SIZE,
    seed: int = 0,
    progress: bool = True,
) -> ExperimentData:
    """Split, mask and align the faces of an experiment.

    Each probe is masked on its original image with its own landmarks, using
    ``seed + probe index`` as the mask's random seed, then aligned with the same
    landmarks as its unmasked copy, so the two conditions differ only by the mask.
    """
    from tqdm.auto import tqdm

    from .masks import apply_mask

    gallery_index, probe_index = split_gallery_probes(faces.labels, gallery_per_person)
    if len(probe_index) == 0:
        raise ValueError(f"No probes are left with gallery_per_person={gallery_per_person}; use a smaller value.")
    gallery = np.stack([align_gray(faces.images[i], faces.landmarks[i], size) for i in gallery_index])
    unmasked, masked, regions = [], [], []
    for number, i in enumerate(tqdm(probe_index, desc="Masking probes", unit="img", disable=not progress)):
        image, landmarks = faces.images[i], faces.landmarks[i]
        masked_face = apply_mask(image, landmarks, mask_type=mask_type, seed=seed + number)
        unmasked.append(align_gray(image, landmarks, size))
        masked.append(align_gray(masked_face.image, landmarks, size))
        regions.append(align_region(masked_face.region, landmarks, size))
    return ExperimentData(
        dataset=faces.dataset,
        gallery=gallery,
        gallery_labels=faces.labels[gallery_index],
        probes={"unmasked": np.stack(unmasked), "masked": np.stack(masked)},
        probe_labels=faces.labels[probe_index],
        mask_regions=np.stack(regions),
        mask_type=mask_type,
    )


# --- features and classifiers ------------------------------------------------------------


def region_grid(grid: tuple[int, int], region_height: int, full_height: int) -> tuple[int, int]:
    """Scale the number of grid rows to a cropped region so that cells keep their height."""
    rows = max(1, int(round(grid[0] * region_height / full_height)))
    return rows, grid[1]


def lbp_features(faces: np.ndarray, region: str = "whole", radius: float = 1, points: int = 8, grid: tuple[int, int] = (8, 8), method: str = "nri_uniform") -> np.ndarray:
    """LBP histograms (:func:`course_lib.descriptors.lbp_histogram`) of aligned crops.

    ``faces`` is ``(N, S, S)`` uint8; ``region`` selects rows with
    :func:`course_lib.descriptors.select_region`, and the grid keeps its cell
    height on a cropped region (:func:`region_grid`). Returns ``(N, D)`` float32.
    """
    first, stop = desc.region_rows(faces.shape[1], region)
    cells = region_grid(grid, stop - first, faces.shape[1])
    return np.stack([desc.lbp_histogram(face[first:stop], radius, points, cells, method) for face in faces])


def hog_features(faces: np.ndarray, region: str = "whole", pixels_per_cell: tuple[int, int] = (8, 8)) -> np.ndarray:
    """HOG descriptors (:func:`course_lib.descriptors.hog_descriptor`) of aligned crops; ``(N, D)`` float32."""
    first, stop = desc.region_rows(faces.shape[1], region)
    return np.stack([desc.hog_descriptor(face[first:stop], pixels_per_cell=pixels_per_cell) for face in faces])


def sift_descriptor_sets(faces: np.ndarray, region: str = "whole", dense_step: int = 8) -> list[np.ndarray]:
    """Dense SIFT descriptors of each aligned crop, one ``(K, 128)`` float32 array per face."""
    first, stop = desc.region_rows(faces.shape[1], region)
    return [desc.sift_features(face[first:stop], dense_step=dense_step).descriptors for face in faces]


def rank1_nearest_neighbour(gallery: np.ndarray, gallery_labels: np.ndarray, probes: np.ndarray, probe_labels: np.ndarray) -> float:
    """Rank-1 accuracy of nearest-neighbour identification by chi-square distance."""
    distances = desc.chi_square_distance(probes, gallery)
    predicted = gallery_labels[np.argmin(distances, axis=1)]
    return float(np.mean(predicted == probe_labels))


def _linear_svm(seed: int = 0):
    from sklearn.svm import LinearSVC

    return LinearSVC(C=0.1, random_state=seed, max_iter=5000)


def rank1_linear_svm(gallery: np.ndarray, gallery_labels: np.ndarray, probes: np.ndarray, probe_labels: np.ndarray, seed: int = 0) -> float:
    """Rank-1 accuracy of a linear SVM (one-vs-rest) trained on the gallery features."""
    model = _linear_svm(seed).fit(gallery, gallery_labels)
    return float(np.mean(model.predict(probes) == probe_labels))


def rank1_lbph(gallery: np.ndarray, gallery_labels: np.ndarray, probes: np.ndarray, probe_labels: np.ndarray, radius: int = 1, neighbors: int = 8, grid: tuple[int, int] = (8, 8)) -> float:
    """Rank-1 accuracy of OpenCV's LBPH recogniser on grayscale crops.

    ``cv2.face.LBPHFaceRecognizer`` computes 256-code LBP histograms in a
    ``grid`` of cells and identifies by the nearest chi-square distance.
    """
    import cv2

    recogniser = cv2.face.LBPHFaceRecognizer_create(radius=radius, neighbors=neighbors, grid_x=grid[1], grid_y=grid[0])
    recogniser.train(list(gallery), np.asarray(gallery_labels, dtype=np.int32))
    predicted = np.array([recogniser.predict(probe)[0] for probe in probes])
    return float(np.mean(predicted == probe_labels))


# --- results ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Result:
    """Rank-1 accuracy of one descriptor, face region and probe condition."""

    dataset: str
    descriptor: str
    region: str
    condition: str
    accuracy: float
    probes: int


@dataclasses.dataclass
class ResultsTable:
    """Rank-1 accuracies of an experiment, one :class:`Result` per cell.

    ``str(table)`` and :meth:`to_markdown` show one row per descriptor and
    region and one column per probe condition, plus the drop from unmasked to
    masked in percentage points.
    """

    results: list

    @property
    def descriptors(self) -> list[str]:
        return list(dict.fromkeys(r.descriptor for r in self.results))

    @property
    def regions(self) -> list[str]:
        return list(dict.fromkeys(r.region for r in self.results))

    @property
    def conditions(self) -> list[str]:
        return list(dict.fromkeys(r.condition for r in self.results))

    @property
    def shape(self) -> tuple[int, int]:
        """``(descriptor-and-region rows, probe-condition columns)`` of the table."""
        return len(self.descriptors) * len(self.regions), len(self.conditions)

    def accuracy(self, descriptor: str, condition: str, region: str = "whole") -> float:
        """Return one rank-1 accuracy, in ``[0, 1]``."""
        for result in self.results:
            if (result.descriptor, result.condition, result.region) == (descriptor, condition, region):
                return result.accuracy
        raise KeyError(f"No result for descriptor={descriptor!r}, condition={condition!r}, region={region!r}.")

    def to_dicts(self) -> list[dict]:
        """Return the results as a list of plain dictionaries."""
        return [dataclasses.asdict(r) for r in self.results]

    def to_markdown(self, digits: int = 1) -> str:
        """Format the table in Markdown, accuracies in percent."""
        conditions = self.conditions
        header = ["descriptor", "region"] + [f"{c} (%)" for c in conditions]
        with_drop = set(CONDITIONS) <= set(conditions)
        if with_drop:
            header.append("drop (points)")
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for descriptor in self.descriptors:
            for region in self.regions:
                values = [self.accuracy(descriptor, c, region) for c in conditions]
                cells = [descriptor, region] + [f"{100 * v:.{digits}f}" for v in values]
                if with_drop:
                    drop = self.accuracy(descriptor, "unmasked", region) - self.accuracy(descriptor, "masked", region)
                    cells.append(f"{100 * drop:.{digits}f}")
                lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()


def evaluate(
    data: ExperimentData,
    descriptors: Sequence[str] = tuple(DESCRIPTORS),
    regions: Sequence[str] = ("whole", "upper"),
    conditions: Sequence[str] = CONDITIONS,
    progress: bool = True,
    seed: int = 0,
) -> ResultsTable:
    """Identify every probe with every descriptor, face region and condition.

    Gallery features always come from the unmasked gallery crops, cut to the
    same region as the probes.

    Returns
    -------
    ResultsTable
    """
    from tqdm.auto import tqdm

    unknown = [d for d in descriptors if d not in DESCRIPTORS]
    if unknown:
        raise ValueError(f"Unknown descriptor(s) {unknown}: use keys of DESCRIPTORS ({', '.join(DESCRIPTORS)}).")
    results = []
    steps = [(d, r) for d in descriptors for r in regions]
    for descriptor, region in tqdm(steps, desc="Descriptors", disable=not progress):
        accuracies = _evaluate_one(data, descriptor, region, conditions, seed)
        for condition in conditions:
            results.append(Result(data.dataset, descriptor, region, condition, accuracies[condition], len(data.probe_labels)))
            log.debug("%s %s %s %s: rank-1 %.3f", data.dataset, descriptor, region, condition, accuracies[condition])
    return ResultsTable(results)


def _evaluate_one(data: ExperimentData, descriptor: str, region: str, conditions: Sequence[str], seed: int) -> dict:
    gallery, labels = data.gallery, data.gallery_labels
    accuracies = {}
    if descriptor == "lbp":
        enrolled = lbp_features(gallery, region, **LBP_PARAMETERS)
        for condition in conditions:
            probes = lbp_features(data.probes[condition], region, **LBP_PARAMETERS)
            accuracies[condition] = rank1_nearest_neighbour(enrolled, labels, probes, data.probe_labels)
    elif descriptor == "hog":
        model = _linear_svm(seed).fit(hog_features(gallery, region), labels)
        for condition in conditions:
            predicted = model.predict(hog_features(data.probes[condition], region))
            accuracies[condition] = float(np.mean(predicted == data.probe_labels))
    elif descriptor == "sift":
        vocabulary = desc.BagOfVisualWords(n_words=100, seed=seed)
        enrolled = vocabulary.fit_transform(sift_descriptor_sets(gallery, region))
        for condition in conditions:
            encoded = vocabulary.transform(sift_descriptor_sets(data.probes[condition], region))
            accuracies[condition] = rank1_nearest_neighbour(enrolled, labels, encoded, data.probe_labels)
    else:
        first, stop = desc.region_rows(gallery.shape[1], region)
        grid = region_grid((8, 8), stop - first, gallery.shape[1])
        for condition in conditions:
            probes = np.ascontiguousarray(data.probes[condition][:, first:stop])
            accuracies[condition] = rank1_lbph(np.ascontiguousarray(gallery[:, first:stop]), labels, probes, data.probe_labels, grid=grid)
    return accuracies


def run_experiment(
    dataset: str = "att_faces",
    gallery_per_person: int | None = None,
    people: int | None = None,
    mask_type: str = "surgical",
    descriptors: Sequence[str] = tuple(DESCRIPTORS),
    regions: Sequence[str] = ("whole", "upper"),
    progress: bool = True,
) -> tuple[ResultsTable, ExperimentData]:
    """Load a dataset, prepare the gallery and masked probes, and evaluate.

    Defaults: AT&T uses all 40 people with 5 gallery images each; LFW uses 3
    gallery images per person and, in quick mode (:func:`course_lib.config.pick`),
    the first 20 people with at least 5 images (all of them in full mode).

    Returns
    -------
    table : ResultsTable
    data : ExperimentData
    """
    if dataset == "att_faces":
        gallery_per_person = gallery_per_person or 5
    else:
        gallery_per_person = gallery_per_person or 3
        people = people if people is not None else pick(quick=20, full=None)
    faces = load_face_set(dataset, people=people, progress=progress)
    data = prepare_experiment(faces, gallery_per_person=gallery_per_person, mask_type=mask_type, progress=progress)
    return evaluate(data, descriptors=descriptors, regions=regions, progress=progress), data


# --- interactive exploration ---------------------------------------------------------


def lbp_accuracy(
    data: ExperimentData,
    radius: float = 1,
    points: int = 8,
    grid: tuple[int, int] = (8, 8),
    region: str = "whole",
    method: str = "nri_uniform",
) -> dict[str, float]:
    """Rank-1 accuracy of LBP nearest-neighbour identification per probe condition."""
    enrolled = lbp_features(data.gallery, region, radius, points, grid, method)
    return {
        condition: rank1_nearest_neighbour(enrolled, data.gallery_labels, lbp_features(probes, region, radius, points, grid, method), data.probe_labels)
        for condition, probes in data.probes.items()
    }


def lbp_explorer(data: ExperimentData, people: int = 10):
    """Build sliders for the LBP settings that print the rank-1 accuracy live.

    The accuracy is measured on the first ``people`` identities of ``data`` so
    that each change answers within a second or two.

    Returns
    -------
    ipywidgets.VBox
        Controls and an output area; display it in a notebook.
    """
    import ipywidgets as widgets

    small = data.subset_people(people)
    controls = {
        "radius": widgets.IntSlider(value=1, min=1, max=3, description="radius"),
        "points": widgets.Dropdown(options=[4, 8, 16], value=8, description="points"),
        "grid": widgets.Dropdown(options=[("4x4", (4, 4)), ("6x6", (6, 6)), ("8x8", (8, 8)), ("10x10", (10, 10))], value=(8, 8), description="grid"),
        "region": widgets.Dropdown(options=list(desc.REGIONS), value="whole", description="region"),
        "method": widgets.Dropdown(options=list(desc.LBP_METHODS), value="nri_uniform", description="method"),
    }
    output = widgets.Output()

    def update(_change=None):
        settings = {name: control.value for name, control in controls.items()}
        accuracies = lbp_accuracy(small, **settings)
        length = len(lbp_features(small.gallery[:1], settings["region"], settings["radius"], settings["points"], settings["grid"], settings["method"])[0])
        with output:
            output.clear_output(wait=True)
            print(f"{len(small.probe_labels)} probes of {people} people; descriptor length {length}")
            for condition, accuracy in accuracies.items():
                print(f"rank-1 accuracy, {condition} probes: {accuracy:.2f}")

    for control in controls.values():
        control.observe(update, names="value")
    update()
    return widgets.VBox([widgets.HBox(list(controls.values())[:3]), widgets.HBox(list(controls.values())[3:]), output])


# --- exercises -----------------------------------------------------------------------


def lbp_code_exercise(patch: np.ndarray):
    """Exercise: compute the 8-bit LBP code of the centre of a 3x3 patch by hand.

    The check compares bit by bit and names each wrong neighbour, with the
    comparison it should have made.
    """
    from .exercises import Exercise, IncorrectAnswer

    patch = np.asarray(patch)
    expected = desc.lbp_code_3x3(patch)
    names = ("top-left", "top", "top-right", "right", "bottom-right", "bottom", "bottom-left", "left")

    def check(answer):
        if isinstance(answer, (bool, np.bool_)) or not isinstance(answer, (int, np.integer)):
            raise IncorrectAnswer(f"the code should be an int between 0 and 255, got {type(answer).__name__} {answer!r}.")
        if not 0 <= int(answer) <= 255:
            raise IncorrectAnswer(f"the code {int(answer)} is outside 0-255; eight neighbours give eight bits.")
        wrong = int(answer) ^ expected
        if wrong:
            problems = []
            for bit, (row, column) in enumerate(desc.LBP_3X3_ORDER):
                if wrong >> bit & 1:
                    value, centre = int(patch[row, column]), int(patch[1, 1])
                    should = 1 if value >= centre else 0
                    relation = ">=" if should else "<"
                    problems.append(f"bit {bit} ({names[bit]} neighbour, {value} {relation} centre {centre}) should be {should}")
            raise IncorrectAnswer("; ".join(problems) + ".")
        return f"The code is {expected} = 0b{expected:08b} (bit 7 first)."

    return Exercise(
        "LBP code of a 3x3 patch",
        check,
        hint="Go clockwise from the top-left neighbour; a neighbour >= the centre adds 2**bit, with bit 0 at the top-left.",
        solution="""
        centre = patch[1, 1]
        order = [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0)]
        code = sum(1 << bit for bit, (r, c) in enumerate(order) if patch[r, c] >= centre)
        """,
    )


def rank1_exercise(distances: np.ndarray, gallery_labels: np.ndarray, probe_labels: np.ndarray):
    """Exercise: turn a probe-by-gallery distance matrix into a rank-1 accuracy."""
    from .exercises import Exercise, IncorrectAnswer, expect_number

    distances = np.asarray(distances)
    expected = float(np.mean(gallery_labels[np.argmin(distances, axis=1)] == probe_labels))
    farthest = float(np.mean(gallery_labels[np.argmax(distances, axis=1)] == probe_labels))
    by_gallery = float(np.mean(probe_labels[np.argmin(distances, axis=0)] == gallery_labels)) if distances.shape[0] == len(probe_labels) else None

    def check(answer):
        try:
            value = float(answer)
        except (TypeError, ValueError):
            raise IncorrectAnswer(f"the accuracy should be a number, got {type(answer).__name__}.") from None
        if abs(value - expected) < 1e-9:
            return f"Rank-1 accuracy {expected:.3f}."
        if abs(value - 100 * expected) < 1e-6:
            raise IncorrectAnswer(f"{value:g} is a percentage; give the share as a fraction in [0, 1].")
        if abs(value - farthest) < 1e-9 and farthest != expected:
            raise IncorrectAnswer("this is what the largest distance gives: the best match is the gallery face with the smallest distance (argmin).")
        if by_gallery is not None and abs(value - by_gallery) < 1e-9 and by_gallery != expected:
            raise IncorrectAnswer("this takes the minimum over probes for each gallery face; take it along axis 1, over the gallery, for each probe.")
        expect_number(value, expected, what="the rank-1 accuracy")

    return Exercise(
        "rank-1 accuracy from distances",
        check,
        hint="For each probe (row), find the gallery column with the smallest distance, look up its label, and compare with the probe's label.",
        solution="""
        predicted = gallery_labels[np.argmin(distances, axis=1)]
        accuracy = np.mean(predicted == probe_labels)
        """,
    )


def region_exercise(table: ResultsTable, descriptor: str = "lbp"):
    """Exercise: choose the face region that keeps accuracy under a mask."""
    from .exercises import Exercise, IncorrectAnswer

    measured = {r: table.accuracy(descriptor, "masked", r) for r in table.regions}
    best = max(measured, key=measured.get)

    def check(answer):
        if answer not in desc.REGIONS:
            raise IncorrectAnswer(f"{answer!r} is not a region; choose one of {', '.join(desc.REGIONS)}.")
        if answer == "lower":
            raise IncorrectAnswer("the lower face is the part the mask covers: its features describe the mask, not the person.")
        if answer != best:
            raise IncorrectAnswer(
                f"on masked probes the {answer} region reaches {measured[answer]:.3f}, "
                f"but the {best} region reaches {measured[best]:.3f}; look at the masked column of the table."
            )
        return f"The {best} region keeps rank-1 accuracy at {measured[best]:.3f} on masked probes."

    return Exercise(
        "region that survives a mask",
        check,
        hint="A mask worn properly covers the nose and the mouth. Which rows of the face does it leave unchanged?",
        solution='region = "upper"',
    )


# --- figures ---------------------------------------------------------------------------


def plot_lbp(image: np.ndarray, radius: float = 1, points: int = 8, method: str = "uniform"):
    """Show a face, its LBP code image and the histogram of its codes; returns the figure."""
    import matplotlib.pyplot as plt

    codes = desc.lbp_image(image, radius=radius, points=points, method=method)
    n_bins = desc.lbp_bin_count(points, method)
    figure, axes = plt.subplots(1, 3, figsize=(10, 3.2), gridspec_kw={"width_ratios": [1, 1, 1.6]})
    axes[0].imshow(to_gray(image) if np.asarray(image).ndim == 3 else image, cmap="gray")
    axes[0].set_title("face")
    axes[1].imshow(codes, cmap="nipy_spectral", vmin=0, vmax=n_bins - 1)
    axes[1].set_title(f"LBP codes (P={points}, R={radius}, {method})")
    for axis in axes[:2]:
        axis.axis("off")
    axes[2].bar(np.arange(n_bins), np.bincount(codes.ravel(), minlength=n_bins) / codes.size)
    axes[2].set_xlabel("code")
    axes[2].set_ylabel("share of pixels")
    axes[2].set_title("histogram of the whole face")
    figure.tight_layout()
    return figure


def plot_hog(images: Sequence[np.ndarray], titles: Sequence[str] | None = None, pixels_per_cell: tuple[int, int] = (8, 8)):
    """Show faces above their HOG glyphs (one star of gradient orientations per cell)."""
    import matplotlib.pyplot as plt
    from skimage.exposure import rescale_intensity

    figure, axes = plt.subplots(2, len(images), figsize=(2.4 * len(images), 5), squeeze=False)
    for index, image in enumerate(images):
        _, glyphs = desc.hog_descriptor(image, pixels_per_cell=pixels_per_cell, visualize=True)
        axes[0, index].imshow(image, cmap="gray")
        axes[1, index].imshow(rescale_intensity(glyphs, in_range=(0, max(glyphs.max(), 1e-9))), cmap="gray")
        if titles is not None:
            axes[0, index].set_title(titles[index])
        for axis in axes[:, index]:
            axis.axis("off")
    figure.tight_layout()
    return figure


def plot_sift(images: Sequence[np.ndarray], titles: Sequence[str] | None = None):
    """Show faces with their detected SIFT keypoints (circles of the keypoint size, with orientation)."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(images), figsize=(2.6 * len(images), 3), squeeze=False)
    for index, (image, axis) in enumerate(zip(images, axes[0])):
        features = desc.sift_features(image)
        axis.imshow(image, cmap="gray")
        for (x, y), size, angle in zip(features.points, features.sizes, features.angles):
            axis.add_patch(plt.Circle((x, y), size / 2, fill=False, color="#00bfff", linewidth=0.8))
            radians = np.deg2rad(angle)
            axis.plot([x, x + size / 2 * np.cos(radians)], [y, y - size / 2 * np.sin(radians)], color="#ff7f0e", linewidth=0.8)
        caption = f"{len(features)} keypoints"
        axis.set_title(f"{titles[index]}: {caption}" if titles is not None else caption, fontsize=9)
        axis.axis("off")
    figure.tight_layout()
    return figure


def plot_results(table: ResultsTable, region: str = "whole"):
    """Bar chart of rank-1 accuracy per descriptor and probe condition, for one region."""
    import matplotlib.pyplot as plt

    from .plotting import CLASS_COLOURS

    figure, axis = plt.subplots(figsize=(8, 3.2))
    width = 0.8 / len(table.conditions)
    for offset, condition in enumerate(table.conditions):
        values = [100 * table.accuracy(d, condition, region) for d in table.descriptors]
        positions = np.arange(len(values)) + offset * width
        bars = axis.bar(positions, values, width, label=f"{condition} probes", color=CLASS_COLOURS[(offset + 1) % 2])
        axis.bar_label(bars, fmt="%.0f", fontsize=8)
    axis.set_xticks(np.arange(len(table.descriptors)) + width * (len(table.conditions) - 1) / 2, table.descriptors)
    axis.set_ylabel("rank-1 accuracy (%)")
    axis.set_ylim(0, 105)
    axis.set_title(f"{region} face")
    axis.legend(loc="lower right")
    figure.tight_layout()
    return figure


def plot_cascade_examples(images: Sequence[np.ndarray], titles: Sequence[str] | None = None, min_size: tuple[int, int] = (48, 48)):
    """Show images with the boxes of both cascades: Haar in green, LBP in red."""
    import matplotlib.pyplot as plt
    from matplotlib import patches

    from .classical import CASCADES, detect_faces_cascade
    from .plotting import CLASS_COLOURS

    figure, axes = plt.subplots(1, len(images), figsize=(2.6 * len(images), 3), squeeze=False)
    for index, (image, axis) in enumerate(zip(images, axes[0])):
        axis.imshow(image)
        axis.axis("off")
        found = []
        for number, cascade in enumerate(CASCADES):
            boxes = detect_faces_cascade(image, cascade, min_size=min_size)
            found.append(f"{cascade} {len(boxes)}")
            for x_min, y_min, x_max, y_max in boxes:
                axis.add_patch(patches.Rectangle((x_min, y_min), x_max - x_min, y_max - y_min, fill=False, edgecolor=CLASS_COLOURS[number], linewidth=1.5))
        caption = ", ".join(found)
        axis.set_title(f"{titles[index]}\n{caption}" if titles is not None else caption, fontsize=8)
    figure.tight_layout()
    return figure
