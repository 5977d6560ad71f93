"""The datasets of the course: where they come from, how they are laid out, their terms.

Each dataset lives in ``<data root>/<folder>/``, laid out exactly as its
upstream archive extracts, so a copy downloaded by hand, an institutional
mirror and the course's own download are interchangeable.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from ..config import data_dir


class DatasetNotFoundError(FileNotFoundError):
    """A dataset that is not in the data root; the message names the command that fetches it."""

    def __init__(self, name: str, folder: Path, detail: str = ""):
        self.name = name
        self.folder = folder
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"Dataset {name!r} was not found in {str(folder)!r}{extra}. "
            f"Fetch it with `python data_scripts/mfr_data.py fetch {name}`, "
            "or set MFR_DATA_DIR to the folder that already contains it."
        )


@dataclasses.dataclass(frozen=True)
class Source:
    """One file to download for a dataset.

    Attributes
    ----------
    url : str
        Upstream address.
    filename : str
        Name of the downloaded file in the cache.
    sha256 : str or None
        Expected SHA-256 of the file, when upstream publishes one or the course
        has recorded it; None means the content is checked by counting files
        after extraction.
    extract_to : str
        Folder, relative to the dataset folder, that receives the file (plain
        files) or the archive's contents (``.zip``, ``.tgz``, ``.tar.gz``).
    """

    url: str
    filename: str
    sha256: str | None = None
    extract_to: str = "."

    @property
    def is_archive(self) -> bool:
        return self.filename.endswith((".zip", ".tgz", ".tar.gz", ".tar"))


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Everything the course knows about one dataset."""

    name: str
    folder: str
    title: str
    description: str
    terms: str
    citation: str
    homepage: str
    full_size: dict[str, int]
    sources: tuple[Source, ...] = ()
    manual_instructions: str = ""
    required_paths: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        """Folder of this dataset under the current data root."""
        return data_dir() / self.folder

    def require(self) -> Path:
        """Return :attr:`path`, raising :class:`DatasetNotFoundError` when the dataset is missing."""
        root = self.path
        if not root.is_dir():
            raise DatasetNotFoundError(self.name, root)
        for relative in self.required_paths:
            if not any(root.glob(relative)):
                raise DatasetNotFoundError(self.name, root, f"{relative!r} is missing")
        return root


_LFW_BASE = "https://umass-vis-lfw.github.io"
_LFW_PROTOCOL_FILES = ("pairs.txt", "pairsDevTrain.txt", "pairsDevTest.txt", "people.txt", "peopleDevTrain.txt", "peopleDevTest.txt")

DATASETS: dict[str, DatasetSpec] = {}


def _register(spec: DatasetSpec) -> DatasetSpec:
    DATASETS[spec.name] = spec
    return spec


LFW = _register(
    DatasetSpec(
        name="lfw",
        folder="lfw",
        title="Labeled Faces in the Wild, deep-funneled",
        description="Unmasked faces of public figures, aligned by deep funneling, with the verification protocol files.",
        terms="Research use; cite Huang et al. 2007 and Huang et al. 2012 (deep funneling). Images are of public figures collected from news photos.",
        citation="G. B. Huang, M. Ramesh, T. Berg, E. Learned-Miller. Labeled Faces in the Wild. UMass Amherst TR 07-49, 2007.",
        homepage="https://umass-vis-lfw.github.io/",
        full_size={"images": 13233, "people": 5749},
        sources=(Source(f"{_LFW_BASE}/lfw-deepfunneled.zip", "lfw-deepfunneled.zip"),)
        + tuple(Source(f"{_LFW_BASE}/{name}", name) for name in _LFW_PROTOCOL_FILES),
        required_paths=("pairsDevTest.txt", "peopleDevTrain.txt"),
    )
)

