"""Dataset registry, fetching and loaders of the course."""

from .loaders import (
    lfw_image_root,
    load_att_faces,
    load_fmd,
    load_lfw_pairs,
    load_lfw_people,
    load_mask_classification,
    load_rmfrd,
)
from .records import MASK_CLASS_TITLES, MASK_CLASSES, DetectionRecord, FaceRecord, PairRecord
from .registry import DATASETS, DatasetNotFoundError, DatasetSpec, get_dataset
from .voc import AnnotationError, AnnotationReport, parse_voc

__all__ = [
    "DATASETS",
    "MASK_CLASSES",
    "MASK_CLASS_TITLES",
    "AnnotationError",
    "AnnotationReport",
    "DatasetNotFoundError",
    "DatasetSpec",
    "DetectionRecord",
    "FaceRecord",
    "PairRecord",
    "get_dataset",
    "lfw_image_root",
    "load_att_faces",
    "load_fmd",
    "load_lfw_pairs",
    "load_lfw_people",
    "load_mask_classification",
    "load_rmfrd",
    "parse_voc",
]
