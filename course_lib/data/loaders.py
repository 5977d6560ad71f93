"""Loaders that turn a dataset folder into typed records.

Every loader checks that its dataset is present (raising
:class:`~course_lib.data.registry.DatasetNotFoundError` with the fetch command
otherwise), skips hidden entries such as ``.DS_Store`` and
``.ipynb_checkpoints/``, and returns records sorted in a fixed order, so the
same data gives the same splits on every machine.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from ..images import is_hidden, list_class_folders, list_image_files
from .records import MASK_CLASSES, DetectionRecord, FaceRecord, PairRecord
from .registry import ATT_FACES, FMD, LFW, MASK_CLASSIFICATION, RMFRD, DatasetNotFoundError
from .voc import AnnotationError, AnnotationReport, parse_voc

log = logging.getLogger(__name__)


# --- LFW ------------------------------------------------------------------------


def lfw_image_root(root: Path | None = None) -> Path:
    """Find the folder of person sub-folders inside the LFW dataset folder.

    The top-level folder name inside upstream archives varies
    (``lfw-deepfunneled``, ``lfw_funneled``, ``lfw``), so the folder is found by
    its content: the first folder, at most two levels down, with a sub-folder
    ``<Name>`` holding ``<Name>_0001.jpg``.
    """
    root = LFW.require() if root is None else Path(root)
    candidates = [root] + [p for p in sorted(root.iterdir()) if p.is_dir() and not is_hidden(p)]
    candidates += [q for p in candidates[1:] for q in sorted(p.iterdir()) if q.is_dir() and not is_hidden(q)]
    for candidate in candidates:
        for person in sorted(candidate.iterdir())[:50]:
            if person.is_dir() and (person / f"{person.name}_0001.jpg").is_file():
                return candidate
    raise DatasetNotFoundError("lfw", root, "no folder of <Name>/<Name>_0001.jpg images was found")


def _lfw_record(image_root: Path, name: str, number: int) -> FaceRecord:
    path = image_root / name / f"{name}_{number:04d}.jpg"
    return FaceRecord(path=path, identity=name, masked=False, dataset="lfw")


def _read_people_file(path: Path) -> list[tuple[str, int]]:
    """Parse ``people*.txt``: a count line, then ``<name> <number of images>`` lines."""
    people = []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        fields = line.split()
        if len(fields) == 2 and fields[1].isdigit():
            people.append((fields[0], int(fields[1])))
    return people


def load_lfw_people(split: str = "DevTrain", min_images: int = 1) -> list[FaceRecord]:
    """Load the images of the people listed in an LFW people file.

    Parameters
    ----------
    split : {"DevTrain", "DevTest", "all"}
        ``"DevTrain"`` reads ``peopleDevTrain.txt`` and ``"DevTest"`` reads
        ``peopleDevTest.txt`` (identities disjoint from DevTrain); ``"all"``
        lists every person folder on disk.
    min_images : int
        Keep only people with at least this many images present on disk.

    Returns
    -------
    list of FaceRecord
        Sorted by identity, then image number. Images listed by the protocol
        but absent on disk (a partial copy) are left out, with one warning.
    """
    root = LFW.require()
    image_root = lfw_image_root(root)
    if split == "all":
        records = []
        for person in list_class_folders(image_root):
            files = list_image_files(person)
            if len(files) >= min_images:
                records.extend(FaceRecord(path=p, identity=person.name, masked=False, dataset="lfw") for p in files)
        return records
    if split in ("DevTrain", "DevTest"):
        people = _read_people_file(root / f"people{split}.txt")
    else:
        raise ValueError(f"Unknown LFW split {split!r}: use 'DevTrain', 'DevTest' or 'all'.")

    records, missing = [], 0
    for name, count in people:
        person_records = []
        for number in range(1, count + 1):
            record = _lfw_record(image_root, name, number)
            if record.path.is_file():
                person_records.append(record)
            else:
                missing += 1
        if len(person_records) >= min_images:
            records.extend(person_records)
    if missing and split != "all":
        log.debug("LFW %s: %d listed images are not on disk (a partial copy); they are left out.", split, missing)
    return records


def load_lfw_pairs(split: str = "DevTest") -> list[PairRecord]:
    """Load LFW verification pairs.

    Parameters
    ----------
    split : {"DevTest", "DevTrain", "10fold"}
        ``pairsDevTest.txt`` (1,000 pairs, identities disjoint from DevTrain),
        ``pairsDevTrain.txt`` (2,200 pairs) or ``pairs.txt`` (6,000 pairs in 10
        folds; its identities overlap with DevTrain).

    Returns
    -------
    list of PairRecord
        In file order. ``fold`` is 0 for the Dev files and 0 to 9 for ``pairs.txt``.

    Raises
    ------
    DatasetNotFoundError
        When the pairs file or an image it names is missing.
    """
    root = LFW.require()
    image_root = lfw_image_root(root)
    filename = {"DevTest": "pairsDevTest.txt", "DevTrain": "pairsDevTrain.txt", "10fold": "pairs.txt"}.get(split)
    if filename is None:
        raise ValueError(f"Unknown LFW pairs split {split!r}: use 'DevTest', 'DevTrain' or '10fold'.")
    path = root / filename
    if not path.is_file():
        raise DatasetNotFoundError("lfw", root, f"{filename} is missing")
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split()
    per_fold = int(header[-1]) * 2 if len(header) == 2 else len(lines) - 1

    pairs = []
    for index, line in enumerate(lines[1:]):
        fields = line.split()
        if len(fields) == 3:
            first = _lfw_record(image_root, fields[0], int(fields[1]))
            second = _lfw_record(image_root, fields[0], int(fields[2]))
            same = True
        elif len(fields) == 4:
            first = _lfw_record(image_root, fields[0], int(fields[1]))
            second = _lfw_record(image_root, fields[2], int(fields[3]))
            same = False
        else:
            continue
        for record in (first, second):
            if not record.path.is_file():
                raise DatasetNotFoundError("lfw", root, f"{filename} names {record.path.name}, which is missing")
        pairs.append(PairRecord(first=first, second=second, same=same, fold=index // per_fold))
    return pairs


# --- RMFRD ----------------------------------------------------------------------


def load_rmfrd() -> list[FaceRecord]:
    """Load RMFRD face crops; ``masked`` is True for the real masked photos.

    Returns
    -------
    list of FaceRecord
        Unmasked records first, then masked ones, each sorted by person and file name.
    """
    root = RMFRD.require()
    records = []
    for folder, masked in (("AFDB_face_dataset", False), ("AFDB_masked_face_dataset", True)):
        for person in list_class_folders(root / folder):
            for path in list_image_files(person):
                records.append(FaceRecord(path=path, identity=person.name, masked=masked, dataset="rmfrd"))
    return records


# --- mask classification set ----------------------------------------------------


def load_mask_classification() -> list[FaceRecord]:
    """Load the with/without-mask classification set; ``identity`` is None.

    Only the folders ``with_mask`` and ``without_mask`` are classes; any other
    folder (including hidden ones) is ignored.
    """
    root = MASK_CLASSIFICATION.require() / "dataset"
    records = []
    for folder, masked in (("with_mask", True), ("without_mask", False)):
        for path in list_image_files(root / folder):
            records.append(FaceRecord(path=path, identity=None, masked=masked, dataset="mask_classification"))
    return records


# --- AT&T -----------------------------------------------------------------------


def load_att_faces() -> list[FaceRecord]:
    """Load the AT&T faces; identities are ``s1`` to ``s40``, sorted numerically."""
    root = ATT_FACES.require()
    people = [p for p in list_class_folders(root) if p.name.startswith("s") and p.name[1:].isdigit()]
    people.sort(key=lambda p: int(p.name[1:]))
    records = []
    for person in people:
        paths = sorted(list_image_files(person), key=lambda p: (len(p.stem), p.stem))
        records.extend(FaceRecord(path=p, identity=person.name, masked=False, dataset="att_faces") for p in paths)
    return records


# --- FMD ------------------------------------------------------------------------


def load_fmd(on_error: str = "skip") -> tuple[list[DetectionRecord], AnnotationReport]:
    """Load the Face Mask Detection images with their boxes.

    Parameters
    ----------
    on_error : {"skip", "raise"}
        What to do with an annotation that cannot be parsed or whose image is
        missing: skip it (and warn once, naming the files) or raise.

    Returns
    -------
    records : list of DetectionRecord
        Sorted by the number in the file name (``maksssksksss0`` first).
        Labels index :data:`~course_lib.data.records.MASK_CLASSES`.
    report : AnnotationReport
        Boxes clipped or dropped over the whole set.
    """
    root = FMD.require()
    report = AnnotationReport()
    records, skipped = [], []
    annotations = [p for p in (root / "annotations").glob("*.xml") if not is_hidden(p)]
    annotations.sort(key=lambda p: (len(p.stem), p.stem))
    for annotation_path in annotations:
        image_path = _find_image(root / "images", annotation_path.stem)
        try:
            if image_path is None:
                raise AnnotationError(annotation_path, "no image with the same name in images/")
            annotation, file_report = parse_voc(annotation_path, MASK_CLASSES)
        except AnnotationError as error:
            if on_error == "raise":
                raise
            skipped.append(f"{annotation_path.name} ({error.reason})")
            continue
        report.merge(file_report)
        records.append(
            DetectionRecord(
                image_path=image_path,
                annotation_path=annotation_path,
                width=annotation.width,
                height=annotation.height,
                boxes=annotation.boxes,
                labels=annotation.labels,
            )
        )
    if skipped:
        message = f"Skipped {len(skipped)} FMD annotation(s): " + "; ".join(skipped[:10]) + "."
        log.warning(message)
        warnings.warn(message, stacklevel=2)
    return records, report


def _find_image(folder: Path, stem: str) -> Path | None:
    for suffix in (".png", ".jpg", ".jpeg", ".PNG", ".JPG"):
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None
