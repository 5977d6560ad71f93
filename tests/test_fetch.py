"""Fetching, safe extraction, verification and the mfr-data command line.

Downloads come from an HTTP server on 127.0.0.1, so nothing leaves the
machine. It serves archives that the tests build from a few files of the
mirror (``MFR_DATA_DIR``). Each test gets an empty data root and cache under
``tmp_path``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from course_lib.config import data_dir
from course_lib.data import load_att_faces, load_lfw_people, load_mask_classification
from course_lib.data import registry
from course_lib.data.fetch import (
    ChecksumError,
    DataRootNotWritableError,
    DownloadError,
    FetchError,
    LayoutError,
    ManualDownloadError,
    UnsafeArchiveError,
    download,
    extract_archive,
    fetch,
)
from course_lib.data.registry import LFW, Source
from course_lib.data.verify import verify

REPO = Path(__file__).resolve().parent.parent
MIRROR = data_dir()
LFW_PEOPLE = ("Aaron_Guiel", "AJ_Lamas", "Abdullah_Gul")
LFW_PROTOCOL = ("pairs.txt", "pairsDevTrain.txt", "pairsDevTest.txt", "people.txt", "peopleDevTrain.txt", "peopleDevTest.txt")


# --- HTTP server ----------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves ``/www/<file>`` from a folder; ``/broken/<file>`` announces the full size, sends half and hangs up."""

    def __init__(self, *args, served: Path, requests: list, **kwargs):
        self.served = served
        self.requests = requests
        super().__init__(*args, directory=str(served), **kwargs)

    def do_GET(self):
        self.requests.append(self.path)
        prefix, _, name = self.path.lstrip("/").partition("/")
        path = self.served / name
        if prefix not in ("www", "broken") or not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data if prefix == "www" else data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@dataclasses.dataclass
class Server:
    folder: Path
    port: int
    requests: list

    @property
    def www(self) -> str:
        return f"http://127.0.0.1:{self.port}/www"

    @property
    def broken(self) -> str:
        return f"http://127.0.0.1:{self.port}/broken"


