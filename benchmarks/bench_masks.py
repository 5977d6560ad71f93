"""Synthetic mask speed: masked faces per second on one core, with and without MTCNN detection."""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ.setdefault(_variable, "1")


def inference(count: int = 24) -> list[dict]:
    """Rows for ``python -m benchmarks inference``: ``count`` LFW faces, every mask type in turn."""
    import cv2

    from course_lib.data import load_lfw_people
    from course_lib.images import read_image
    from course_lib.masks import measure_speed

    cv2.setNumThreads(1)
    records = load_lfw_people("DevTest")[:count]
    images = [read_image(record.path) for record in records]
    result = measure_speed(images, repeats=2)
    return [
        {
            "model": "synthetic masks, drawing only",
            "input": "LFW 250x250, every mask type in turn",
            "threads": 1,
            "images per second": round(result["draw_per_second"], 1),
        },
        {
            "model": "synthetic masks, MTCNN detection + drawing",
            "input": "LFW 250x250, every mask type in turn",
            "threads": "1 (OpenCV); TensorFlow intra-op 1",
            "images per second": round(result["detect_and_draw_per_second"], 2),
        },
    ]


if __name__ == "__main__":
    for row in inference():
        print(row)
