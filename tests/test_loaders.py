"""Dataset loaders on the mirror (``MFR_DATA_DIR``): counts, splits and missing data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from course_lib.data import (
    DATASETS,
    MASK_CLASSES,
    DatasetNotFoundError,
    lfw_image_root,
    load_att_faces,
    load_fmd,
    load_lfw_pairs,
    load_lfw_people,
    load_mask_classification,
    load_rmfrd,
)


def test_lfw_all_count():
    records = load_lfw_people("all")
    assert len(records) == 5985
    assert all(record.masked is False for record in records)
    assert all(record.path.is_file() for record in records[:50])


def test_lfw_image_root_found():
    root = lfw_image_root()
    assert (root / "Aaron_Guiel" / "Aaron_Guiel_0001.jpg").is_file()


def test_lfw_splits_disjoint():
    train = {record.identity for record in load_lfw_people("DevTrain")}
    test = {record.identity for record in load_lfw_people("DevTest")}
    assert train
    assert test
    assert train.isdisjoint(test)


def test_lfw_min_images():
    records = load_lfw_people("DevTrain", min_images=10)
    counts = {}
    for record in records:
        counts[record.identity] = counts.get(record.identity, 0) + 1
    assert min(counts.values()) >= 10
    assert len(records) < len(load_lfw_people("DevTrain"))


def test_lfw_sorted():
    records = load_lfw_people("DevTrain")
    keys = [(r.identity, r.path.name) for r in records]
    assert keys == sorted(keys)


def test_lfw_pairs_devtest():
    pairs = load_lfw_pairs("DevTest")
    assert len(pairs) == 1000
    assert sum(pair.same for pair in pairs) == 500
    assert all(pair.first.identity == pair.second.identity for pair in pairs if pair.same)
    assert all(pair.first.identity != pair.second.identity for pair in pairs if not pair.same)
    assert {pair.fold for pair in pairs} == {0}


def test_lfw_pairs_disjoint_from_train():
    train = {record.identity for record in load_lfw_people("DevTrain")}
    names = {record.identity for pair in load_lfw_pairs("DevTest") for record in (pair.first, pair.second)}
    assert names.isdisjoint(train)


def test_lfw_unknown_split():
    with pytest.raises(ValueError, match="DevTrain"):
        load_lfw_people("train")


def test_fmd_counts():
    records, report = load_fmd()
    assert len(records) == 120
    labels = np.concatenate([record.labels for record in records])
    assert set(labels.tolist()) == {0, 1, 2}
    assert np.bincount(labels, minlength=3).sum() == sum(len(r.boxes) for r in records)
    assert report.dropped_unknown_class == 0


def test_fmd_boxes_inside_images():
    records, _ = load_fmd()
    for record in records:
        assert record.boxes.dtype == np.float32
        assert record.labels.dtype == np.int32
        assert (record.boxes[:, :2] >= 0).all()
        assert (record.boxes[:, 2] <= record.width).all()
        assert (record.boxes[:, 3] <= record.height).all()
        assert (record.boxes[:, 2] > record.boxes[:, 0]).all()
        assert record.image_path.stem == record.annotation_path.stem


def test_fmd_order():
    records, _ = load_fmd()
    numbers = [int(record.image_path.stem.removeprefix("maksssksksss")) for record in records]
    assert numbers == sorted(numbers)


def test_fmd_class_names():
    assert MASK_CLASSES == ("with_mask", "without_mask", "mask_weared_incorrect")


def test_rmfrd_counts():
    records = load_rmfrd()
    masked = [record for record in records if record.masked]
    unmasked = [record for record in records if not record.masked]
    assert len(unmasked) == 918
    assert len(masked) == 362
    assert len({record.identity for record in records}) == 23
    assert {record.identity for record in masked} <= {record.identity for record in unmasked}


def test_mask_classification_counts():
    records = load_mask_classification()
    assert sum(record.masked is True for record in records) == 1000
    assert sum(record.masked is False for record in records) == 1000
    assert all(record.identity is None for record in records)


def test_att_counts():
    records = load_att_faces()
    assert len(records) == 400
    identities = [record.identity for record in records]
    assert list(dict.fromkeys(identities)) == [f"s{n}" for n in range(1, 41)]
    assert [record.path.name for record in records[:10]] == [f"{n}.pgm" for n in range(1, 11)]


LOADERS = {
    "lfw": lambda: load_lfw_people("DevTrain"),
    "lfw_pairs": lambda: load_lfw_pairs("DevTest"),
    "fmd": load_fmd,
    "rmfrd": load_rmfrd,
    "mask_classification": load_mask_classification,
    "att_faces": load_att_faces,
}


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_missing_dataset_message(tmp_path, monkeypatch, loader):
    monkeypatch.setenv("MFR_DATA_DIR", str(tmp_path))
    name = "lfw" if loader == "lfw_pairs" else loader
    with pytest.raises(DatasetNotFoundError) as caught:
        LOADERS[loader]()
    message = str(caught.value)
    assert f"python data_scripts/mfr_data.py fetch {name}" in message
    assert str(tmp_path / DATASETS[name].folder) in message
    assert "MFR_DATA_DIR" in message
    assert caught.value.name == name


def test_partial_dataset_message(tmp_path, monkeypatch):
    (tmp_path / "rmfrd" / "AFDB_face_dataset").mkdir(parents=True)
    monkeypatch.setenv("MFR_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="AFDB_masked_face_dataset"):
        load_rmfrd()


def test_records_are_deterministic():
    first = [record.path for record in load_rmfrd()]
    second = [record.path for record in load_rmfrd()]
    assert first == second
    assert all(isinstance(path, Path) for path in first)