FMD = _register(
    DatasetSpec(
        name="fmd",
        folder="fmd",
        title="Face Mask Detection (Kaggle, andrewmvd)",
        description="Street and crowd photos with PASCAL VOC boxes in three classes: with_mask, without_mask, mask_weared_incorrect.",
        terms="CC0 1.0 (public domain dedication) as published on Kaggle.",
        citation="Larxel (andrewmvd). Face Mask Detection. Kaggle dataset, 2020.",
        homepage="https://www.kaggle.com/datasets/andrewmvd/face-mask-detection",
        full_size={"images": 853, "boxes": 4072, "with_mask": 3232, "without_mask": 717, "mask_weared_incorrect": 123},
        manual_instructions=(
            "Download the public Kaggle dataset andrewmvd/face-mask-detection (for example with "
            "`pip install kagglehub` and `kagglehub.dataset_download('andrewmvd/face-mask-detection')`, "
            "or from its Kaggle page), then run "
            "`python data_scripts/mfr_data.py fetch fmd --from <folder or archive>`."
        ),
        required_paths=("images", "annotations"),
    )
)

RMFRD = _register(
    DatasetSpec(
        name="rmfrd",
        folder="rmfrd",
        title="Real-World Masked Face Recognition Dataset (self-built part)",
        description="Face crops of the same people with and without real masks.",
        terms="Research use; cite Wang et al. 2020. Redistribution is not granted by the authors.",
        citation="Z. Wang et al. Masked Face Recognition Dataset and Application. arXiv:2003.09093, 2020.",
        homepage="https://github.com/X-zhangyang/Real-World-Masked-Face-Dataset",
        full_size={"people": 525, "unmasked": 90000, "masked": 5000},
        manual_instructions=(
            "The authors publish RMFRD through Google Drive and Baidu links on the README of "
            "github.com/X-zhangyang/Real-World-Masked-Face-Dataset. Download the self-built archive, then run "
            "`python data_scripts/mfr_data.py fetch rmfrd --from <folder or archive>`."
        ),
        required_paths=("AFDB_face_dataset", "AFDB_masked_face_dataset"),
    )
)

MASK_CLASSIFICATION = _register(
    DatasetSpec(
        name="mask_classification",
        folder="Face-Mask-Detection-master",
        title="Face-Mask-Detection classification set (chandrikadeb7)",
        description="Face images in two folders, with_mask and without_mask; JPEG and PNG of mixed sizes, some masks pasted onto photos.",
        terms="MIT licence of the repository; images were collected from public sources.",
        citation="C. Deb. Face-Mask-Detection. GitHub repository chandrikadeb7/Face-Mask-Detection, 2020.",
        homepage="https://github.com/chandrikadeb7/Face-Mask-Detection",
        full_size={"with_mask": 2165, "without_mask": 1930},
        sources=(
            Source(
                "https://github.com/chandrikadeb7/Face-Mask-Detection/archive/refs/heads/master.zip",
                "Face-Mask-Detection-master.zip",
                extract_to="..",
            ),
        ),
        required_paths=("dataset/with_mask", "dataset/without_mask"),
    )
)

ATT_FACES = _register(
    DatasetSpec(
        name="att_faces",
        folder="att_faces",
        title="AT&T (ORL) Database of Faces",
        description="40 people, 10 grayscale images each, 92x112 pixels, taken 1992-1994 at Olivetti Research Laboratory.",
        terms="Free for research; cite Samaria and Harter 1994.",
        citation="F. Samaria, A. Harter. Parameterisation of a stochastic model for human face identification. IEEE WACV, 1994.",
        homepage="https://cam-orl.co.uk/facedatabase.html",
        full_size={"people": 40, "images": 400},
        manual_instructions=(
            "The AT&T faces are mirrored widely as att_faces.zip. Download a copy, then run "
            "`python data_scripts/mfr_data.py fetch att_faces --from <folder or archive>`. "
            "scikit-learn's fetch_olivetti_faces serves the same 400 images at 64x64 pixels."
        ),
        required_paths=("s1",),
    )
)


def get_dataset(name: str) -> DatasetSpec:
    """Return the spec registered under ``name``, with a list of valid names if there is none."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"Unknown dataset {name!r}; the course knows: {', '.join(DATASETS)}.") from None

