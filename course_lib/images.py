"""Image input and the one image convention of the course.

Convention
----------
In memory an image is a NumPy array of shape ``(H, W, 3)``, dtype ``uint8``,
channels in RGB order, rows first: pixel ``image[row, col]`` is at
``x = col``, ``y = row``. Inside models images are ``float32`` in ``[0, 1]``
(:func:`to_float32`). Every loader in the package converts to this convention,
whatever the file holds:

* EXIF orientation is applied, so a photo is upright on every backend;
* grayscale and palette images are expanded to RGB;
* an alpha channel is composited onto a white background;
* 16-bit samples are scaled to 8 bits (``round(v / 257)``).

Files that cannot be decoded raise :class:`ImageReadError`, which names the
file and the reason. :func:`read_images` applies the skip policy used when a
dataset is loaded: unreadable files are skipped, counted and reported by name,
so one broken file never stops a training run halfway.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
"""File name suffixes (lower case) that dataset scanners treat as images."""

HIDDEN_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})

Backend = Literal["pil", "opencv", "tf"]

_EXIF_ORIENTATION_TAG = 0x0112


class ImageReadError(ValueError):
    """An image file that cannot be decoded.

    Attributes
    ----------
    path : pathlib.Path
        The file.
    reason : str
        Why decoding failed, in a few words ("empty file", "truncated data").
    """

    def __init__(self, path: os.PathLike | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(
            f"Cannot read image {str(self.path)!r}: {reason}. "
            "Check that the file is a complete JPEG, PNG or PGM image, or delete it and fetch the dataset again."
        )


def is_hidden(path: os.PathLike | str) -> bool:
    """Return True for entries that are never data: dot files and folders, ``__MACOSX`` and the like."""
    name = Path(path).name
    return name.startswith(".") or name in HIDDEN_NAMES


def list_image_files(folder: os.PathLike | str, recursive: bool = False) -> list[Path]:
    """List the image files in ``folder``, sorted by name.

    Hidden entries (``.DS_Store``, ``.ipynb_checkpoints/`` and other dot names,
    ``__MACOSX/``) are skipped, including everything below a hidden folder.
    Files are selected by suffix; whether they decode is checked on reading.
    """
    folder = Path(folder)
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not is_hidden(d)) if recursive else []
        for name in files:
            if not is_hidden(name) and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(Path(root) / name)
    return sorted(found)


def list_class_folders(folder: os.PathLike | str) -> list[Path]:
    """List the sub-folders of ``folder`` that can be classes or identities (hidden ones skipped), sorted."""
    return sorted(p for p in Path(folder).iterdir() if p.is_dir() and not is_hidden(p))


def read_image(path: os.PathLike | str, backend: Backend = "pil") -> np.ndarray:
    """Read an image file in the course convention.

    Parameters
    ----------
    path : str or os.PathLike
        Image file. Non-ASCII paths are supported by every backend.
    backend : {"pil", "opencv", "tf"}
        Decoder to use. All three return the same upright pixels; JPEG decoders
        may differ by a few grey levels. ``"tf"`` reads JPEG, PNG, GIF, BMP and
        WebP only (``tf.io`` has no PGM decoder).

    Returns
    -------
    image : (H, W, 3) ndarray of uint8
        RGB image.

    Raises
    ------
    ImageReadError
        The file is empty, truncated, not an image, or in a format the backend
        cannot decode.
    FileNotFoundError
        The file does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Image file {str(path)!r} does not exist.")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    if backend == "pil":
        return _read_pil(path)
    if backend == "opencv":
        return _read_opencv(path)
    if backend == "tf":
        return _read_tf(path)
    raise ValueError(f"Unknown image backend {backend!r}: use 'pil', 'opencv' or 'tf'.")


