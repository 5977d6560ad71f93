"""Convolutional Block Attention Module (CBAM; Woo et al., ECCV 2018).

CBAM re-weights a feature map twice: first each channel, by a small MLP
applied to the channel's average and maximum over the image; then each
position, by a 7x7 convolution over the per-position average and maximum
across channels. MFCosface (Deng et al., 2021) inserts such a block into its
backbone so that features from the uncovered upper face can count for more
than those from the mask.
"""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="course_lib")
class ChannelSpatialAttention(keras.layers.Layer):
    """CBAM block: channel attention followed by spatial attention.

    Parameters
    ----------
    reduction : int
        Channel reduction ratio of the shared MLP (hidden size ``channels // reduction``, at least 4).
    kernel_size : int
        Side of the spatial-attention convolution.

    Input and output: ``(batch, height, width, channels)`` feature maps of the same shape.
    """

    def __init__(self, reduction: int = 8, kernel_size: int = 7, **kwargs):
        super().__init__(**kwargs)
        self.reduction = int(reduction)
        self.kernel_size = int(kernel_size)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        hidden = max(channels // self.reduction, 4)
        self.hidden_dense = layers.Dense(hidden, activation="relu", name="mlp_hidden", dtype=self.dtype_policy)
        self.output_dense = layers.Dense(channels, name="mlp_output", dtype=self.dtype_policy)
        self.spatial_conv = layers.Conv2D(
            1, self.kernel_size, padding="same", activation="sigmoid", name="spatial_conv", dtype=self.dtype_policy
        )
        self.hidden_dense.build((None, channels))
        self.output_dense.build((None, hidden))
        self.spatial_conv.build((None, None, None, 2))

    def call(self, inputs):
        average = ops.mean(inputs, axis=(1, 2))
        maximum = ops.max(inputs, axis=(1, 2))
        channel_logits = self.output_dense(self.hidden_dense(average)) + self.output_dense(self.hidden_dense(maximum))
        channel_weights = ops.sigmoid(channel_logits)[:, None, None, :]
        features = inputs * channel_weights

        pooled = ops.concatenate(
            [ops.mean(features, axis=-1, keepdims=True), ops.max(features, axis=-1, keepdims=True)], axis=-1
        )
        return features * self.spatial_conv(pooled)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction, "kernel_size": self.kernel_size}
