"""The masked-copy builder on the LFW part of the mirror: a pool run, the cache, resuming."""

import csv

import numpy as np
import pytest
from PIL import Image

from course_lib.images import read_image
from course_lib.masked_dataset import (
    COLUMNS,
    SourceImage,
    build_masked_dataset,
    list_sources,
    manifest_landmarks,
    plan_mask,
    read_manifest,
)
from course_lib.masks import MASK_TYPES


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Twelve LFW images masked by two worker processes."""
    output = tmp_path_factory.mktemp("masked") / "lfw"
    summary = build_masked_dataset("lfw", limit=12, workers=2, output_dir=output, progress=False)
    return output, summary


def test_pool(built):
    output, summary = built
    assert summary.requested == 12 and summary.new == 12 and summary.reused == 0
    assert summary.masked + summary.failed == 12
    assert summary.masked >= 10
    rows = read_manifest(output / "manifest.csv")
    sources = list_sources("lfw")[:12]
    assert sorted(rows) == [s.relative for s in sources]
    for source in sources:
        row = rows[source.relative]
        assert (row["mask_type"], int(row["seed"])) == plan_mask(source.relative, MASK_TYPES)
        if row["status"] == "ok":
            masked = read_image(output / source.relative)
            assert masked.shape == read_image(source.source).shape
            assert manifest_landmarks(row).shape == (5, 2)
    assert not list(output.rglob(".*tmp*"))


def test_cache(built):
    output, first = built
    summary = build_masked_dataset("lfw", limit=12, workers=1, output_dir=output, progress=False)
    assert summary.new == 0 and summary.reused == 12
    assert summary.masked == first.masked


def test_resume(built):
    """Deleted outputs, lost manifest rows and a half-written row are redone; a bigger limit adds only new images."""
    output, _ = built
    manifest = output / "manifest.csv"
    rows = read_manifest(manifest)
    done = sorted(path for path, row in rows.items() if row["status"] == "ok")
    for path in done[:2]:
        (output / path).unlink()
    kept = [rows[path] for path in sorted(rows) if path not in done[2:4]]
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(kept)
        handle.write(done[2] + ",Broken,ok")  # a row cut short by an interruption
    summary = build_masked_dataset("lfw", limit=12, workers=1, output_dir=output, progress=False)
    assert summary.new == 4 and summary.reused == 8
    assert all((output / path).is_file() for path in done)
    bigger = build_masked_dataset("lfw", limit=15, workers=1, output_dir=output, progress=False)
    assert bigger.new == 3 and bigger.reused == 12
    assert len(read_manifest(manifest)) == 15


def test_failures(tmp_path):
    """Images without a face are reported with a reason, not raised."""
    blank = tmp_path / "source" / "Nobody" / "Nobody_0001.jpg"
    blank.parent.mkdir(parents=True)
    Image.fromarray(np.full((120, 120, 3), 200, np.uint8)).save(blank)
    broken = blank.with_name("Nobody_0002.jpg")
    broken.write_bytes(b"not a jpeg")
    sources = [SourceImage(blank, "Nobody/Nobody_0001.jpg", "Nobody"), SourceImage(broken, "Nobody/Nobody_0002.jpg", "Nobody")]
    summary = build_masked_dataset(sources=sources, workers=1, output_dir=tmp_path / "out", progress=False)
    assert summary.masked == 0
    assert summary.failures == {"no face found": 1, "unreadable image": 1}
    assert "2 could not be masked" in str(summary) and "1 x no face found" in str(summary)


def test_plan():
    types = [plan_mask(f"P/P_{i:04d}.jpg", MASK_TYPES)[0] for i in range(200)]
    assert set(types) == set(MASK_TYPES)
    assert plan_mask("A/A_0001.jpg", MASK_TYPES) == plan_mask("A/A_0001.jpg", MASK_TYPES)
    assert plan_mask("A/A_0001.jpg", ("cloth",))[0] == "cloth"


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown mask type"):
        build_masked_dataset(mask_types=("scarf",), output_dir=tmp_path)
    with pytest.raises(ValueError, match="Unknown dataset"):
        build_masked_dataset("imagenet", output_dir=tmp_path)


def test_script(tmp_path, monkeypatch, capsys):
    import importlib.util
    from pathlib import Path

    monkeypatch.setenv("MFR_CACHE_DIR", str(tmp_path))
    script = Path(__file__).resolve().parent.parent / "data_scripts" / "build_masked_dataset.py"
    spec = importlib.util.spec_from_file_location("build_masked_dataset", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--limit", "2", "--workers", "1", "--mask-types", "surgical", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "Masked 2 of 2 images (2 new, 0 reused from the cache)" in printed
    assert "Mask types: surgical 2." in printed
    assert (tmp_path / "masked" / "lfw" / "manifest.csv").is_file()
