"""Embedding model, aligned-face cache, training pipeline, save/load and distribution."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from course_lib.attention import ChannelSpatialAttention
from course_lib.data.loaders import load_lfw_people
from course_lib.faces import ARCFACE_TEMPLATE_112
from course_lib.images import read_image
from course_lib.recognition import (
    AlignedFaces,
    EvaluationSet,
    build_embedding_model,
    embed_aligned,
    embed_faces,
    evaluate_embedding,
    load_embedding_metadata,
    load_embedding_model,
    load_or_train_embedding_model,
    make_training_dataset,
    prepare_faces,
    quick_embedding_model_path,
    run_experiment,
    save_embedding_model,
    train_embedding,
)
from course_lib.verification import IdentityLeakError, cosine_similarity

TINY = {"widths": (8, 16, 16, 16), "blocks": (1, 1, 1, 1), "embedding_dim": 16}
SIZE = 32


@pytest.fixture(scope="module")
def lfw_records():
    records = load_lfw_people("DevTrain", min_images=5)
    by_identity = {}
    for record in records:
        by_identity.setdefault(record.identity, []).append(record)
    return [record for name in sorted(by_identity)[:3] for record in by_identity[name][:4]]


@pytest.fixture(scope="module")
def lfw_faces(lfw_records):
    return prepare_faces(lfw_records, SIZE, mask_variants=2, seed=0, name="test", progress=False)


def random_faces(count=32, identities=4, size=SIZE, variants=2, seed=0):
    rng = np.random.default_rng(seed)
    return AlignedFaces(
        images=rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8),
        masked=np.zeros((count, variants, size, size, 3), np.uint8),
        mask_types=np.full((count, variants), "surgical"),
        landmarks=np.zeros((count, 5, 2), np.float32),
        identities=np.array([f"person_{i % identities}" for i in range(count)]),
        paths=np.array([f"face_{i}.jpg" for i in range(count)]),
        detected=np.ones(count, bool),
    )


def test_embeddings_unit_norm():
    model = build_embedding_model(SIZE, **TINY)
    images = np.random.default_rng(0).integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8)
    embeddings = embed_aligned(model, images)
    assert embeddings.shape == (5, 16)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    raw = model.predict(images.astype(np.float32) / 255, verbose=0)
    np.testing.assert_allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-5)


def test_default_backbone_size():
    model = build_embedding_model(64)
    assert 1_000_000 <= model.count_params() <= 2_000_000
    assert model.output_shape == (None, 128)


def test_attention_flag_adds_cbam():
    plain = build_embedding_model(SIZE, **TINY)
    attended = build_embedding_model(SIZE, attention=True, **TINY)
    assert not any(isinstance(layer, ChannelSpatialAttention) for layer in plain.layers)
    assert sum(isinstance(layer, ChannelSpatialAttention) for layer in attended.layers) == 4
    assert attended.count_params() > plain.count_params()


def test_input_size_checked():
    with pytest.raises(ValueError, match="divisible by 16"):
        build_embedding_model(40)


def test_save_load_round_trip(tmp_path):
    model = build_embedding_model(SIZE, attention=True, **TINY)
    images = np.random.default_rng(1).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    path = save_embedding_model(model, tmp_path / "embedder")
    assert path.suffix == ".keras"
    restored = load_embedding_model(path)
    np.testing.assert_allclose(embed_aligned(restored, images), embed_aligned(model, images), atol=1e-6)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_embedding_model"):
        load_embedding_model(tmp_path / "absent.keras")


def test_prepare_faces_aligns(lfw_faces):
    assert lfw_faces.images.shape == (12, SIZE, SIZE, 3)
    assert lfw_faces.masked.shape == (12, 2, SIZE, SIZE, 3)
    assert lfw_faces.images.dtype == np.uint8
    template = ARCFACE_TEMPLATE_112 * SIZE / 112
    assert np.abs(lfw_faces.landmarks - template).max() < 3.0
    assert lfw_faces.detected.all()


def test_prepare_faces_masks_lower_face(lfw_faces):
    difference = np.abs(lfw_faces.masked[:, 0].astype(int) - lfw_faces.images.astype(int)).mean(axis=(0, 3))
    lower, upper = difference[SIZE * 3 // 4 :].mean(), difference[: SIZE // 3].mean()
    assert lower > 20
    assert upper < lower / 3
    assert set(lfw_faces.mask_types.ravel()) <= {"surgical", "cloth", "n95", "kn95", "black"}


def test_prepare_faces_cache_reused(lfw_records, lfw_faces):
    again = prepare_faces(lfw_records, SIZE, mask_variants=2, seed=0, name="test", progress=False)
    np.testing.assert_array_equal(again.images, lfw_faces.images)
    np.testing.assert_array_equal(again.masked, lfw_faces.masked)
    cached = list(Path(os.environ["MFR_CACHE_DIR"], "recognition").glob("test_32px_2masks_*.npz"))
    assert len(cached) == 1


def test_dataset_mask_rate_one_uses_masked_copies():
    faces = random_faces()
    faces.masked[:] = 7
    labels = np.arange(len(faces)) % 4
    (batch, batch_labels), = make_training_dataset(faces, labels, batch_size=16, steps=1, mask_rate=1.0).take(1)
    assert np.allclose(batch["face"].numpy(), 7 / 255)
    np.testing.assert_array_equal(batch["label"].numpy(), batch_labels.numpy())


def test_dataset_mask_rate_zero_keeps_faces():
    faces = random_faces()
    labels = np.arange(len(faces)) % 4
    (batch, batch_labels), = make_training_dataset(faces, labels, batch_size=16, steps=1, mask_rate=0.0).take(1)
    images = np.round(batch["face"].numpy() * 255).astype(np.uint8)
    for image, label in zip(images, batch_labels.numpy()):
        candidates = faces.images[labels == label]
        assert any(np.array_equal(image, c) or np.array_equal(image, c[:, ::-1]) for c in candidates)


def test_dataset_jitter_keeps_range():
    faces = random_faces()
    labels = np.arange(len(faces)) % 4
    (plain, _), = make_training_dataset(faces, labels, 16, 1, 0.0, seed=3).take(1)
    (jittered, jittered_labels), = make_training_dataset(faces, labels, 16, 1, 0.0, seed=3, augment=True).take(1)
    (again, _), = make_training_dataset(faces, labels, 16, 1, 0.0, seed=3, augment=True).take(1)
    values = jittered["face"].numpy()
    assert values.shape == (16, SIZE, SIZE, 3)
    assert values.dtype == np.float32
    assert values.min() >= 0.0
    assert values.max() <= 1.0
    assert not np.allclose(values, plain["face"].numpy())
    np.testing.assert_array_equal(values, again["face"].numpy())
    np.testing.assert_array_equal(jittered_labels.numpy(), jittered["label"].numpy())


def test_dataset_identity_batches():
    faces = random_faces(count=40, identities=8)
    labels = np.arange(40) % 8
    (batch, batch_labels), = make_training_dataset(faces, labels, 16, 1, 0.0, identity_batches=4).take(1)
    counts = np.bincount(batch_labels.numpy(), minlength=8)
    assert sorted(counts[counts > 0].tolist()) == [4, 4, 4, 4]


@pytest.mark.parametrize("loss", ["arcface", "triplet"])
def test_train_embedding_real_faces(lfw_faces, loss):
    result = train_embedding(lfw_faces, loss=loss, mask_rate=0.5, epochs=2, batch_size=8, model_options=TINY)
    assert result.steps == 3
    assert np.isfinite(result.history["loss"]).all()
    assert list(result.identities) == sorted(set(lfw_faces.identities))
    assert result.model.output_shape == (None, 16)


def test_train_embedding_needs_masks_for_mask_rate():
    faces = random_faces(variants=0)
    with pytest.raises(ValueError, match="mask_variants"):
        train_embedding(faces, mask_rate=0.5, epochs=1, batch_size=8, model_options=TINY)


def test_embed_faces_with_and_without_landmarks(lfw_records):
    model = build_embedding_model(SIZE, **TINY)
    images = [read_image(record.path) for record in lfw_records[:2]]
    detected = embed_faces(model, images)
    landmarks = [np.array(ARCFACE_TEMPLATE_112) * 250 / 112 for _ in images]
    given = embed_faces(model, images, landmarks=landmarks)
    assert detected.shape == given.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(detected, axis=1), 1.0, atol=1e-5)


def test_run_experiment_rejects_identity_leak():
    faces = random_faces()
    leaking = EvaluationSet("leak", faces.images[:4], faces.images[4:8], np.array([True, False] * 2), np.arange(4), {"person_1"})
    with pytest.raises(IdentityLeakError):
        run_experiment(faces, {"leak": leaking}, losses=("arcface",), mask_training=(False,), epochs=1, batch_size=8)


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    from course_lib.recognition import AlignedFaces, train_embedding

    rng = np.random.default_rng(0)
    count, size = 16, 32
    faces = AlignedFaces(
        images=rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8),
        masked=rng.integers(0, 256, (count, 1, size, size, 3), dtype=np.uint8),
        mask_types=np.full((count, 1), "surgical"),
        landmarks=np.zeros((count, 5, 2), np.float32),
        identities=np.array([f"p{i % 4}" for i in range(count)]),
        paths=np.array([str(i) for i in range(count)]),
        detected=np.ones(count, bool),
    )
    tiny = {"widths": (8, 16, 16, 16), "blocks": (1, 1, 1, 1), "embedding_dim": 16}
    result = train_embedding(faces, loss="arcface", mask_rate=0.5, epochs=0.5, batch_size=8, strategy=strategy, model_options=tiny)
    print("RESULT " + json.dumps({"replicas": strategy.num_replicas_in_sync, "steps": result.steps, "loss": result.history["loss"]}))
    """
)


