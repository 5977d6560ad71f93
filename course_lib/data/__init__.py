"""Dataset registry, fetching and loaders of the course.

The functions ``fetch`` and ``verify`` stay in their modules
(``from course_lib.data.fetch import fetch``) so that the module names
``course_lib.data.fetch`` and ``course_lib.data.verify`` keep naming modules.
"""

from .fetch import FetchError, ManualDownloadError
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
from .verify import DatasetReport
from .voc import AnnotationError, AnnotationReport, parse_voc

__all__ = [
    "DATASETS",
    "MASK_CLASSES",
    "MASK_CLASS_TITLES",
    "AnnotationError",
    "AnnotationReport",
    "DatasetNotFoundError",
    "DatasetReport",
    "DatasetSpec",
    "DetectionRecord",
    "FaceRecord",
    "FetchError",
    "ManualDownloadError",
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
