"""Hand-crafted face descriptors: LBP, HOG and SIFT, with no learning.

Every function takes an image in the package convention (``(H, W, 3)`` RGB
``uint8``) or a ``(H, W)`` grayscale ``uint8`` array, and works on grayscale:
the three descriptors describe local intensity structure, not colour.

Local binary patterns (LBP)
    Each pixel is coded by comparing ``P`` neighbours on a circle of radius
    ``R`` with the centre (Ojala et al., 2002). A face is described by the
    histograms of the codes in a grid of cells, concatenated (Ahonen et al.,
    2006), and two faces are compared with the chi-square distance
    (:func:`chi_square_distance`).
Histograms of oriented gradients (HOG)
    Gradient orientations binned per cell and normalised per block of cells
    (Dalal and Triggs, 2005).
SIFT with a bag of visual words
    Keypoints and their 128-dimensional gradient descriptors (Lowe, 2004),
    encoded as a histogram over a vocabulary learnt by k-means
    (:class:`BagOfVisualWords`).

Regions of the face (:func:`select_region`) let a descriptor look at the
upper face only, the part that a mask leaves visible.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

import numpy as np

from .faces import ARCFACE_TEMPLATE_112, LANDMARK_NAMES
from .images import to_gray

log = logging.getLogger(__name__)

LBP_METHODS = ("default", "ror", "uniform", "nri_uniform")
"""Methods of :func:`skimage.feature.local_binary_pattern` that give integer codes."""

REGIONS = ("whole", "upper", "lower")
"""Face regions understood by :func:`select_region`."""

UPPER_FACE_CUT = 0.25
"""Default position of the line between the upper and lower face, as a
fraction of the way from the eye line (0) down to the nose tip (1)."""


def _as_gray_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(
            f"Expected a uint8 image, got dtype {image.dtype}; convert with course_lib.images.to_uint8 first."
        )
    if image.ndim == 3 and image.shape[2] == 3:
        return to_gray(image)
    if image.ndim == 2:
        return image
    raise ValueError(f"Expected an (H, W, 3) RGB or (H, W) grayscale image, got shape {image.shape}.")


# --- LBP ---------------------------------------------------------------------------


def lbp_bin_count(points: int = 8, method: str = "uniform") -> int:
    """Return the number of distinct LBP codes, that is the histogram length of one cell.

    ``"uniform"`` (rotation-invariant uniform patterns) has ``P + 2`` codes:
    ``0 .. P`` count the neighbours at least as bright as the centre in a
    uniform pattern (at most two 0/1 transitions around the circle), and
    ``P + 1`` collects every non-uniform pattern. ``"nri_uniform"`` has
    ``P (P - 1) + 3``; ``"default"`` and ``"ror"`` have ``2 ** P`` (``"ror"``
    uses only some of them).
    """
    if method == "uniform":
        return points + 2
    if method == "nri_uniform":
        return points * (points - 1) + 3
    if method in ("default", "ror"):
        return 2**points
    raise ValueError(f"Unknown LBP method {method!r}: use one of {', '.join(LBP_METHODS)}.")


def lbp_image(image: np.ndarray, radius: float = 1, points: int = 8, method: str = "uniform") -> np.ndarray:
    """Compute the LBP code of every pixel.

    Parameters
    ----------
    image : (H, W, 3) or (H, W) ndarray of uint8
        RGB or grayscale image; RGB is converted to grayscale.
    radius : float
        Radius ``R`` of the circle of neighbours, in pixels.
    points : int
        Number ``P`` of neighbours, sampled evenly on the circle (bilinear
        interpolation between pixels).
    method : {"uniform", "default", "ror", "nri_uniform"}
        Coding, as in :func:`skimage.feature.local_binary_pattern`.

    Returns
    -------
    (H, W) ndarray of int64
        Codes in ``[0, lbp_bin_count(points, method))``. Pixels near the
        border see the image edge replicated outwards, so a constant image has
        a single code everywhere (``P`` for ``"uniform"``).
    """
    from skimage.feature import local_binary_pattern

    if method not in LBP_METHODS:
        raise ValueError(f"Unknown LBP method {method!r}: use one of {', '.join(LBP_METHODS)}.")
    if points < 1 or radius <= 0:
        raise ValueError(f"LBP needs points >= 1 and radius > 0, got points={points}, radius={radius}.")
    gray = _as_gray_uint8(image)
    # skimage reads neighbours outside the image as 0, which gives border pixels
    # codes that describe the frame, not the face; replicating the edge avoids that.
    margin = int(np.ceil(radius)) + 1
    padded = np.pad(gray, margin, mode="edge")
    codes = local_binary_pattern(padded, points, radius, method=method)
    return codes[margin:-margin, margin:-margin].astype(np.int64)


def grid_edges(length: int, cells: int) -> np.ndarray:
    """Return the ``cells + 1`` pixel edges that split ``length`` pixels into near-equal cells.

    Cell ``i`` covers pixels ``edges[i] <= p < edges[i + 1]``. When ``length``
    is a multiple of ``cells`` the edges are mirror-symmetric
    (``edges[i] == length - edges[cells - i]``); otherwise they may not be.
    """
    if cells < 1 or cells > length:
        raise ValueError(f"Cannot split {length} pixels into {cells} cells: use 1 <= cells <= {length}.")
    return (np.arange(cells + 1) * length) // cells


def lbp_histogram(
    image: np.ndarray,
    radius: float = 1,
    points: int = 8,
    grid: tuple[int, int] = (8, 8),
    method: str = "uniform",
) -> np.ndarray:
    """Describe a face by the LBP histograms of a grid of cells.

    The image is split into ``grid = (rows, columns)`` cells (:func:`grid_edges`).
    Each cell gets a histogram of its LBP codes, normalised to sum to 1, and the
    histograms are concatenated row by row, left to right.

    Parameters
    ----------
    image : (H, W, 3) or (H, W) ndarray of uint8
        Face crop, ideally aligned so that each cell covers the same part of
        every face.
    radius, points, method
        As in :func:`lbp_image`.
    grid : (int, int)
        Number of cell rows and columns.

    Returns
    -------
    (rows * columns * n_bins,) ndarray of float32
        ``n_bins = lbp_bin_count(points, method)``, which is ``P + 2`` for
        ``"uniform"`` (59 for ``P = 8`` with ``"nri_uniform"``). Each block of
        ``n_bins`` values sums to 1, so the whole vector sums to
        ``rows * columns``.

    Notes
    -----
    Mirroring. With ``method="uniform"`` and an even ``points``, a left-right
    flip maps the circle of neighbours onto itself and only reverses the bit
    order, which keeps the count of bright neighbours and of 0/1 transitions.
    So ``lbp_image(np.fliplr(x))`` equals ``np.fliplr(lbp_image(x))``, and the
    histogram of a mirrored face is the histogram of the original with the
    cell columns in reverse order (:func:`mirror_lbp_histogram`), provided the
    column edges are symmetric (width a multiple of the grid columns).
    This is exact when every neighbour falls on a pixel (``points=4`` with an
    integer radius). Interpolated neighbours are computed in a different
    floating-point order on the mirrored image, so where one equals the centre
    (flat areas) its bit can differ: with scikit-image 0.26 no code differed for
    ``points=8, radius=1`` on the AT&T faces, and for ``radius=2`` about
    1 pixel in 8,000 on average, up to 1 in 1,000 on one face. With ``"default"`` and ``"nri_uniform"`` the flip permutes
    the codes, so the histograms differ.

    Examples
    --------
    >>> import numpy as np
    >>> lbp_histogram(np.zeros((112, 112), np.uint8)).shape
    (640,)
    """
    rows, columns = grid
    codes = lbp_image(image, radius=radius, points=points, method=method)
    n_bins = lbp_bin_count(points, method)
    row_edges = grid_edges(codes.shape[0], rows)
    column_edges = grid_edges(codes.shape[1], columns)

    histograms = np.empty((rows, columns, n_bins), dtype=np.float32)
    for i in range(rows):
        for j in range(columns):
            cell = codes[row_edges[i] : row_edges[i + 1], column_edges[j] : column_edges[j + 1]]
            counts = np.bincount(cell.ravel(), minlength=n_bins)
            histograms[i, j] = counts / cell.size
    return histograms.ravel()


def mirror_lbp_histogram(histogram: np.ndarray, grid: tuple[int, int], n_bins: int) -> np.ndarray:
    """Reverse the order of the cell columns of an :func:`lbp_histogram` vector.

    For ``method="uniform"`` with an even number of points this is the
    histogram of the left-right mirrored image (see :func:`lbp_histogram`).
    """
    rows, columns = grid
    cells = np.asarray(histogram).reshape(rows, columns, n_bins)
    return cells[:, ::-1].ravel()


def lbp_code_3x3(patch: np.ndarray) -> int:
    """Return the classic 8-bit LBP code of the centre of a 3x3 patch.

    Each neighbour that is at least as bright as the centre sets one bit.
    Bits are numbered clockwise from the top-left neighbour (:data:`LBP_3X3_ORDER`):
    top-left is bit 0 (value 1), top is bit 1 (value 2), ..., left is bit 7
    (value 128). This square neighbourhood is the original operator of Ojala
    et al. (1996); :func:`lbp_image` samples a circle instead, so its diagonal
    neighbours are interpolated.
    """
    patch = np.asarray(patch)
    if patch.shape != (3, 3):
        raise ValueError(f"Expected a 3x3 patch, got shape {patch.shape}.")
    centre = patch[1, 1]
    code = 0
    for bit, (row, column) in enumerate(LBP_3X3_ORDER):
        if patch[row, column] >= centre:
            code |= 1 << bit
    return code


LBP_3X3_ORDER = ((0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0))
"""(row, column) of the neighbour behind each bit of :func:`lbp_code_3x3`, bit 0 first."""


# --- HOG ---------------------------------------------------------------------------


def hog_descriptor(
    image: np.ndarray,
    orientations: int = 9,
    pixels_per_cell: tuple[int, int] = (8, 8),
    cells_per_block: tuple[int, int] = (2, 2),
    block_norm: str = "L2-Hys",
    visualize: bool = False,
):
    """Compute the HOG descriptor of a face crop with :func:`skimage.feature.hog`.

    Parameters
    ----------
    image : (H, W, 3) or (H, W) ndarray of uint8
        Face crop; RGB is converted to grayscale.
    orientations : int
        Number of unsigned orientation bins over 0-180 degrees.
    pixels_per_cell : (int, int)
        Cell size in pixels (rows, columns).
    cells_per_block : (int, int)
        Block size in cells; blocks overlap by all but one cell.
    block_norm : {"L2-Hys", "L2", "L1", "L1-sqrt"}
        Normalisation of each block.
    visualize : bool
        Also return the HOG glyph image (one star of oriented lines per cell).

    Returns
    -------
    descriptor : (n,) ndarray of float32
        ``n = (cells_y - by + 1) * (cells_x - bx + 1) * by * bx * orientations``
        with ``cells_y = H // pixels_per_cell[0]``, ``cells_x = W // pixels_per_cell[1]``
        and ``(by, bx) = cells_per_block``: 1,764 values for a 64x64 crop with
        the defaults.
    glyphs : (H, W) ndarray of float64
        Only when ``visualize`` is True.
    """
    from skimage.feature import hog

    gray = _as_gray_uint8(image)
    for size, cells in zip(gray.shape, pixels_per_cell):
        if size // cells < cells_per_block[0]:
            raise ValueError(
                f"The image of shape {gray.shape} contains fewer cells of {pixels_per_cell} pixels than one "
                f"block of {cells_per_block} cells; use a larger image or smaller cells."
            )
    result = hog(
        gray,
        orientations=orientations,
        pixels_per_cell=pixels_per_cell,
        cells_per_block=cells_per_block,
        block_norm=block_norm,
        visualize=visualize,
        feature_vector=True,
    )
    if visualize:
        descriptor, glyphs = result
        return descriptor.astype(np.float32), glyphs
    return result.astype(np.float32)


# --- SIFT and a bag of visual words ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SiftFeatures:
    """SIFT keypoints of one image and their descriptors.

    Attributes
    ----------
    points : (N, 2) ndarray of float32
        ``(x, y)`` keypoint positions in pixels.
    sizes : (N,) ndarray of float32
        Diameter of each keypoint's neighbourhood, in pixels.
    angles : (N,) ndarray of float32
        Dominant orientation of each keypoint, in degrees.
    descriptors : (N, 128) ndarray of float32
        SIFT descriptors (non-negative).
    """

    points: np.ndarray
    sizes: np.ndarray
    angles: np.ndarray
    descriptors: np.ndarray

    def __len__(self) -> int:
        return len(self.points)


def sift_features(image: np.ndarray, max_features: int = 0, dense_step: int | None = None, dense_size: float = 12.0) -> SiftFeatures:
    """Detect SIFT keypoints (or take a dense grid) and describe them with OpenCV.

    Parameters
    ----------
    image : (H, W, 3) or (H, W) ndarray of uint8
        RGB or grayscale image.
    max_features : int
        Keep at most this many keypoints, the strongest first; 0 keeps all.
        Ignored with ``dense_step``.
    dense_step : int, optional
        Place keypoints on a regular grid every ``dense_step`` pixels instead
        of detecting them ("dense SIFT"). Small face crops yield few detected
        keypoints, and a grid gives every face the same number of descriptors.
    dense_size : float
        Keypoint diameter, in pixels, for the dense grid.

    Returns
    -------
    SiftFeatures
        Possibly empty (``N = 0``) for a flat image.
    """
    import cv2

    gray = _as_gray_uint8(image)
    sift = cv2.SIFT_create(nfeatures=0 if dense_step else max_features)
    if dense_step:
        if dense_step < 1:
            raise ValueError(f"dense_step must be a positive number of pixels, got {dense_step}.")
        half = dense_size / 2
        keypoints = [
            cv2.KeyPoint(float(x), float(y), float(dense_size))
            for y in np.arange(half, gray.shape[0] - half + 1, dense_step)
            for x in np.arange(half, gray.shape[1] - half + 1, dense_step)
        ]
        keypoints, descriptors = sift.compute(gray, keypoints)
    else:
        keypoints, descriptors = sift.detectAndCompute(gray, None)
    if descriptors is None or len(keypoints) == 0:
        empty = np.zeros((0,), np.float32)
        return SiftFeatures(np.zeros((0, 2), np.float32), empty, empty, np.zeros((0, 128), np.float32))
    return SiftFeatures(
        points=np.array([k.pt for k in keypoints], dtype=np.float32),
        sizes=np.array([k.size for k in keypoints], dtype=np.float32),
        angles=np.array([k.angle for k in keypoints], dtype=np.float32),
        descriptors=descriptors.astype(np.float32),
    )


class BagOfVisualWords:
    """Encode sets of local descriptors as histograms over a learnt vocabulary.

    ``fit`` clusters the descriptors of the training images with
    :class:`sklearn.cluster.MiniBatchKMeans`; each cluster centre is a visual
    word. ``transform`` assigns every descriptor of an image to its nearest
    word and returns the normalised word counts, one row per image. The
    encoding is orderless: it keeps which local patterns occur, not where.

    Parameters
    ----------
    n_words : int
        Vocabulary size (number of k-means clusters).
    seed : int
        Random state of k-means.
    batch_size : int
        Mini-batch size of k-means.
    max_descriptors : int
        ``fit`` clusters a random sample of at most this many descriptors,
        which bounds its time and memory.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> sets = [rng.random((20, 128), dtype=np.float32) for _ in range(5)]
    >>> BagOfVisualWords(n_words=4).fit(sets).transform(sets).shape
    (5, 4)
    """

    def __init__(self, n_words: int = 100, seed: int = 0, batch_size: int = 1024, max_descriptors: int = 20_000):
        if n_words < 2:
            raise ValueError(f"A vocabulary needs at least 2 words, got n_words={n_words}.")
        self.n_words = n_words
        self.seed = seed
        self.batch_size = batch_size
        self.max_descriptors = max_descriptors
        self.kmeans_ = None

    def fit(self, descriptor_sets: Sequence[np.ndarray]) -> "BagOfVisualWords":
        """Learn the vocabulary from a list of ``(N_i, D)`` descriptor arrays (one per image)."""
        from sklearn.cluster import MiniBatchKMeans

        stacked = np.concatenate([np.asarray(d, dtype=np.float32).reshape(-1, d.shape[-1]) for d in descriptor_sets if len(d)])
        if len(stacked) < self.n_words:
            raise ValueError(
                f"Only {len(stacked)} descriptors were given to learn {self.n_words} visual words; "
                "use fewer words or more images."
            )
        if len(stacked) > self.max_descriptors:
            sample = np.random.default_rng(self.seed).choice(len(stacked), self.max_descriptors, replace=False)
            stacked = stacked[np.sort(sample)]
        log.info("Learning %d visual words from %d descriptors.", self.n_words, len(stacked))
        self.kmeans_ = MiniBatchKMeans(
            n_clusters=self.n_words, random_state=self.seed, batch_size=self.batch_size, n_init=1
        ).fit(stacked)
        return self

    def transform(self, descriptor_sets: Sequence[np.ndarray]) -> np.ndarray:
        """Encode each descriptor array as an ``(n_words,)`` histogram summing to 1.

        Returns
        -------
        (len(descriptor_sets), n_words) ndarray of float32
            An image with no descriptors gets a row of zeros.
        """
        if self.kmeans_ is None:
            raise RuntimeError("This BagOfVisualWords is not fitted yet; call fit() with training descriptors first.")
        encoded = np.zeros((len(descriptor_sets), self.n_words), dtype=np.float32)
        for index, descriptors in enumerate(descriptor_sets):
            if len(descriptors) == 0:
                continue
            words = self.kmeans_.predict(np.asarray(descriptors, dtype=np.float32))
            counts = np.bincount(words, minlength=self.n_words)
            encoded[index] = counts / counts.sum()
        return encoded

    def fit_transform(self, descriptor_sets: Sequence[np.ndarray]) -> np.ndarray:
        """Fit the vocabulary on ``descriptor_sets`` and encode them."""
        return self.fit(descriptor_sets).transform(descriptor_sets)


# --- distances -----------------------------------------------------------------------


def chi_square_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Chi-square distance between histograms, ``0.5 * sum((a - b) ** 2 / (a + b))``.

    Bins where both histograms are 0 contribute nothing. The distance is 0 for
    identical histograms, symmetric and non-negative. For two histograms that
    each sum to 1 it is at most 1, which it reaches when they share no bin.

    Parameters
    ----------
    a : (D,) or (N, D) array of non-negative values
    b : (D,) or (M, D) array of non-negative values

    Returns
    -------
    float, or (N, M) ndarray of float64
        A float when both inputs are 1-D, else the matrix of pairwise distances.
    """
    from sklearn.metrics.pairwise import additive_chi2_kernel

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    single = a.ndim == 1 and b.ndim == 1
    a2 = np.atleast_2d(a)
    b2 = np.atleast_2d(b)
    if a2.shape[1] != b2.shape[1]:
        raise ValueError(f"Histograms of different lengths cannot be compared: {a2.shape[1]} and {b2.shape[1]}.")
    if (a2 < 0).any() or (b2 < 0).any():
        raise ValueError("The chi-square distance is defined for non-negative histograms; got negative values.")
    # additive_chi2_kernel returns -sum((x - y)^2 / (x + y)), skipping bins where x + y == 0.
    distances = np.maximum(-0.5 * additive_chi2_kernel(a2, b2), 0.0)
    return float(distances[0, 0]) if single else distances


