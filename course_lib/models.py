"""Small convolutional networks for face crops of 64 to 128 pixels (Keras 3, functional API).

Every builder takes float32 images in ``[0, 1]`` of shape ``input_shape``
(``(H, W, 3)``, usually square, 64 to 128 pixels a side) and returns an
uncompiled :class:`keras.Model` whose output is a softmax over
``num_classes``: shape ``(batch, num_classes)``, float32, rows summing to 1.

The three teaching networks follow the ideas of the architectures they are
named after, scaled down so that they train on a CPU in minutes:

``build_alexnet_small``
    AlexNet (Krizhevsky et al., 2012): a large strided first kernel,
    overlapping max pooling, a stack of 3x3 convolutions, then wide fully
    connected layers with dropout. Most of its parameters are in the dense
    layers.
``build_vgg_small``
    VGG (Simonyan and Zisserman, 2015): blocks of two 3x3 convolutions
    followed by 2x2 max pooling, doubling the filters after each pooling.
    Batch normalisation (as in the VGG-BN variants) makes it trainable from
    scratch in a few epochs.
``build_resnet_small``
    ResNet (He et al., 2016): residual blocks ``y = relu(x + F(x))`` with
    identity shortcuts, and 1x1 projection shortcuts where the shape changes.

:func:`build_mobilenetv2` wraps :class:`keras.applications.MobileNetV2` and
falls back to random initial weights when the ImageNet weights cannot be
downloaded.
"""

from __future__ import annotations

import logging
import weakref
from typing import Sequence

import keras
import numpy as np
from keras import layers

from .exercises import Exercise, IncorrectAnswer, expect_number

log = logging.getLogger(__name__)

BN_MOMENTUM = 0.9
"""Momentum of the batch-normalisation moving averages. Keras' default (0.99)
needs several hundred steps before inference-mode statistics are usable; short
CPU training runs of a few dozen steps need the faster 0.9."""


def _check_input_shape(input_shape: Sequence[int], minimum: int = 32) -> tuple[int, int, int]:
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"input_shape must be (height, width, 3), got {input_shape!r}.")
    if min(shape[:2]) < minimum:
        raise ValueError(f"input_shape {shape} is too small: these networks need at least {minimum} pixels a side.")
    return shape


def _classifier_head(features, num_classes: int, dropout: float, name: str):
    if dropout > 0:
        features = layers.Dropout(dropout, name=f"{name}_dropout")(features)
    # float32 output keeps the softmax stable when the mixed_float16 policy is on.
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(features)


