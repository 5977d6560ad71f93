"""The live pipeline of the webcam demo: detect faces, check the mask, recognise.

:class:`FacePipeline` is a processing function for
:class:`course_lib.webcam.WebcamWidget`: it takes one RGB ``uint8`` frame and
returns one dictionary per face (``box``, ``label``, ``colour``, ``score``).

Speed
-----
MTCNN takes about 0.1 to 0.2 s on a 640x480 frame on two CPU cores, too slow
for 15 frames a second. The pipeline therefore runs MTCNN on a frame shrunk by
``scale`` (0.5 by default), and only on every ``detect_every``-th frame. On the
frames in between, OpenCV's MOSSE correlation-filter tracker follows each face
on the same shrunk frame. It took about 1 ms per face at 320x240 on a shared
2-core machine, against about 8 ms for KCF. MOSSE keeps the box size fixed,
which is fine for the few frames between two detections. The OpenCV Haar cascade is the
faster alternative (``detector="haar"``), but it misses many masked faces,
because its features include the mouth and nose. ``benchmarks/bench_pipeline.py``
measures both.

Mask status comes from a mask classifier with a ``predict(crops)`` method
returning ``(class_ids, probabilities)`` and a ``class_names`` attribute, such
as :class:`course_lib.classifier.MaskClassifier`. :func:`load_mask_model` loads
the CNN that the CNN notebook (03) saves. When that notebook has not run, it
uses :func:`course_lib.classifier.load_or_train_classifier`, which loads the
cached full-mode CNN or trains a quick one in about a minute.

Recognition compares an embedding of each face with a gallery of enrolled
people (:meth:`FacePipeline.enrol`) by cosine similarity; a face whose best
similarity is below :attr:`FacePipeline.threshold` is labelled ``"unknown"``.
:func:`load_embedder` loads the embedding model that the recognition notebook
(05) saves. When that notebook has not run, it uses
:func:`course_lib.recognition.load_or_train_embedding_model`, which trains an
ArcFace model for about 1.5 minutes and fits its threshold on LFW pairs.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .config import cache_dir, pick
from .data import MASK_CLASS_TITLES
from .images import read_image, resize, to_gray
from .plotting import CLASS_COLOURS

log = logging.getLogger(__name__)

UNKNOWN = "unknown"

MASK_MODEL_NAME = "notebook03_classifier.keras"
"""File name, under ``cache_dir("classifier")``, of the mask classifier that notebook 03 saves and :func:`load_mask_model` looks for."""

EMBEDDING_MODEL_NAME = "arcface_masks.keras"
"""File name, under ``cache_dir("recognition")``, of the embedding model that notebook 05 saves and :func:`load_embedder` looks for."""


# --- mask status ---------------------------------------------------------------------


def load_mask_model(path: Path | str | None = None):
    """Load the mask classifier that notebook 03 saves, or a quickly trained CNN when there is none.

    Parameters
    ----------
    path : path, optional
        A classifier written by :func:`course_lib.classifier.save_classifier`.
        Default: ``cache_dir("classifier") / MASK_MODEL_NAME``.

    Returns
    -------
    MaskClassifier
        ``predict(crops) -> (class_ids, probabilities)`` and ``class_names``.
        The added attribute ``description`` names the model. When ``path``
        does not exist, the model is the one of
        :func:`course_lib.classifier.load_or_train_classifier` at 64 pixels:
        the cached full-mode CNN, or else a ResNet-style CNN trained for
        8 epochs on 1,200 crops (about a minute on two CPU cores; cached for
        the next call).
    """
    from . import classifier as mask_classifier

    path = Path(path) if path is not None else cache_dir("classifier") / MASK_MODEL_NAME
    if path.is_file():
        model = mask_classifier.load_classifier(path)
        model.description = f"CNN mask classifier loaded from {path.name}"
        log.info("Loaded the mask classifier %s.", path)
        return model

    full_mode_path = mask_classifier.default_classifier_path(64)
    if full_mode_path.is_file():
        description = f"CNN mask classifier of the full-mode experiment ({full_mode_path.name}) because notebook 03 has not saved one"
    else:
        description = "CNN mask classifier trained quickly (8 epochs on 1,200 crops) because notebook 03 has not saved one"
    log.info("No saved mask classifier at %s; using the %s.", path, description)
    model = mask_classifier.load_or_train_classifier(64)
    model.description = description
    return model


# --- recognition ---------------------------------------------------------------------


@dataclasses.dataclass
class Embedder:
    """A face embedding function with its description.

    Attributes
    ----------
    embed : callable
        ``embed(image, landmarks_list) -> (N, D)`` unit-norm float32 array for
        the faces with the given ``(5, 2)`` landmarks in one RGB image.
    description : str
    threshold : float
        Suggested starting value of the cosine-similarity threshold.
    """

    embed: Callable[[np.ndarray, Sequence[np.ndarray]], np.ndarray]
    description: str
    threshold: float = 0.5


def _model_embedder(model, description: str, threshold: float) -> Embedder:
    from . import recognition

    def embed_with_model(image, landmarks_list):
        if not landmarks_list:
            return np.zeros((0, int(model.output_shape[-1])), dtype=np.float32)
        return recognition.embed_faces(model, [image] * len(landmarks_list), landmarks=list(landmarks_list), flip=False)

    return Embedder(embed_with_model, description, threshold=threshold)


def load_embedder(path: Path | str | None = None) -> Embedder:
    """Load the embedding model that notebook 05 saves, or a quickly trained one when there is none.

    Parameters
    ----------
    path : path, optional
        A model written by :func:`course_lib.recognition.save_embedding_model`.
        Default: ``cache_dir("recognition") / EMBEDDING_MODEL_NAME``.

    Returns
    -------
    Embedder
        When ``path`` does not exist, the model is
        :func:`course_lib.recognition.load_or_train_embedding_model` at
        64 pixels (trained on the first call, which takes about 2 minutes
        on two CPU cores, then cached). The threshold is the ``threshold`` of the model's JSON
        metadata (:func:`course_lib.recognition.load_embedding_metadata`),
        or 0.5 when the model has none. Notebook 05 saves its model with a
        threshold fitted on its LFW DevTest pairs.
    """
    from . import recognition

    path = Path(path) if path is not None else cache_dir("recognition") / EMBEDDING_MODEL_NAME
    if path.is_file():
        model = recognition.load_embedding_model(path)
        threshold = float(recognition.load_embedding_metadata(path).get("threshold", 0.5))
        log.info("Loaded the embedding model %s (threshold %.2f).", path, threshold)
        return _model_embedder(model, f"embedding model loaded from {path.name}", threshold)

    log.info("No saved embedding model at %s; using the quickly trained ArcFace model.", path)
    model = recognition.load_or_train_embedding_model(64)
    metadata = recognition.load_embedding_metadata(recognition.quick_embedding_model_path(64))
    description = (
        f"ArcFace embedding model trained quickly ({metadata['training_seconds']:.0f} s on {metadata['train_faces']} LFW faces) "
        "because notebook 05 has not saved one"
    )
    return _model_embedder(model, description, float(metadata["threshold"]))


# --- detection and tracking ------------------------------------------------------------


@dataclasses.dataclass
class _Face:
    box: np.ndarray  # (x_min, y_min, x_max, y_max) in full-frame pixels
    score: float
    landmarks: np.ndarray | None  # (5, 2) in full-frame pixels, or None (Haar has none)
    tracker: object = None
    reference_box: np.ndarray | None = None  # box when the landmarks were found


def _haar_cascade():
    import cv2

    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise RuntimeError(f"OpenCV could not load the Haar cascade {path}; reinstall opencv-contrib-python-headless.")
    return cascade


def _moved_landmarks(face: _Face) -> np.ndarray | None:
    """Move the landmarks with the box: same offset and scale relative to the box as when detected."""
    if face.landmarks is None or face.reference_box is None:
        return face.landmarks
    old, new = face.reference_box, face.box
    scale = np.array([(new[2] - new[0]) / max(old[2] - old[0], 1e-6), (new[3] - new[1]) / max(old[3] - old[1], 1e-6)])
    return ((face.landmarks - old[:2]) * scale + new[:2]).astype(np.float32)


class FacePipeline:
    """Detect faces, classify mask status and recognise enrolled people in video frames.

    Parameters
    ----------
    mask_model : object, optional
        ``predict(crops) -> (class_ids, probabilities)`` with ``class_names``;
        see :func:`load_mask_model`. Without one, faces are labelled ``"face"``.
    embedder : Embedder, optional
        See :func:`load_embedder`. Needed for :meth:`enrol` and recognition.
    detector : {"mtcnn", "haar"}
        MTCNN finds masked faces and gives the landmarks used to align faces.
        The Haar cascade is faster but misses many masked faces, and it gives
        no landmarks, so recognition is off with it.
    scale : float
        Frames are shrunk by this factor before detection and tracking.
    detect_every : int
        Run the detector on one frame in this many and track faces in between;
        1 detects on every frame.
    threshold : float, optional
        Cosine similarity at or above which a face is given the name of its
        nearest enrolled person; adjustable while the demo runs. Default: the
        embedder's suggested threshold.
    min_score : float
        Smallest MTCNN confidence kept.
    min_face_size : int
        Smallest face side searched for, in pixels of the full frame.

    Attributes
    ----------
    gallery : dict of str to list of (D,) arrays
        Enrolled embeddings per name.
    timings : dict of str to float
        Milliseconds spent in each stage of the last call (``detect``,
        ``track``, ``mask``, ``recognise``).
    """

    def __init__(
        self,
        mask_model=None,
        embedder: Embedder | None = None,
        detector: str = "mtcnn",
        scale: float = 0.5,
        detect_every: int = 3,
        threshold: float | None = None,
        min_score: float = 0.85,
        min_face_size: int = 40,
    ):
        if detector not in ("mtcnn", "haar"):
            raise ValueError(f"Unknown detector {detector!r}: use 'mtcnn' or 'haar'.")
        if not 0.1 <= scale <= 1.0:
            raise ValueError(f"scale={scale} is outside 0.1 to 1.0.")
        if detect_every < 1:
            raise ValueError(f"detect_every={detect_every} must be at least 1.")
        self.mask_model = mask_model
        self.embedder = embedder
        self.detector = detector
        self.scale = float(scale)
        self.detect_every = int(detect_every)
        if threshold is None:
            threshold = embedder.threshold if embedder is not None else 0.5
        self.threshold = float(threshold)
        self.min_score = float(min_score)
        self.min_face_size = int(min_face_size)
        self.gallery: dict[str, list[np.ndarray]] = {}
        self.timings: dict[str, float] = {}
        self._faces: list[_Face] = []
        self._frame_count = 0
        self._cascade = _haar_cascade() if detector == "haar" else None

    def reset(self) -> None:
        """Forget tracked faces, so that the next frame runs the detector."""
        self._faces = []
        self._frame_count = 0

    # --- stages

    def _shrink(self, image: np.ndarray) -> np.ndarray:
        if self.scale == 1.0:
            return image
        height, width = image.shape[:2]
        return resize(image, (max(1, round(height * self.scale)), max(1, round(width * self.scale))))

    def detect(self, image: np.ndarray) -> list[_Face]:
        """Detect faces in a full-size RGB frame; boxes and landmarks in full-frame pixels."""
        small = self._shrink(image)
        faces = []
        if self.detector == "haar":
            side = max(12, round(self.min_face_size * self.scale))
            found = self._cascade.detectMultiScale(to_gray(small), scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
            for x, y, w, h in np.asarray(found).reshape(-1, 4):
                box = np.array([x, y, x + w, y + h], dtype=np.float32) / self.scale
                faces.append(_Face(box=box, score=1.0, landmarks=None))
            return faces

        from .faces import detect_faces

        side = max(12, round(self.min_face_size * self.scale))
        for detection in detect_faces(small, min_score=self.min_score, min_face_size=side):
            box = detection.box / self.scale
            faces.append(_Face(box=box, score=detection.score, landmarks=detection.landmarks / self.scale, reference_box=box.copy()))
        return faces

    def _start_trackers(self, image_small: np.ndarray) -> None:
        import cv2

        for face in self._faces:
            x_min, y_min, x_max, y_max = face.box * self.scale
            tracker = cv2.legacy.TrackerMOSSE_create()
            tracker.init(image_small, (int(x_min), int(y_min), max(1, int(x_max - x_min)), max(1, int(y_max - y_min))))
            face.tracker = tracker

    def _track(self, image_small: np.ndarray) -> None:
        kept = []
        height, width = image_small.shape[:2]
        for face in self._faces:
            found, (x, y, w, h) = face.tracker.update(image_small)
            if not found or w <= 0 or h <= 0:
                continue
            box = np.array([max(0, x), max(0, y), min(width, x + w), min(height, y + h)], dtype=np.float32) / self.scale
            face.box = box
            kept.append(face)
        self._faces = kept

    def classify_masks(self, image: np.ndarray, boxes: Sequence[np.ndarray]) -> tuple[list[str], list[str], np.ndarray]:
        """Classify the mask status of each box; returns titles, colours and the probability of the chosen class."""
        if self.mask_model is None or len(boxes) == 0:
            return ["face"] * len(boxes), [CLASS_COLOURS[3]] * len(boxes), np.ones(len(boxes), dtype=np.float32)
        from .classifier import crop_face

        crops = [crop_face(image, box, margin=0.2) for box in boxes]
        class_ids, probabilities = self.mask_model.predict(crops)
        names = [self.mask_model.class_names[i] for i in class_ids]
        titles = [MASK_CLASS_TITLES.get(name, name) for name in names]
        colours = [CLASS_COLOURS[i % len(CLASS_COLOURS)] for i in class_ids]
        return titles, colours, probabilities[np.arange(len(class_ids)), class_ids]

    def identify(self, embeddings: np.ndarray) -> list[tuple[str, float]]:
        """Return the nearest enrolled name and cosine similarity for each embedding, or ``"unknown"`` below the threshold."""
        if len(embeddings) == 0:
            return []
        if not self.gallery:
            return [(UNKNOWN, 0.0)] * len(embeddings)
        names = sorted(self.gallery)
        # One row per enrolled embedding; a person's similarity is that of their nearest enrolled image.
        matrix = np.concatenate([np.stack(self.gallery[name]) for name in names])
        owners = np.concatenate([[i] * len(self.gallery[name]) for i, name in enumerate(names)])
        similarities = embeddings @ matrix.T
        results = []
        for row in similarities:
            best = int(np.argmax(row))
            similarity = float(row[best])
            results.append((names[owners[best]] if similarity >= self.threshold else UNKNOWN, similarity))
        return results

    # --- public API

    def enrol(self, name: str, image: np.ndarray) -> int:
        """Add the largest face of ``image`` to the gallery under ``name``.

        Parameters
        ----------
        name : str
            Person's name; enrolling the same name again adds another image.
        image : (H, W, 3) ndarray of uint8
            RGB image or frame with the person's face.

        Returns
        -------
        int
            Number of images enrolled for ``name``.

        Raises
        ------
        ValueError
            If the name is empty, there is no embedder, or no face is found.
        """
        name = name.strip()
        if not name:
            raise ValueError("The name to enrol is empty; type a name first.")
        if name == UNKNOWN:
            raise ValueError(f"{UNKNOWN!r} is the label of unrecognised faces; choose another name.")
        if self.embedder is None:
            raise ValueError("This pipeline has no embedder; create it with FacePipeline(embedder=load_embedder()).")
        from .faces import detect_faces

        # NOTE: mtcnn 1.0 finds no face in a 250x250 LFW image with min_face_size=40, so enrolment keeps its default of 20.
        detections = detect_faces(image, min_score=self.min_score)
        if not detections:
            raise ValueError(f"No face found in the {image.shape[1]}x{image.shape[0]} image for {name!r}; face the camera and try again.")
        largest = max(detections, key=lambda d: float((d.box[2] - d.box[0]) * (d.box[3] - d.box[1])))
        embedding = self.embedder.embed(image, [largest.landmarks])[0]
        self.gallery.setdefault(name, []).append(embedding)
        log.debug("Enrolled %s (%d image(s)).", name, len(self.gallery[name]))
        return len(self.gallery[name])

    def __call__(self, image: np.ndarray) -> list[dict]:
        """Process one RGB ``uint8`` frame and return the detections for the widget."""
        timings = {"detect": 0.0, "track": 0.0, "mask": 0.0, "recognise": 0.0}
        started = time.perf_counter()
        if self._frame_count % self.detect_every == 0 or not self._faces:
            self._faces = self.detect(image)
            timings["detect"] = time.perf_counter() - started
            if self.detect_every > 1 and self._faces:
                tracker_start = time.perf_counter()
                self._start_trackers(self._shrink(image))
                timings["track"] = time.perf_counter() - tracker_start
        else:
            self._track(self._shrink(image))
            timings["track"] = time.perf_counter() - started
        self._frame_count += 1

        boxes = [face.box for face in self._faces]
        mask_start = time.perf_counter()
        titles, colours, mask_scores = self.classify_masks(image, boxes)
        timings["mask"] = time.perf_counter() - mask_start

        identities = [None] * len(boxes)
        if self.gallery and self.embedder is not None:
            recognise_start = time.perf_counter()
            with_landmarks = [i for i, face in enumerate(self._faces) if face.landmarks is not None]
            if with_landmarks:
                points = [_moved_landmarks(self._faces[i]) for i in with_landmarks]
                matches = self.identify(self.embedder.embed(image, points))
                for i, match in zip(with_landmarks, matches):
                    identities[i] = match
            timings["recognise"] = time.perf_counter() - recognise_start

        results = []
        for index, box in enumerate(boxes):
            label, score = titles[index], float(mask_scores[index])
            if identities[index] is not None:
                name, similarity = identities[index]
                label = f"{name}, {label}"
                score = similarity
            results.append({"box": [float(v) for v in box], "label": label, "colour": colours[index], "score": score})
        self.timings = {stage: seconds * 1000.0 for stage, seconds in timings.items()}
        return results


# --- the bundled camera sequence -----------------------------------------------------------


DEMO_RMFRD_PEOPLE = ("masu", "jingtian")
"""RMFRD people whose first masked photo appears in the demo sequence (others are used when absent)."""


@dataclasses.dataclass
class DemoSequence:
    """Frames that stand in for a camera, with what they show.

    Attributes
    ----------
    frames : list of (480, 640, 3) ndarray of uint8
        RGB frames.
    boxes : list of (F, 4) ndarray of float32
        Per frame, the pasted face images as ``(x_min, y_min, x_max, y_max)``.
    names : list of str
        Person shown in each pasted image (LFW or RMFRD identity).
    masked : list of bool
        Whether each pasted image shows a real mask.
    enrolment : dict of str to (H, W, 3) ndarray of uint8
        Another, unmasked photo of each person, for enrolling them.
    """

    frames: list
    boxes: list
    names: list
    masked: list
    enrolment: dict


def _background(height: int, width: int) -> np.ndarray:
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    cols = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    grey = 95 + 60 * rows + 25 * np.sin(3.0 * cols + 1.0) * np.cos(2.0 * rows)
    tint = np.array([1.0, 0.97, 0.92], dtype=np.float32)
    return np.clip(grey[..., None] * tint, 0, 255).astype(np.uint8)


def build_demo_sequence(n_frames: int | None = None, size: tuple[int, int] = (480, 640), seed: int = 0) -> DemoSequence:
    """Compose a short video of real faces from LFW and RMFRD, moving slightly.

    Two LFW people (the first two people with a same-person pair in
    ``pairsDevTest.txt``) and two RMFRD people in real masks
    (:data:`DEMO_RMFRD_PEOPLE`) are pasted on a smooth background. Each drifts
    on a small ellipse (up to 12 pixels), and mild sensor noise is added. Frames are built in memory from the dataset files;
    nothing is written.

    Parameters
    ----------
    n_frames : int, optional
        Default 24 in quick mode and 60 in full mode.
    size : (height, width)
        Frame size in pixels; the layout is made for 480x640.
    seed : int
        Seed of the noise.

    Returns
    -------
    DemoSequence
    """
    import cv2

    from .data import load_lfw_pairs, load_rmfrd

    n_frames = n_frames if n_frames is not None else pick(quick=24, full=60)
    height, width = size
    same_pairs = []
    for pair in load_lfw_pairs("DevTest"):
        if pair.same and pair.first.identity not in {p.first.identity for p in same_pairs}:
            same_pairs.append(pair)
        if len(same_pairs) == 2:
            break
    records = load_rmfrd()
    masked_people = sorted({r.identity for r in records if r.masked} & {r.identity for r in records if not r.masked})
    chosen = [p for p in DEMO_RMFRD_PEOPLE if p in masked_people]
    chosen += [p for p in masked_people if p not in chosen][: 2 - len(chosen)]

    tiles, names, masked, enrolment = [], [], [], {}
    for pair in same_pairs:
        tiles.append(resize(read_image(pair.first.path), (200, 200)))
        names.append(pair.first.identity)
        masked.append(False)
        enrolment[pair.first.identity] = read_image(pair.second.path)
    for person in chosen:
        masked_photo = next(r for r in records if r.identity == person and r.masked)
        unmasked_photo = next(r for r in records if r.identity == person and not r.masked)
        # RMFRD photos are tight face crops; a replicated border gives the detector some context.
        tile = cv2.copyMakeBorder(resize(read_image(masked_photo.path), (140, 140)), 25, 25, 25, 25, cv2.BORDER_REPLICATE)
        tiles.append(tile)
        names.append(person)
        masked.append(True)
        enrolment[person] = read_image(unmasked_photo.path)

    corners = [(30, 30), (410, 30), (110, 270), (340, 270)]
    rng = np.random.default_rng(seed)
    background = _background(height, width)
    frames, boxes = [], []
    for t in range(n_frames):
        frame = background.copy()
        frame_boxes = []
        for index, (tile, (x0, y0)) in enumerate(zip(tiles, corners)):
            phase = 2.0 * np.pi * (t / 20.0 + index / len(tiles))
            x = int(np.clip(x0 + round(12 * np.cos(phase)), 0, width - tile.shape[1]))
            y = int(np.clip(y0 + round(8 * np.sin(phase)), 0, height - tile.shape[0]))
            frame[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
            frame_boxes.append([x, y, x + tile.shape[1], y + tile.shape[0]])
        noise = rng.normal(0.0, 3.0, size=frame.shape)
        frames.append(np.clip(frame + noise, 0, 255).astype(np.uint8))
        boxes.append(np.asarray(frame_boxes, dtype=np.float32))
    return DemoSequence(frames=frames, boxes=boxes, names=names, masked=masked, enrolment=enrolment)


def count_matched_faces(detections: Sequence[Sequence[dict]], sequence: DemoSequence, min_overlap: float = 0.5) -> list[int]:
    """Count, per pasted face, the frames in which a detection box lies inside it.

    A detection matches a pasted image when at least ``min_overlap`` of the
    detection box's area lies inside the image's box.

    Returns
    -------
    list of int
        One count per entry of ``sequence.names``.
    """
    counts = [0] * len(sequence.names)
    for frame_detections, frame_boxes in zip(detections, sequence.boxes):
        for index, target in enumerate(frame_boxes):
            for detection in frame_detections:
                x_min, y_min, x_max, y_max = detection["box"]
                inter_w = max(0.0, min(x_max, target[2]) - max(x_min, target[0]))
                inter_h = max(0.0, min(y_max, target[3]) - max(y_min, target[1]))
                area = max((x_max - x_min) * (y_max - y_min), 1e-6)
                if inter_w * inter_h / area >= min_overlap:
                    counts[index] += 1
                    break
    return counts


# --- notebook helpers ----------------------------------------------------------------------


def show_detections(image: np.ndarray, detections: Sequence[dict], title: str | None = None, ax=None):
    """Draw a processing function's detections over a frame, as the widget does; returns the Axes."""
    import matplotlib.pyplot as plt
    from matplotlib import patches

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5 * image.shape[0] / image.shape[1]))
    ax.imshow(image)
    ax.axis("off")
    for detection in detections:
        x_min, y_min, x_max, y_max = detection["box"]
        colour = detection["colour"]
        ax.add_patch(patches.Rectangle((x_min, y_min), x_max - x_min, y_max - y_min, fill=False, edgecolor=colour, linewidth=2))
        ax.text(x_min, y_min - 3, f"{detection['label']} {detection['score']:.2f}", color="white", fontsize=8, backgroundcolor=colour, va="bottom")
    if title:
        ax.set_title(title)
    return ax


