"""Grad-CAM: which parts of a face a CNN's decision rests on.

Grad-CAM (Selvaraju et al., 2017) weights each channel of a convolutional
feature map ``A`` (shape ``(h, w, K)``) by the average gradient of the class
score over that channel, sums the channels and keeps the positive part::

    alpha_k = mean over (i, j) of d score / d A[i, j, k]
    heatmap = relu(sum_k alpha_k * A[:, :, k])

The heatmap has the resolution of the feature map (8x8 for the course's
ResNet at 64 px) and is upsampled to the image for display. The class score is
the softmax probability of the chosen class.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .models import last_conv_layer_name


def gradcam_heatmaps(model, images: np.ndarray, class_ids: Sequence[int] | None = None, layer_name: str | None = None) -> np.ndarray:
    """Compute Grad-CAM heatmaps for a batch of images.

    Parameters
    ----------
    model : keras.Model
        Functional classifier with a softmax output.
    images : (N, H, W, 3) ndarray of float32 in [0, 1]
        Model inputs (see :func:`course_lib.classifier.prepare_batch`).
    class_ids : sequence of int, optional
        Class explained for each image; the predicted class when omitted.
    layer_name : str, optional
        Convolutional layer whose output is weighted; the last layer with a 4-D
        output (:func:`course_lib.models.last_conv_layer_name`) when omitted.

    Returns
    -------
    heatmaps : (N, h, w) ndarray of float32 in [0, 1]
        One map per image at the layer's resolution, each divided by its
        maximum (all zeros when no location supports the class).
    """
    import keras
    import tensorflow as tf

    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"Expected a batch of shape (N, H, W, 3), got {images.shape}.")
    layer_name = layer_name or last_conv_layer_name(model)
    grad_model = keras.Model(model.inputs, [model.get_layer(layer_name).output, model.output])

    inputs = tf.convert_to_tensor(images)
    with tf.GradientTape() as tape:
        feature_maps, probabilities = grad_model(inputs, training=False)
        tape.watch(feature_maps)
        if class_ids is None:
            chosen = tf.argmax(probabilities, axis=1, output_type=tf.int32)
        else:
            chosen = tf.constant(np.asarray(class_ids, dtype=np.int32))
        scores = tf.gather(probabilities, chosen, axis=1, batch_dims=1)
    gradients = tape.gradient(scores, feature_maps)

    weights = tf.reduce_mean(tf.cast(gradients, tf.float32), axis=(1, 2), keepdims=True)
    maps = tf.nn.relu(tf.reduce_sum(weights * tf.cast(feature_maps, tf.float32), axis=-1)).numpy()
    peaks = maps.reshape(len(maps), -1).max(axis=1)
    peaks[peaks == 0] = 1.0
    return (maps / peaks[:, None, None]).astype(np.float32)


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45, colormap: str = "jet") -> np.ndarray:
    """Blend a heatmap over an image for display.

    Parameters
    ----------
    image : (H, W, 3) ndarray, uint8 or float in [0, 1]
    heatmap : (h, w) ndarray in [0, 1]
        Resized to ``(H, W)`` with bilinear interpolation.
    alpha : float
        Weight of the coloured heatmap in the blend.
    colormap : str
        Matplotlib colormap name.

    Returns
    -------
    (H, W, 3) ndarray of uint8
    """
    import cv2
    from matplotlib import colormaps

    picture = np.asarray(image)
    if picture.dtype != np.uint8:
        picture = (np.clip(picture, 0, 1) * 255 + 0.5).astype(np.uint8)
    height, width = picture.shape[:2]
    resized = cv2.resize(np.asarray(heatmap, dtype=np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    coloured = colormaps[colormap](np.clip(resized, 0, 1))[..., :3] * 255.0
    blended = (1 - alpha) * picture.astype(np.float32) + alpha * coloured
    return (np.clip(blended, 0, 255) + 0.5).astype(np.uint8)


def plot_gradcam(images, heatmaps, titles: Sequence[str] | None = None, columns: int = 6, suptitle: str | None = None):
    """Show Grad-CAM overlays in a grid (:func:`course_lib.plotting.show_images`); returns the figure.

    A heatmap of None shows its image without an overlay.
    """
    from .plotting import show_images

    overlays = [np.asarray(image) if heatmap is None else overlay_heatmap(image, heatmap) for image, heatmap in zip(images, heatmaps)]
    return show_images(overlays, titles=titles, columns=columns, suptitle=suptitle)
