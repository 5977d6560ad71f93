"""Tests of the webcam demo's pipeline on the bundled sequence of real faces (``MFR_DATA_DIR``)."""

import numpy as np
import pytest

from course_lib.classifier import MaskClassifier, default_classifier_path
from course_lib.data import MASK_CLASSES
from course_lib.exercises import IncorrectAnswer
from course_lib.pipeline import (
    UNKNOWN,
    Embedder,
    FacePipeline,
    build_demo_sequence,
    count_matched_faces,
    detection_dict_exercise,
    load_embedder,
    load_mask_model,
    processor_exercise,
)
from course_lib.recognition import load_embedding_metadata, quick_embedding_model_path
from course_lib.webcam import WebcamWidget, play_frames, validate_detections


@pytest.fixture(scope="module")
def sequence():
    return build_demo_sequence(n_frames=9)


@pytest.fixture(scope="module")
def mask_model():
    # Without notebook 03's model this trains a quick CNN on the first run and caches it in MFR_CACHE_DIR.
    return load_mask_model()


@pytest.fixture(scope="module")
def embedder():
    # Without notebook 05's model this trains a quick ArcFace model on the first run and caches it in MFR_CACHE_DIR.
    return load_embedder()


def faces_inside(detections, box, min_overlap=0.5):
    """Return the detections whose box lies mostly inside ``box``."""
    inside = []
    for detection in detections:
        x_min, y_min, x_max, y_max = detection["box"]
        width = max(0.0, min(x_max, box[2]) - max(x_min, box[0]))
        height = max(0.0, min(y_max, box[3]) - max(y_min, box[1]))
        if width * height >= min_overlap * (x_max - x_min) * (y_max - y_min):
            inside.append(detection)
    return inside


# --- the sequence


def test_sequence_frames(sequence):
    assert len(sequence.frames) == 9
    assert all(frame.shape == (480, 640, 3) and frame.dtype == np.uint8 for frame in sequence.frames)
    assert sequence.masked == [False, False, True, True]
    assert len(set(sequence.names)) == 4
    assert sorted(sequence.enrolment) == sorted(sequence.names)


def test_sequence_moves(sequence):
    assert not np.array_equal(sequence.boxes[0], sequence.boxes[3])
    assert np.abs(sequence.boxes[0] - sequence.boxes[3]).max() <= 24
    for boxes in sequence.boxes:
        assert boxes[:, [0, 1]].min() >= 0
        assert boxes[:, 2].max() <= 640
        assert boxes[:, 3].max() <= 480


def test_sequence_deterministic():
    first = build_demo_sequence(n_frames=2)
    second = build_demo_sequence(n_frames=2)
    assert np.array_equal(first.frames[1], second.frames[1])


# --- detection, tracking and mask status


def test_pipeline_output_valid(sequence, mask_model):
    pipeline = FacePipeline(mask_model=mask_model)
    detections = pipeline(sequence.frames[0])
    assert validate_detections(detections, sequence.frames[0].shape) == detections
    assert set(pipeline.timings) == {"detect", "track", "mask", "recognise"}


def test_pipeline_finds_faces(sequence, mask_model):
    pipeline = FacePipeline(mask_model=mask_model, detect_every=3)
    report = play_frames(WebcamWidget(processor=pipeline), sequence.frames)
    found = count_matched_faces(report.detections, sequence)
    assert report.processed == 9
    assert found[0] == 9, f"Unmasked face found in {found[0]} of 9 frames"
    assert found[1] == 9, f"Unmasked face found in {found[1]} of 9 frames"
    assert max(found[2:]) >= 5, f"Masked faces found in {found[2:]} of 9 frames"


def test_pipeline_tracks_between_detections(sequence):
    pipeline = FacePipeline(detect_every=3)
    pipeline(sequence.frames[0])
    assert pipeline.timings["detect"] > 0
    tracked = pipeline(sequence.frames[1])
    assert pipeline.timings["detect"] == 0
    assert pipeline.timings["track"] > 0
    assert len(faces_inside(tracked, sequence.boxes[1][0])) == 1
    pipeline(sequence.frames[2])
    pipeline(sequence.frames[3])
    assert pipeline.timings["detect"] > 0


def test_mask_status_labels(sequence, mask_model):
    pipeline = FacePipeline(mask_model=mask_model, detect_every=1)
    detections = pipeline(sequence.frames[0])
    for index, masked in enumerate(sequence.masked):
        inside = faces_inside(detections, sequence.boxes[0][index])
        labels = [d["label"] for d in inside]
        if not masked:
            assert labels == ["no mask"], f"{sequence.names[index]} (unmasked) labelled {labels}"
        elif inside:
            assert labels == ["mask worn"], f"{sequence.names[index]} (masked) labelled {labels}"


