"""Build a synthetic masked copy of a face dataset.

Every image is read, its largest face is found with MTCNN
(:func:`course_lib.faces.detect_largest_face`) and a mask is drawn on it with
:func:`course_lib.masks.apply_mask`. The copy mirrors the source layout
(``<Name>/<Name>_NNNN.jpg`` for LFW) under
``config.cache_dir("masked", dataset)``, next to a manifest, ``manifest.csv``,
with one row per source image: mask type, seed, detector score, the five
landmarks, and whether masking succeeded (and if not, why).

The mask type of an image is chosen by a seeded rule from its relative path,
so it does not depend on the order of work or on the number of workers.

The build is resumable. An image whose output file exists and whose manifest
row matches the planned mask type and seed is reused. A failed image is not
retried unless its planned settings change. Outputs are written atomically
(a temporary file, then :func:`os.replace`), and the manifest is appended one
flushed row at a time and rewritten atomically at the end, so an interrupted
run loses at most the images in flight.
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import logging
import multiprocessing
import os
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import config
from .faces import LANDMARK_NAMES
from .masks import MASK_TYPES

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.csv"
DATASETS = ("lfw", "rmfrd")
"""Datasets the builder accepts: LFW and the unmasked part of RMFRD."""

QUICK_LIMIT = 60
"""Images masked in quick mode when no limit is given."""

_LANDMARK_COLUMNS = [f"{name}_{axis}" for name in LANDMARK_NAMES for axis in ("x", "y")]
COLUMNS = ["path", "identity", "status", "reason", "mask_type", "seed", "correctly_worn", "score", *_LANDMARK_COLUMNS]
"""Columns of ``manifest.csv``; ``path`` is relative to the masked dataset folder and to the source folder."""


@dataclasses.dataclass(frozen=True)
class SourceImage:
    """One image to mask: where it is and where its masked copy goes (relative path)."""

    source: Path
    relative: str
    identity: str | None


@dataclasses.dataclass
class BuildSummary:
    """What a build did.

    Attributes
    ----------
    output_dir : Path
        Folder of the masked copy.
    manifest_path : Path
    requested : int
        Images asked for.
    new : int
        Images processed in this run (masked or failed).
    reused : int
        Images found done in the cache.
    masked : int
        Requested images that have a masked copy (new or reused).
    failures : collections.Counter
        Reason -> number of requested images that could not be masked.
    mask_types : collections.Counter
        Mask type -> number of masked copies among the requested images.
    """

    output_dir: Path
    manifest_path: Path
    requested: int = 0
    new: int = 0
    reused: int = 0
    masked: int = 0
    failures: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    mask_types: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def __str__(self) -> str:
        lines = [
            f"Masked {self.masked} of {self.requested} images "
            f"({self.new} new, {self.reused} reused from the cache); {self.failed} could not be masked.",
        ]
        if self.mask_types:
            lines.append("Mask types: " + ", ".join(f"{name} {count}" for name, count in sorted(self.mask_types.items())) + ".")
        for reason, count in self.failures.most_common():
            lines.append(f"  {count} x {reason}")
        return "\n".join(lines)


def plan_mask(relative: str, mask_types: Sequence[str], seed: int = 0) -> tuple[str, int]:
    """Choose the mask type and drawing seed of one image from its relative path.

    The rule is a hash of ``seed`` and the path, so it is the same on every
    machine and in every order of work.
    """
    digest = zlib.crc32(f"{seed}:{relative}".encode("utf-8"))
    rng = np.random.default_rng(digest)
    mask_type = mask_types[int(rng.integers(len(mask_types)))]
    return mask_type, int(rng.integers(2**31 - 1))


def list_sources(dataset: str = "lfw", split: str = "DevTrain") -> list[SourceImage]:
    """List the images of a dataset that the builder masks, sorted by relative path.

    Parameters
    ----------
    dataset : {"lfw", "rmfrd"}
    split : {"DevTrain", "DevTest", "all"}
        LFW people split (ignored for RMFRD, whose unmasked images are all used).
    """
    from .data import lfw_image_root, load_lfw_people, load_rmfrd

    if dataset == "lfw":
        records = load_lfw_people(split)
        root = lfw_image_root()
    elif dataset == "rmfrd":
        records = [r for r in load_rmfrd() if not r.masked]
        root = records[0].path.parent.parent if records else None
    else:
        raise ValueError(f"Unknown dataset {dataset!r} for the masked copy: use one of {', '.join(DATASETS)}.")
    sources = [SourceImage(r.path, r.path.relative_to(root).as_posix(), r.identity) for r in records]
    return sorted(sources, key=lambda s: s.relative)


# --- manifest ---------------------------------------------------------------------------


def read_manifest(path: os.PathLike | str) -> dict[str, dict[str, str]]:
    """Read a manifest into ``{relative path: row}``; malformed rows (an interrupted write) are ignored.

    A later row for the same path replaces an earlier one.
    """
    path = Path(path)
    rows: dict[str, dict[str, str]] = {}
    if not path.is_file():
        return rows
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header != COLUMNS:
            log.warning("Manifest %s has unexpected columns; it is ignored and rebuilt.", path)
            return rows
        for fields in reader:
            if len(fields) != len(COLUMNS) or fields[2] not in ("ok", "failed"):
                continue
            rows[fields[0]] = dict(zip(COLUMNS, fields))
    return rows


def manifest_landmarks(row: dict[str, str]) -> np.ndarray | None:
    """The ``(5, 2)`` float32 landmarks of a manifest row, or None when there are none."""
    values = [row.get(column, "") for column in _LANDMARK_COLUMNS]
    if any(v == "" for v in values):
        return None
    return np.array(values, dtype=np.float32).reshape(5, 2)


def _write_manifest(path: Path, rows: dict[str, dict[str, str]]) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for key in sorted(rows):
            writer.writerow(rows[key])
    os.replace(temporary, path)


# --- one image --------------------------------------------------------------------------


def _init_worker() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    from .faces import mtcnn_detector

    mtcnn_detector()  # each worker process loads its own detector once


def mask_one(source: os.PathLike | str, target: os.PathLike | str, mask_type: str, seed: int, min_score: float = 0.9) -> dict[str, str]:
    """Mask one image file and write the result atomically; returns its manifest row (without path and identity).

    Failures (unreadable image, no face, low confidence, face too small)
    are returned as a row with ``status="failed"`` and a reason, not raised.
    """
    from PIL import Image

    from .images import ImageReadError, read_image
    from .masks import CORRECTLY_WORN, mask_face

    row = {"status": "failed", "reason": "", "mask_type": mask_type, "seed": str(seed),
           "correctly_worn": str(CORRECTLY_WORN[mask_type]), "score": ""}
    row.update({column: "" for column in _LANDMARK_COLUMNS})
    try:
        image = read_image(source)
    except (ImageReadError, FileNotFoundError) as error:
        row["reason"] = f"unreadable image ({getattr(error, 'reason', error)})"
        return row
    from .faces import detect_largest_face

    detection = detect_largest_face(image, min_score=0.0)
    if detection is None:
        row["reason"] = "no face found"
        return row
    row["score"] = f"{detection.score:.4f}"
    row.update({column: f"{value:.2f}" for column, value in zip(_LANDMARK_COLUMNS, detection.landmarks.reshape(-1))})
    result = mask_face(image, mask_type=mask_type, seed=seed, detection=detection, min_score=min_score)
    if not result.ok:
        row["reason"] = result.reason
        return row
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.stem}.tmp-{os.getpid()}{target.suffix}")
    Image.fromarray(result.image).save(temporary, quality=95)
    os.replace(temporary, target)
    row["status"] = "ok"
    return row


def _mask_task(task: tuple[str, str, str, int, float]) -> dict[str, str]:
    source, target, mask_type, seed, min_score = task
    return mask_one(source, target, mask_type, seed, min_score)


# --- the build ----------------------------------------------------------------------------


def build_masked_dataset(
    dataset: str = "lfw",
    split: str = "DevTrain",
    mask_types: Sequence[str] = MASK_TYPES,
    workers: int | None = None,
    limit: int | None = None,
    seed: int = 0,
    min_score: float = 0.9,
    sources: Iterable[SourceImage] | None = None,
    output_dir: os.PathLike | str | None = None,
    progress: bool = True,
) -> BuildSummary:
    """Write (or complete) a synthetic masked copy of a dataset.

    Parameters
    ----------
    dataset : {"lfw", "rmfrd"}
        Source dataset; RMFRD means its unmasked images.
    split : {"DevTrain", "DevTest", "all"}
        LFW people split.
    mask_types : sequence of str
        Mask types to draw from (:data:`course_lib.masks.MASK_TYPES` by default).
    workers : int, optional
        Processes. 1 masks in the calling process (no extra TensorFlow
        start-up, the right choice in a notebook with 2 GB of memory); more
        start a process pool in which each worker loads its own MTCNN.
        Default: 1 in quick mode, the number of CPU cores otherwise.
    limit : int, optional
        Mask only the first ``limit`` images (in sorted order). Default:
        :data:`QUICK_LIMIT` in quick mode, all images otherwise.
    seed : int
        Seed of the mask-type rule and the drawings.
    min_score : float
        Faces with a lower MTCNN confidence are reported as failures.
    sources : iterable of SourceImage, optional
        Explicit images to mask instead of a split (``limit`` still applies).
    output_dir : path, optional
        Where to write; default ``config.cache_dir("masked", dataset)``.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    BuildSummary
        Counts of new, reused and failed images, failure reasons and mask types.
    """
    unknown = [name for name in mask_types if name not in MASK_TYPES]
    if unknown or not mask_types:
        raise ValueError(f"Unknown mask type(s) {unknown or mask_types!r}: use names from {', '.join(MASK_TYPES)}.")
    mask_types = tuple(mask_types)
    if limit is None:
        limit = config.pick(quick=QUICK_LIMIT, full=None)
    if workers is None:
        workers = config.pick(quick=1, full=os.cpu_count() or 1)
    if workers < 1:
        raise ValueError(f"workers={workers} must be at least 1.")
    items = list(sources) if sources is not None else list_sources(dataset, split)
    if limit is not None:
        items = items[: max(0, int(limit))]
    output = Path(output_dir) if output_dir is not None else config.cache_dir("masked", dataset)
    output.mkdir(parents=True, exist_ok=True)
    manifest_path = output / MANIFEST_NAME
    rows = read_manifest(manifest_path)
    summary = BuildSummary(output_dir=output, manifest_path=manifest_path, requested=len(items))

    todo = []
    for item in items:
        mask_type, mask_seed = plan_mask(item.relative, mask_types, seed)
        row = rows.get(item.relative)
        done = (
            row is not None
            and row["mask_type"] == mask_type
            and row["seed"] == str(mask_seed)
            and (row["status"] == "failed" or (output / item.relative).is_file())
        )
        if done:
            summary.reused += 1
        else:
            todo.append((item, mask_type, mask_seed))
    log.info("Masked copy of %s in %s: %d images requested, %d already done.", dataset, output, len(items), summary.reused)

    if todo:
        _run(todo, output, manifest_path, rows, workers, min_score, progress)
        summary.new = len(todo)
        _write_manifest(manifest_path, rows)
    elif not manifest_path.is_file():
        _write_manifest(manifest_path, rows)

    for item in items:
        row = rows.get(item.relative)
        if row is None:
            summary.failures["not processed (interrupted)"] += 1
        elif row["status"] == "ok":
            summary.masked += 1
            summary.mask_types[row["mask_type"]] += 1
        else:
            summary.failures[_reason_kind(row["reason"])] += 1
    if summary.failed:
        log.warning("%d of %d images could not be masked: %s", summary.failed, summary.requested, dict(summary.failures))
    return summary


def _reason_kind(reason: str) -> str:
    """Group reasons that differ only in their numbers: 'low confidence (0.81 < 0.90)' -> 'low confidence'."""
    return reason.split(" (")[0] if reason else "unknown"


def _run(todo, output: Path, manifest_path: Path, rows, workers: int, min_score: float, progress: bool) -> None:
    from tqdm.auto import tqdm

    new_file = not manifest_path.is_file() or manifest_path.stat().st_size == 0
    with manifest_path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        if new_file:
            writer.writeheader()

        def record(item: SourceImage, result: dict[str, str]) -> None:
            row = {"path": item.relative, "identity": item.identity or "", **result}
            rows[item.relative] = row
            writer.writerow(row)
            handle.flush()

        tasks = [(str(item.source), str(output / item.relative), mask_type, mask_seed, min_score) for item, mask_type, mask_seed in todo]
        bar = tqdm(total=len(tasks), desc="Masking faces", unit="img", disable=not progress)
        try:
            if workers == 1:
                for (item, _, _), task in zip(todo, tasks):
                    record(item, _mask_task(task))
                    bar.update()
            else:
                # "spawn" starts clean processes: forking a parent that already
                # runs TensorFlow threads can deadlock.
                context = multiprocessing.get_context("spawn")
                with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
                    futures = {pool.submit(_mask_task, task): item for (item, _, _), task in zip(todo, tasks)}
                    try:
                        for future in concurrent.futures.as_completed(futures):
                            record(futures[future], future.result())
                            bar.update()
                    except BaseException:
                        pool.shutdown(wait=True, cancel_futures=True)
                        raise
        finally:
            bar.close()
