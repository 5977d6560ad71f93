"""Frames per second of the webcam demo's pipeline at 640x480 on the CPU.

Run ``MFR_DATA_DIR=... python benchmarks/bench_pipeline.py``. The frames are
the demo sequence of :func:`course_lib.pipeline.build_demo_sequence` (four
real faces, two of them masked, on a 640x480 frame). Each configuration runs
over the sequence after a warm-up of a few frames. The figures are the mean
and 95th-percentile milliseconds per frame of the processing function alone,
which is the kernel side of the widget. The frame protocol's own cost (JPEG
encoding, validation and decoding) is measured separately. Timings depend on the machine and on its
load; report them with both.
"""

from __future__ import annotations

import json
import logging
import sys
import time

import numpy as np

log = logging.getLogger(__name__)

CONFIGURATIONS = (
    ("mtcnn", 0.5, 3),
    ("mtcnn", 0.5, 1),
    ("haar", 0.5, 1),
)
"""(detector, scale, detect_every) settings measured for detection + mask status."""


def _time_frames(processor, frames, warm_up: int = 3) -> np.ndarray:
    for frame in frames[:warm_up]:
        processor(frame)
    if hasattr(processor, "reset"):
        processor.reset()
    seconds = []
    for frame in frames:
        start = time.perf_counter()
        processor(frame)
        seconds.append(time.perf_counter() - start)
    return np.asarray(seconds) * 1000.0


def _summary(milliseconds: np.ndarray) -> dict:
    mean = float(np.mean(milliseconds))
    return {
        "mean ms per frame": round(mean, 1),
        "p95 ms per frame": round(float(np.percentile(milliseconds, 95)), 1),
        "frames per second": round(1000.0 / mean, 1),
    }


def benchmark_pipeline(n_frames: int = 30) -> dict:
    """Measure detection + mask status, recognition's added cost and the protocol's cost.

    Parameters
    ----------
    n_frames : int
        Frames of the demo sequence timed per configuration.

    Returns
    -------
    dict
        ``frames``, ``frame_shape``, ``mask_model``, ``embedder``;
        ``detection_and_mask``: one summary per configuration name
        (``"mtcnn scale 0.5 every 3"``, ...), each with ``mean ms per frame``,
        ``p95 ms per frame`` and ``frames per second``;
        ``recognition``: the same for the default configuration with four
        enrolled people, plus ``added ms per frame`` and ``added ms per face``;
        ``protocol_ms_per_frame``: JPEG encoding plus :func:`parse_frame_message`.
    """
    import cv2

    from course_lib.pipeline import FacePipeline, build_demo_sequence, load_embedder, load_mask_model
    from course_lib.webcam import encode_frame, parse_frame_message

    sequence = build_demo_sequence(n_frames=n_frames)
    frames = sequence.frames
    mask_model = load_mask_model()
    embedder = load_embedder()
    result = {
        "frames": len(frames),
        "frame_shape": list(frames[0].shape),
        "mask_model": mask_model.description,
        "embedder": embedder.description,
        "opencv_threads": cv2.getNumThreads(),
        "detection_and_mask": {},
    }

    for detector, scale, every in CONFIGURATIONS:
        pipeline = FacePipeline(mask_model=mask_model, detector=detector, scale=scale, detect_every=every)
        name = f"{detector} scale {scale} every {every}"
        result["detection_and_mask"][name] = _summary(_time_frames(pipeline, frames))
        log.info("%s: %s", name, result["detection_and_mask"][name])

    base = FacePipeline(mask_model=mask_model, embedder=embedder)
    base_ms = _time_frames(base, frames)
    recognising = FacePipeline(mask_model=mask_model, embedder=embedder)
    for person, photo in sequence.enrolment.items():
        recognising.enrol(person, photo)
    faces = []

    def counting(frame):
        detections = recognising(frame)
        faces.append(len(detections))
        return detections

    recognition_ms = _time_frames(counting, frames)
    added = float(np.mean(recognition_ms) - np.mean(base_ms))
    faces_per_frame = float(np.mean(faces[-len(frames) :]))
    result["recognition"] = {
        **_summary(recognition_ms),
        "enrolled people": len(recognising.gallery),
        "faces per frame": round(faces_per_frame, 2),
        "added ms per frame": round(added, 1),
        "added ms per face": round(added / max(faces_per_frame, 1e-6), 1),
    }

    protocol = []
    for index, frame in enumerate(frames):
        start = time.perf_counter()
        content, buffers = encode_frame(frame, frame_id=index, quality=75)
        parse_frame_message(content, buffers)
        protocol.append(time.perf_counter() - start)
    result["protocol_ms_per_frame"] = round(1000.0 * float(np.mean(protocol)), 1)
    return result


def inference() -> list[dict]:
    """Rows for ``python -m benchmarks inference``: frames per second of each configuration."""
    result = benchmark_pipeline()
    rows = []
    for name, summary in result["detection_and_mask"].items():
        rows.append({"measure": "detection + mask status, 640x480", "configuration": name, "mask model": result["mask_model"], **summary})
    rows.append({"measure": "detection + mask + recognition, 640x480", "configuration": "mtcnn scale 0.5 every 3", **result["recognition"]})
    rows.append({"measure": "frame protocol (JPEG encode + validate + decode)", "ms per frame": result["protocol_ms_per_frame"]})
    return rows


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    frames = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    print(json.dumps(benchmark_pipeline(frames), indent=2))
