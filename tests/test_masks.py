"""Synthetic masks on real LFW faces: placement, determinism, failures."""

import math

import cv2
import numpy as np
import pytest

from course_lib.data import load_lfw_people
from course_lib.faces import detect_largest_face
from course_lib.images import read_image
from course_lib.masks import (
    CHIN_FRACTION,
    MASK_TYPES,
    MaskedFace,
    NoFace,
    apply_mask,
    chin_point,
    face_frame,
    landmark_covered,
    mask_face,
    occlusion_fraction,
)

CORRECT_TYPES = [t for t in MASK_TYPES if t not in ("below_nose", "on_chin")]


@pytest.fixture(scope="module")
def faces():
    """Six LFW images of different people with their MTCNN landmarks."""
    records = load_lfw_people("DevTrain", min_images=5)
    picked, seen = [], set()
    for record in records[::37]:
        if record.identity not in seen:
            seen.add(record.identity)
            picked.append(record)
        if len(picked) == 6:
            break
    result = []
    for record in picked:
        image = read_image(record.path)
        detection = detect_largest_face(image)
        assert detection is not None, f"MTCNN found no face in {record.path.name}"
        result.append((image, detection))
    return result


@pytest.mark.parametrize("mask_type", CORRECT_TYPES)
def test_covers_mouth_not_eyes(faces, mask_type):
    for index, (image, detection) in enumerate(faces):
        masked = apply_mask(image, detection.landmarks, mask_type, seed=index)
        covered = landmark_covered(masked, detection.landmarks)
        assert covered["mouth_left"], (mask_type, index, covered)
        assert covered["mouth_right"], (mask_type, index, covered)
        assert covered["nose"], (mask_type, index, covered)
        assert not covered["left_eye"], (mask_type, index, covered)
        assert not covered["right_eye"], (mask_type, index, covered)
        assert masked.correctly_worn


@pytest.mark.parametrize("base", ["surgical", "cloth", "kn95"])
def test_below_nose(faces, base):
    for index, (image, detection) in enumerate(faces):
        masked = apply_mask(image, detection.landmarks, "below_nose", seed=index, base=base)
        covered = landmark_covered(masked, detection.landmarks)
        assert not covered["nose"], (index, covered)
        assert covered["mouth_left"], (index, covered)
        assert covered["mouth_right"], (index, covered)
        assert not masked.correctly_worn


def test_on_chin(faces):
    """On the chin: the nose and the mouth are uncovered, the chin is covered."""
    for index, (image, detection) in enumerate(faces):
        masked = apply_mask(image, detection.landmarks, "on_chin", seed=index)
        covered = landmark_covered(masked, detection.landmarks)
        assert not any(covered.values()), (index, covered)
        x, y = np.round(chin_point(detection.landmarks)).astype(int)
        assert masked.region[y, x]
        assert not masked.correctly_worn


def test_result_types(faces):
    image, detection = faces[0]
    before = image.copy()
    masked = apply_mask(image, detection.landmarks, "surgical")
    assert isinstance(masked, MaskedFace)
    assert masked.ok
    assert masked.image.shape == image.shape
    assert masked.image.dtype == np.uint8
    assert masked.region.shape == image.shape[:2]
    assert masked.region.dtype == bool
    assert np.array_equal(image, before)
    changed = np.any(masked.image != image, axis=2)
    assert changed[masked.region].mean() > 0.95


def test_seed(faces):
    image, detection = faces[1]
    first = apply_mask(image, detection.landmarks, "cloth", seed=5)
    again = apply_mask(image, detection.landmarks, "cloth", seed=5)
    other = apply_mask(image, detection.landmarks, "cloth", seed=6)
    assert np.array_equal(first.image, again.image)
    assert np.array_equal(first.region, again.region)
    assert not np.array_equal(first.image, other.image)