def test_mirrored_strategy_two_cpus():
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    completed = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True, text=True, timeout=300, env=environment,
        cwd=Path(__file__).resolve().parents[1],
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert lines, completed.stdout[-2000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["replicas"] == 2
    assert result["steps"] == 1
    assert np.isfinite(result["loss"]).all()


def test_evaluate_embedding_matches_direct_scores():
    model = build_embedding_model(SIZE, **TINY)
    faces = random_faces(count=40)
    same = np.array([True, False] * 10)
    sets = {
        "a": EvaluationSet("a", faces.images[:20], faces.images[20:], same, np.arange(20) % 10, {"x"}),
        "b": EvaluationSet("b", faces.images[:20], faces.images[::-1][:20], same, np.arange(20) % 10, {"x"}),
    }
    results = evaluate_embedding(model, sets)
    for name, evaluation in sets.items():
        direct = cosine_similarity(embed_aligned(model, evaluation.first), embed_aligned(model, evaluation.second))
        np.testing.assert_allclose(results[name]["scores"], direct, atol=1e-5)


def test_quick_embedding_model_cached(monkeypatch):
    # Trains for 1.5 minutes unless an earlier test of the session (or an earlier run) cached the model.
    first = load_or_train_embedding_model(64)
    path = quick_embedding_model_path(64)
    metadata = load_embedding_metadata(path)
    assert path.is_file()
    assert first.input_shape == (None, 64, 64, 3)
    assert first.output_shape == (None, 128)
    assert 0.0 < metadata["threshold"] < 1.0
    assert metadata["train_identities"] == 298
    assert metadata["kfold_accuracy"]["unmasked"] > 0.65

    def fail(*args, **kwargs):
        raise AssertionError("train_embedding was called although the quick model is cached.")

    monkeypatch.setattr("course_lib.recognition.train_embedding", fail)
    second = load_or_train_embedding_model(64)
    images = np.random.default_rng(2).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    np.testing.assert_allclose(embed_aligned(second, images), embed_aligned(first, images), atol=1e-5)


def test_quick_embedding_model_rejects_minutes():
    with pytest.raises(ValueError, match="minutes must be positive, got 0"):
        load_or_train_embedding_model(64, minutes=0)


def test_embedding_metadata_missing(tmp_path):
    assert load_embedding_metadata(tmp_path / "model.keras") == {}


def test_save_metadata_replaced(tmp_path):
    model = build_embedding_model(SIZE, **TINY)
    path = save_embedding_model(model, tmp_path / "model", metadata={"threshold": 0.25})
    assert load_embedding_metadata(path) == {"threshold": 0.25}
    # Saving again without metadata removes the stale file, so an old threshold is never paired with new weights.
    save_embedding_model(model, path)
    assert load_embedding_metadata(path) == {}