@pytest.fixture()
def server(tmp_path, monkeypatch):
    # Keep requests from sending loopback traffic through a proxy.
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    folder = tmp_path / "served"
    folder.mkdir()
    requests: list = []
    handler = functools.partial(_Handler, served=folder, requests=requests)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield Server(folder, httpd.server_address[1], requests)
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture()
def roots(tmp_path, monkeypatch):
    """Point the data root and the cache at empty folders; return (data root, downloads folder)."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    monkeypatch.setenv("MFR_DATA_DIR", str(data))
    monkeypatch.setenv("MFR_CACHE_DIR", str(cache))
    monkeypatch.delenv("MFR_MIRROR_URL", raising=False)
    return data, cache / "downloads"


# --- archives built from the mirror ---------------------------------------------


def _lfw_images() -> list[Path]:
    root = MIRROR / "lfw" / "lfw-deepfunneled"
    return sorted(p for name in LFW_PEOPLE for p in (root / name).glob("*.jpg"))


def _write_lfw_files(folder: Path, top: str = "lfw-deepfunneled-copy") -> int:
    """Write the LFW archive (under a top-level folder name the fetcher must discover) and the protocol files."""
    images = _lfw_images()
    with zipfile.ZipFile(folder / LFW.sources[0].filename, "w") as archive:
        for path in images:
            archive.write(path, f"{top}/{path.parent.name}/{path.name}")
    for name in LFW_PROTOCOL:
        shutil.copyfile(MIRROR / "lfw" / name, folder / name)
    return len(images)


def _write_mask_classification_zip(folder: Path, per_class: int = 3) -> int:
    """Write a GitHub-style archive: the repository folder with ``dataset/<class>/`` inside."""
    source = MIRROR / "Face-Mask-Detection-master" / "dataset"
    with zipfile.ZipFile(folder / "Face-Mask-Detection-master.zip", "w") as archive:
        archive.writestr("Face-Mask-Detection-master/README.md", "Face mask detection")
        for label in ("with_mask", "without_mask"):
            for path in sorted((source / label).iterdir())[:per_class]:
                archive.write(path, f"Face-Mask-Detection-master/dataset/{label}/{path.name}")
    return 2 * per_class


def _att_subset(folder: Path, people: int = 3) -> Path:
    """Copy the first ``people`` AT&T people into ``folder/att_faces``, with hidden clutter."""
    root = folder / "att_faces"
    for number in range(1, people + 1):
        shutil.copytree(MIRROR / "att_faces" / f"s{number}", root / f"s{number}")
    (root / ".DS_Store").write_bytes(b"\0")
    return root


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    """Names of partial downloads or staging folders in ``folder``."""
    if not folder.exists():
        return []
    return [p.name for p in folder.iterdir() if ".part" in p.name or ".partial-" in p.name]


# --- downloads --------------------------------------------------------------------


def test_fetch_lfw_from_mirror(server, roots):
    data, downloads = roots
    count = _write_lfw_files(server.folder)
    path = fetch("lfw", mirror_url=server.www)
    assert path == data / "lfw"
    records = load_lfw_people("all")
    assert len(records) == count
    assert {r.identity for r in records} == set(LFW_PEOPLE)
    assert (path / "pairsDevTest.txt").is_file()
    assert _leftovers(data) == []
    assert _leftovers(downloads) == []


def test_fetch_extract_to_parent(server, roots):
    data, _ = roots
    count = _write_mask_classification_zip(server.folder)
    path = fetch("mask_classification", mirror_url=server.www)
    assert path == data / "Face-Mask-Detection-master"
    assert (path / "README.md").is_file()
    records = load_mask_classification()
    assert len(records) == count
    assert sum(record.masked for record in records) == count // 2
    assert sorted(p.name for p in data.iterdir()) == ["Face-Mask-Detection-master"]


def test_fetch_mirror_env_variable(server, roots, monkeypatch):
    _write_lfw_files(server.folder)
    monkeypatch.setenv("MFR_MIRROR_URL", server.www + "/")
    fetch("lfw")
    assert f"/www/{LFW.sources[0].filename}" in server.requests


def test_fetch_present_not_downloaded(server, roots):
    _write_lfw_files(server.folder)
    fetch("lfw", mirror_url=server.www)
    served = len(server.requests)
    fetch("lfw", mirror_url=server.www)
    assert len(server.requests) == served


def test_fetch_force_downloads_again(server, roots):
    _write_lfw_files(server.folder)
    fetch("lfw", mirror_url=server.www)
    served = len(server.requests)
    fetch("lfw", mirror_url=server.www, force=True)
    assert len(server.requests) == served + len(LFW.sources)
    assert len(load_lfw_people("all")) == len(_lfw_images())


def test_fetch_reuses_cached_download(server, roots):
    data, downloads = roots
    _write_lfw_files(server.folder)
    fetch("lfw", mirror_url=server.www)
    shutil.rmtree(data / "lfw")
    served = len(server.requests)
    fetch("lfw", mirror_url=server.www)
    assert len(server.requests) == served
    assert len(load_lfw_people("all")) == len(_lfw_images())
    assert sorted(p.name for p in downloads.iterdir()) == sorted((LFW.sources[0].filename,) + LFW_PROTOCOL)


def test_fetch_incomplete_folder_needs_force(server, roots):
    data, _ = roots
    _write_lfw_files(server.folder)
    (data / "lfw").mkdir(parents=True)
    with pytest.raises(FetchError, match="--force"):
        fetch("lfw", mirror_url=server.www)
    assert server.requests == []
    fetch("lfw", mirror_url=server.www, force=True)
    assert len(load_lfw_people("all")) == len(_lfw_images())


def test_checksum_mismatch(server, roots, monkeypatch):
    data, downloads = roots
    _write_lfw_files(server.folder)
    archive = LFW.sources[0]
    actual = _sha256(server.folder / archive.filename)
    wrong = "0" * 64
    spec = dataclasses.replace(LFW, sources=(dataclasses.replace(archive, sha256=wrong),) + LFW.sources[1:])
    monkeypatch.setitem(registry.DATASETS, "lfw", spec)
    with pytest.raises(ChecksumError) as caught:
        fetch("lfw", mirror_url=server.www)
    message = str(caught.value)
    assert archive.filename in message
    assert wrong in message
    assert actual in message
    assert "--mirror" in message
    assert sorted(p.name for p in downloads.iterdir()) == []
    assert not (data / "lfw").exists()
    assert _leftovers(data) == []


def test_checksum_match(server, roots):
    _, downloads = roots
    _write_lfw_files(server.folder)
    expected = _sha256(server.folder / "pairs.txt")
    source = Source("https://example.invalid/pairs.txt", "pairs.txt", sha256=f"sha256:{expected}")
    path = download(source, mirror_url=server.www)
    assert path == downloads / "pairs.txt"
    assert _sha256(path) == expected


def test_interrupted_download_then_retry(server, roots):
    _, downloads = roots
    _write_lfw_files(server.folder)
    source = LFW.sources[0]
    with pytest.raises(DownloadError, match="run the command again"):
        download(source, mirror_url=server.broken)
    assert list(downloads.iterdir()) == []
    path = download(source, mirror_url=server.www)
    assert _sha256(path) == _sha256(server.folder / source.filename)
    assert list(downloads.iterdir()) == [path]


def test_missing_file_on_server(server, roots):
    _, downloads = roots
    with pytest.raises(DownloadError, match="404"):
        download(LFW.sources[0], mirror_url=server.www)
    assert list(downloads.iterdir()) == []


# --- safe extraction --------------------------------------------------------------


def _zip_with(path: Path, member: str) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("att_faces/s1/README", "fine")
        archive.writestr(member, "escaped")
    return path


def _tar_with(path: Path, member: str, link: str | None = None, hard: bool = False) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, payload in (("att_faces/s1/README", b"fine"), (member, b"escaped")):
            info = tarfile.TarInfo(name)
            if name == member and link is not None:
                info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
                info.linkname = link
                archive.addfile(info)
            else:
                info.size = len(payload)
                archive.addfile(info, io.BytesIO(payload))
    return path


UNSAFE_ARCHIVES = {
    "zip-dotdot": lambda d: _zip_with(d / "bad.zip", "../escaped.txt"),
    "zip-nested-dotdot": lambda d: _zip_with(d / "bad.zip", "att_faces/../../escaped.txt"),
    "zip-absolute": lambda d: _zip_with(d / "bad.zip", str(d / "escaped.txt")),
    "tar-dotdot": lambda d: _tar_with(d / "bad.tar.gz", "../escaped.txt"),
    "tar-absolute": lambda d: _tar_with(d / "bad.tgz", str(d / "escaped.txt")),
    "tar-symlink": lambda d: _tar_with(d / "bad.tar.gz", "att_faces/link", link="../../escaped.txt"),
    "tar-symlink-absolute": lambda d: _tar_with(d / "bad.tar.gz", "att_faces/link", link=str(d / "escaped.txt")),
    "tar-hardlink": lambda d: _tar_with(d / "bad.tar.gz", "att_faces/link", link="../escaped.txt", hard=True),
}


@pytest.mark.parametrize("case", list(UNSAFE_ARCHIVES))
def test_unsafe_archive_rejected(tmp_path, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = UNSAFE_ARCHIVES[case](outside)
    target = outside / "nested" / "target"
    with pytest.raises(UnsafeArchiveError) as caught:
        extract_archive(archive, target)
    assert str(archive) in str(caught.value)
    assert list(target.iterdir()) == []
    assert not (outside / "escaped.txt").exists()
    assert not (outside / "nested" / "escaped.txt").exists()
    assert sorted(p.name for p in outside.iterdir()) == sorted([archive.name, "nested"])


@pytest.mark.parametrize("case", ["zip-dotdot", "tar-absolute"])
def test_unsafe_archive_from(tmp_path, roots, case):
    data, _ = roots
    archive = UNSAFE_ARCHIVES[case](tmp_path)
    with pytest.raises(UnsafeArchiveError):
        fetch("att_faces", source=archive)
    assert not (tmp_path / "escaped.txt").exists()
    assert _leftovers(data) == []
    assert not (data / "att_faces").exists()


def test_extract_keeps_inside_links(tmp_path):
    archive = tmp_path / "ok.tar"
    with tarfile.open(archive, "w") as handle:
        info = tarfile.TarInfo("top/a.txt")
        info.size = 2
        handle.addfile(info, io.BytesIO(b"ok"))
        link = tarfile.TarInfo("top/b.txt")
        link.type = tarfile.SYMTYPE
        link.linkname = "a.txt"
        handle.addfile(link)
    target = extract_archive(archive, tmp_path / "target")
    assert (target / "top" / "b.txt").read_text() == "ok"


# --- installing copies the user already has ---------------------------------------


def test_from_folder_links(server, roots):
    data, _ = roots
    path = fetch("att_faces", source=MIRROR / "att_faces")
    assert path.is_symlink()
    assert len(load_att_faces()) == 400
    assert server.requests == []


def test_from_folder_copy(tmp_path, roots):
    data, _ = roots
    source = _att_subset(tmp_path / "download")
    path = fetch("att_faces", source=source.parent, copy=True)
    assert path == data / "att_faces"
    assert not path.is_symlink()
    assert len(load_att_faces()) == 30
    assert not (path / ".DS_Store").exists()
    shutil.rmtree(source)
    assert len(load_att_faces()) == 30


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz"])
def test_from_archive(tmp_path, server, roots, suffix):
    data, _ = roots
    source = _att_subset(tmp_path / "download")
    # Wrapped in an extra folder, as many downloads are.
    archive = Path(shutil.make_archive(str(tmp_path / "orl_faces"), "zip" if suffix == ".zip" else "gztar", source.parent))
    assert archive.name.endswith(suffix)
    path = fetch("att_faces", source=archive)
    assert path == data / "att_faces"
    records = load_att_faces()
    assert len(records) == 30
    assert {r.identity for r in records} == {"s1", "s2", "s3"}
    assert _leftovers(data) == []
    assert server.requests == []


def test_from_downloaded_files(tmp_path, server, roots):
    folder = tmp_path / "downloads-by-hand"
    folder.mkdir()
    count = _write_lfw_files(folder)
    fetch("lfw", source=folder)
    assert len(load_lfw_people("all")) == count
    assert server.requests == []


def test_from_lfw_archive(tmp_path, roots):
    folder = tmp_path / "by-hand"
    folder.mkdir()
    _write_lfw_files(folder)
    archive = folder / LFW.sources[0].filename
    fetch("lfw", source=archive)
    assert len(load_lfw_people("all")) == len(_lfw_images())


def test_from_lfw_tgz_other_name(tmp_path, roots):
    """A .tgz named differently, with a top-level folder ``lfw``, and the protocol files beside it."""
    folder = tmp_path / "by-hand"
    (folder / "lfw").mkdir(parents=True)
    for name in LFW_PEOPLE:
        shutil.copytree(MIRROR / "lfw" / "lfw-deepfunneled" / name, folder / "lfw" / name)
    for name in LFW_PROTOCOL:
        shutil.copyfile(MIRROR / "lfw" / name, folder / name)
    archive = Path(shutil.make_archive(str(folder / "lfw-funneled"), "gztar", folder, "lfw"))
    shutil.rmtree(folder / "lfw")
    fetch("lfw", source=archive)
    records = load_lfw_people("all")
    assert len(records) == len(_lfw_images())
    assert (records[0].path.parent.parent.name, records[0].path.parent.parent.parent.name) == ("lfw", "lfw")


def test_from_lfw_archive_alone(tmp_path, roots):
    data, _ = roots
    folder = tmp_path / "by-hand"
    folder.mkdir()
    _write_lfw_files(folder)
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copyfile(folder / LFW.sources[0].filename, lonely / LFW.sources[0].filename)
    with pytest.raises(LayoutError) as caught:
        fetch("lfw", source=lonely / LFW.sources[0].filename)
    assert "pairsDevTest.txt" in str(caught.value)
    assert "next to the archive" in str(caught.value)
    assert not (data / "lfw").exists()
    assert _leftovers(data) == []


def test_from_wrong_folder(tmp_path, roots):
    with pytest.raises(LayoutError, match="AFDB_face_dataset"):
        fetch("rmfrd", source=MIRROR / "att_faces")


@pytest.mark.parametrize("name", ["fmd", "rmfrd", "att_faces"])
def test_manual_dataset_instructions(roots, name):
    spec = registry.get_dataset(name)
    with pytest.raises(ManualDownloadError) as caught:
        fetch(name)
    assert spec.manual_instructions in str(caught.value)
    assert "--from" in str(caught.value)


def test_mirror_root_not_written(monkeypatch):
    monkeypatch.setenv("MFR_DATA_DIR", str(MIRROR))
    before = sorted(p.name for p in MIRROR.iterdir())
    for name in registry.DATASETS:
        assert fetch(name) == MIRROR / registry.DATASETS[name].folder
    assert sorted(p.name for p in MIRROR.iterdir()) == before


def _read_only_folder(tmp_path):
    """Return a folder this process cannot create entries in, even as root."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    # Permission bits do not restrict root, but sysfs rejects new entries with EPERM.
    folder = Path("/sys/mfr-course-read-only-test")
    try:
        folder.mkdir()
    except OSError:
        return folder
    folder.rmdir()
    raise AssertionError("/sys accepts new folders on this machine, so no read-only data root is available for the test.")