def build_alexnet_small(input_shape=(64, 64, 3), num_classes: int = 3, dropout: float = 0.5) -> keras.Model:
    """Build a small AlexNet-style network.

    Layers: 5x5 convolution with stride 2 (48 filters), 3x3 max pooling with
    stride 2, 5x5 convolution (96), max pooling, three 3x3 convolutions (128,
    128, 96), max pooling, flatten, two dense layers of 256 units with
    dropout, softmax. All convolutions use ``padding="same"``.

    Parameters
    ----------
    input_shape : (height, width, 3)
        Float32 images in ``[0, 1]``; at least 32 pixels a side.
    num_classes : int
    dropout : float
        Dropout rate before each dense layer.

    Returns
    -------
    keras.Model
        Output ``(batch, num_classes)`` softmax. With 64x64 input the last
        pooling gives a ``(4, 4, 96)`` map (1,536 features); with 128x128,
        ``(8, 8, 96)`` (6,144 features), so the dense layers grow with the input.
    """
    shape = _check_input_shape(input_shape)
    inputs = keras.Input(shape=shape, name="image")
    x = layers.Conv2D(48, 5, strides=2, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = layers.Conv2D(96, 5, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool2")(x)
    x = layers.Conv2D(128, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.Conv2D(128, 3, padding="same", activation="relu", name="conv4")(x)
    x = layers.Conv2D(96, 3, padding="same", activation="relu", name="conv5")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool5")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(dropout, name="fc6_dropout")(x)
    x = layers.Dense(256, activation="relu", name="fc6")(x)
    x = layers.Dropout(dropout, name="fc7_dropout")(x)
    x = layers.Dense(256, activation="relu", name="fc7")(x)
    outputs = _classifier_head(x, num_classes, 0.0, "fc8")
    return keras.Model(inputs, outputs, name="alexnet_small")


def _conv_bn_relu(x, filters: int, name: str, strides: int = 1, kernel_size: int = 3):
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_vgg_small(
    input_shape=(64, 64, 3), num_classes: int = 3, filters: Sequence[int] = (16, 32, 64, 128), dropout: float = 0.4
) -> keras.Model:
    """Build a small VGG-style network with batch normalisation.

    Each entry of ``filters`` is one block: two 3x3 convolutions (each
    followed by batch normalisation and ReLU) and 2x2 max pooling. After the
    blocks come global average pooling, a dense layer of 128 units, dropout
    and the softmax.

    Parameters
    ----------
    input_shape : (height, width, 3)
        Float32 images in ``[0, 1]``; at least ``2 ** len(filters)`` pixels a side.
    num_classes : int
    filters : sequence of int
        Filters per block; the default four blocks reduce 64 pixels to 4 and
        128 pixels to 8.
    dropout : float

    Returns
    -------
    keras.Model
        Output ``(batch, num_classes)`` softmax. Global pooling makes the
        parameter count independent of the input size.
    """
    shape = _check_input_shape(input_shape, minimum=2 ** len(filters))
    inputs = keras.Input(shape=shape, name="image")
    x = inputs
    for block, width in enumerate(filters, start=1):
        x = _conv_bn_relu(x, width, f"block{block}_a")
        x = _conv_bn_relu(x, width, f"block{block}_b")
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = layers.Dense(128, activation="relu", name="fc")(x)
    outputs = _classifier_head(x, num_classes, dropout, "fc")
    return keras.Model(inputs, outputs, name="vgg_small")


def residual_block(x, filters: int, strides: int = 1, name: str = "block"):
    """Apply one basic residual block (two 3x3 convolutions) to a tensor.

    The block computes ``relu(shortcut(x) + bn(conv(relu(bn(conv(x))))))``.
    The shortcut is the identity when the shape is unchanged, and a 1x1
    convolution with stride ``strides`` (a projection) otherwise.

    Parameters
    ----------
    x : KerasTensor of shape (batch, H, W, C)
    filters : int
        Channels of the output.
    strides : int
        Stride of the first convolution; 2 halves H and W.
    name : str
        Prefix of the layer names.

    Returns
    -------
    KerasTensor of shape (batch, ceil(H / strides), ceil(W / strides), filters)
    """
    shortcut = x
    y = _conv_bn_relu(x, filters, f"{name}_1", strides=strides)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(y)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_2_bn")(y)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False, name=f"{name}_projection")(x)
        shortcut = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_projection_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y)


def build_resnet_small(
    input_shape=(64, 64, 3),
    num_classes: int = 3,
    filters: Sequence[int] = (32, 64, 128),
    blocks_per_stage: int = 2,
    dropout: float = 0.3,
) -> keras.Model:
    """Build a small ResNet with basic residual blocks.

    A 3x3 stem convolution (32 filters, stride 2), followed for inputs above
    96 pixels by 2x2 max pooling so that 128 pixel inputs cost about as much
    as 64 pixel ones, leads into one stage per entry of ``filters``. Each stage has ``blocks_per_stage`` residual
    blocks (:func:`residual_block`); every stage after the first starts with
    stride 2. Global average pooling, dropout and a softmax follow.

    Parameters
    ----------
    input_shape : (height, width, 3)
        Float32 images in ``[0, 1]``.
    num_classes : int
    filters : sequence of int
        Channels per stage.
    blocks_per_stage : int
    dropout : float

    Returns
    -------
    keras.Model
        Output ``(batch, num_classes)`` softmax. The last convolutional map
        is ``(8, 8, 128)`` for both 64x64 and 128x128 input; the parameter
        count does not depend on the input size.
    """
    shape = _check_input_shape(input_shape)
    inputs = keras.Input(shape=shape, name="image")
    x = _conv_bn_relu(inputs, 32, "stem", strides=2)
    if min(shape[:2]) > 96:
        x = layers.MaxPooling2D(2, name="stem_pool")(x)
    for stage, width in enumerate(filters, start=1):
        for block in range(1, blocks_per_stage + 1):
            strides = 2 if (block == 1 and stage > 1) else 1
            x = residual_block(x, width, strides=strides, name=f"stage{stage}_block{block}")
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    outputs = _classifier_head(x, num_classes, dropout, "head")
    return keras.Model(inputs, outputs, name="resnet_small")


def build_mobilenetv2(
    input_shape=(96, 96, 3), num_classes: int = 3, weights: str | None = "imagenet", alpha: float = 0.35, dropout: float = 0.2
) -> keras.Model:
    """Build MobileNetV2 (Sandler et al., 2018) with a new softmax head.

    A ``Rescaling`` layer maps the ``[0, 1]`` input to the ``[-1, 1]`` range
    MobileNetV2 was trained on. With ``weights="imagenet"`` the ImageNet
    weights are loaded from the Keras cache (``~/.keras/models``) or
    downloaded; when that fails (offline, blocked or corrupt download) the
    network starts from random weights instead and prints a message. The
    attribute ``model.pretrained`` (a bool stored on the returned model)
    records which happened.

    Parameters
    ----------
    input_shape : (height, width, 3)
        At least 32 pixels a side. ImageNet weights exist for square inputs of
        96, 128, 160, 192 and 224 pixels; for other sizes Keras loads the
        224-pixel weights and warns.
    num_classes : int
    weights : {"imagenet", None}
    alpha : float
        Width multiplier; ImageNet weights exist for 0.35, 0.5, 0.75, 1.0, 1.3, 1.4.
    dropout : float

    Returns
    -------
    keras.Model
        Output ``(batch, num_classes)`` softmax; the backbone's last feature
        map is ``(H/32, W/32, 1280)`` before global average pooling.
    """
    if weights not in ("imagenet", None):
        raise ValueError(f"weights must be 'imagenet' or None, got {weights!r}.")
    shape = _check_input_shape(input_shape)

    backbone = None
    if weights == "imagenet":
        try:
            backbone = keras.applications.MobileNetV2(input_shape=shape, alpha=alpha, include_top=False, weights="imagenet")
        # keras.utils.get_file raises a bare Exception when the download fails,
        # so no narrower class catches the offline case.
        except Exception as error:  # noqa: BLE001
            _report(
                f"MobileNetV2: ImageNet weights are not available ({type(error).__name__}: {error}); "
                "training from scratch with random initial weights.",
                logging.WARNING,
            )
        else:
            _report("MobileNetV2: ImageNet weights loaded; training starts from the pretrained weights.")
    else:
        _report("MobileNetV2: weights=None; training from scratch with random initial weights.")
    pretrained = backbone is not None
    if backbone is None:
        backbone = keras.applications.MobileNetV2(input_shape=shape, alpha=alpha, include_top=False, weights=None)

    inputs = keras.Input(shape=shape, name="image")
    x = layers.Rescaling(2.0, offset=-1.0, name="to_minus_one_one")(inputs)
    x = backbone(x)
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    outputs = _classifier_head(x, num_classes, dropout, "head")
    model = keras.Model(inputs, outputs, name="mobilenetv2")
    model.pretrained = pretrained
    return model


def _report(message: str, level: int = logging.INFO) -> None:
    # Printed as well as logged, because notebooks show print output but not INFO logs by default.
    log.log(level, message)
    print(message)


_INFERENCE_FUNCTIONS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def inference_function(model: keras.Model):
    """Return ``model``'s inference pass as a ``tf.function``, traced once for any batch size.

    Calling a Keras model eagerly dispatches each layer's operations from
    Python, and ``model.predict`` adds its own set-up on every call. Each costs
    tens of milliseconds per call on a CPU, even for one image, which
    dominates the few faces of a live video frame. The function takes a
    float32 array of shape ``(batch, *model.input_shape[1:])`` and returns the
    model's output tensor. One function per model is cached while the model lives.
    """
    import tensorflow as tf

    forward = _INFERENCE_FUNCTIONS.get(model)
    if forward is None:
        signature = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)]
        # A weak reference, so that the cached function does not keep the model alive.
        reference = weakref.ref(model)
        forward = tf.function(lambda batch: reference()(batch, training=False), input_signature=signature)
        _INFERENCE_FUNCTIONS[model] = forward
    return forward


