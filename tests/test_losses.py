"""Margin heads and the triplet loss: hand-computed values, edge cosines, finite gradients."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from course_lib.losses import (
    ArcFaceHead,
    BatchHardTripletLoss,
    CosFaceHead,
    MarginHead,
    SoftmaxHead,
    arcface_logits,
    batch_hard_triplet_loss,
    cosface_logits,
    sphereface_logits,
)

SCALE = 30.0
MARGIN = 0.5


def logits_and_gradient(function, cosines, labels, dtype="float32", **options):
    cosine = tf.Variable(np.asarray(cosines, dtype=dtype))
    with tf.GradientTape() as tape:
        logits = function(cosine, tf.constant(labels), **options)
        total = tf.reduce_sum(logits)
    return logits.numpy(), tape.gradient(total, cosine).numpy()


def test_arcface_hand_values():
    logits, _ = logits_and_gradient(arcface_logits, [[0.5, 0.2], [0.1, 0.8]], [0, 1], scale=SCALE, margin=MARGIN)
    expected = [
        [SCALE * math.cos(math.acos(0.5) + MARGIN), SCALE * 0.2],
        [SCALE * 0.1, SCALE * math.cos(math.acos(0.8) + MARGIN)],
    ]
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


def test_arcface_cosine_plus_one():
    logits, gradient = logits_and_gradient(arcface_logits, [[1.0, 1.0]], [0], scale=SCALE, margin=MARGIN)
    assert abs(logits[0, 0] - SCALE * math.cos(MARGIN)) < 0.05
    assert logits[0, 1] == pytest.approx(SCALE, abs=1e-3)
    assert np.all(np.isfinite(logits))
    assert np.all(np.isfinite(gradient))


def test_arcface_cosine_minus_one_uses_fallback():
    logits, gradient = logits_and_gradient(arcface_logits, [[-1.0, -1.0]], [0], scale=SCALE, margin=MARGIN)
    # theta = pi, so theta + m > pi: the target becomes cos(theta) - m sin(m).
    assert logits[0, 0] == pytest.approx(SCALE * (-1.0 - MARGIN * math.sin(MARGIN)), abs=1e-3)
    assert logits[0, 1] == pytest.approx(-SCALE, abs=1e-3)
    assert np.all(np.isfinite(gradient))


def test_arcface_theta_plus_margin_above_pi():
    cosine = -0.95  # theta = 2.824 rad, theta + 0.5 > pi
    assert math.acos(cosine) + MARGIN > math.pi
    logits, gradient = logits_and_gradient(arcface_logits, [[cosine]], [0], scale=SCALE, margin=MARGIN)
    assert logits[0, 0] == pytest.approx(SCALE * (cosine - MARGIN * math.sin(MARGIN)), rel=1e-5)
    assert gradient[0, 0] == pytest.approx(SCALE, rel=1e-5)


def test_arcface_target_decreases_with_angle():
    cosines = np.cos(np.linspace(0.0, math.pi, 50))[:, None].astype(np.float32)
    logits, _ = logits_and_gradient(arcface_logits, cosines, np.zeros(50, np.int32), scale=SCALE, margin=MARGIN)
    assert np.all(np.diff(logits[:, 0]) < 0)


def test_arcface_gradients_finite_near_edges():
    cosines = [[1.0, -1.0, 0.9999999, -0.9999999, 0.0]]
    for label in range(5):
        logits, gradient = logits_and_gradient(arcface_logits, cosines, [label], scale=SCALE, margin=MARGIN)
        assert np.all(np.isfinite(logits)), label
        assert np.all(np.isfinite(gradient)), label


def test_arcface_float16_cosine():
    logits, gradient = logits_and_gradient(arcface_logits, [[1.0, -1.0, 0.5]], [0], dtype="float16", scale=SCALE, margin=MARGIN)
    assert logits.dtype == np.float32
    assert np.all(np.isfinite(logits))
    assert np.all(np.isfinite(gradient.astype(np.float32)))


def test_arcface_rejects_large_margin():
    with pytest.raises(ValueError, match="margin"):
        arcface_logits(tf.zeros((1, 2)), tf.constant([0]), margin=2.0)


def test_cosface_hand_values():
    logits, gradient = logits_and_gradient(cosface_logits, [[0.5, 0.2], [1.0, -1.0]], [0, 1], scale=SCALE, margin=0.35)
    expected = [[SCALE * (0.5 - 0.35), SCALE * 0.2], [SCALE * 1.0, SCALE * (-1.0 - 0.35)]]
    np.testing.assert_allclose(logits, expected, rtol=1e-5)
    np.testing.assert_allclose(gradient, SCALE)


def test_sphereface_hand_values():
    # m = 4: psi(theta) = cos(4 theta) for theta <= pi/4; at theta = pi/2, k = 2 and psi = cos(2 pi) - 4.
    cosines = [[math.cos(0.3), 0.0]]
    logits, _ = logits_and_gradient(sphereface_logits, cosines, [0], scale=1.0, margin=4)
    assert logits[0, 0] == pytest.approx(math.cos(1.2), abs=1e-4)
    logits, gradient = logits_and_gradient(sphereface_logits, [[0.0, 1.0, -1.0]], [0], scale=1.0, margin=4)
    assert logits[0, 0] == pytest.approx(-3.0, abs=1e-4)
    assert np.all(np.isfinite(gradient))
    logits, gradient = logits_and_gradient(sphereface_logits, [[1.0, -1.0]], [1], scale=1.0, margin=4)
    assert logits[0, 1] == pytest.approx(-7.0, abs=1e-3)
    assert np.all(np.isfinite(gradient))


def test_head_weights_gradients_at_cosine_one():
    head = ArcFaceHead(3, scale=SCALE, margin=MARGIN)
    embeddings = tf.constant([[1.0, 0.0, 0.0, 0.0]])
    head([embeddings, tf.constant([0])])
    kernel = np.zeros((4, 3), np.float32)
    kernel[0, 0] = 2.0  # class 0 points exactly along the embedding: cosine 1
    kernel[1, 1] = kernel[2, 2] = 1.0
    head.kernel.assign(kernel)
    with tf.GradientTape() as tape:
        loss = keras.losses.sparse_categorical_crossentropy(tf.constant([0]), head([embeddings, tf.constant([0])]), from_logits=True)
    gradient = tape.gradient(loss, head.kernel)
    assert np.all(np.isfinite(gradient.numpy()))


@pytest.mark.parametrize("kind", ["softmax", "cosface", "arcface", "sphereface"])
def test_head_mixed_precision(kind):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        head = MarginHead(5, kind=kind)
        embeddings = tf.Variable(tf.cast(tf.math.l2_normalize(tf.random.stateless_normal((4, 8), seed=(1, 2)), axis=1), tf.float16))
        with tf.GradientTape() as tape:
            logits = head([embeddings, tf.constant([0, 1, 2, 3])])
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(tf.constant([0, 1, 2, 3]), logits, from_logits=True))
        gradient = tape.gradient(loss, embeddings)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert logits.dtype == tf.float32
    assert np.all(np.isfinite(logits.numpy()))
    assert np.all(np.isfinite(gradient.numpy().astype(np.float32)))


def test_head_factories_and_config():
    assert CosFaceHead(4).kind == "cosface"
    assert SoftmaxHead(4).kind == "softmax"
    restored = MarginHead.from_config(ArcFaceHead(7, scale=16.0, margin=0.3).get_config())
    assert (restored.num_classes, restored.kind, restored.scale, restored.margin) == (7, "arcface", 16.0, 0.3)
    with pytest.raises(ValueError, match="Unknown head kind"):
        MarginHead(3, kind="magface")


def triplet_reference(labels, embeddings, margin):
    """Batch-hard triplet loss written with loops, for comparison."""
    embeddings = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    losses = []
    for a in range(len(labels)):
        positives = [np.linalg.norm(embeddings[a] - embeddings[p]) for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        negatives = [np.linalg.norm(embeddings[a] - embeddings[n]) for n in range(len(labels)) if labels[n] != labels[a]]
        if positives and negatives:
            losses.append(max(max(positives) - min(negatives) + margin, 0.0))
    return float(np.mean(losses)) if losses else 0.0


def test_triplet_hand_case():
    # Four points on the unit circle: each anchor's positive and nearest negative are both sqrt(2) away.
    embeddings = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], np.float32)
    labels = np.array([0, 0, 1, 1])
    loss = float(batch_hard_triplet_loss(labels, embeddings, margin=0.2))
    assert loss == pytest.approx(0.2, abs=1e-5)


def test_triplet_separated_classes_zero():
    embeddings = np.array([[1, 0], [0.99, 0.1], [-1, 0], [-0.99, -0.1]], np.float32)
    loss = float(batch_hard_triplet_loss(np.array([0, 0, 1, 1]), embeddings, margin=0.2))
    assert loss == pytest.approx(0.0, abs=1e-6)


def test_triplet_matches_loop_reference():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(12, 6)).astype(np.float32)
    labels = np.repeat(np.arange(4), 3)
    loss = float(batch_hard_triplet_loss(labels, embeddings, margin=0.3))
    assert loss == pytest.approx(triplet_reference(labels, embeddings, 0.3), rel=1e-4)


def test_triplet_no_positives_is_zero():
    loss = float(batch_hard_triplet_loss(np.arange(4), np.eye(4, dtype=np.float32), margin=0.2))
    assert loss == 0.0


def test_triplet_gradient_finite_for_duplicates():
    embeddings = tf.Variable(np.array([[1, 0], [1, 0], [0, 1], [0, 1]], np.float32))
    with tf.GradientTape() as tape:
        loss = BatchHardTripletLoss(margin=0.2)(tf.constant([0, 0, 1, 1]), embeddings)
    assert np.all(np.isfinite(tape.gradient(loss, embeddings).numpy()))
