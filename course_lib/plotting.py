"""Figures of the course; every figure a notebook shows comes from here.

Images follow the package convention (RGB uint8 ``(H, W, 3)``, or ``(H, W)``
grayscale); boxes are ``(x_min, y_min, x_max, y_max)`` in pixels.
"""

from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import patches

CLASS_COLOURS = ("#2ca02c", "#d62728", "#ff7f0e", "#1f77b4", "#9467bd", "#8c564b")
"""Colours for class ids 0, 1, 2, ...: mask worn green, no mask red, worn incorrectly orange."""


def show_images(
    images: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    columns: int = 6,
    size: float = 1.8,
    suptitle: str | None = None,
):
    """Show images in a grid with optional titles; returns the matplotlib figure."""
    count = len(images)
    if count == 0:
        raise ValueError("show_images needs at least one image.")
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows + (0.4 if suptitle else 0)), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= count:
            continue
        image = images[index]
        axis.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255 if image.dtype == np.uint8 else 1)
        if titles is not None:
            axis.set_title(titles[index], fontsize=8)
    if suptitle:
        figure.suptitle(suptitle)
    figure.tight_layout()
    return figure


def draw_boxes(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    scores: Sequence[float] | None = None,
    landmarks: Sequence[np.ndarray] | None = None,
    ax=None,
    title: str | None = None,
):
    """Draw boxes (and optional class names, scores and landmarks) over an image.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
    boxes : (N, 4) array
        ``(x_min, y_min, x_max, y_max)`` in pixels.
    labels : (N,) ints, optional
        Class ids; they choose the colour and, with ``class_names``, the caption.
    scores : (N,) floats, optional
    landmarks : sequence of (5, 2) arrays, optional
        Points drawn as dots.
    ax : matplotlib Axes, optional
        Axes to draw into; a new figure is made when omitted.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6 * image.shape[0] / max(image.shape[1], 1)))
    ax.imshow(image)
    ax.axis("off")
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    for index, (x_min, y_min, x_max, y_max) in enumerate(boxes):
        label = int(labels[index]) if labels is not None else 0
        colour = CLASS_COLOURS[label % len(CLASS_COLOURS)]
        ax.add_patch(patches.Rectangle((x_min, y_min), x_max - x_min, y_max - y_min, fill=False, edgecolor=colour, linewidth=1.5))
        caption = []
        if labels is not None and class_names is not None:
            caption.append(class_names[label])
        if scores is not None:
            caption.append(f"{float(scores[index]):.2f}")
        if caption:
            ax.text(x_min, y_min - 2, " ".join(caption), color="white", fontsize=7, backgroundcolor=colour, va="bottom")
    for points in landmarks or []:
        points = np.asarray(points)
        ax.scatter(points[:, 0], points[:, 1], s=12, c="#00bfff", edgecolors="black", linewidths=0.5)
    if title:
        ax.set_title(title)
    return ax


def plot_class_counts(counts: dict[str, int], title: str = "Class balance", ax=None):
    """Bar chart of counts per class, each bar labelled with its count and share."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    names = list(counts)
    values = np.array([counts[n] for n in names])
    total = max(int(values.sum()), 1)
    bars = ax.bar(names, values, color=[CLASS_COLOURS[i % len(CLASS_COLOURS)] for i in range(len(names))])
    for bar, value in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{value} ({100 * value / total:.0f}%)", ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("count")
    ax.set_title(title)
    return ax
