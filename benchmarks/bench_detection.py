"""Detector speed, YOLOv8 training throughput and detection accuracy on FMD (notebook 04).

Run from the repository root (MFR_DATA_DIR must point at the datasets)::

    python benchmarks/bench_detection.py [--frames 10]

or through the benchmark command (``python -m benchmarks inference``,
``training`` or ``accuracy``, with ``--only detection``).

``inference()`` times each detector on 640x480 frames; ``training()``
measures YOLOv8 training images per second in the quick (256 px) and full
(640 px) configurations; ``accuracy()`` trains YOLOv8 and the two-stage
pipeline's classifier on the training split of the FMD images at hand and
reports mAP@0.5 and per-class AP on the held-out split.

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


def training(epochs: int = 3, count: int = 32) -> list[dict]:
    """Measure YOLOv8 training images per second for ``python -m benchmarks training``.

    Each configuration trains for ``epochs`` epochs on ``count`` FMD images
    with augmentation on. The first epoch traces the graph, so it is left out
    of the throughput.
    """
    import keras

    from course_lib import yolo
    from course_lib.data import load_fmd
    from course_lib.training import EpochTimer, configure_device

    records, _ = load_fmd()
    records = records[:count]
    rows = []
    for name, config, batch_size in (("quick", yolo.quick_config(), 8), ("full", yolo.full_config(), 8)):
        configure_device(0)
        model = yolo.build_detector(config)
        timer = EpochTimer()
        history = yolo.train_detector(model, records, config=config, epochs=epochs, batch_size=batch_size, callbacks=[timer])
        timed = timer.seconds[1:] or timer.seconds
        rows.append(
            {
                "model": f"YOLOv8 {name} ({config.image_size} px)",
                "parameters": yolo.count_parameters(model)["detector"],
                "batch": batch_size,
                "augmentation": "on",
                "first epoch (s)": round(timer.seconds[0], 1),
                "training images per second": round(len(records) * len(timed) / sum(timed), 2),
                "final loss": round(history["loss"][-1], 2),
            }
        )
        del model
        keras.backend.clear_session()
    return rows


def accuracy(yolo_epochs: int = 60, classifier_epochs: int = 20, seed: int = 0) -> list[dict]:
    """Measure the mAP of YOLOv8 and of the two-stage pipeline on FMD for ``python -m benchmarks accuracy``.

    The split is notebook 04's: :func:`course_lib.metrics_detection.split_records`
    with 20% held out and seed 0. YOLOv8 uses the quick (256 px, CPU-sized)
    configuration, trained for ``yolo_epochs`` epochs with the schedule and
    augmentation of :func:`course_lib.yolo.full_training_recipe`. The full
    640 px configuration trains at about 1.5 images per second on two CPU
    cores, so it needs a GPU. The two-stage pipeline is MTCNN on the
    image upscaled twofold, followed by the notebook-03 classifier retrained
    without the held-out images (:func:`course_lib.two_stage.train_crop_classifier`).
    """
    from course_lib import two_stage, yolo
    from course_lib.data import load_fmd
    from course_lib.images import read_image
    from course_lib.metrics_detection import evaluate_detections, run_timed, split_records
    from course_lib.training import configure_device

    records, _ = load_fmd()
    train_records, test_records = split_records(records, test_fraction=0.2, seed=seed)
    test_images = [read_image(r.image_path) for r in test_records]
    split = f"{len(train_records)} train / {len(test_records)} test images (seed {seed})"
    rows = []

    configure_device(seed)
    config = yolo.quick_config()
    recipe = {**yolo.full_training_recipe(), "epochs": yolo_epochs, "batch_size": 8}
    model = yolo.build_detector(config)
    started = time.perf_counter()
    yolo.train_detector(model, train_records, config=config, seed=seed, **recipe)
    yolo_minutes = (time.perf_counter() - started) / 60
    found, ms = run_timed(lambda image: yolo.predict_detector(model, [image])[0], test_images, desc="YOLOv8")
    rows.append(_accuracy_row(f"YOLOv8 quick config ({config.image_size} px), {yolo_epochs} epochs", evaluate_detections(test_records, found), ms, split, yolo_minutes))

    started = time.perf_counter()
    mask_classifier = two_stage.train_crop_classifier([r.image_path for r in test_records], epochs=classifier_epochs, seed=seed)
    classifier_minutes = (time.perf_counter() - started) / 60
    crop_classifier = two_stage.as_crop_classifier(mask_classifier)
    found, ms = run_timed(lambda image: two_stage.detect_and_classify(image, crop_classifier, upscale=2.0), test_images, desc="MTCNN x2")
    rows.append(_accuracy_row(f"MTCNN x2 + notebook-03 classifier, {classifier_epochs} epochs", evaluate_detections(test_records, found), ms, split, classifier_minutes))
    return rows


def _accuracy_row(name: str, scores, ms: float, split: str, minutes: float) -> dict:
    row = {
        "model": name,
        "split": split,
        "training (min)": round(minutes, 1),
        "mAP@0.5": round(scores.map50, 3),
        "mAP@.5:.95": round(scores.map50_95, 3),
    }
    row.update({f"AP@0.5 {name}": (round(value, 3) if np.isfinite(value) else "n/a") for name, value in scores.ap50.items()})
    row.update({f"test boxes {name}": count for name, count in scores.ground_truth_counts.items()})
    row["ms per image"] = round(ms, 1)
    return row