def demo_controls(widget, pipeline: FacePipeline):
    """Build the controls of the live demo: enrol the face in the last frame, and set the threshold.

    Parameters
    ----------
    widget : course_lib.webcam.WebcamWidget
        Its ``last_frame`` is the image that the Enrol button uses.
    pipeline : FacePipeline
        Gets the enrolled faces and the slider's threshold.

    Returns
    -------
    ipywidgets.VBox
    """
    import ipywidgets

    name = ipywidgets.Text(placeholder="Your name", description="Name:")
    enrol_button = ipywidgets.Button(description="Enrol last frame", icon="user-plus")
    threshold = ipywidgets.FloatSlider(
        value=pipeline.threshold, min=0.0, max=1.0, step=0.01, description="Threshold:", continuous_update=True, readout_format=".2f"
    )
    message = ipywidgets.HTML()

    def on_enrol(_button) -> None:
        if widget.last_frame is None:
            message.value = "No frame received yet: press Start in the widget first."
            return
        try:
            count = pipeline.enrol(name.value, widget.last_frame)
        except ValueError as error:
            message.value = f"Not enrolled: {error}"
            return
        message.value = f"Enrolled {name.value.strip()} ({count} image(s)); gallery: {', '.join(sorted(pipeline.gallery))}."

    def on_threshold(change) -> None:
        pipeline.threshold = float(change["new"])

    enrol_button.on_click(on_enrol)
    threshold.observe(on_threshold, names="value")
    return ipywidgets.VBox([ipywidgets.HBox([name, enrol_button]), threshold, message])


