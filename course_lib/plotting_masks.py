"""Figures, the mask explorer widget and the exercises of notebook 01 (data and synthetic masks).

Images follow the package convention (RGB uint8 ``(H, W, 3)``); landmarks are
``(5, 2)`` ``(x, y)`` arrays in :data:`course_lib.faces.LANDMARK_NAMES` order.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

from .exercises import Exercise, IncorrectAnswer, expect_number
from .masks import CHIN_FRACTION, MASK_TYPES, SURGICAL_COLOURS, apply_mask, chin_point, occlusion_fraction
from .plotting import show_images

FIELD_DATASETS = (
    ("MFDD", "masked face detection", "24,771 masked faces", "faces with masks (detection)"),
    ("RMFRD", "real masked face recognition", "525 people: 5,000 masked + 90,000 unmasked images", "identity; masked or not"),
    ("SMFRD", "simulated masked face recognition", "500,000 images of 10,000 people", "identity; masks are simulated"),
    ("MAFA", "masked faces in the wild", "30,811 internet images", "occlusion type and degree, not correct wearing"),
    ("FMD (Kaggle)", "face mask detection", "853 images, 4,072 faces: 3,232 / 717 / 123", "box + with mask / without / worn incorrectly"),
    ("MMD", "medical mask dataset", "9,067 faces: 6,758 / 2,085 / 224", "box + masked / unmasked / worn incorrectly"),
)
"""Datasets of the field, with sizes as their authors report them: (name, task, size, what each image is labelled with)."""


def datasets_table() -> str:
    """Format :data:`FIELD_DATASETS` as a fixed-width text table."""
    header = ("dataset", "task", "size (as reported)", "labels")
    rows = [header, *FIELD_DATASETS]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def show_pairs(top: Sequence[np.ndarray], bottom: Sequence[np.ndarray], top_title: str, bottom_title: str, size: float = 1.8):
    """Two rows of images, for example unmasked (top) and masked (bottom) photos of one person."""
    count = max(len(top), len(bottom))
    figure, axes = plt.subplots(2, count, figsize=(size * count, size * 2 + 0.3), squeeze=False)
    for row, (images, title) in enumerate(((top, top_title), (bottom, bottom_title))):
        for column in range(count):
            axis = axes[row, column]
            axis.axis("off")
            if column < len(images):
                axis.imshow(images[column])
        axes[row, 0].set_title(title, loc="left", fontsize=9)
    figure.tight_layout()
    return figure


def show_mask_types(
    images: Sequence[np.ndarray],
    landmarks: Sequence[np.ndarray],
    mask_types: Sequence[str] = MASK_TYPES,
    seed: int = 0,
    size: float = 1.3,
):
    """Grid of faces (rows) by mask types (columns), with the unmasked face first."""
    tiles, titles = [], []
    for row, (image, points) in enumerate(zip(images, landmarks)):
        tiles.append(image)
        titles.append("no mask" if row == 0 else "")
        for column, name in enumerate(mask_types):
            tiles.append(apply_mask(image, points, name, seed=seed + 10 * row + column).image)
            titles.append(name if row == 0 else "")
    return show_images(tiles, titles, columns=len(mask_types) + 1, size=size)


def show_region(masked, landmarks: np.ndarray | None = None, box=None, ax=None, title: str | None = None):
    """Show a masked face with its mask region tinted, optional landmarks and a face box."""
    from matplotlib import patches

    if ax is None:
        _, ax = plt.subplots(figsize=(3, 3))
    overlay = masked.image.astype(np.float32)
    overlay[masked.region] = 0.5 * overlay[masked.region] + 0.5 * np.array([255, 0, 255])
    ax.imshow(overlay.astype(np.uint8))
    ax.axis("off")
    if landmarks is not None:
        points = np.asarray(landmarks)
        ax.scatter(points[:, 0], points[:, 1], s=14, c="#00bfff", edgecolors="black", linewidths=0.5)
        chin = chin_point(points)
        ax.scatter([chin[0]], [chin[1]], s=24, marker="x", c="yellow")
    if box is not None:
        x_min, y_min, x_max, y_max = box
        ax.add_patch(patches.Rectangle((x_min, y_min), x_max - x_min, y_max - y_min, fill=False, edgecolor="yellow", linewidth=1.2))
    ax.set_title(title or f"{masked.mask_type}: region in magenta", fontsize=9)
    return ax


def mask_explorer(image: np.ndarray, landmarks: np.ndarray):
    """An ipywidgets explorer that redraws a mask when its type, colour, coverage or seed changes.

    Returns
    -------
    ipywidgets.interactive
        Display it in a notebook (it is the last expression of a cell). The
        figure is drawn once on creation, so the widget also works when a
        notebook runs headless.
    """
    import ipywidgets as widgets
    from IPython.display import display

    colour_names = ["seeded", *SURGICAL_COLOURS, "black", "navy", "darkred"]

    def draw(mask_type="surgical", colour="seeded", coverage=1.0, seed=0):
        masked = apply_mask(image, landmarks, mask_type, seed=seed, colour=None if colour == "seeded" else colour, coverage=coverage)
        figure, axes = plt.subplots(1, 2, figsize=(6, 3))
        axes[0].imshow(masked.image)
        axes[0].axis("off")
        axes[0].set_title(f"{mask_type}, seed {seed}", fontsize=9)
        show_region(masked, landmarks, ax=axes[1], title=f"region: {masked.region.mean():.0%} of the image")
        figure.tight_layout()
        display(figure)
        plt.close(figure)

    return widgets.interactive(
        draw,
        mask_type=widgets.Dropdown(options=list(MASK_TYPES), value="surgical", description="mask type"),
        colour=widgets.Dropdown(options=colour_names, value="seeded", description="colour"),
        coverage=widgets.FloatSlider(value=1.0, min=0.7, max=1.3, step=0.05, description="coverage"),
        seed=widgets.IntSlider(value=0, min=0, max=20, description="seed"),
    )


# --- exercises --------------------------------------------------------------------------


def chin_exercise(landmarks: np.ndarray) -> Exercise:
    """Exercise: estimate the chin from the five landmarks.

    The expected answer is ``mouth_centre + CHIN_FRACTION * (mouth_centre -
    eye_centre)``; a wrong answer is told which coordinate is off and by how much.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    expected = chin_point(points).astype(np.float64)
    eye_centre = (points[0] + points[1]) / 2
    mouth_centre = (points[3] + points[4]) / 2

    def checker(answer):
        try:
            value = np.asarray(answer, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise IncorrectAnswer(f"expected an (x, y) pair of numbers, got {type(answer).__name__}.") from None
        if value.shape != (2,):
            raise IncorrectAnswer(f"expected two numbers (x, y), got {value.size}.")
        if np.allclose(value, mouth_centre, atol=0.5):
            raise IncorrectAnswer("that is the mouth centre; move further down by CHIN_FRACTION times the eye-to-mouth vector.")
        if np.allclose(value, mouth_centre - CHIN_FRACTION * (mouth_centre - eye_centre), atol=0.5):
            raise IncorrectAnswer("that point lies above the mouth: the vector should point from the eyes to the mouth (mouth minus eyes).")
        off = [f"{axis} is off by {got - want:+.1f} px (got {got:.1f}, expected {want:.1f})"
               for axis, got, want in zip("xy", value, expected) if abs(got - want) > 0.5]
        if off:
            raise IncorrectAnswer("; ".join(off) + ".")
        return f"The chin is at ({expected[0]:.1f}, {expected[1]:.1f})."

    return Exercise(
        "chin point from five landmarks",
        checker,
        hint="Average rows 0 and 1 (eyes) and rows 3 and 4 (mouth corners); the chin is the mouth centre plus "
        "CHIN_FRACTION times the vector from the eye centre to the mouth centre.",
        solution="""
            eye_centre = (landmarks[0] + landmarks[1]) / 2
            mouth_centre = (landmarks[3] + landmarks[4]) / 2
            chin = mouth_centre + CHIN_FRACTION * (mouth_centre - eye_centre)
        """,
    )


def occlusion_exercise(region: np.ndarray, box) -> Exercise:
    """Exercise: the fraction of a face box that a mask region covers."""
    expected = occlusion_fraction(region, box)
    x_min, y_min, x_max, y_max = (int(round(float(v))) for v in box)
    box_pixels = int(np.asarray(region)[max(y_min, 0):y_max, max(x_min, 0):x_max].size)
    whole_image = float(np.mean(region))

    def checker(answer):
        try:
            value = float(answer)
        except (TypeError, ValueError):
            raise IncorrectAnswer(f"expected a number between 0 and 1, got {type(answer).__name__}.") from None
        if value > 1.0:
            if abs(value - expected * box_pixels) < 1.0:
                raise IncorrectAnswer(f"{value:.0f} is the number of covered pixels; divide by the {box_pixels} pixels of the box.")
            raise IncorrectAnswer(f"{value:.3g} is not a fraction; it must lie between 0 and 1.")
        if abs(value - (1 - expected)) < 1e-3 and abs(expected - 0.5) > 1e-3:
            raise IncorrectAnswer("that is the visible fraction; the question asks for the covered one.")
        if abs(value - whole_image) < 1e-3 and abs(whole_image - expected) > 1e-3:
            raise IncorrectAnswer("that is the fraction of the whole image; slice the region to the box first, region[y_min:y_max, x_min:x_max].")
        expect_number(value, expected, what="the occluded fraction", atol=1e-3)
        return f"The mask covers {expected:.1%} of the face box."

    return Exercise(
        "occluded fraction of the face box",
        checker,
        hint="Round the box to whole pixels, slice the region with rows y_min:y_max and columns x_min:x_max, "
        "then take the mean of the boolean patch.",
        solution="""
            x_min, y_min, x_max, y_max = (int(round(float(v))) for v in box)
            fraction = float(region[y_min:y_max, x_min:x_max].mean())
        """,
    )
