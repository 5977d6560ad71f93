"""Classification heads with angular margins, and the triplet loss, for face embeddings.

A margin head turns an L2-normalised embedding ``x`` and a label ``y`` into
logits for a softmax cross-entropy. Each head keeps one weight vector ``W_j``
per training identity, normalises it, and works with the cosine
``cos(theta_j) = x . W_j / (|x| |W_j|)``. The heads differ in how they penalise
the target class ``y``:

=================  =====================================  ==========================
head               target logit                           source
=================  =====================================  ==========================
``softmax``        ``W_y . x + b_y`` (no normalisation)   plain softmax classifier
``cosface``        ``s (cos(theta_y) - m)``               Wang et al., CVPR 2018
``arcface``        ``s cos(theta_y + m)``                 Deng et al., CVPR 2019
``sphereface``     ``s psi(theta_y)``, ``psi ~ cos(m theta)``  Liu et al., CVPR 2017
=================  =====================================  ==========================

All other classes keep the logit ``s cos(theta_j)``. The heads are used only
for training: at prediction time the embedding model alone maps a face to a
unit vector, and faces are compared by the cosine of their embeddings.

Numerical safety: the heads compute in float32 whatever the Keras precision
policy (a float16 cosine near 1 rounds to exactly 1, where ``arccos`` and
``sqrt(1 - cos^2)`` have infinite slope), and they clip the cosine to
``[-1 + eps, 1 - eps]`` before any square root or ``arccos``, so logits and
gradients stay finite when the cosine reaches +1 or -1.
"""

from __future__ import annotations

import math

import keras
from keras import ops

COSINE_EPSILON = 1e-6
"""Distance from +1 and -1 at which cosines are clipped before ``sqrt`` or ``arccos``.

In float32, ``1 - 1e-6`` is representable (the spacing of float32 numbers near
1 is about 6e-8), and the largest slope it allows, ``1 / sqrt(1 - c^2)``, is
about 700."""


def _clip_cosine(cosine, epsilon: float = COSINE_EPSILON):
    cosine = ops.cast(cosine, "float32")
    return ops.clip(cosine, -1.0 + epsilon, 1.0 - epsilon)


def _one_hot(labels, num_classes: int):
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    return ops.one_hot(labels, num_classes, dtype="float32")


def cosface_logits(cosine, labels, scale: float = 30.0, margin: float = 0.35):
    """Compute CosFace (large margin cosine) logits ``s (cos(theta) - m [j == y])``.

    Parameters
    ----------
    cosine : (batch, classes) tensor
        Cosines between embeddings and class weights, in ``[-1, 1]``; any float dtype.
    labels : (batch,) or (batch, 1) integer tensor
        Class index of each row.
    scale : float
        ``s``, the radius of the hypersphere the logits live on.
    margin : float
        ``m``, subtracted from the target cosine.

    Returns
    -------
    (batch, classes) float32 tensor
    """
    cosine = ops.clip(ops.cast(cosine, "float32"), -1.0, 1.0)
    one_hot = _one_hot(labels, ops.shape(cosine)[-1])
    return scale * (cosine - margin * one_hot)


def arcface_logits(cosine, labels, scale: float = 30.0, margin: float = 0.5):
    """Compute ArcFace (additive angular margin) logits ``s cos(theta + m [j == y])``.

    ``cos(theta + m)`` is computed as ``cos(theta) cos(m) - sin(theta) sin(m)``
    with ``sin(theta) = sqrt(1 - cos^2(theta))`` on a clipped cosine. When
    ``theta + m > pi`` the target logit would stop decreasing in ``theta``, so
    it is replaced, as in the authors' code, by ``cos(theta) - m sin(m)``
    (a CosFace-like penalty; the "easy margin" variant is not used).

    Parameters
    ----------
    cosine : (batch, classes) tensor
        Cosines in ``[-1, 1]``; any float dtype (computed in float32).
    labels : (batch,) or (batch, 1) integer tensor
    scale : float
        ``s``.
    margin : float
        ``m``, in radians, in ``[0, pi / 2)``.

    Returns
    -------
    (batch, classes) float32 tensor
        Finite, with finite gradients, for every cosine in ``[-1, 1]``.
    """
    if not 0.0 <= margin < math.pi / 2:
        raise ValueError(f"ArcFace margin {margin} is outside [0, pi/2); typical values are 0.3 to 0.5 radians.")
    cosine = _clip_cosine(cosine)
    sine = ops.sqrt(ops.maximum(1.0 - ops.square(cosine), 0.0))
    shifted = cosine * math.cos(margin) - sine * math.sin(margin)
    # theta + m > pi exactly when cos(theta) < cos(pi - m).
    fallback = cosine - margin * math.sin(margin)
    target = ops.where(cosine > math.cos(math.pi - margin), shifted, fallback)
    one_hot = _one_hot(labels, ops.shape(cosine)[-1])
    return scale * (one_hot * target + (1.0 - one_hot) * cosine)


