"""Measure detector speed on 640x480 frames on the CPU: two-stage pipelines and YOLOv8.

Run from the repository root (MFR_DATA_DIR must point at the datasets)::

    python benchmarks/bench_detection.py [--frames 10]

Frames are FMD images letterboxed to 640x480, so the face detector has real
faces to work on. The crop classifier is a stand-in with the cost of a small
CNN (the mini R-CNN's region classifier, trained on three images for one
epoch): the timing of a pipeline does not depend on how well it is trained.
The mini R-CNN row uses that same model, so it runs selective search at 160 px
with at most 150 proposals, fewer than the notebook's 256 px and 500.
YOLOv8 is timed untrained, in the quick (256 px) and full (640 px)
configurations. Each detector runs once on every frame before timing starts,
so graph tracing is not counted. Prints and returns a dict of frames per
second and milliseconds per frame.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def _frames(count: int) -> list[np.ndarray]:
    from course_lib.data import load_fmd
    from course_lib.images import read_image
    from course_lib.yolo import letterbox

    records, _ = load_fmd()
    records = sorted(records, key=lambda r: -len(r.labels))[:count]
    frames = []
    for record in records:
        square, _ = letterbox(read_image(record.image_path), 640)
        frames.append(np.ascontiguousarray(square[:480]))
    return frames


def _measure(detect, frames: list[np.ndarray]) -> dict:
    for frame in frames:
        detect(frame)
    start = time.perf_counter()
    for frame in frames:
        detect(frame)
    seconds = (time.perf_counter() - start) / len(frames)
    return {"ms_per_frame": round(1000 * seconds, 1), "fps": round(1.0 / seconds, 2)}


def run(frame_count: int = 10) -> dict:
    """Time each detector on ``frame_count`` frames of 640x480 and return the results with the conditions."""
    import tensorflow as tf

    from course_lib import rcnn, two_stage, yolo
    from course_lib.data import load_fmd

    frames = _frames(frame_count)
    records, _ = load_fmd()
    region_classifier = rcnn.MiniRCNN(max_side=160, max_proposals=150, background_per_image=20).fit(records[:3], epochs=1)
    results = {}
    for detector, upscale in (("mtcnn", 1.0), ("mtcnn", 2.0), ("haar", 1.0), ("haar", 2.0)):
        results[f"two-stage {detector} x{upscale:g}"] = _measure(
            lambda frame: two_stage.detect_and_classify(frame, region_classifier.classify_crops, detector=detector, upscale=upscale),
            frames,
        )
    results["mini R-CNN (per-region CNN)"] = _measure(lambda frame: region_classifier.detect(frame)[0], frames)
    for name, config in (("YOLOv8 quick 256 px", yolo.quick_config()), ("YOLOv8 full 640 px", yolo.full_config())):
        model = yolo.build_detector(config)
        results[name] = _measure(lambda frame: yolo.predict_detector(model, [frame])[0], frames)
        results[name]["parameters"] = yolo.count_parameters(model)["detector"]
    results["conditions"] = {
        "frames": len(frames),
        "frame_size": "640x480",
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "tensorflow": tf.__version__,
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10, help="number of 640x480 frames to time (default 10)")
    arguments = parser.parse_args()
    print(json.dumps(run(arguments.frames), indent=2))


if __name__ == "__main__":
    main()


def inference() -> list[dict]:
    """Rows for ``python -m benchmarks inference``: detector speed at 640x480, all threads."""
    results = run()
    conditions = results.pop("conditions")
    rows = []
    for name, values in results.items():
        rows.append(
            {
                "model": f"detector {name}",
                "input": conditions["frame_size"],
                "threads": f"all ({conditions['cpu_count']})",
                "ms per frame": values["ms_per_frame"],
                "frames per second": values["fps"],
            }
        )
    return rows
