"""Feature extraction speed of the shallow descriptors on the 400 AT&T faces, on one core.

Run ``MFR_DATA_DIR=... python benchmarks/bench_descriptors.py``. The images
are the stored 92x112 grayscale faces (no alignment, so MTCNN is not timed).
Timings depend on the machine and on its load; report them with both.
"""

from __future__ import annotations

import os

# Pin the numerical libraries to one thread before NumPy and OpenCV load.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import platform
import time

import numpy as np


def _time_per_image(function, images, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for image in images:
            function(image)
        best = min(best, time.perf_counter() - start)
    return best


def benchmark_descriptors(repeats: int = 3) -> dict:
    """Time LBP, HOG and SIFT extraction over the 400 AT&T faces on one core.

    Parameters
    ----------
    repeats : int
        Each descriptor runs over all images this many times; the fastest run
        is kept.

    Returns
    -------
    dict
        ``images`` (count), ``image_shape``, ``machine`` and, per descriptor,
        ``<name>_seconds`` (all images, fastest run) and ``<name>_ms_per_image``.
    """
    import cv2

    from course_lib import descriptors
    from course_lib.data import load_att_faces
    from course_lib.images import read_images, to_gray

    cv2.setNumThreads(1)
    images, _, _ = read_images([record.path for record in load_att_faces()])
    gray = [to_gray(image) for image in images]

    methods = {
        "lbp_uniform": lambda x: descriptors.lbp_histogram(x, 1, 8, (8, 8), "uniform"),
        "lbp_nri_uniform": lambda x: descriptors.lbp_histogram(x, 1, 8, (8, 8), "nri_uniform"),
        "hog": lambda x: descriptors.hog_descriptor(x),
        "sift_detected": lambda x: descriptors.sift_features(x),
        "sift_dense": lambda x: descriptors.sift_features(x, dense_step=8),
    }
    result = {"images": len(gray), "image_shape": tuple(gray[0].shape), "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs"}
    for name, function in methods.items():
        function(gray[0])
        seconds = _time_per_image(function, gray, repeats)
        result[f"{name}_seconds"] = round(seconds, 3)
        result[f"{name}_ms_per_image"] = round(1000 * seconds / len(gray), 2)
    return result


if __name__ == "__main__":
    for key, value in benchmark_descriptors().items():
        print(f"{key}: {value}")


def inference() -> list[dict]:
    """Rows for ``python -m benchmarks inference``: descriptor extraction speed on one core."""
    result = benchmark_descriptors()
    names = ("lbp_uniform", "lbp_nri_uniform", "hog", "sift_detected", "sift_dense")
    return [
        {
            "model": f"descriptor {name}",
            "input": "AT&T 92x112 grayscale, 400 images",
            "threads": 1,
            "ms per image": result[f"{name}_ms_per_image"],
            "images per second": round(1000.0 / result[f"{name}_ms_per_image"], 1),
        }
        for name in names
    ]


def accuracy() -> list[dict]:
    """Rows for ``python -m benchmarks accuracy``: the notebook 02 experiment on AT&T and on the LFW mirror."""
    from course_lib import shallow

    rows = []
    for dataset, people in (("att_faces", None), ("lfw", None)):
        table, _ = shallow.run_experiment(dataset, people=people, progress=False)
        for result in table.to_dicts():
            rows.append(
                {
                    "experiment": f"notebook 02, {dataset}, rank-1",
                    "descriptor": result["descriptor"],
                    "region": result["region"],
                    "probe condition": result["condition"],
                    "accuracy (%)": round(100 * result["accuracy"], 1),
                }
            )
    return rows
