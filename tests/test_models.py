"""Tests of the CNN builders, the fixed-kernel demo, the exercises and Grad-CAM."""

import urllib.error

import keras
import numpy as np
import pytest

from course_lib import gradcam, models
from course_lib.exercises import IncorrectAnswer

DOCUMENTED_LAST_MAPS = {
    ("alexnet_small", 64): (4, 4, 96),
    ("alexnet_small", 128): (8, 8, 96),
    ("vgg_small", 64): (4, 4, 128),
    ("vgg_small", 128): (8, 8, 128),
    ("resnet_small", 64): (8, 8, 128),
    ("resnet_small", 128): (8, 8, 128),
}


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("name", sorted(models.BUILDERS))
def test_builder_output_shape(name, size):
    model = models.BUILDERS[name]((size, size, 3), num_classes=3)
    assert model.output_shape == (None, 3)
    last = model.get_layer(models.last_conv_layer_name(model))
    assert tuple(last.output.shape[1:]) == DOCUMENTED_LAST_MAPS[(name, size)]

    batch = np.random.default_rng(0).random((2, size, size, 3), dtype=np.float32)
    probabilities = keras.ops.convert_to_numpy(model(batch, training=False))
    assert probabilities.shape == (2, 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_builder_num_classes():
    model = models.build_resnet_small((64, 64, 3), num_classes=2)
    assert model.output_shape == (None, 2)


def test_builder_rejects_grayscale_shape():
    with pytest.raises(ValueError, match="input_shape"):
        models.build_vgg_small((64, 64, 1))


def test_global_pooling_parameters_size_independent():
    small = models.build_resnet_small((64, 64, 3)).count_params()
    large = models.build_resnet_small((128, 128, 3)).count_params()
    assert small == large


def test_residual_block_projection():
    inputs = keras.Input((16, 16, 32))
    outputs = models.residual_block(inputs, 64, strides=2, name="probe")
    model = keras.Model(inputs, outputs)
    assert model.output_shape == (None, 8, 8, 64)
    assert "probe_projection" in [layer.name for layer in model.layers]


def test_mobilenetv2_offline_fallback(monkeypatch, tmp_path, capsys):
    # Simulate an offline machine: an empty Keras cache and a download that fails
    # the way urllib fails without a network. No connection is attempted.
    from keras.src.backend import config as keras_config
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable (simulated by the test)")

    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))
    monkeypatch.setattr(file_utils, "urlretrieve", offline)

    model = models.build_mobilenetv2((96, 96, 3), num_classes=3, weights="imagenet")

    printed = capsys.readouterr().out
    assert "ImageNet weights are not available" in printed
    assert "training from scratch" in printed
    assert model.pretrained is False
    assert model.output_shape == (None, 3)


def test_mobilenetv2_rescales_input():
    model = models.build_mobilenetv2((96, 96, 3), num_classes=2, weights=None)
    rescaling = model.get_layer("to_minus_one_one")
    values = keras.ops.convert_to_numpy(rescaling(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)))
    assert np.allclose(values, [[-1.0, 0.0, 1.0]])
    assert model.pretrained is False


def test_mobilenetv2_rejects_unknown_weights():
    with pytest.raises(ValueError, match="weights"):
        models.build_mobilenetv2((96, 96, 3), weights="faces")


def test_sobel_responds_to_vertical_edge():
    gray = np.zeros((16, 16), dtype=np.uint8)
    gray[:, 8:] = 255
    conv_maps, pooled, names = models.fixed_kernel_feature_maps(gray)
    sobel_x = conv_maps[..., names.index("sobel_x")]
    sobel_y = conv_maps[..., names.index("sobel_y")]
    assert conv_maps.shape == (16, 16, len(names))
    assert pooled.shape == (8, 8, len(names))
    assert np.abs(sobel_x[8, 7:9]).min() == pytest.approx(4.0)
    assert np.abs(sobel_y[2:14, 2:14]).max() == pytest.approx(0.0)


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("size,kernel,strides", [(64, 5, 2), (63, 3, 1), (128, 7, 4)])
def test_conv_output_size_matches_keras(size, kernel, strides, padding):
    layer = keras.layers.Conv2D(1, kernel, strides=strides, padding=padding)
    expected = layer.compute_output_shape((None, size, size, 1))[1]
    assert models.conv_output_size(size, kernel, strides, padding) == expected


def test_shape_exercise_feedback(capsys):
    exercise = models.conv_output_shape_exercise(size=64, kernel_size=5, strides=2, filters=16)
    exercise.check((30, 30, 16))
    assert capsys.readouterr().out.startswith("Correct")
    with pytest.raises(IncorrectAnswer, match="padding='same'"):
        exercise.check((32, 32, 16))
    with pytest.raises(IncorrectAnswer, match="one channel per filter"):
        exercise.check((30, 30, 3))


def test_parameter_exercise_feedback(capsys):
    exercise = models.conv_parameter_count_exercise(in_channels=3, filters=16, kernel_size=5)
    exercise.check(1216)
    assert capsys.readouterr().out.startswith("Correct")
    with pytest.raises(IncorrectAnswer, match="bias"):
        exercise.check(1200)
    with pytest.raises(IncorrectAnswer, match="input channels"):
        exercise.check(416)


def test_gradcam_heatmap_range():
    model = models.build_vgg_small((64, 64, 3), num_classes=3)
    images = np.random.default_rng(1).random((3, 64, 64, 3), dtype=np.float32)
    heatmaps = gradcam.gradcam_heatmaps(model, images)
    assert heatmaps.shape == (3, 4, 4)
    assert heatmaps.min() >= 0.0
    assert heatmaps.max() <= 1.0

    overlay = gradcam.overlay_heatmap(images[0], heatmaps[0])
    assert overlay.shape == (64, 64, 3)
    assert overlay.dtype == np.uint8
