"""PASCAL VOC annotation parsing that survives the files found in real datasets."""

from __future__ import annotations

import dataclasses
import os
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Sequence

import numpy as np

MIN_BOX_SIDE = 1.0
"""Boxes narrower or shorter than this many pixels after clipping are dropped."""


class AnnotationError(ValueError):
    """A PASCAL VOC file that cannot be parsed; the message names the file and the problem."""

    def __init__(self, path: os.PathLike | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(
            f"Cannot parse annotation {str(self.path)!r}: {reason}. "
            "Fix or delete the file, or fetch the dataset again."
        )


@dataclasses.dataclass
class AnnotationReport:
    """Counts of the boxes a parser changed or dropped, summed over files."""

    clipped: int = 0
    dropped_degenerate: int = 0
    dropped_unknown_class: int = 0
    dropped_missing_box: int = 0
    unknown_classes: set[str] = dataclasses.field(default_factory=set)

    def merge(self, other: "AnnotationReport") -> None:
        self.clipped += other.clipped
        self.dropped_degenerate += other.dropped_degenerate
        self.dropped_unknown_class += other.dropped_unknown_class
        self.dropped_missing_box += other.dropped_missing_box
        self.unknown_classes |= other.unknown_classes

    @property
    def dropped(self) -> int:
        return self.dropped_degenerate + self.dropped_unknown_class + self.dropped_missing_box

    def summary(self) -> str:
        parts = [f"{self.clipped} box(es) clipped to the image"]
        parts.append(f"{self.dropped_degenerate} dropped as empty after clipping")
        if self.dropped_unknown_class:
            names = ", ".join(sorted(self.unknown_classes))
            parts.append(f"{self.dropped_unknown_class} dropped with unknown class ({names})")
        if self.dropped_missing_box:
            parts.append(f"{self.dropped_missing_box} dropped with no <bndbox>")
        return "; ".join(parts) + "."


@dataclasses.dataclass(frozen=True)
class VOCAnnotation:
    """The content of one PASCAL VOC file, boxes in the package convention.

    ``boxes`` is ``(N, 4)`` float32 ``(x_min, y_min, x_max, y_max)`` in pixels,
    clipped to ``[0, width] x [0, height]``; ``labels`` is ``(N,)`` int32.
    """

    filename: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray


def _text(element, tag: str) -> str | None:
    child = element.find(tag)
    if child is None or child.text is None:
        return None
    return child.text.strip()


def _number(element, tag: str, path: Path) -> float | None:
    text = _text(element, tag)
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise AnnotationError(path, f"<{tag}> holds {text!r}, which is not a number") from None


def parse_voc(
    path: os.PathLike | str,
    class_names: Sequence[str],
    image_size: tuple[int, int] | None = None,
) -> tuple[VOCAnnotation, AnnotationReport]:
    """Parse one PASCAL VOC XML file.

    Parameters
    ----------
    path : path
        The ``.xml`` file.
    class_names : sequence of str
        Known classes; a box's label is the index of its ``<name>`` here.
    image_size : (width, height), optional
        Used when the file has no usable ``<size>``, and preferred over it when
        given, because some tools write a wrong size.

    Returns
    -------
    annotation : VOCAnnotation
        An image with no ``<object>`` gives zero boxes, which is valid.
    report : AnnotationReport
        Boxes clipped to the image (coordinates outside it) and boxes dropped:
        empty after clipping, with a class not in ``class_names``, or with no
        ``<bndbox>``. Float coordinates are kept as floats.

    Raises
    ------
    AnnotationError
        The file is empty or not XML, is not a VOC ``<annotation>``, has a
        non-numeric coordinate, or has no image size anywhere.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise AnnotationError(path, "the file is empty")
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        raise AnnotationError(path, f"invalid XML ({error})") from None
    if root.tag != "annotation":
        raise AnnotationError(path, f"the root element is <{root.tag}>, expected <annotation>")

    if image_size is not None:
        width, height = image_size
    else:
        size = root.find("size")
        width = _number(size, "width", path) if size is not None else None
        height = _number(size, "height", path) if size is not None else None
        if not width or not height:
            raise AnnotationError(path, "no positive <size><width>/<height>; pass image_size=(width, height)")
    width, height = int(width), int(height)

    index = {name: i for i, name in enumerate(class_names)}
    report = AnnotationReport()
    boxes, labels = [], []
    for obj in root.findall("object"):
        name = _text(obj, "name") or ""
        if name not in index:
            report.dropped_unknown_class += 1
            report.unknown_classes.add(name or "<empty>")
            continue
        box = obj.find("bndbox")
        coordinates = [_number(box, tag, path) for tag in ("xmin", "ymin", "xmax", "ymax")] if box is not None else [None]
        if any(value is None for value in coordinates):
            report.dropped_missing_box += 1
            continue
        x_min, y_min, x_max, y_max = coordinates
        x_min, x_max = sorted((x_min, x_max))
        y_min, y_max = sorted((y_min, y_max))
        clipped = (
            min(max(x_min, 0.0), width),
            min(max(y_min, 0.0), height),
            min(max(x_max, 0.0), width),
            min(max(y_max, 0.0), height),
        )
        if clipped != (x_min, y_min, x_max, y_max):
            report.clipped += 1
        if clipped[2] - clipped[0] < MIN_BOX_SIDE or clipped[3] - clipped[1] < MIN_BOX_SIDE:
            report.dropped_degenerate += 1
            continue
        boxes.append(clipped)
        labels.append(index[name])

    annotation = VOCAnnotation(
        filename=_text(root, "filename") or "",
        width=width,
        height=height,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        labels=np.asarray(labels, dtype=np.int32),
    )
    return annotation, report