def sphereface_logits(cosine, labels, scale: float = 30.0, margin: int = 4, blend: float = 0.0):
    """Compute simplified SphereFace (multiplicative angular margin) logits.

    The target logit is ``s psi(theta)`` with ``psi(theta) = (-1)^k cos(m theta) - 2k``
    for ``theta`` in ``[k pi / m, (k + 1) pi / m]``, which equals ``cos(m theta)``
    near ``theta = 0`` and keeps decreasing over ``[0, pi]``. This is a simplified
    SphereFace: the embedding is normalised and multiplied by a fixed ``scale``
    (the original keeps the feature norm), and instead of the authors' annealing
    schedule one fixed ``blend`` ``lambda`` gives ``(lambda cos + psi) / (1 + lambda)``.

    Parameters
    ----------
    cosine : (batch, classes) tensor
    labels : (batch,) or (batch, 1) integer tensor
    scale : float
    margin : int
        ``m >= 1``; ``m = 1`` is a normalised softmax.
    blend : float
        ``lambda >= 0``; larger values soften the margin (useful early in training).

    Returns
    -------
    (batch, classes) float32 tensor
    """
    if int(margin) != margin or margin < 1:
        raise ValueError(f"SphereFace margin must be a positive integer, got {margin!r}.")
    cosine = _clip_cosine(cosine)
    theta = ops.arccos(cosine)
    k = ops.floor(margin * theta / math.pi)
    sign = 1.0 - 2.0 * ops.mod(k, 2.0)
    psi = sign * ops.cos(margin * theta) - 2.0 * k
    target = (blend * cosine + psi) / (1.0 + blend)
    one_hot = _one_hot(labels, ops.shape(cosine)[-1])
    return scale * (one_hot * target + (1.0 - one_hot) * cosine)