def test_patterns(faces):
    image, detection = faces[2]
    plain = apply_mask(image, detection.landmarks, "cloth", seed=1, pattern="plain", colour=(40, 60, 110))
    dots = apply_mask(image, detection.landmarks, "cloth", seed=1, pattern="dots", colour=(40, 60, 110), pattern_colour=(240, 240, 240))
    assert plain.options["pattern"] == "plain"
    inside = cv2.erode((plain.region & dots.region).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    # Dots add bright spots: the patterned mask varies much more inside the region.
    grey = lambda masked: masked.image.mean(axis=2)[inside]
    assert grey(dots).std() > 2 * grey(plain).std()


def test_colour(faces):
    image, detection = faces[0]
    masked = apply_mask(image, detection.landmarks, "surgical", colour=(200, 30, 30), pleats=0)
    mean = masked.image[masked.region].mean(axis=0)
    assert mean[0] > mean[1] + 60
    assert mean[0] > mean[2] + 60


def test_roll(faces):
    """Rotating the face rotates the mask: it still covers the mouth and spares the eyes."""
    image, detection = faces[3]
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 25, 1.0)
    rotated = cv2.warpAffine(image, matrix, (width, height))
    points = detection.landmarks @ matrix[:, :2].T + matrix[:, 2]
    masked = apply_mask(rotated, points, "surgical")
    covered = landmark_covered(masked, points)
    assert covered["mouth_left"]
    assert covered["mouth_right"]
    assert covered["nose"]
    assert not covered["left_eye"]
    assert not covered["right_eye"]


def test_yaw():
    """A nose shifted to the right (head turned right) squeezes the mask's right half."""
    image = np.full((200, 200, 3), 128, np.uint8)
    frontal = np.array([[80, 80], [120, 80], [100, 102], [84, 124], [116, 124]], np.float32)
    turned = frontal.copy()
    turned[2, 0] += 12
    frame = face_frame(turned)
    assert frame.yaw > 0.3
    region = apply_mask(image, turned, "surgical", ear_loops=False).region
    columns = np.flatnonzero(region[124])
    left, right = 100 - columns.min(), columns.max() - 100
    assert right < 0.8 * left
    assert abs(face_frame(frontal).yaw) < 1e-6


@pytest.mark.parametrize("image", [np.zeros((160, 160, 3), np.uint8), np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8)], ids=["blank", "noise"])
def test_no_face(image):
    result = mask_face(image)
    assert isinstance(result, NoFace)
    assert not result.ok
    assert not result
    assert result.reason == "no face found"


def test_low_confidence(faces):
    image, detection = faces[0]
    weak = type(detection)(box=detection.box, score=0.5, landmarks=detection.landmarks)
    result = mask_face(image, detection=weak)
    assert not result.ok
    assert result.reason.startswith("low confidence (0.50")


def test_bad_landmarks(faces):
    image, detection = faces[0]
    flat = detection.landmarks.copy()
    flat[3:, 1] = flat[0, 1]  # mouth corners on the eye line
    result = mask_face(image, detection=type(detection)(box=detection.box, score=0.99, landmarks=flat))
    assert not result.ok
    assert result.reason.startswith("implausible landmarks")


def test_mask_face(faces):
    image, _ = faces[4]
    result = mask_face(image, "kn95", seed=2, valve=True)
    assert result.ok
    assert result.mask_type == "kn95"
    assert result.options["valve"] is True


def test_chin_point():
    landmarks = np.array([[80, 80], [120, 80], [100, 100], [84, 120], [116, 120]], np.float32)
    assert np.allclose(chin_point(landmarks), [100, 120 + 40 * CHIN_FRACTION])


def test_occlusion_fraction():
    region = np.zeros((10, 10), bool)
    region[5:, :] = True
    assert occlusion_fraction(region, (0, 0, 10, 10)) == pytest.approx(0.5)
    assert occlusion_fraction(region, (2, 4, 6, 8)) == pytest.approx(0.75)
    assert occlusion_fraction(region, (-5, 5, 20, 20)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="holds no pixels"):
        occlusion_fraction(region, (5, 5, 5, 9))


def test_errors(faces):
    image, detection = faces[0]
    with pytest.raises(ValueError, match="Unknown mask type 'scarf'"):
        apply_mask(image, detection.landmarks, "scarf")
    with pytest.raises(ValueError, match="Unknown option"):
        apply_mask(image, detection.landmarks, "surgical", valve=True)
    with pytest.raises(ValueError, match="coverage"):
        apply_mask(image, detection.landmarks, coverage=2.0)
    with pytest.raises(ValueError, match="shape \\(5, 2\\)"):
        apply_mask(image, detection.landmarks[:4])
    with pytest.raises(ValueError, match="colour"):
        apply_mask(image, detection.landmarks, colour=(300, 0, 0))
    with pytest.raises(ValueError, match="eye landmarks"):
        apply_mask(image, np.full((5, 2), 50, np.float32))


def test_coverage(faces):
    image, detection = faces[5]
    low = apply_mask(image, detection.landmarks, "surgical", coverage=0.7).region.sum()
    normal = apply_mask(image, detection.landmarks, "surgical").region.sum()
    high = apply_mask(image, detection.landmarks, "surgical", coverage=1.3).region.sum()
    assert low < normal < high