@dataclasses.dataclass
class SkippedFiles:
    """Files that a loader skipped, with the reason for each."""

    items: list[tuple[Path, str]] = dataclasses.field(default_factory=list)

    def add(self, path: os.PathLike | str, reason: str) -> None:
        self.items.append((Path(path), reason))

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def summary(self, limit: int = 10) -> str:
        """Describe the skipped files in one paragraph, naming at most ``limit`` of them."""
        if not self.items:
            return "No files were skipped."
        shown = "; ".join(f"{path.name} ({reason})" for path, reason in self.items[:limit])
        more = f"; and {len(self.items) - limit} more" if len(self.items) > limit else ""
        return f"Skipped {len(self.items)} unreadable file(s): {shown}{more}."


def read_images(
    paths: Sequence[os.PathLike | str],
    on_error: Literal["skip", "raise"] = "skip",
    size: tuple[int, int] | None = None,
    backend: Backend = "pil",
    progress: bool = False,
) -> tuple[list[np.ndarray], list[int], SkippedFiles]:
    """Read many images, skipping the unreadable ones.

    Parameters
    ----------
    paths : sequence of paths
        Files to read.
    on_error : {"skip", "raise"}
        ``"skip"`` drops a file that raises :class:`ImageReadError`, records it
        in the returned :class:`SkippedFiles` and warns once at the end;
        ``"raise"`` re-raises the first error.
    size : (height, width), optional
        Resize every image to this size (area interpolation when shrinking,
        bilinear when enlarging).
    backend : {"pil", "opencv", "tf"}
        Decoder, as in :func:`read_image`.
    progress : bool
        Show a progress bar.

    Returns
    -------
    images : list of (H, W, 3) uint8 arrays
    kept : list of int
        Index into ``paths`` of each returned image.
    skipped : SkippedFiles
    """
    images, kept, skipped = [], [], SkippedFiles()
    iterator: Iterable = enumerate(paths)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, total=len(paths), desc="Reading images", unit="img")
    for index, path in iterator:
        try:
            image = read_image(path, backend=backend)
        except ImageReadError as error:
            if on_error == "raise":
                raise
            skipped.add(path, error.reason)
            continue
        if size is not None:
            image = resize(image, size)
        images.append(image)
        kept.append(index)
    if skipped:
        message = skipped.summary()
        log.warning(message)
        warnings.warn(message, stacklevel=2)
    return images, kept, skipped


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an ``(H, W, C)`` uint8 image to ``size = (height, width)``.

    Area interpolation is used when shrinking (no aliasing) and bilinear when
    enlarging.
    """
    import cv2

    height, width = size
    shrinking = height * width < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    resized = cv2.resize(image, (width, height), interpolation=interpolation)
    if resized.ndim == 2:
        resized = resized[:, :, None]
    return resized


def to_float32(image: np.ndarray) -> np.ndarray:
    """Convert a uint8 image to float32 in ``[0, 1]``."""
    if image.dtype != np.uint8:
        raise TypeError(f"Expected a uint8 image, got dtype {image.dtype}; float images are already in model range.")
    return image.astype(np.float32) / 255.0


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Convert a float image in ``[0, 1]`` to uint8, clipping values outside the range."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_gray(image: np.ndarray) -> np.ndarray:
    """Convert an ``(H, W, 3)`` RGB uint8 image to ``(H, W)`` uint8 luma (ITU-R BT.601 weights)."""
    if image.ndim == 2:
        return image
    import cv2

    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


# --- backends -----------------------------------------------------------------


def _composite_on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    weight = alpha.astype(np.float32)[..., None] / 255.0
    blended = rgb.astype(np.float32) * weight + 255.0 * (1.0 - weight)
    return (blended + 0.5).astype(np.uint8)


def _sixteen_to_eight(array: np.ndarray) -> np.ndarray:
    return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _read_pil(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as opened:
            opened.load()
            upright = ImageOps.exif_transpose(opened)
            return _pil_to_rgb(upright)
    except UnidentifiedImageError:
        raise ImageReadError(path, "not a recognised image format") from None
    except OSError as error:
        text = str(error)
        reason = "truncated data" if "truncated" in text.lower() else f"decoding failed ({text})"
        raise ImageReadError(path, reason) from None
    except (SyntaxError, ValueError) as error:
        raise ImageReadError(path, f"decoding failed ({error})") from None


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in {"I;16", "I;16B", "I;16L", "I;16N", "I"}:
        array = np.asarray(image)
        if mode == "I":
            # PIL stores 16-bit grayscale PNGs as 32-bit "I" in some versions.
            array = np.clip(array, 0, 65535)
        gray = _sixteen_to_eight(array)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in {"RGBA", "LA", "PA", "RGBa", "La"}:
        rgba = np.asarray(image.convert("RGBA"))
        return _composite_on_white(rgba[..., :3], rgba[..., 3])
    if mode == "RGB":
        return np.asarray(image).copy()
    return np.asarray(image.convert("RGB")).copy()


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _read_opencv(path: Path) -> np.ndarray:
    import cv2

    # cv2.imdecode on bytes read by Python works for non-ASCII paths on every OS.
    buffer = np.frombuffer(_read_bytes(path), dtype=np.uint8)
    color = cv2.imdecode(buffer, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if color is None:
        raise ImageReadError(path, "OpenCV could not decode the file (not an image, or truncated)")
    unchanged = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if color.dtype == np.uint16:
        color = _sixteen_to_eight(color)
    rgb = cv2.cvtColor(color, cv2.COLOR_BGR2RGB)
    if unchanged is not None and unchanged.ndim == 3 and unchanged.shape[2] == 4:
        alpha = unchanged[..., 3]
        if alpha.dtype == np.uint16:
            alpha = _sixteen_to_eight(alpha)
        if alpha.shape == rgb.shape[:2]:
            rgb = _composite_on_white(rgb, alpha)
    return rgb


def _exif_orientation(path: Path) -> int:
    try:
        with Image.open(path) as opened:
            return int(opened.getexif().get(_EXIF_ORIENTATION_TAG, 1))
    except (OSError, UnidentifiedImageError, ValueError):
        return 1


def _apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation value (1 to 8) to an (H, W, C) array."""
    if orientation == 2:
        return image[:, ::-1]
    if orientation == 3:
        return image[::-1, ::-1]
    if orientation == 4:
        return image[::-1, :]
    if orientation == 5:
        return np.transpose(image, (1, 0, 2))
    if orientation == 6:
        return np.rot90(image, k=-1)
    if orientation == 7:
        return np.rot90(image, k=1)[::-1, :]
    if orientation == 8:
        return np.rot90(image, k=1)
    return image


