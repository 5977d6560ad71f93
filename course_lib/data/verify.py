"""Check which datasets are in the data root, how much of each, and whether their images decode."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..images import ImageReadError, list_image_files, read_image
from .fetch import FETCH_COMMAND, layout_problem
from .loaders import load_att_faces, load_fmd, load_lfw_people, load_mask_classification, load_rmfrd
from .records import MASK_CLASSES
from .registry import DATASETS, DatasetNotFoundError, DatasetSpec, get_dataset


@dataclasses.dataclass
class DatasetReport:
    """Result of :func:`verify` for one dataset.

    Attributes
    ----------
    name, title : str
        Registry name and title.
    path : Path
        The dataset's folder in the data root.
    problem : str or None
        Why the dataset counts as missing; None when it is present.
    counts : dict of str to int
        Counts on disk, under the keys of ``full_size`` (images, people,
        boxes per class, masked/unmasked images); empty when missing.
    full_size : dict of str to int
        The same counts for the full published dataset.
    unreadable : list of (Path, str) or None
        Files that do not decode, with the reason; None when images were not read.
    """

    name: str
    title: str
    path: Path
    problem: str | None
    counts: dict[str, int]
    full_size: dict[str, int]
    unreadable: list[tuple[Path, str]] | None = None

    @property
    def present(self) -> bool:
        return self.problem is None

    @property
    def complete(self) -> bool:
        """True when every count reaches the size of the full dataset."""
        return self.present and all(self.counts.get(key, 0) >= value for key, value in self.full_size.items())

    @property
    def status(self) -> str:
        """``"missing"``, ``"complete"`` or ``"subset"``."""
        if not self.present:
            return "missing"
        return "complete" if self.complete else "subset"

    @property
    def ok(self) -> bool:
        """True when the dataset is present and no file was found unreadable."""
        return self.present and not self.unreadable

    def summary(self) -> str:
        """Describe the report in a few lines of plain text."""
        lines = [f"{self.name}: {self.status} ({self.path})"]
        if not self.present:
            lines.append(f"  {self.problem}. Fetch it with `{FETCH_COMMAND} {self.name}`.")
            return "\n".join(lines)
        counted = [f"{self.counts.get(key, 0):,} of {total:,} {key}" for key, total in self.full_size.items()]
        extra = [f"{value:,} {key}" for key, value in self.counts.items() if key not in self.full_size]
        lines.append("  " + ", ".join(counted + extra))
        if self.unreadable is not None:
            if self.unreadable:
                listed = "; ".join(f"{path} ({reason})" for path, reason in self.unreadable[:10])
                more = f"; and {len(self.unreadable) - 10} more" if len(self.unreadable) > 10 else ""
                lines.append(f"  {len(self.unreadable)} unreadable file(s): {listed}{more}")
            else:
                lines.append("  every image decodes")
        return "\n".join(lines)


# Each counter returns the counts and the image files the dataset's loader reads.
Counter = Callable[[], tuple[dict[str, int], list[Path]]]


def _count_lfw() -> tuple[dict[str, int], list[Path]]:
    records = load_lfw_people("all")
    return {"images": len(records), "people": len({r.identity for r in records})}, [r.path for r in records]


def _count_fmd() -> tuple[dict[str, int], list[Path]]:
    with warnings.catch_warnings():
        # Skipped annotations are counted below instead.
        warnings.simplefilter("ignore")
        records, _ = load_fmd(on_error="skip")
    spec = get_dataset("fmd")
    labels = np.concatenate([r.labels for r in records]) if records else np.zeros(0, dtype=np.int32)
    per_class = np.bincount(labels, minlength=len(MASK_CLASSES))
    counts = {"images": len(records), "boxes": int(labels.size)}
    counts.update({name: int(n) for name, n in zip(MASK_CLASSES, per_class)})
    image_files = len(list_image_files(spec.path / "images"))
    if image_files != len(records):
        counts["unannotated_images"] = image_files - len(records)
    return counts, [r.image_path for r in records]


def _count_rmfrd() -> tuple[dict[str, int], list[Path]]:
    records = load_rmfrd()
    counts = {
        "people": len({r.identity for r in records}),
        "unmasked": sum(not r.masked for r in records),
        "masked": sum(bool(r.masked) for r in records),
    }
    return counts, [r.path for r in records]


def _count_mask_classification() -> tuple[dict[str, int], list[Path]]:
    records = load_mask_classification()
    counts = {"with_mask": sum(bool(r.masked) for r in records), "without_mask": sum(not r.masked for r in records)}
    return counts, [r.path for r in records]


def _count_att_faces() -> tuple[dict[str, int], list[Path]]:
    records = load_att_faces()
    return {"images": len(records), "people": len({r.identity for r in records})}, [r.path for r in records]


_COUNTERS: dict[str, Counter] = {
    "lfw": _count_lfw,
    "fmd": _count_fmd,
    "rmfrd": _count_rmfrd,
    "mask_classification": _count_mask_classification,
    "att_faces": _count_att_faces,
}


def _unreadable(paths: list[Path], name: str, progress: bool) -> list[tuple[Path, str]]:
    from tqdm.auto import tqdm

    found = []
    for path in tqdm(paths, desc=f"Reading {name}", unit="img", disable=not progress):
        try:
            read_image(path)
        except (ImageReadError, FileNotFoundError) as error:
            found.append((path, getattr(error, "reason", str(error))))
    return found


def verify_dataset(spec: DatasetSpec, deep: bool = False, progress: bool = False) -> DatasetReport:
    """Check one dataset; see :func:`verify`."""
    report = DatasetReport(spec.name, spec.title, spec.path, layout_problem(spec), {}, dict(spec.full_size))
    if not report.present:
        return report
    try:
        report.counts, paths = _COUNTERS[spec.name]()
    except (DatasetNotFoundError, OSError, ValueError) as error:
        report.problem = f"its loader failed: {error}"
        return report
    if deep:
        report.unreadable = _unreadable(paths, spec.name, progress)
    return report


def verify(name: str | Iterable[str] | None = None, deep: bool = False, progress: bool = False) -> list[DatasetReport]:
    """Report which datasets are in the data root and how complete they are.

    Parameters
    ----------
    name : str or iterable of str, optional
        Registry name(s) to check; default: every dataset of the registry.
    deep : bool
        Also decode every image the loaders list with
        :func:`course_lib.images.read_image` and report the unreadable ones
        (slow: about ten thousand images on the course mirror).
    progress : bool
        Show a progress bar while reading images.

    Returns
    -------
    list of DatasetReport
        One per dataset, in registry order. A dataset is present when its
        folder has the layout its loader reads, and complete when its counts
        reach :attr:`DatasetSpec.full_size`; otherwise it is a subset.
    """
    if name is None:
        names = list(DATASETS)
    elif isinstance(name, str):
        names = [name]
    else:
        names = list(name)
    specs = [get_dataset(n) for n in names]
    return [verify_dataset(spec, deep=deep, progress=progress) for spec in specs]