BUILDERS = {
    "alexnet_small": build_alexnet_small,
    "vgg_small": build_vgg_small,
    "resnet_small": build_resnet_small,
}
"""The three teaching architectures by name, in the order the course compares them."""


def last_conv_layer_name(model: keras.Model) -> str:
    """Return the name of the last layer with a 4-D output (the last convolutional feature map).

    Nested models (such as the MobileNetV2 backbone) count as one layer with
    a 4-D output.
    """
    for layer in reversed(model.layers):
        shape = getattr(layer, "output", None)
        if shape is not None and len(shape.shape) == 4 and not isinstance(layer, keras.layers.InputLayer):
            return layer.name
    raise ValueError(f"Model {model.name!r} has no layer with a 4-D (batch, H, W, C) output.")


# --- convolution and pooling with fixed kernels --------------------------------

SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float32)
"""Sobel kernel that responds to vertical edges (intensity change along x)."""

FIXED_KERNELS = {
    "sobel_x": SOBEL_X,
    "sobel_y": SOBEL_X.T.copy(),
    "laplacian": np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float32),
    "box_blur": np.full((3, 3), 1.0 / 9.0, dtype=np.float32),
}
"""Hand-set 3x3 kernels, shown before any learned ones: two edge detectors, a Laplacian and a blur."""


