"""Speed and accuracy of the mask classifier (notebook 03).

``inference()``
    Face crops per second of batch inference with each architecture, at the
    model input size, on whatever device TensorFlow uses.
``training()``
    Training images per second (augmentation on, batch 32), timed over the
    epochs after the first, which also traces the graph.
``accuracy()``
    The full-mode experiment: two-class and three-class test accuracy and
    per-class recall of the ResNet-style network trained from scratch
    (:func:`course_lib.classifier.full_mode_experiment`: three two-class
    networks and one three-class network, about 45 minutes on a 2-core CPU).

Run one of them with ``python -m benchmarks inference`` (or ``training``,
``accuracy``), or this file directly for all three:
``python benchmarks/bench_classifier.py [inference|training|accuracy]``.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

INPUT_SIZE = 64
ENSEMBLE = 3
"""Two-class networks whose mean the accuracy benchmark reports, next to each network alone."""
BATCH_SIZE = 64


def _crops():
    from course_lib.classifier import build_mask_crops

    return build_mask_crops(INPUT_SIZE, include_fmd=True, progress=False)


def inference(repeats: int = 5, count: int = 512) -> list[dict]:
    """Measure face crops per second of :func:`course_lib.classifier.predict_crops` for each architecture.

    Crops are already at the input size (uint8), so the figure covers the
    conversion to float32 and the network. Each row is the median of ``repeats``
    timed passes over ``count`` crops in batches of 64, after one warm-up pass.
    """
    from course_lib import models, training
    from course_lib.classifier import predict_crops

    crops = _crops()
    images = crops.images[:count]
    rows = []
    for name, build in models.BUILDERS.items():
        training.configure_device(0)
        model = build((INPUT_SIZE, INPUT_SIZE, 3), num_classes=3)
        predict_crops(model, images[:BATCH_SIZE], batch_size=BATCH_SIZE)
        timings = []
        for _ in range(repeats):
            start = time.perf_counter()
            predict_crops(model, images, batch_size=BATCH_SIZE)
            timings.append(time.perf_counter() - start)
        rows.append(
            {
                "model": name,
                "input (px)": INPUT_SIZE,
                "batch": BATCH_SIZE,
                "parameters": model.count_params(),
                "crops per second": round(len(images) / float(np.median(timings)), 1),
            }
        )
    return rows


def training(epochs: int = 3, count: int = 640) -> list[dict]:
    """Measure training images per second of :func:`course_lib.training.train_classifier` for each architecture."""
    from course_lib import models
    from course_lib import training as course_training

    crops = _crops()
    images, labels = crops.images[:count], crops.labels[:count]
    rows = []
    for name, build in models.BUILDERS.items():
        course_training.configure_device(0)
        model = build((INPUT_SIZE, INPUT_SIZE, 3), num_classes=3)
        result = course_training.train_classifier(model, (images, labels), epochs=epochs, batch_size=32, augment=True)
        rows.append(
            {
                "model": name,
                "input (px)": INPUT_SIZE,
                "batch": 32,
                "augmentation": "on",
                "first epoch (s)": round(result.seconds_per_epoch[0], 1),
                "training images per second": round(result.images_per_second, 1),
            }
        )
    return rows


def accuracy() -> list[dict]:
    """Run the full-mode experiment and return one row per task."""
    from course_lib.classifier import full_mode_experiment

    results = full_mode_experiment(input_size=INPUT_SIZE, ensemble=ENSEMBLE)
    rows = []
    for task in ("two_class", "three_class"):
        summary = results[task]
        ensemble = summary.get("ensemble", 1)
        epochs = summary["epochs_run"]
        row = {
            "task": task.replace("_", "-"),
            "model": summary["architecture"] + (f", mean of {ensemble} networks" if ensemble > 1 else ""),
            "input (px)": INPUT_SIZE,
            "train / test images": f"{summary['train_images']} / {summary['test_images']}",
            "epochs": ", ".join(str(e) for e in epochs) if isinstance(epochs, list) else epochs,
            "test accuracy": summary["test_accuracy"],
            "with flip averaging": summary["test_accuracy_flip_average"],
        }
        row.update({f"recall {name}": value for name, value in summary["test_recall"].items()})
        if ensemble > 1:
            row["each network alone (flip averaging)"] = ", ".join(
                f"{m['test_accuracy']:.4f} ({m['test_accuracy_flip_average']:.4f})" for m in summary["members"]
            )
        rows.append(row)
    return rows


if __name__ == "__main__":
    selected = sys.argv[1:] or ["inference", "training", "accuracy"]
    measured = {name: globals()[name]() for name in selected}
    print(json.dumps(measured, indent=2))
