"""The masked-probe recognition experiment on the 400 AT&T faces (course_lib.shallow)."""

import numpy as np
import pytest

from course_lib import shallow
from course_lib.exercises import IncorrectAnswer


@pytest.fixture(scope="module")
def att_faces():
    return shallow.load_face_set("att_faces", progress=False)


@pytest.fixture(scope="module")
def att_data(att_faces):
    return shallow.prepare_experiment(att_faces, gallery_per_person=5, progress=False)


@pytest.fixture(scope="module")
def lbp_table(att_data):
    return shallow.evaluate(att_data, descriptors=["lbp"], regions=["whole", "upper"], progress=False)


def test_att_face_set_complete(att_faces):
    assert len(att_faces) == 400
    assert len(att_faces.identities) == 40
    assert att_faces.landmarks.shape == (400, 5, 2)
    assert att_faces.detected.mean() > 0.95


def test_split_first_k_per_person():
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    gallery, probes = shallow.split_gallery_probes(labels, 2)
    assert gallery.tolist() == [0, 1, 3, 4]
    assert probes.tolist() == [2, 5, 6]


def test_experiment_shapes(att_data):
    assert att_data.gallery.shape == (200, 112, 112)
    assert att_data.gallery.dtype == np.uint8
    for condition in shallow.CONDITIONS:
        assert att_data.probes[condition].shape == (200, 112, 112)
    assert att_data.mask_regions.shape == (200, 112, 112)
    assert not np.array_equal(att_data.probes["masked"], att_data.probes["unmasked"])


def test_mask_below_upper_region(att_data):
    first, stop = shallow.desc.region_rows(112, "upper")
    covered = att_data.mask_regions[:, first:stop].mean()
    assert covered < 0.01


def test_lbp_unmasked_rank1(lbp_table):
    assert lbp_table.accuracy("lbp", "unmasked") >= 0.90


def test_lbp_masked_drop(lbp_table):
    drop = lbp_table.accuracy("lbp", "unmasked") - lbp_table.accuracy("lbp", "masked")
    assert drop >= 0.02


def test_upper_face_recovers(lbp_table):
    assert lbp_table.accuracy("lbp", "masked", "upper") > lbp_table.accuracy("lbp", "masked", "whole")


def test_upper_face_ignores_mask(lbp_table):
    assert lbp_table.accuracy("lbp", "masked", "upper") == lbp_table.accuracy("lbp", "unmasked", "upper")


def test_lbph_reference_agrees(att_data):
    table = shallow.evaluate(att_data, descriptors=["lbph"], regions=["whole"], progress=False)
    assert table.accuracy("lbph", "unmasked") >= 0.90
    assert table.accuracy("lbph", "masked") < table.accuracy("lbph", "unmasked")


def test_results_table_format(lbp_table):
    assert lbp_table.shape == (2, 2)
    text = lbp_table.to_markdown()
    assert text.splitlines()[0] == "| descriptor | region | unmasked (%) | masked (%) | drop (points) |"
    assert len(text.splitlines()) == 4
    assert len(lbp_table.to_dicts()) == 4
    with pytest.raises(KeyError, match="No result"):
        lbp_table.accuracy("hog", "masked")


def test_evaluate_unknown_descriptor(att_data):
    with pytest.raises(ValueError, match="Unknown descriptor"):
        shallow.evaluate(att_data, descriptors=["orb"], progress=False)


def test_lbp_exercise_names_wrong_bit():
    patch = np.array([[60, 40, 50], [55, 50, 10], [50, 49, 90]])
    exercise = shallow.lbp_code_exercise(patch)
    exercise.check(1 + 4 + 16 + 64 + 128)
    with pytest.raises(IncorrectAnswer, match="bit 1"):
        exercise.check(1 + 2 + 4 + 16 + 64 + 128)


def test_rank1_exercise_detects_argmax():
    distances = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.4]])
    exercise = shallow.rank1_exercise(distances, np.array([0, 1]), np.array([0, 1, 1]))
    exercise.check(2 / 3)
    with pytest.raises(IncorrectAnswer, match="largest"):
        exercise.check(1 / 3)
