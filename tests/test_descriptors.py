"""Unit tests of course_lib.descriptors and course_lib.classical on synthetic and AT&T images."""

import numpy as np
import pytest

from course_lib import classical, descriptors
from course_lib.data import load_att_faces
from course_lib.images import read_image


@pytest.fixture(scope="module")
def face():
    """AT&T face s1/1 cut to 88 columns, a multiple of 8, so an 8-column grid is mirror-symmetric."""
    image = read_image(load_att_faces()[0].path)
    return np.ascontiguousarray(image[:, 2:90])


@pytest.mark.parametrize("method", descriptors.LBP_METHODS)
@pytest.mark.parametrize("points,radius", [(8, 1), (8, 2), (16, 2)])
def test_lbp_constant_image_one_bin(method, points, radius):
    image = np.full((40, 48), 90, dtype=np.uint8)
    histogram = descriptors.lbp_histogram(image, radius=radius, points=points, grid=(2, 3), method=method)
    cells = histogram.reshape(6, descriptors.lbp_bin_count(points, method))
    assert np.count_nonzero(cells.sum(axis=0)) == 1
    assert np.allclose(cells.max(axis=1), 1.0)


def test_lbp_uniform_length_and_sums(face):
    histogram = descriptors.lbp_histogram(face, radius=1, points=8, grid=(8, 8), method="uniform")
    assert histogram.shape == (8 * 8 * 10,)
    assert histogram.dtype == np.float32
    assert np.allclose(histogram.reshape(64, 10).sum(axis=1), 1.0)


def test_lbp_bin_counts():
    assert descriptors.lbp_bin_count(8, "uniform") == 10
    assert descriptors.lbp_bin_count(8, "nri_uniform") == 59
    assert descriptors.lbp_bin_count(8, "default") == 256
    with pytest.raises(ValueError, match="Unknown LBP method"):
        descriptors.lbp_bin_count(8, "var")


@pytest.mark.parametrize("points,radius", [(4, 1), (4, 2), (8, 1)])
def test_lbp_uniform_mirror_exact(face, points, radius):
    mirrored = np.ascontiguousarray(np.fliplr(face))
    codes = descriptors.lbp_image(face, radius=radius, points=points)
    assert np.array_equal(descriptors.lbp_image(mirrored, radius=radius, points=points), np.fliplr(codes))
    n_bins = descriptors.lbp_bin_count(points, "uniform")
    expected = descriptors.mirror_lbp_histogram(descriptors.lbp_histogram(face, radius, points), (8, 8), n_bins)
    assert np.array_equal(descriptors.lbp_histogram(mirrored, radius, points), expected)


@pytest.mark.parametrize("points,radius", [(8, 2), (16, 2)])
def test_lbp_uniform_mirror_up_to_ties(face, points, radius):
    # Interpolated neighbours that equal the centre can round either way.
    mirrored = np.ascontiguousarray(np.fliplr(face))
    codes = np.fliplr(descriptors.lbp_image(face, radius=radius, points=points))
    differing = np.mean(descriptors.lbp_image(mirrored, radius=radius, points=points) != codes)
    assert differing < 0.002


def test_lbp_default_mirror_differs(face):
    mirrored = np.ascontiguousarray(np.fliplr(face))
    expected = descriptors.mirror_lbp_histogram(descriptors.lbp_histogram(face, method="default"), (8, 8), 256)
    difference = np.abs(descriptors.lbp_histogram(mirrored, method="default") - expected).sum()
    assert difference > 1.0


def test_lbp_code_3x3_bits():
    patch = np.array([[60, 40, 50], [55, 50, 10], [50, 49, 90]])
    # Bits clockwise from top-left: 60>=50, 40<50, 50>=50, 10<50, 90>=50, 49<50, 50>=50, 55>=50.
    assert descriptors.lbp_code_3x3(patch) == 1 + 4 + 16 + 64 + 128


def test_hog_shape(face):
    crop = face[:64, :64]
    vector, glyphs = descriptors.hog_descriptor(crop, visualize=True)
    assert vector.shape == (7 * 7 * 2 * 2 * 9,)
    assert vector.dtype == np.float32
    assert glyphs.shape == crop.shape[:2]


def test_hog_small_image_rejected():
    with pytest.raises(ValueError, match="fewer cells"):
        descriptors.hog_descriptor(np.zeros((10, 10), np.uint8))


