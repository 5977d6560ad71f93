"""Image reading: every backend returns upright RGB uint8, and broken files fail by name.

Each case writes its own small file with PIL, NumPy or OpenCV into ``tmp_path``.
"""

from __future__ import annotations

import shutil
import warnings

import cv2
import numpy as np
import pytest
from PIL import Image

from course_lib.config import data_dir
from course_lib.data import load_att_faces, load_mask_classification, load_rmfrd
from course_lib.images import ImageReadError, is_hidden, list_class_folders, list_image_files, read_image, read_images

BACKENDS = ["pil", "opencv", "tf"]
MIRROR = data_dir()


def _gradient(height: int = 48, width: int = 64) -> np.ndarray:
    """Smooth RGB test image, different in every corner, so rotations and flips are visible."""
    rows = np.linspace(0, 1, height)[:, None]
    cols = np.linspace(0, 1, width)[None, :]
    red = 255 * rows * np.ones_like(cols)
    green = 255 * cols * np.ones_like(rows)
    blue = 255 * (1 - rows) * cols
    return np.stack([red, green, blue], axis=2).round().astype(np.uint8)


def _save_exif_jpeg(path, stored: np.ndarray, orientation: int) -> None:
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, "JPEG", quality=95, exif=exif.tobytes())


# --- conversions to RGB ------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_rgba_png_on_white(tmp_path, backend):
    rgb = _gradient()
    alpha = np.zeros(rgb.shape[:2], dtype=np.uint8)
    alpha[:, 20:40] = 128
    alpha[:, 40:] = 255
    path = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(path)
    image = read_image(path, backend=backend)
    assert image.shape == rgb.shape
    assert image.dtype == np.uint8
    assert (image[:, :20] == 255).all()
    np.testing.assert_array_equal(image[:, 40:], rgb[:, 40:])
    half = rgb[:, 20:40].astype(float) * 128 / 255 + 255 * (1 - 128 / 255)
    assert np.abs(image[:, 20:40] - half).max() <= 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_palette_png_transparent_index(tmp_path, backend):
    indices = np.zeros((10, 12), dtype=np.uint8)
    indices[:, 6:] = 1
    image = Image.fromarray(indices, "P")
    image.putpalette([200, 10, 30] + [0, 0, 255] + [0, 0, 0] * 254)
    path = tmp_path / "palette.png"
    image.save(path, transparency=0)
    result = read_image(path, backend=backend)
    assert result.shape == (10, 12, 3)
    assert (result[:, :6] == 255).all()
    assert (result[:, 6:] == [0, 0, 255]).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_palette_png_alpha_table(tmp_path, backend):
    indices = np.zeros((8, 8), dtype=np.uint8)
    indices[4:] = 1
    image = Image.fromarray(indices, "P")
    image.putpalette([0, 0, 0] + [255, 0, 0] + [0, 0, 0] * 254)
    path = tmp_path / "palette-alpha.png"
    # Index 0 is half transparent black, index 1 opaque red.
    image.save(path, transparency=bytes([128, 255]))
    result = read_image(path, backend=backend).astype(int)
    assert np.abs(result[:4] - 127).max() <= 1
    assert (result[4:] == [255, 0, 0]).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_grayscale_jpeg_three_channels(tmp_path, backend):
    gray = _gradient()[:, :, 1]
    path = tmp_path / "gray.jpg"
    Image.fromarray(gray, "L").save(path, quality=95)
    image = read_image(path, backend=backend)
    assert image.shape == gray.shape + (3,)
    assert (image[:, :, 0] == image[:, :, 1]).all()
    assert (image[:, :, 1] == image[:, :, 2]).all()
    assert np.abs(image[:, :, 0].astype(int) - gray).max() <= 6


@pytest.mark.parametrize("backend", ["pil", "opencv"])
def test_binary_pgm(tmp_path, backend):
    gray = np.arange(112 * 92, dtype=np.uint32).reshape(112, 92).__mod__(256).astype(np.uint8)
    path = tmp_path / "face.pgm"
    path.write_bytes(b"P5\n92 112\n255\n" + gray.tobytes())
    image = read_image(path, backend=backend)
    assert image.shape == (112, 92, 3)
    np.testing.assert_array_equal(image, np.repeat(gray[:, :, None], 3, axis=2))


