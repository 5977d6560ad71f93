"""Tests of the mask classifier's data preparation, split, training, save and load."""

import json
import shutil
import warnings

import numpy as np
import pytest

from course_lib import classifier, models, training
from course_lib.data import MASK_CLASSES, load_mask_classification
from course_lib.images import read_image, resize


@pytest.fixture(scope="module")
def crops():
    return classifier.build_mask_crops(input_size=32, progress=False)


@pytest.fixture(scope="module")
def small_model():
    training.configure_device(0)
    return models.build_vgg_small((32, 32, 3), num_classes=3, filters=(8, 16))


def test_crop_face_margin_and_square():
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    crop = classifier.crop_face(image, (50, 40, 70, 60), margin=0.5)
    assert crop.shape == (40, 40, 3)


def test_crop_face_clips_at_border():
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    crop = classifier.crop_face(image, (0, 0, 20, 30), margin=0.2)
    assert crop.shape[0] <= 100
    assert crop.shape[1] >= 1
    assert crop.shape[:2] == (36, 31)


def test_crop_face_rejects_empty_box():
    with pytest.raises(ValueError, match="empty"):
        classifier.crop_face(np.zeros((10, 10, 3), np.uint8), (5, 5, 5, 8))


def test_dhash_groups_resized_copy():
    records = load_mask_classification()
    first = read_image(records[0].path)
    other = read_image(records[-1].path)
    smaller = resize(first, (first.shape[0] // 2, first.shape[1] // 2))
    hashes = np.stack([classifier.difference_hash(image) for image in (first, other, smaller)])
    groups = classifier.group_near_duplicates(hashes, max_distance=6)
    assert groups.tolist() == [0, 1, 0]


def test_union_find_is_transitive():
    base = np.zeros(64, dtype=bool)
    middle = base.copy()
    middle[:5] = True
    far = middle.copy()
    far[5:10] = True
    groups = classifier.group_near_duplicates(np.stack([base, far, middle]), max_distance=5)
    assert groups.tolist() == [0, 0, 0]


def test_union_find_same_key():
    hashes = np.zeros((3, 64), dtype=bool)
    hashes[1] = True
    hashes[2, ::2] = True
    groups = classifier.group_near_duplicates(hashes, max_distance=0, same_group=[(0, "anna"), (1, "anna")])
    assert groups.tolist() == [0, 0, 1]


def test_hamming_distances_symmetric():
    hashes = np.random.default_rng(0).random((5, 64)) > 0.5
    distances = classifier.hamming_distances(hashes)
    assert np.array_equal(distances, distances.T)
    assert distances[0, 1] == int(np.sum(hashes[0] != hashes[1]))
    assert np.all(np.diag(distances) == 0)


def test_crops_three_classes(crops):
    assert crops.class_names == MASK_CLASSES
    assert crops.images.shape[1:] == (32, 32, 3)
    assert crops.images.dtype == np.uint8
    counts = crops.class_counts()
    assert counts["with_mask"] > 1000
    assert counts["without_mask"] > 1000
    assert counts["mask_weared_incorrect"] > 0
    assert crops.dropped_small > 0


def test_fmd_crops_share_group(crops):
    fmd = crops.sources == "fmd"
    for path in np.unique(crops.paths[fmd]):
        assert len(np.unique(crops.groups[crops.paths == path])) == 1


def test_split_keeps_groups_apart(crops):
    train, test = classifier.grouped_split(crops.labels, crops.groups, test_fraction=0.2, seed=0)
    assert len(train) + len(test) == len(crops)
    assert set(crops.groups[train]).isdisjoint(crops.groups[test])
    assert 0.1 < len(test) / len(crops) < 0.3
    assert set(crops.labels[test]) >= {0, 1}


def test_split_for_test_source(crops):
    train, test = classifier.split_for_test_source(crops, "mask_classification", test_fraction=0.2, seed=0)
    assert set(crops.sources[test]) == {"mask_classification"}
    assert "fmd" in set(crops.sources[train])
    assert set(crops.groups[train]).isdisjoint(crops.groups[test])


def test_split_for_unknown_source(crops):
    with pytest.raises(ValueError, match="rmfrd"):
        classifier.split_for_test_source(crops, "rmfrd")


def test_split_has_real_duplicate_groups(crops):
    sizes = np.bincount(crops.groups)
    assert np.sum(sizes > 1) > 10


def test_crops_cache_round_trip(crops):
    again = classifier.build_mask_crops(input_size=32, progress=False)
    assert np.array_equal(again.images, crops.images)
    assert np.array_equal(again.groups, crops.groups)
    assert again.dropped_small == crops.dropped_small


def test_classification_photos_cut_to_faces(crops):
    photos = crops.sources == "mask_classification"
    assert set(crops.sources[crops.cut_to_face]) == {"mask_classification"}
    assert 0 < np.sum(crops.cut_to_face) < np.sum(photos)
    # Crops come in the order of the records; a cropped face is smaller than its photo.
    records = load_mask_classification()
    whole_sides = np.array([min(read_image(record.path).shape[:2]) for record in records[:100]])
    assert np.all(crops.original_sides[:100] <= whole_sides)
    assert np.any(crops.original_sides[:100] < whole_sides)
    cut_masked = int(np.sum(crops.cut_to_face & (crops.labels == 0)))
    assert f"Classification photos cut to their face: with_mask {cut_masked}, without_mask" in crops.summary()


def test_largest_face_lfw_and_blank():
    from course_lib.data import load_lfw_people

    photo = read_image(load_lfw_people()[0].path)
    blank = np.full((120, 90, 3), 200, dtype=np.uint8)
    box, nothing = classifier.find_largest_faces([photo, blank])
    assert nothing is None
    assert box.dtype == np.float32
    # LFW deep-funneled faces sit in the middle of the 250 x 250 photo.
    assert 60 < (box[0] + box[2]) / 2 < 190
    assert 60 < (box[1] + box[3]) / 2 < 190
    assert box[0] >= 0
    assert box[2] > box[0]
    assert box[2] <= 250


def test_face_boxes_read_from_cache(crops, monkeypatch):
    records = load_mask_classification()[:3]

    def fail(images, **kwargs):
        raise AssertionError("detection ran again although the boxes were cached")

    monkeypatch.setattr(classifier, "find_largest_faces", fail)
    boxes = classifier.classification_face_boxes(records, progress=False)
    assert len(boxes) == 3


def test_whole_photos_without_face_cropping():
    whole = classifier.build_mask_crops(input_size=32, include_fmd=False, crop_to_face=False, progress=False)
    assert not np.any(whole.cut_to_face)
    first = read_image(load_mask_classification()[0].path)
    assert whole.original_sides[0] == min(first.shape[:2])
    assert "cut to their face: with_mask 0, without_mask 0" in whole.summary()


def test_unreadable_image_skipped_in_training(tmp_path):
    records = load_mask_classification()
    chosen = [r for r in records if r.masked][:4] + [r for r in records if not r.masked][:4]
    paths, labels = [], []
    for index, record in enumerate(chosen):
        target = tmp_path / f"{index}{record.path.suffix}"
        shutil.copyfile(record.path, target)
        paths.append(target)
        labels.append(0 if record.masked else 1)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    paths += [empty, truncated]
    labels += [0, 1]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images, kept_labels, skipped = classifier.load_labelled_files(paths, labels, input_size=32)

    assert len(skipped) == 2
    assert {path.name for path, _ in skipped.items} == {"empty.jpg", "truncated.png"}
    assert any("empty.jpg" in str(w.message) for w in caught)
    assert images.shape == (8, 32, 32, 3)
    assert kept_labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]

    training.configure_device(0)
    model = models.build_vgg_small((32, 32, 3), num_classes=2, filters=(8, 16))
    result = training.train_classifier(model, (images, kept_labels), epochs=1, batch_size=4)
    assert result.epochs_run == 1
    assert np.isfinite(result.history["loss"][0])


def test_train_rejects_bad_labels(small_model):
    images = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="class ids"):
        training.train_classifier(small_model, (images, np.array([0, 1, 2, 3])), epochs=1)


