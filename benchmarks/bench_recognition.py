"""Benchmarks of the recognition notebook (05): training and embedding speed, full-mode accuracy.

Run through the course's benchmark command (``python -m benchmarks training``,
``inference`` or ``accuracy``), or directly::

    python -m benchmarks.bench_recognition training

Speeds are measured on synthetic 64-pixel faces, so they need no data and no
face detection. The accuracy benchmark needs ``MFR_DATA_DIR`` and trains two
models of at most 14 minutes each. It aligns the LFW faces with the fixed landmarks of
a centred deep-funneled LFW face (``detect=False``): LFW's deep-funneled
images are already aligned, and running MTCNN on about 6,000 images would add
about 10 minutes on a 2-core CPU. Pass ``detect=True`` to align with MTCNN.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

SIZE = 64
"""Side of the aligned faces used by the full-mode experiment."""


def _synthetic_faces(count: int, identities: int, variants: int = 2, seed: int = 0):
    from course_lib.recognition import AlignedFaces

    rng = np.random.default_rng(seed)
    return AlignedFaces(
        images=rng.integers(0, 256, (count, SIZE, SIZE, 3), dtype=np.uint8),
        masked=rng.integers(0, 256, (count, variants, SIZE, SIZE, 3), dtype=np.uint8),
        mask_types=np.full((count, variants), "surgical"),
        landmarks=np.zeros((count, 5, 2), np.float32),
        identities=np.array([f"person_{i % identities}" for i in range(count)]),
        paths=np.array([f"face_{i}.jpg" for i in range(count)]),
        detected=np.ones(count, bool),
    )


def training(steps: int = 60, batch_size: int = 64) -> list[dict]:
    """Measure training throughput (images per second) of the full-mode backbone on the CPU.

    The throughput leaves out the first step, which traces the graph (see
    :class:`course_lib.recognition.TrainingResult`).
    """
    from course_lib.recognition import FULL_MODE_MODEL, train_embedding

    faces = _synthetic_faces(count=steps * batch_size, identities=300)
    rows = []
    for loss in ("arcface", "triplet"):
        for attention in (False, True):
            options = {**FULL_MODE_MODEL, "attention": attention}
            result = train_embedding(faces, loss=loss, epochs=1.0, batch_size=batch_size, model_options=options)
            rows.append(
                {
                    "measure": "training throughput",
                    "model": f"ResNet {SIZE}px{' + CBAM' if attention else ''}, {loss}",
                    "batch size": batch_size,
                    "steps": result.steps,
                    "images per second": round(result.images_per_second, 1),
                }
            )
    return rows


def inference(count: int = 512) -> list[dict]:
    """Measure embedding throughput (aligned faces per second, with flip augmentation) on the CPU."""
    from course_lib.recognition import FULL_MODE_MODEL, build_embedding_model, embed_aligned

    model = build_embedding_model(SIZE, **FULL_MODE_MODEL)
    faces = _synthetic_faces(count=count, identities=10).images
    embed_aligned(model, faces[:64])
    start = time.perf_counter()
    embed_aligned(model, faces)
    seconds = time.perf_counter() - start
    return [{"measure": "embedding throughput", "model": f"ResNet {SIZE}px, flip test", "faces per second": round(count / seconds, 1)}]


def accuracy(minutes_per_model: float = 14.0, detect: bool = False) -> list[dict]:
    """Run :func:`course_lib.recognition.full_mode_experiment` and return one row per test condition."""
    from course_lib.recognition import FULL_MODE_MARGIN, full_mode_experiment

    result = full_mode_experiment(minutes_per_model=minutes_per_model, detect=detect)
    minutes = [seconds / 60 for seconds in result["training_seconds"].values()]
    rows = []
    for condition, values in result["accuracy"].items():
        rows.append(
            {
                "measure": "LFW DevTest 10-fold accuracy (%)",
                "condition": condition,
                "ArcFace without mask training": round(100 * values[False], 1),
                "ArcFace with mask training": round(100 * values[True], 1),
                "pairs": result["pairs"],
                "ArcFace margin": FULL_MODE_MARGIN,
                "training (min)": " / ".join(f"{m:.1f}" for m in minutes),
                "alignment": "MTCNN landmarks" if detect else "fixed landmarks (deep-funneled LFW)",
            }
        )
    rows.append({"measure": "gain from mask training, one face masked (points)", "value": round(result["gain_one_masked"], 1)})
    return rows


if __name__ == "__main__":
    kind = sys.argv[1] if len(sys.argv) > 1 else "training"
    functions = {"training": training, "inference": inference, "accuracy": accuracy}
    if kind not in functions:
        sys.exit(f"Unknown benchmark {kind!r}; choose one of {', '.join(functions)}.")
    for row in functions[kind]():
        print(json.dumps(row))