def test_pgm_tf_unsupported(tmp_path):
    path = tmp_path / "face.pgm"
    path.write_bytes(b"P5\n2 2\n255\n" + bytes([0, 64, 128, 255]))
    with pytest.raises(ImageReadError, match="face.pgm"):
        read_image(path, backend="tf")


def test_att_pgm_backends_agree():
    path = MIRROR / "att_faces" / "s1" / "1.pgm"
    pil = read_image(path, backend="pil")
    assert pil.shape == (112, 92, 3)
    np.testing.assert_array_equal(pil, read_image(path, backend="opencv"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_sixteen_bit_gray_png(tmp_path, backend):
    values = np.array([[0, 257 * 100, 65535, 128]], dtype=np.uint16)
    path = tmp_path / "gray16.png"
    assert cv2.imwrite(str(path), values)
    image = read_image(path, backend=backend)
    assert image.dtype == np.uint8
    assert image.shape == (1, 4, 3)
    np.testing.assert_array_equal(image[0, :, 0], [0, 100, 255, 0])
    assert (image[..., 0] == image[..., 2]).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_sixteen_bit_rgb_png(tmp_path, backend):
    rgb = _gradient(6, 5).astype(np.uint16) * 257
    path = tmp_path / "rgb16.png"
    assert cv2.imwrite(str(path), rgb[:, :, ::-1].copy())
    image = read_image(path, backend=backend)
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image, _gradient(6, 5))


# --- EXIF orientation -----------------------------------------------------------------


# Stored pixels for each orientation, given the upright image: a viewer applying
# the tag to the stored pixels shows the upright image.
STORED = {
    3: lambda upright: upright[::-1, ::-1],
    6: lambda upright: np.rot90(upright, k=1),
    8: lambda upright: np.rot90(upright, k=-1),
}


@pytest.mark.parametrize("orientation", sorted(STORED))
@pytest.mark.parametrize("backend", BACKENDS)
def test_exif_orientation(tmp_path, backend, orientation):
    upright = _gradient()
    path = tmp_path / f"orientation{orientation}.jpg"
    _save_exif_jpeg(path, np.ascontiguousarray(STORED[orientation](upright)), orientation)
    image = read_image(path, backend=backend)
    assert image.shape == upright.shape
    assert np.abs(image.astype(int) - upright).mean() < 2


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_exif_backends_agree(tmp_path, orientation):
    path = tmp_path / "photo.jpg"
    _save_exif_jpeg(path, np.ascontiguousarray(STORED[orientation](_gradient())), orientation)
    pil, opencv, tf = (read_image(path, backend=b).astype(int) for b in BACKENDS)
    assert np.abs(pil - opencv).max() <= 3
    assert np.abs(pil - tf).max() <= 3


# --- paths and broken files -------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_ascii_path(tmp_path, backend):
    folder = tmp_path / "données" / "Jürgen_Müller"
    folder.mkdir(parents=True)
    path = folder / "顔_1.png"
    Image.fromarray(_gradient()).save(path)
    np.testing.assert_array_equal(read_image(path, backend=backend), _gradient())


def _truncated_jpeg(path):
    Image.fromarray(_gradient(120, 160)).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


BROKEN = {
    "truncated.jpg": _truncated_jpeg,
    "empty.jpg": lambda path: path.write_bytes(b""),
    "notes.jpg": lambda path: path.write_text("this is a text file, not a JPEG\n"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
@pytest.mark.parametrize("backend", BACKENDS)
def test_broken_file_error(tmp_path, backend, name):
    path = tmp_path / name
    BROKEN[name](path)
    with pytest.raises(ImageReadError) as caught:
        read_image(path, backend=backend)
    assert caught.value.path == path
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_png_named_jpg(tmp_path, backend):
    path = tmp_path / "actually-png.jpg"
    Image.fromarray(_gradient()).save(path, format="PNG")
    np.testing.assert_array_equal(read_image(path, backend=backend), _gradient())


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        read_image(tmp_path / "missing.jpg")


def test_read_images_skips_broken(tmp_path):
    paths = []
    for index in range(3):
        path = tmp_path / f"good{index}.png"
        Image.fromarray(_gradient()).save(path)
        paths.append(path)
    for name, make in BROKEN.items():
        make(tmp_path / name)
        paths.insert(1, tmp_path / name)
    with pytest.warns(UserWarning, match="truncated.jpg"):
        images, kept, skipped = read_images(paths, size=(24, 32))
    assert len(images) == 3
    assert [paths[i].name for i in kept] == ["good0.png", "good1.png", "good2.png"]
    assert all(image.shape == (24, 32, 3) for image in images)
    assert sorted(path.name for path, _ in skipped.items) == sorted(BROKEN)
    assert "empty.jpg" in skipped.summary()


def test_read_images_raise(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        read_images([path], on_error="raise")


def test_read_images_no_warning_when_clean(tmp_path):
    path = tmp_path / "good.png"
    Image.fromarray(_gradient()).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        images, kept, skipped = read_images([path])
    assert kept == [0]
    assert not skipped


# --- hidden entries ------------------------------------------------------------------


def _clutter(folder):
    """Add the hidden entries that macOS, Jupyter and zip tools leave behind."""
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    for hidden in (".ipynb_checkpoints", "__MACOSX"):
        (folder / hidden).mkdir(exist_ok=True)
        Image.fromarray(_gradient()).save(folder / hidden / "copy.png")
    (folder / "._photo.jpg").write_bytes(b"\0\5\26\7")


def test_hidden_names():
    for name in (".DS_Store", ".ipynb_checkpoints", "__MACOSX", "._photo.jpg", "Thumbs.db"):
        assert is_hidden(name), name
    for name in ("photo.jpg", "s1", "with_mask"):
        assert not is_hidden(name), name


def test_hidden_not_listed(tmp_path):
    (tmp_path / "person").mkdir()
    Image.fromarray(_gradient()).save(tmp_path / "person" / "photo.jpg")
    _clutter(tmp_path)
    _clutter(tmp_path / "person")
    assert list_class_folders(tmp_path) == [tmp_path / "person"]
    assert list_image_files(tmp_path / "person") == [tmp_path / "person" / "photo.jpg"]
    assert list_image_files(tmp_path, recursive=True) == [tmp_path / "person" / "photo.jpg"]


def test_hidden_never_class(tmp_path, monkeypatch):
    """Loaders on a data root full of clutter see only the real images and classes."""
    att = tmp_path / "att_faces"
    for person in ("s1", "s2"):
        shutil.copytree(MIRROR / "att_faces" / person, att / person)
        _clutter(att / person)
    _clutter(att)

    dataset = tmp_path / "Face-Mask-Detection-master" / "dataset"
    for folder in ("with_mask", "without_mask"):
        (dataset / folder).mkdir(parents=True)
        for source in sorted((MIRROR / "Face-Mask-Detection-master" / "dataset" / folder).iterdir())[:3]:
            shutil.copyfile(source, dataset / folder / source.name)
        _clutter(dataset / folder)
    _clutter(dataset)

    for folder in ("AFDB_face_dataset", "AFDB_masked_face_dataset"):
        person = sorted((MIRROR / "rmfrd" / folder).iterdir())[0]
        shutil.copytree(person, tmp_path / "rmfrd" / folder / person.name)
        _clutter(tmp_path / "rmfrd" / folder)
        _clutter(tmp_path / "rmfrd" / folder / person.name)

    monkeypatch.setenv("MFR_DATA_DIR", str(tmp_path))
    att_records = load_att_faces()
    assert len(att_records) == 20
    assert {r.identity for r in att_records} == {"s1", "s2"}
    mask_records = load_mask_classification()
    assert len(mask_records) == 6
    rmfrd_records = load_rmfrd()
    assert all(not is_hidden(r.identity) for r in rmfrd_records)
    for records in (att_records, mask_records, rmfrd_records):
        for record in records:
            assert not any(is_hidden(part) for part in record.path.relative_to(tmp_path).parts), record.path


@pytest.mark.parametrize("backend", BACKENDS)
def test_cmyk_jpeg(tmp_path, backend):
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(_gradient()).convert("CMYK").save(path, quality=95)
    image = read_image(path, backend=backend)
    assert image.shape == _gradient().shape
    assert np.abs(image.astype(int) - _gradient()).mean() < 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_gray_alpha_png(tmp_path, backend):
    gray = _gradient()[:, :, 1]
    path = tmp_path / "gray-alpha.png"
    Image.fromarray(np.dstack([gray, np.full_like(gray, 128)]), "LA").save(path)
    image = read_image(path, backend=backend)
    expected = gray.astype(float) * 128 / 255 + 255 * (1 - 128 / 255)
    assert image.shape == gray.shape + (3,)
    assert np.abs(image[:, :, 0] - expected).max() <= 1
    assert (image[:, :, 0] == image[:, :, 2]).all()