def _sample_split(crops, n_train, n_test, seed):
    """Return random training and validation samples of the grouped split, as (images, labels) pairs."""
    train, test = classifier.grouped_split(crops.labels, crops.groups, seed=0)
    rng = np.random.default_rng(seed)
    train = rng.choice(train, n_train, replace=False)
    test = rng.choice(test, n_test, replace=False)
    return (crops.images[train], crops.labels[train]), (crops.images[test], crops.labels[test])


def test_train_early_stopping_history(crops, small_model):
    train, validation = _sample_split(crops, 128, 64, seed=0)
    result = training.train_classifier(
        small_model,
        train,
        validation,
        epochs=2,
        batch_size=32,
        class_weight="balanced",
    )
    assert result.epochs_run == 2
    assert len(result.seconds_per_epoch) == 2
    assert set(result.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert 1 <= result.best_epoch <= 2


def test_label_smoothing_with_class_weights(crops, small_model):
    train, validation = _sample_split(crops, 64, 32, seed=1)
    result = training.train_classifier(
        small_model,
        train,
        validation,
        epochs=1,
        batch_size=32,
        class_weight="balanced",
        label_smoothing=0.1,
    )
    assert np.isfinite(result.history["val_loss"][0])
    assert 0.0 <= result.history["accuracy"][0] <= 1.0
    probabilities = classifier.predict_crops(small_model, validation[0])
    assert probabilities.shape == (32, len(crops.class_names))


def test_label_smoothing_out_of_range(small_model):
    images = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        training.train_classifier(small_model, (images, np.array([0, 1, 0, 1])), epochs=1, label_smoothing=1.0)


def test_balanced_weights_capped():
    labels = np.array([0] * 500 + [1] * 2)
    weights = training.balanced_class_weights(labels, num_classes=2, max_weight=10.0)
    assert weights[1] == 10.0
    assert weights[0] < 1.0


def test_balanced_weights_missing_class():
    weights = training.balanced_class_weights(np.array([0, 0, 0, 1]), num_classes=3)
    assert weights[2] == 1.0
    assert weights[1] > weights[0]


def test_save_load_predicts_same(tmp_path, crops, small_model):
    path = classifier.save_classifier(small_model, tmp_path / "nested" / "mask.keras", class_names=MASK_CLASSES)
    metadata = json.loads(path.with_suffix(".json").read_text())
    assert metadata["class_names"] == list(MASK_CLASSES)
    assert metadata["input_size"] == 32

    loaded = classifier.load_classifier(path)
    faces = [crops.images[0], crops.images[-1], np.zeros((50, 40, 3), dtype=np.uint8)]
    ids, probabilities = loaded.predict(faces)
    expected = classifier.predict_crops(small_model, faces)
    assert probabilities.shape == (3, 3)
    assert np.allclose(probabilities, expected, atol=1e-6)
    assert np.array_equal(ids, expected.argmax(axis=1))
    assert loaded.class_names == MASK_CLASSES
    assert loaded.titles([1]) == ["no mask"]


def test_save_rejects_wrong_class_count(tmp_path, small_model):
    with pytest.raises(ValueError, match="3 outputs"):
        classifier.save_classifier(small_model, tmp_path / "mask.keras", class_names=["a", "b"])


def test_load_needs_metadata(tmp_path, small_model):
    path = classifier.save_classifier(small_model, tmp_path / "mask.keras")
    path.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match="Metadata"):
        classifier.load_classifier(path)