def fixed_kernel_feature_maps(gray: np.ndarray, kernels: dict[str, np.ndarray] | None = None, pool_size: int = 2):
    """Apply fixed 3x3 kernels with a Keras ``Conv2D`` layer, then ``MaxPooling2D``.

    Parameters
    ----------
    gray : (H, W) ndarray
        Grayscale image, uint8 or float in ``[0, 1]``.
    kernels : dict of name to (3, 3) array, optional
        Defaults to :data:`FIXED_KERNELS`.
    pool_size : int
        Side of the max-pooling window (and its stride).

    Returns
    -------
    conv_maps : (H, W, K) ndarray of float32
        One map per kernel (``padding="same"``, no bias, no activation).
    pooled_maps : (H // pool_size, W // pool_size, K) ndarray of float32
        Max pooling of the absolute responses, so edges of both signs survive.
    names : list of str
    """
    kernels = FIXED_KERNELS if kernels is None else kernels
    image = np.asarray(gray)
    if image.ndim != 2:
        raise ValueError(f"Expected a (H, W) grayscale image, got shape {image.shape}; convert with course_lib.images.to_gray.")
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    names = list(kernels)
    weights = np.stack([np.asarray(kernels[n], dtype=np.float32) for n in names], axis=-1)[:, :, None, :]
    conv = layers.Conv2D(len(names), weights.shape[:2], padding="same", use_bias=False)
    conv.build((None, *image.shape, 1))
    conv.set_weights([weights])
    pool = layers.MaxPooling2D(pool_size)
    conv_maps = conv(image[None, :, :, None].astype(np.float32))
    pooled_maps = pool(keras.ops.abs(conv_maps))
    return keras.ops.convert_to_numpy(conv_maps)[0], keras.ops.convert_to_numpy(pooled_maps)[0], names


def feature_maps_for_display(maps: np.ndarray) -> list[np.ndarray]:
    """Scale each channel of an ``(H, W, K)`` map to ``[0, 1]`` for :func:`course_lib.plotting.show_images`."""
    shown = []
    for channel in np.moveaxis(np.asarray(maps, dtype=np.float32), -1, 0):
        low, high = float(channel.min()), float(channel.max())
        shown.append((channel - low) / (high - low) if high > low else np.zeros_like(channel))
    return shown


