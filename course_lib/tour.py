"""Exercises of notebook 00 (setup and tour)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .data.records import MASK_CLASSES, DetectionRecord
from .exercises import Exercise, IncorrectAnswer, expect_number


def box_count_exercise(records: Sequence[DetectionRecord]) -> Exercise:
    """Exercise: count the boxes of each class in FMD records."""
    expected = np.bincount(np.concatenate([r.labels for r in records]), minlength=len(MASK_CLASSES))
    expected_counts = {name: int(n) for name, n in zip(MASK_CLASSES, expected)}

    def checker(answer):
        if not isinstance(answer, dict):
            raise IncorrectAnswer(f"expected a dict from class name to count, got {type(answer).__name__}.")
        missing = [name for name in MASK_CLASSES if name not in answer]
        if missing:
            raise IncorrectAnswer(f"the class(es) {missing} are missing; every class counts, including the first one.")
        extra = [name for name in answer if name not in MASK_CLASSES]
        if extra:
            raise IncorrectAnswer(f"{extra} are not FMD classes; use the names in data.MASK_CLASSES.")
        for name in MASK_CLASSES:
            if int(answer[name]) != expected_counts[name]:
                raise IncorrectAnswer(
                    f"the count for {name!r} is {answer[name]}, expected {expected_counts[name]} "
                    f"(off by {int(answer[name]) - expected_counts[name]:+d}). Count boxes (labels), not images."
                )
        return f"{sum(expected_counts.values())} boxes in {len(records)} images."

    return Exercise(
        "FMD boxes per class",
        checker,
        hint="Each record's `labels` array holds one class id per box; class id i is data.MASK_CLASSES[i].",
        solution="""
            answer = {name: 0 for name in data.MASK_CLASSES}
            for record in fmd:
                for label in record.labels:
                    answer[data.MASK_CLASSES[label]] += 1
        """,
    )


def eye_distance_exercise(landmarks: np.ndarray) -> Exercise:
    """Exercise: the distance in pixels between the two eye landmarks."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    expected = float(np.linalg.norm(landmarks[1] - landmarks[0]))

    def checker(answer):
        horizontal = abs(float(landmarks[1, 0] - landmarks[0, 0]))
        try:
            value = float(answer)
        except (TypeError, ValueError):
            raise IncorrectAnswer(f"expected a number of pixels, got {type(answer).__name__}.") from None
        if abs(value - horizontal) < 1e-6 and abs(horizontal - expected) > 1e-6:
            raise IncorrectAnswer("that is only the horizontal gap; use the Euclidean distance between the two (x, y) points.")
        expect_number(value, expected, what="the eye distance", atol=1e-3)
        return f"{expected:.1f} pixels."

    return Exercise(
        "distance between the eyes",
        checker,
        hint="Rows 0 and 1 of the landmarks are the eyes as (x, y); np.linalg.norm gives the length of their difference.",
        solution="""
            left_eye, right_eye = faces[0].landmarks[0], faces[0].landmarks[1]
            eye_distance = float(np.linalg.norm(right_eye - left_eye))
        """,
    )
