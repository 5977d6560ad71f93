"""Typed records returned by the dataset loaders.

Records hold paths and labels, never pixels: read pixels with
:func:`course_lib.images.read_image` when they are needed, so a loader costs
little memory even for the full datasets.

Box convention: ``(x_min, y_min, x_max, y_max)`` in pixels of the original
image, ``float32``, with ``x`` along columns and ``y`` along rows
(keras-cv's ``"xyxy"`` format). A box covers ``x_min <= x < x_max``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

MASK_CLASSES = ("with_mask", "without_mask", "mask_weared_incorrect")
"""The three mask-wearing classes, in class-id order (0, 1, 2), spelled as FMD's annotations spell them."""

MASK_CLASS_TITLES = {
    "with_mask": "mask worn",
    "without_mask": "no mask",
    "mask_weared_incorrect": "mask worn incorrectly",
}
"""Plain-English titles of :data:`MASK_CLASSES` for plots and tables."""


@dataclasses.dataclass(frozen=True)
class FaceRecord:
    """One face image of a recognition or classification dataset.

    Attributes
    ----------
    path : Path
        Image file.
    identity : str or None
        Person the image shows, when the dataset says (LFW, RMFRD, AT&T).
    masked : bool or None
        True for a real mask, False for no mask, None when unknown.
    dataset : str
        Registry name of the dataset the record comes from.
    """

    path: Path
    identity: str | None
    masked: bool | None
    dataset: str


@dataclasses.dataclass(frozen=True)
class PairRecord:
    """One verification pair: two faces and whether they show the same person."""

    first: FaceRecord
    second: FaceRecord
    same: bool
    fold: int


@dataclasses.dataclass(frozen=True)
class DetectionRecord:
    """One image of a detection dataset with its annotated boxes.

    Attributes
    ----------
    image_path : Path
    annotation_path : Path
    width, height : int
        Image size in pixels, from the annotation.
    boxes : (N, 4) ndarray of float32
        ``(x_min, y_min, x_max, y_max)`` in pixels, clipped to the image.
    labels : (N,) ndarray of int32
        Class ids, indices into :data:`MASK_CLASSES`.
    """

    image_path: Path
    annotation_path: Path
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        if self.boxes.shape != (len(self.labels), 4):
            raise ValueError(
                f"boxes has shape {self.boxes.shape} but there are {len(self.labels)} labels; "
                "expected boxes of shape (N, 4) with one label per box."
            )