# --- exercises -------------------------------------------------------------------


def conv_output_size(size: int, kernel_size: int, strides: int = 1, padding: str = "valid") -> int:
    """Return the output length of a convolution or pooling along one axis.

    ``"valid"``: ``floor((size - kernel_size) / strides) + 1``;
    ``"same"``: ``ceil(size / strides)`` (Keras pads so the kernel covers every input pixel).
    """
    if padding == "valid":
        return (size - kernel_size) // strides + 1
    if padding == "same":
        return -(-size // strides)
    raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}.")


def conv_output_shape_exercise(size: int = 64, kernel_size: int = 5, strides: int = 2, filters: int = 16) -> Exercise:
    """Exercise: the output shape ``(H, W, C)`` of a ``Conv2D`` layer with ``padding="valid"``.

    The checker builds the real Keras layer and compares with its output shape.
    """
    layer = layers.Conv2D(filters, kernel_size, strides=strides, padding="valid")
    expected = tuple(int(v) for v in layer.compute_output_shape((None, size, size, 3))[1:])

    def checker(answer):
        try:
            shape = tuple(int(v) for v in answer)
        except (TypeError, ValueError):
            raise IncorrectAnswer(f"give the shape as a tuple of three ints (height, width, channels), got {answer!r}.") from None
        if len(shape) != 3:
            raise IncorrectAnswer(f"the shape should have three entries (height, width, channels), got {len(shape)}.")
        if shape[2] != expected[2]:
            raise IncorrectAnswer(f"the number of channels is {shape[2]}, but a Conv2D layer outputs one channel per filter ({expected[2]}).")
        if shape[:2] == (size // strides, size // strides) and shape[:2] != expected[:2]:
            raise IncorrectAnswer(f"{shape[:2]} would be right for padding='same'; with 'valid' the kernel must fit inside the image.")
        if shape[:2] != expected[:2]:
            raise IncorrectAnswer(f"height and width {shape[:2]} are wrong: count where a {kernel_size}x{kernel_size} window fits when it moves {strides} pixels at a time.")
        return f"Keras agrees: {expected}."

    return Exercise(
        name=f"Output shape of Conv2D({filters}, {kernel_size}, strides={strides}) on {size}x{size}x3",
        checker=checker,
        hint="With padding='valid' the output length is floor((size - kernel_size) / strides) + 1.",
        solution=f"side = ({size} - {kernel_size}) // {strides} + 1\nanswer = (side, side, {filters})",
    )


def conv_parameter_count_exercise(in_channels: int = 3, filters: int = 16, kernel_size: int = 5) -> Exercise:
    """Exercise: the number of trainable parameters of a ``Conv2D`` layer with a bias.

    The checker builds the real Keras layer and compares with ``count_params()``.
    """
    layer = layers.Conv2D(filters, kernel_size)
    layer.build((None, 32, 32, in_channels))
    expected = int(layer.count_params())
    without_bias = kernel_size * kernel_size * in_channels * filters

    def checker(answer):
        if isinstance(answer, (int, np.integer)) and int(answer) == without_bias:
            raise IncorrectAnswer(f"{answer} counts the kernel weights only; each filter also has one bias.")
        if isinstance(answer, (int, np.integer)) and int(answer) == kernel_size * kernel_size * filters + filters:
            raise IncorrectAnswer(f"{answer} forgets that each kernel spans all {in_channels} input channels.")
        expect_number(answer, expected, what="the parameter count", atol=0.5, rtol=0.0)
        return f"Keras agrees: {expected} parameters."

    return Exercise(
        name=f"Parameters of Conv2D({filters}, {kernel_size}) on {in_channels} input channels",
        checker=checker,
        hint="Each filter has kernel_size * kernel_size * in_channels weights and one bias.",
        solution=f"answer = {kernel_size} * {kernel_size} * {in_channels} * {filters} + {filters}",
    )
