"""PASCAL VOC parsing of the annotation files found in real datasets."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.config import data_dir
from course_lib.data import MASK_CLASSES, AnnotationError, AnnotationReport, parse_voc


def _obj(name="with_mask", box=("10", "20", "30", "40")):
    if box is None:
        return f"<object><name>{name}</name><pose>Unspecified</pose></object>"
    xmin, ymin, xmax, ymax = box
    return (
        f"<object><name>{name}</name><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
        f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
    )


def _write(tmp_path, *objects, size=(100, 80), name="a.xml"):
    size_xml = "" if size is None else f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
    path = tmp_path / name
    path.write_text(f"<annotation><filename>a.png</filename>{size_xml}{''.join(objects)}</annotation>", encoding="utf-8")
    return path


def test_one_box(tmp_path):
    annotation, report = parse_voc(_write(tmp_path, _obj()), MASK_CLASSES)
    assert (annotation.width, annotation.height) == (100, 80)
    assert annotation.filename == "a.png"
    np.testing.assert_array_equal(annotation.boxes, [[10, 20, 30, 40]])
    assert annotation.boxes.dtype == np.float32
    assert annotation.labels.tolist() == [0]
    assert annotation.labels.dtype == np.int32
    assert (report.clipped, report.dropped) == (0, 0)


def test_no_objects(tmp_path):
    annotation, report = parse_voc(_write(tmp_path), MASK_CLASSES)
    assert annotation.boxes.shape == (0, 4)
    assert annotation.labels.shape == (0,)
    assert report.dropped == 0


def test_float_coordinates(tmp_path):
    annotation, _ = parse_voc(_write(tmp_path, _obj("without_mask", ("10.5", "20.25", "30.75", "40.0"))), MASK_CLASSES)
    np.testing.assert_allclose(annotation.boxes, [[10.5, 20.25, 30.75, 40.0]])
    assert annotation.labels.tolist() == [1]


def test_box_partly_outside_clipped(tmp_path):
    path = _write(tmp_path, _obj(box=("-5", "-3", "30", "40")), _obj(box=("90", "70", "120", "95")))
    annotation, report = parse_voc(path, MASK_CLASSES)
    np.testing.assert_array_equal(annotation.boxes, [[0, 0, 30, 40], [90, 70, 100, 80]])
    assert report.clipped == 2
    assert report.dropped == 0


def test_box_fully_outside_dropped(tmp_path):
    path = _write(tmp_path, _obj(), _obj(box=("150", "10", "180", "30")), _obj(box=("10", "-40", "30", "-10")))
    annotation, report = parse_voc(path, MASK_CLASSES)
    np.testing.assert_array_equal(annotation.boxes, [[10, 20, 30, 40]])
    assert report.dropped_degenerate == 2
    assert report.clipped == 2
    assert "2 dropped as empty" in report.summary()


def test_reversed_coordinates(tmp_path):
    annotation, report = parse_voc(_write(tmp_path, _obj(box=("30", "40", "10", "20"))), MASK_CLASSES)
    np.testing.assert_array_equal(annotation.boxes, [[10, 20, 30, 40]])
    assert report.dropped == 0


def test_zero_area_dropped(tmp_path):
    annotation, report = parse_voc(_write(tmp_path, _obj(box=("10", "20", "10", "40"))), MASK_CLASSES)
    assert annotation.boxes.shape == (0, 4)
    assert report.dropped_degenerate == 1


def test_unknown_class(tmp_path):
    path = _write(tmp_path, _obj("mask_chin"), _obj("mask_weared_incorrect"), _obj(""))
    annotation, report = parse_voc(path, MASK_CLASSES)
    assert annotation.labels.tolist() == [2]
    assert report.dropped_unknown_class == 2
    assert report.unknown_classes == {"mask_chin", "<empty>"}
    assert "mask_chin" in report.summary()


def test_missing_bndbox(tmp_path):
    path = _write(tmp_path, _obj(box=None), _obj(box=("10", "20", "", "40")), _obj())
    annotation, report = parse_voc(path, MASK_CLASSES)
    assert len(annotation.boxes) == 1
    assert report.dropped_missing_box == 2
    assert "no <bndbox>" in report.summary()


def test_non_numeric_coordinate(tmp_path):
    path = _write(tmp_path, _obj(box=("10", "twenty", "30", "40")))
    with pytest.raises(AnnotationError, match="'twenty'"):
        parse_voc(path, MASK_CLASSES)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.xml"
    path.write_bytes(b"")
    with pytest.raises(AnnotationError) as caught:
        parse_voc(path, MASK_CLASSES)
    assert str(path) in str(caught.value)
    assert "empty" in caught.value.reason


@pytest.mark.parametrize(
    "text",
    ["<annotation><size>", "not xml at all", "<annotation></annotatoin>", "\ufeff<?xml version='1.0'?><a><b></a>"],
)
def test_malformed_xml(tmp_path, text):
    path = tmp_path / "broken.xml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(AnnotationError) as caught:
        parse_voc(path, MASK_CLASSES)
    assert caught.value.path == path
    assert str(path) in str(caught.value)


def test_wrong_root_element(tmp_path):
    path = tmp_path / "other.xml"
    path.write_text("<svg><size><width>1</width></size></svg>", encoding="utf-8")
    with pytest.raises(AnnotationError, match="<svg>"):
        parse_voc(path, MASK_CLASSES)


def test_missing_size(tmp_path):
    path = _write(tmp_path, _obj(), size=None)
    with pytest.raises(AnnotationError, match="image_size"):
        parse_voc(path, MASK_CLASSES)


def test_zero_size(tmp_path):
    path = _write(tmp_path, _obj(), size=(0, 0))
    with pytest.raises(AnnotationError, match="image_size"):
        parse_voc(path, MASK_CLASSES)


def test_missing_size_with_image_size(tmp_path):
    path = _write(tmp_path, _obj(box=("10", "20", "300", "40")), size=None)
    annotation, report = parse_voc(path, MASK_CLASSES, image_size=(200, 150))
    assert (annotation.width, annotation.height) == (200, 150)
    np.testing.assert_array_equal(annotation.boxes, [[10, 20, 200, 40]])
    assert report.clipped == 1


def test_image_size_overrides_size(tmp_path):
    annotation, _ = parse_voc(_write(tmp_path, _obj(), size=(100, 80)), MASK_CLASSES, image_size=(640, 480))
    assert (annotation.width, annotation.height) == (640, 480)


def test_report_merge():
    total = AnnotationReport()
    total.merge(AnnotationReport(clipped=2, dropped_unknown_class=1, unknown_classes={"x"}))
    total.merge(AnnotationReport(dropped_degenerate=3, dropped_missing_box=1, unknown_classes={"y"}))
    assert (total.clipped, total.dropped) == (2, 5)
    assert total.unknown_classes == {"x", "y"}


def test_fmd_file_from_mirror():
    path = sorted((data_dir() / "fmd" / "annotations").glob("*.xml"))[0]
    annotation, report = parse_voc(path, MASK_CLASSES)
    assert report.dropped == 0
    assert annotation.width > 0
    assert annotation.height > 0
    assert len(annotation.boxes) == len(annotation.labels) > 0
    assert (annotation.boxes[:, 2] <= annotation.width).all()
    assert (annotation.boxes[:, 0] < annotation.boxes[:, 2]).all()