def test_haar_misses_masked(sequence):
    pipeline = FacePipeline(detector="haar", detect_every=1)
    detections = pipeline(sequence.frames[0])
    assert len(faces_inside(detections, sequence.boxes[0][0])) == 1
    assert len(faces_inside(detections, sequence.boxes[0][1])) == 1
    assert faces_inside(detections, sequence.boxes[0][2]) == []


def test_mask_model_without_notebook_03(tmp_path):
    model = load_mask_model(tmp_path / "absent.keras")
    assert isinstance(model, MaskClassifier)
    assert model.class_names == MASK_CLASSES
    assert model.description.endswith("because notebook 03 has not saved one")
    # load_or_train_classifier prefers the model of the classifier's full-mode experiment when one is cached.
    expected = "of the full-mode experiment" if default_classifier_path(64).is_file() else "trained quickly"
    assert expected in model.description


def test_pipeline_rejects_bad_settings():
    with pytest.raises(ValueError, match="Unknown detector 'yolo'"):
        FacePipeline(detector="yolo")
    with pytest.raises(ValueError, match="detect_every=0"):
        FacePipeline(detect_every=0)
    with pytest.raises(ValueError, match="scale=2"):
        FacePipeline(scale=2)


# --- recognition


def test_embedder_without_notebook_05(tmp_path):
    embedder = load_embedder(tmp_path / "absent.keras")
    metadata = load_embedding_metadata(quick_embedding_model_path(64))
    assert embedder.description.startswith("ArcFace embedding model trained quickly")
    assert embedder.threshold == metadata["threshold"]
    assert 0.0 < embedder.threshold < 1.0


def test_recognises_enrolled(sequence, embedder):
    pipeline = FacePipeline(embedder=embedder, detect_every=1)
    name = sequence.names[0]
    pipeline.enrol(name, sequence.enrolment[name])
    detections = pipeline(sequence.frames[0])
    (face,) = faces_inside(detections, sequence.boxes[0][0])
    assert face["label"].startswith(f"{name}, ")
    assert face["score"] >= pipeline.threshold


def test_threshold_changes_live(sequence, embedder):
    pipeline = FacePipeline(embedder=embedder, detect_every=1)
    name = sequence.names[0]
    pipeline.enrol(name, sequence.enrolment[name])
    pipeline.threshold = 0.999
    detections = pipeline(sequence.frames[0])
    (face,) = faces_inside(detections, sequence.boxes[0][0])
    assert face["label"].startswith(f"{UNKNOWN}, ")


def test_identify_nearest():
    embedder = Embedder(embed=lambda image, points: np.zeros((len(points), 2), dtype=np.float32), description="test", threshold=0.5)
    pipeline = FacePipeline(embedder=embedder)
    pipeline.gallery = {"ann": [np.array([1.0, 0.0])], "bob": [np.array([0.0, 1.0]), np.array([0.6, 0.8])]}
    probes = np.array([[0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    names = [name for name, _ in pipeline.identify(probes)]
    assert names == ["bob", "bob", UNKNOWN]
    assert pipeline.identify(np.zeros((0, 2))) == []


def test_enrol_rejects_bad_input(sequence, embedder):
    pipeline = FacePipeline(embedder=embedder)
    with pytest.raises(ValueError, match="name to enrol is empty"):
        pipeline.enrol("  ", sequence.enrolment[sequence.names[0]])
    with pytest.raises(ValueError, match="No face found"):
        pipeline.enrol("grey", np.full((240, 320, 3), 128, dtype=np.uint8))
    with pytest.raises(ValueError, match="has no embedder"):
        FacePipeline().enrol("ann", sequence.enrolment[sequence.names[0]])


# --- exercises


def test_detection_exercise():
    exercise = detection_dict_exercise()

    def right(box, label, score):
        x, y, width, height = box
        return {"box": (x, y, x + width, y + height), "label": label, "colour": "red", "score": score}

    def unconverted(box, label, score):
        return {"box": box, "label": label, "colour": "red", "score": score}

    def no_colour(box, label, score):
        x, y, width, height = box
        return {"box": (x, y, x + width, y + height), "label": label, "score": score}

    exercise.check(right)
    with pytest.raises(IncorrectAnswer, match=r"expected \[10, 20, 40, 60\]"):
        exercise.check(unconverted)
    with pytest.raises(IncorrectAnswer, match="has no 'colour'"):
        exercise.check(no_colour)


def test_processor_exercise(sequence):
    exercise = processor_exercise(sequence)
    pipeline = FacePipeline(detect_every=1)
    exercise.check(pipeline)
    with pytest.raises(IncorrectAnswer, match="no returned box lies inside them"):
        exercise.check(lambda image: [])
    with pytest.raises(IncorrectAnswer, match="must return a list of dictionaries"):
        exercise.check(lambda image: {"box": (0, 0, 1, 1)})