def detection_dict_exercise():
    """Exercise: convert an OpenCV ``(x, y, width, height)`` box into the widget's detection dictionary.

    The answer is a function ``to_detection(box_xywh, label, score)``. The
    check calls it on several boxes and names the first wrong field.
    """
    from .exercises import Exercise, IncorrectAnswer
    from .webcam import validate_detections

    cases = [((10, 20, 30, 40), "face", 0.9), ((0, 0, 5, 5), "no mask", 0.5), ((100.5, 50, 20, 60), "mask worn", 1.0)]

    def checker(answer):
        if not callable(answer):
            raise IncorrectAnswer(f"expected the function to_detection, got {type(answer).__name__}.")
        for box, label, score in cases:
            result = answer(box, label, score)
            try:
                (cleaned,) = validate_detections([result])
            except ValueError as error:
                raise IncorrectAnswer(f"to_detection({box}, {label!r}, {score}) returned {result!r}: {error}") from None
            x, y, width, height = box
            expected = [x, y, x + width, y + height]
            if not np.allclose(cleaned["box"], expected):
                raise IncorrectAnswer(
                    f"to_detection({box}, ...) gives box {cleaned['box']}; expected {expected}, "
                    "that is (x, y, x + width, y + height)."
                )
            if cleaned["label"] != label:
                raise IncorrectAnswer(f"to_detection(..., {label!r}, ...) gives label {cleaned['label']!r}; pass the label through unchanged.")
            if not np.isclose(cleaned["score"], score):
                raise IncorrectAnswer(f"to_detection(..., {score}) gives score {cleaned['score']}; pass the score through unchanged.")
        return f"It converted {len(cases)} boxes correctly."

    return Exercise(
        "From (x, y, width, height) to a detection dictionary",
        checker,
        hint="OpenCV's detectMultiScale returns (x, y, width, height); the widget wants (x_min, y_min, x_max, y_max) "
        "plus a CSS colour string such as '#1f77b4'.",
        solution="""
        def to_detection(box_xywh, label, score):
            x, y, width, height = box_xywh
            return {"box": (x, y, x + width, y + height), "label": label, "colour": "#1f77b4", "score": float(score)}
        """,
    )