@keras.saving.register_keras_serializable(package="course_lib")
class MarginHead(keras.layers.Layer):
    """Training head: class weights and a margin rule that turn embeddings into logits.

    Call it on ``[embeddings, labels]``; the labels are needed because the
    margin applies to the target class only. The layer computes in float32
    even under a ``mixed_float16`` policy.

    Parameters
    ----------
    num_classes : int
        Number of training identities.
    kind : {"softmax", "cosface", "arcface", "sphereface"}
    scale : float
        ``s`` of the normalised heads (ignored by ``"softmax"``).
    margin : float
        ``m``: a cosine offset for CosFace, radians for ArcFace, an integer
        multiplier for SphereFace; ignored by ``"softmax"``.

    Examples
    --------
    >>> head = MarginHead(10, kind="arcface", scale=30.0, margin=0.5)
    >>> logits = head([embeddings, labels])  # doctest: +SKIP
    """

    KINDS = ("softmax", "cosface", "arcface", "sphereface")

    def __init__(self, num_classes: int, kind: str = "arcface", scale: float = 30.0, margin: float | None = None, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if kind not in self.KINDS:
            raise ValueError(f"Unknown head kind {kind!r}; choose one of {', '.join(self.KINDS)}.")
        default_margin = {"softmax": 0.0, "cosface": 0.35, "arcface": 0.5, "sphereface": 4}[kind]
        self.num_classes = int(num_classes)
        self.kind = kind
        self.scale = float(scale)
        self.margin = default_margin if margin is None else margin

    def build(self, input_shape):
        embedding_shape = input_shape[0]
        dimension = int(embedding_shape[-1])
        self.kernel = self.add_weight(
            shape=(dimension, self.num_classes), initializer="glorot_uniform", name="kernel", dtype="float32"
        )
        if self.kind == "softmax":
            self.bias = self.add_weight(shape=(self.num_classes,), initializer="zeros", name="bias", dtype="float32")

    def cosine(self, embeddings):
        """Return the ``(batch, classes)`` float32 cosines between embeddings and class weights."""
        embeddings = ops.cast(embeddings, "float32")
        embeddings = embeddings / ops.sqrt(ops.maximum(ops.sum(ops.square(embeddings), axis=-1, keepdims=True), 1e-12))
        kernel = self.kernel / ops.sqrt(ops.maximum(ops.sum(ops.square(self.kernel), axis=0, keepdims=True), 1e-12))
        return ops.matmul(embeddings, kernel)

    def call(self, inputs):
        embeddings, labels = inputs
        if self.kind == "softmax":
            return ops.matmul(ops.cast(embeddings, "float32"), self.kernel) + self.bias
        cosine = self.cosine(embeddings)
        if self.kind == "cosface":
            return cosface_logits(cosine, labels, self.scale, self.margin)
        if self.kind == "arcface":
            return arcface_logits(cosine, labels, self.scale, self.margin)
        return sphereface_logits(cosine, labels, self.scale, int(self.margin))

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, kind=self.kind, scale=self.scale, margin=self.margin)
        return config


def CosFaceHead(num_classes: int, scale: float = 30.0, margin: float = 0.35, **kwargs) -> MarginHead:
    """Return a :class:`MarginHead` with the CosFace rule ``s (cos(theta_y) - m)``."""
    return MarginHead(num_classes, kind="cosface", scale=scale, margin=margin, **kwargs)


def ArcFaceHead(num_classes: int, scale: float = 30.0, margin: float = 0.5, **kwargs) -> MarginHead:
    """Return a :class:`MarginHead` with the ArcFace rule ``s cos(theta_y + m)``."""
    return MarginHead(num_classes, kind="arcface", scale=scale, margin=margin, **kwargs)


def SphereFaceHead(num_classes: int, scale: float = 30.0, margin: int = 4, **kwargs) -> MarginHead:
    """Return a :class:`MarginHead` with the simplified SphereFace rule (see :func:`sphereface_logits`)."""
    return MarginHead(num_classes, kind="sphereface", scale=scale, margin=margin, **kwargs)


def SoftmaxHead(num_classes: int, **kwargs) -> MarginHead:
    """Return a :class:`MarginHead` that is a plain linear softmax classifier (the baseline)."""
    return MarginHead(num_classes, kind="softmax", **kwargs)


def pairwise_distances(embeddings):
    """Return the ``(batch, batch)`` Euclidean distances between L2-normalised rows of ``embeddings``.

    The square root is taken of ``max(d^2, 1e-12)`` so its gradient stays finite
    on the diagonal, where the distance is 0.
    """
    embeddings = ops.cast(embeddings, "float32")
    embeddings = embeddings / ops.sqrt(ops.maximum(ops.sum(ops.square(embeddings), axis=-1, keepdims=True), 1e-12))
    # For unit vectors |a - b|^2 = 2 - 2 a.b.
    squared = ops.maximum(2.0 - 2.0 * ops.matmul(embeddings, ops.transpose(embeddings)), 0.0)
    return ops.sqrt(ops.maximum(squared, 1e-12))