def _read_tf(path: Path) -> np.ndarray:
    import tensorflow as tf

    data = _read_bytes(path)
    # A PNG stores its bit depth at byte 24, inside the IHDR chunk.
    sixteen_bit_png = data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 24 and data[24] == 16
    try:
        if sixteen_bit_png:
            array = _sixteen_to_eight(tf.io.decode_png(data, channels=0, dtype=tf.uint16).numpy())
        elif data[:2] == b"\xff\xd8":
            # The accurate integer IDCT matches libjpeg's default, as used by PIL and OpenCV.
            array = tf.io.decode_jpeg(data, channels=0, dct_method="INTEGER_ACCURATE").numpy()
        else:
            array = tf.io.decode_image(data, channels=0, dtype=tf.uint8, expand_animations=False).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        message = error.message.splitlines()[0] if error.message else "unknown error"
        raise ImageReadError(path, f"tf.io could not decode the file ({message})") from None
    channels = array.shape[2]
    if channels == 1:
        rgb = np.repeat(array, 3, axis=2)
    elif channels == 2:
        rgb = _composite_on_white(np.repeat(array[..., :1], 3, axis=2), array[..., 1])
    elif channels == 4:
        rgb = _composite_on_white(array[..., :3], array[..., 3])
    else:
        rgb = array
    return np.ascontiguousarray(_apply_orientation(rgb, _exif_orientation(path)))