def processor_exercise(sequence: DemoSequence, frame_index: int = 0):
    """Exercise: write a processing function for the widget.

    The check calls the answer on one frame of ``sequence``, validates the
    returned structure with :func:`course_lib.webcam.validate_detections`
    (whose messages name the wrong detection and field), and requires every
    unmasked face of the frame to be covered by a detection.
    """
    from .exercises import Exercise, IncorrectAnswer
    from .webcam import validate_detections

    frame = sequence.frames[frame_index]

    def checker(answer):
        if not callable(answer):
            raise IncorrectAnswer(f"expected a function image -> list of dict, got {type(answer).__name__}.")
        result = answer(frame.copy())
        try:
            cleaned = validate_detections(result, frame.shape)
        except ValueError as error:
            raise IncorrectAnswer(f"on a {frame.shape[1]}x{frame.shape[0]} test frame, the output is invalid: {error}") from None
        counts = count_matched_faces([cleaned], dataclasses.replace(sequence, boxes=[sequence.boxes[frame_index]]))
        missed = [name for name, count, masked in zip(sequence.names, counts, sequence.masked) if count == 0 and not masked]
        if missed:
            raise IncorrectAnswer(
                f"the test frame shows unmasked faces of {', '.join(missed)}, but no returned box lies inside them "
                f"(got {len(cleaned)} detection(s)). Check the cascade's minSize and that boxes are in full-frame pixels."
            )
        return f"It found {len(cleaned)} face(s) and its output is valid for the widget."

    return Exercise(
        "A processing function for the widget",
        checker,
        hint="Convert the image to grey with course_lib.images.to_gray, run the Haar cascade's detectMultiScale, "
        "and turn each (x, y, width, height) into a dictionary with to_detection.",
        solution="""
        cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")

        def my_processor(image):
            found = cascade.detectMultiScale(to_gray(image), scaleFactor=1.1, minNeighbors=5, minSize=(40, 40))
            return [to_detection(box, "face", 1.0) for box in found]
        """,
    )