def test_predict_crops_empty(small_model):
    probabilities = classifier.predict_crops(small_model, [])
    assert probabilities.shape == (0, 3)


def test_evaluate_probabilities_recall_and_shape():
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.7, 0.3]])
    evaluation = classifier.evaluate_probabilities(probabilities, np.array([0, 0, 1, 1]), ("a", "b"))
    assert evaluation.accuracy == 0.5
    assert evaluation.recall == {"a": 0.5, "b": 0.5}
    assert evaluation.confusion.tolist() == [[1, 1], [1, 1]]
    with pytest.raises(ValueError, match=r"shape \(4, 3\)"):
        classifier.evaluate_probabilities(probabilities, np.array([0, 0, 1, 1]), ("a", "b", "c"))


def test_ensemble_averages_probabilities(crops, monkeypatch):
    """The ensemble predicts the mean of its members' probabilities on one fixed test split."""
    calls = []

    def fake_member(task_crops, train, test, architecture, epochs, batch_size, seed, max_seconds, class_weight, label_smoothing):
        calls.append((seed, tuple(test), label_smoothing))
        labels = task_crops.labels[test]
        # Each member is wrong on two crops of its own, so each scores below 100% and the mean is right everywhere.
        probabilities = np.eye(2, dtype=np.float32)[labels] * 0.9 + 0.05
        wrong = slice(2 * seed, 2 * seed + 2)
        probabilities[wrong] = probabilities[wrong, ::-1]
        evaluation = classifier.evaluate_probabilities(probabilities, labels, task_crops.class_names)
        summary = {
            "architecture": architecture, "train_sources": {}, "test_sources": {}, "parameters": 0,
            "train_images": len(train), "test_images": len(test), "epochs_run": 1, "training_seconds": 1.0,
        }
        return None, summary, evaluation, evaluation

    monkeypatch.setattr(classifier, "build_mask_crops", lambda *args, **kwargs: crops)
    monkeypatch.setattr(classifier, "_train_and_evaluate", fake_member)
    result = classifier.full_mode_experiment(input_size=32, tasks=("two_class",), ensemble=3, label_smoothing=0.1, save=False)
    two_class = result["two_class"]
    assert [seed for seed, _, _ in calls] == [0, 1, 2]
    assert len({test for _, test, _ in calls}) == 1
    assert {smoothing for _, _, smoothing in calls} == {0.1}
    assert two_class["test_accuracy"] == 1.0
    assert len(two_class["members"]) == 3
    assert two_class["epochs_run"] == [1, 1, 1]
    with pytest.raises(ValueError, match="at least 1"):
        classifier.full_mode_experiment(tasks=("two_class",), ensemble=0)