def test_read_only_root(tmp_path, roots, monkeypatch):
    read_only = _read_only_folder(tmp_path)
    monkeypatch.setenv("MFR_DATA_DIR", str(read_only))
    try:
        with pytest.raises(DataRootNotWritableError, match="MFR_DATA_DIR"):
            fetch("att_faces", source=MIRROR / "att_faces")
    finally:
        if read_only.is_relative_to(tmp_path):
            read_only.chmod(0o755)


# --- verify and the command line ---------------------------------------------------


README_COUNTS = {
    "lfw": {"images": 5985},
    "fmd": {"images": 120},
    "rmfrd": {"people": 23, "unmasked": 918, "masked": 362},
    "mask_classification": {"with_mask": 1000, "without_mask": 1000},
    "att_faces": {"images": 400, "people": 40},
}


def test_verify_mirror():
    reports = {report.name: report for report in verify()}
    assert list(reports) == list(registry.DATASETS)
    for name, expected in README_COUNTS.items():
        assert reports[name].present, reports[name].summary()
        for key, value in expected.items():
            assert reports[name].counts[key] == value, (name, key)
    assert reports["att_faces"].status == "complete"
    assert reports["lfw"].status == "subset"
    assert reports["fmd"].counts["boxes"] == sum(reports["fmd"].counts[c] for c in ("with_mask", "without_mask", "mask_weared_incorrect"))
    assert reports["fmd"].counts["mask_weared_incorrect"] > 0