def batch_hard_triplet_loss(labels, embeddings, margin: float = 0.2):
    """Compute the triplet loss with online batch-hard mining (Hermans et al., 2017).

    Every face in the batch is an anchor. Its hardest positive is the farthest
    face of the same identity, its hardest negative the nearest face of another
    identity, and it contributes ``max(d(a, p) - d(a, n) + margin, 0)``.
    Distances are Euclidean between L2-normalised embeddings, so they lie in
    ``[0, 2]``. Anchors without a positive or without a negative in the batch
    are left out; batches should therefore be drawn as P identities x K images.

    Parameters
    ----------
    labels : (batch,) or (batch, 1) integer tensor
    embeddings : (batch, dimension) tensor
    margin : float

    Returns
    -------
    scalar float32 tensor
        Mean over the valid anchors; 0 when there is none.
    """
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    distances = pairwise_distances(embeddings)
    size = ops.shape(distances)[0]
    same = ops.equal(ops.expand_dims(labels, 0), ops.expand_dims(labels, 1))
    not_self = ops.logical_not(ops.cast(ops.eye(size), "bool"))
    positive_mask = ops.logical_and(same, not_self)
    negative_mask = ops.logical_not(same)

    hardest_positive = ops.max(ops.where(positive_mask, distances, 0.0), axis=1)
    # Distances are at most 2, so 4 marks the pairs that are not negatives.
    hardest_negative = ops.min(ops.where(negative_mask, distances, 4.0), axis=1)
    per_anchor = ops.maximum(hardest_positive - hardest_negative + margin, 0.0)

    valid = ops.logical_and(ops.any(positive_mask, axis=1), ops.any(negative_mask, axis=1))
    valid = ops.cast(valid, "float32")
    return ops.sum(per_anchor * valid) / ops.maximum(ops.sum(valid), 1.0)


@keras.saving.register_keras_serializable(package="course_lib")
class BatchHardTripletLoss(keras.losses.Loss):
    """Keras loss wrapper of :func:`batch_hard_triplet_loss`: ``y_true`` labels, ``y_pred`` embeddings."""

    def __init__(self, margin: float = 0.2, name: str = "batch_hard_triplet", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = float(margin)

    def call(self, y_true, y_pred):
        return batch_hard_triplet_loss(y_true, y_pred, self.margin)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


# --- exercise -----------------------------------------------------------------------


def arcface_logit_exercise(cosine: float = 0.6, scale: float = 30.0, margin: float = 0.5):
    """Return an :class:`~course_lib.exercises.Exercise`: the ArcFace target logit from a cosine.

    The expected answer is ``scale * cos(arccos(cosine) + margin)``; the checker
    recognises the usual mistakes (no scale, the CosFace rule, adding the
    margin to the cosine, degrees instead of radians).
    """
    from .exercises import Exercise, IncorrectAnswer, expect_number

    expected = scale * math.cos(math.acos(cosine) + margin)
    mistakes = {
        "You forgot the scale s: multiply the margin-shifted cosine by s.": math.cos(math.acos(cosine) + margin),
        "That is the CosFace logit s (cos(theta) - m); ArcFace adds m to the angle theta, not to the cosine.": scale * (cosine - margin),
        "You added the margin to the cosine; ArcFace adds it to the angle: theta = arccos(cos), then cos(theta + m).": scale * (cosine + margin),
        "The margin is in radians; math.cos and np.cos expect radians, so do not convert it to degrees.": scale * math.cos(math.acos(cosine) + math.radians(margin)),
        "That is the logit without a margin, s cos(theta); add m to theta before taking the cosine.": scale * cosine,
    }

    def checker(answer):
        try:
            value = float(answer)
        except (TypeError, ValueError):
            raise IncorrectAnswer(f"Expected a number, got {type(answer).__name__}.") from None
        for message, wrong in mistakes.items():
            if abs(value - wrong) < 1e-4 and abs(wrong - expected) > 1e-4:
                raise IncorrectAnswer(message)
        expect_number(value, expected, what="the ArcFace target logit", atol=1e-4)
        return f"s cos(theta + m) = {expected:.3f}, lower than the plain logit s cos(theta) = {scale * cosine:.3f}."

    return Exercise(
        "ArcFace target logit",
        checker,
        hint="theta = arccos(cos); the target logit is s * cos(theta + m). Use math.acos and math.cos.",
        solution=f"logit = {scale} * math.cos(math.acos({cosine}) + {margin})",
    )