def test_sift_shapes(face):
    detected = descriptors.sift_features(face)
    assert len(detected) > 0
    assert detected.points.shape == (len(detected), 2)
    assert detected.descriptors.shape == (len(detected), 128)
    dense = descriptors.sift_features(face, dense_step=8)
    assert dense.descriptors.shape == (len(dense), 128)
    assert len(dense) == len(np.arange(6, 112 - 6 + 1, 8)) * len(np.arange(6, 88 - 6 + 1, 8))


def test_sift_flat_image_empty():
    features = descriptors.sift_features(np.full((64, 64), 128, np.uint8))
    assert len(features) == 0
    assert features.descriptors.shape == (0, 128)


def test_bag_of_words_rows_sum_to_one(face):
    sets = [descriptors.sift_features(face, dense_step=8).descriptors, descriptors.sift_features(face[::-1].copy(), dense_step=8).descriptors]
    encoded = descriptors.BagOfVisualWords(n_words=8).fit_transform(sets)
    assert encoded.shape == (2, 8)
    assert np.allclose(encoded.sum(axis=1), 1.0)


def test_bag_of_words_unfitted():
    with pytest.raises(RuntimeError, match="not fitted"):
        descriptors.BagOfVisualWords(n_words=4).transform([np.zeros((3, 128), np.float32)])


def test_chi_square_properties():
    rng = np.random.default_rng(0)
    a, b = rng.random((2, 30))
    a, b = a / a.sum(), b / b.sum()
    assert descriptors.chi_square_distance(a, a) == pytest.approx(0.0, abs=1e-12)
    assert descriptors.chi_square_distance(a, b) == pytest.approx(descriptors.chi_square_distance(b, a))
    assert descriptors.chi_square_distance(a, b) > 0
    disjoint = descriptors.chi_square_distance([0.5, 0.5, 0, 0], [0, 0, 0.25, 0.75])
    assert disjoint == pytest.approx(1.0)
    assert descriptors.chi_square_distance([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]) == pytest.approx(0.5)


def test_chi_square_matrix_shape():
    rng = np.random.default_rng(1)
    distances = descriptors.chi_square_distance(rng.random((4, 6)), rng.random((3, 6)))
    assert distances.shape == (4, 3)
    assert (distances >= 0).all()


def test_chi_square_rejects_negative():
    with pytest.raises(ValueError, match="non-negative"):
        descriptors.chi_square_distance([0.5, -0.5], [0.5, 0.5])


def test_select_region_template_rows():
    image = np.zeros((112, 112), np.uint8)
    upper = descriptors.select_region(image, "upper")
    lower = descriptors.select_region(image, "lower")
    assert upper.shape[0] + lower.shape[0] == 112
    assert 52 < upper.shape[0] < 72
    assert descriptors.select_region(image, "whole").shape == image.shape


def test_select_region_landmarks():
    landmarks = np.array([[30, 40], [60, 40], [45, 60], [32, 80], [58, 80]], dtype=np.float32)
    upper = descriptors.select_region(np.zeros((100, 90, 3), np.uint8), "upper", landmarks, cut=0.5)
    assert upper.shape == (50, 90, 3)


def test_select_region_unknown():
    with pytest.raises(ValueError, match="Unknown face region"):
        descriptors.select_region(np.zeros((8, 8), np.uint8), "middle")


@pytest.mark.parametrize("cascade", classical.CASCADES)
def test_cascade_boxes_on_face(cascade):
    from skimage.data import astronaut

    boxes = classical.detect_faces_cascade(astronaut(), cascade)
    assert boxes.dtype == np.float32
    assert boxes.ndim == 2
    assert boxes.shape[1] == 4
    assert len(boxes) >= 1
    assert (boxes[:, 2] > boxes[:, 0]).all()
    assert (boxes[:, 3] > boxes[:, 1]).all()


@pytest.mark.parametrize("cascade", classical.CASCADES)
def test_cascade_empty_on_flat(cascade):
    boxes = classical.detect_faces_cascade(np.full((120, 120, 3), 100, np.uint8), cascade)
    assert boxes.shape == (0, 4)


def test_face_found_needs_eyes_and_nose():
    landmarks = np.array([[30, 40], [60, 40], [45, 60], [32, 80], [58, 80]], dtype=np.float32)
    assert classical.face_found(np.array([[20, 30, 70, 90]], np.float32), landmarks)
    assert not classical.face_found(np.array([[20, 50, 70, 90]], np.float32), landmarks)
    assert not classical.face_found(np.zeros((0, 4), np.float32), landmarks)