# --- face regions --------------------------------------------------------------------


def region_rows(height: int, region: str, landmarks: np.ndarray | None = None, cut: float = UPPER_FACE_CUT) -> tuple[int, int]:
    """Return the ``(first, stop)`` rows of a face region; see :func:`select_region`."""
    if region not in REGIONS:
        raise ValueError(f"Unknown face region {region!r}: use one of {', '.join(REGIONS)}.")
    if region == "whole":
        return 0, height
    if landmarks is None:
        # An aligned crop (course_lib.faces.align_face) puts the landmarks on the template.
        landmarks = ARCFACE_TEMPLATE_112 * (height / 112.0)
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (5, 2):
        raise ValueError(f"Expected landmarks of shape (5, 2), got {landmarks.shape}.")
    eye_y = landmarks[[LANDMARK_NAMES.index("left_eye"), LANDMARK_NAMES.index("right_eye")], 1].mean()
    nose_y = landmarks[LANDMARK_NAMES.index("nose"), 1]
    boundary = int(round(eye_y + cut * (nose_y - eye_y)))
    boundary = min(max(boundary, 1), height - 1)
    return (0, boundary) if region == "upper" else (boundary, height)


def select_region(image: np.ndarray, region: str = "whole", landmarks: np.ndarray | None = None, cut: float = UPPER_FACE_CUT) -> np.ndarray:
    """Crop the upper face, the lower face or keep the whole face.

    The boundary is a horizontal line between the eye line and the nose tip,
    at ``cut`` of the way down (0 is the eye line, 1 the nose tip). A mask worn
    properly covers the nose tip and everything below it, so the "upper"
    region (forehead, eyebrows and eyes: the periocular band) stays visible
    and "lower" is what the mask hides.

    Parameters
    ----------
    image : (H, W, 3) or (H, W) ndarray
        Face image.
    region : {"whole", "upper", "lower"}
    landmarks : (5, 2) array, optional
        ``(x, y)`` landmarks of ``image`` in :data:`course_lib.faces.LANDMARK_NAMES`
        order. When omitted the image is taken as an aligned crop
        (:func:`course_lib.faces.align_face`), whose landmarks sit on the
        ArcFace template scaled to the image height: the boundary is then a
        fixed row, 0.55 of the height for ``cut=0.5``.
    cut : float
        Position of the boundary between the eye line (0) and the nose tip (1).

    Returns
    -------
    ndarray
        Rows of ``image`` in the region (a view, full width).
    """
    first, stop = region_rows(np.asarray(image).shape[0], region, landmarks, cut)
    return image[first:stop]