def test_verify_deep_finds_broken(tmp_path, roots):
    source = _att_subset(tmp_path / "download")
    (source / "s2" / "3.pgm").write_bytes(b"")
    fetch("att_faces", source=source)
    (report,) = verify("att_faces", deep=True)
    assert report.present
    assert [(p.name, reason) for p, reason in report.unreadable] == [("3.pgm", "empty file (0 bytes)")]
    assert not report.ok


def test_verify_missing(roots):
    reports = verify()
    assert [r.status for r in reports] == ["missing"] * len(reports)
    assert "fetch lfw" in reports[0].summary()


def _cli(*arguments, env=None):
    return subprocess.run(
        [sys.executable, str(REPO / "data_scripts" / "mfr_data.py"), *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_cli_verify_mirror():
    result = _cli("verify", env={"MFR_DATA_DIR": str(MIRROR)})
    assert result.returncode == 0, result.stderr
    for name in registry.DATASETS:
        assert f"{name}: " in result.stdout
    assert "missing" not in result.stdout
    assert "5,985 of 13,233 images" in result.stdout


def test_cli_verify_missing(tmp_path):
    result = _cli("verify", "att_faces", env={"MFR_DATA_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert "att_faces: missing" in result.stdout


def test_cli_fetch_manual(tmp_path):
    result = _cli("fetch", "rmfrd", env={"MFR_DATA_DIR": str(tmp_path), "MFR_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 1
    assert "X-zhangyang/Real-World-Masked-Face-Dataset" in result.stderr


def test_cli_fetch_from(tmp_path):
    result = _cli(
        "--data-dir",
        str(tmp_path / "data"),
        "fetch",
        "att_faces",
        "--from",
        str(MIRROR / "att_faces"),
        env={"MFR_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "att_faces" / "s40" / "10.pgm").is_file()


def test_cli_fetch_all_mirror(tmp_path, server):
    _write_lfw_files(server.folder)
    _write_mask_classification_zip(server.folder)
    data = tmp_path / "data"
    result = _cli(
        "fetch", "all", "--mirror", server.www,
        env={"MFR_DATA_DIR": str(data), "MFR_CACHE_DIR": str(tmp_path / "cache"), "NO_PROXY": "127.0.0.1"},
    )
    assert result.returncode == 1
    assert f"lfw: ready in {data / 'lfw'}" in result.stdout
    assert "mask_classification: ready in" in result.stdout
    assert "Not fetched: fmd, rmfrd, att_faces." in result.stderr
    assert "kagglehub" in result.stderr
    assert sorted(p.name for p in data.iterdir()) == ["Face-Mask-Detection-master", "lfw"]


def test_cli_info():
    result = _cli("info", "lfw", env={"MFR_DATA_DIR": str(MIRROR)})
    assert result.returncode == 0, result.stderr
    for text in ("Labeled Faces in the Wild", "Huang", "https://umass-vis-lfw.github.io/", "13,233 images", str(MIRROR / "lfw")):
        assert text in result.stdout


def test_cli_rejects_unknown_name():
    result = _cli("verify", "lfw2")
    assert result.returncode == 2
    assert "lfw2" in result.stderr
