"""Download, check and install the datasets of the course.

:func:`fetch` puts one dataset into the data root (``MFR_DATA_DIR``), laid out
as its upstream archive extracts, from one of three places:

* the upstream address recorded in the registry (the default);
* a mirror that serves the same file names (``mirror_url=`` or the
  ``MFR_MIRROR_URL`` environment variable), for example an institution's copy;
* a copy the user already has (``source=``): a folder with the dataset's
  layout, a folder containing the downloaded files, or an archive. No network
  is used in that case.

Downloads go to ``<cache>/downloads`` through a temporary file that is renamed
only once the transfer is complete and its SHA-256 matches, so an interrupted
or corrupted download leaves no file behind. Archives are checked member by
member before anything is written: a member that would land outside the target
folder (``..``, an absolute path, a link pointing outside) rejects the whole
archive. The dataset is assembled in a temporary folder next to its final
place and renamed into place at the end, so the data root never contains half
a dataset.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterator, Mapping
from urllib.parse import quote

from ..config import cache_dir
from ..images import is_hidden
from .registry import DatasetNotFoundError, DatasetSpec, Source, get_dataset

log = logging.getLogger(__name__)

MIRROR_URL_VARIABLE = "MFR_MIRROR_URL"
"""Environment variable with the base address of a mirror; see :func:`source_url`."""

FETCH_COMMAND = "python data_scripts/mfr_data.py fetch"
INFO_COMMAND = "python data_scripts/mfr_data.py info"

_DOWNLOAD_TIMEOUT_S = 60
_SEARCH_DEPTH = 3


# --- errors ---------------------------------------------------------------------


class FetchError(RuntimeError):
    """A dataset could not be fetched; the message explains why and what to do next."""


class DownloadError(FetchError):
    """A transfer failed (network error, HTTP error, connection closed early)."""


class ChecksumError(FetchError):
    """A downloaded file whose SHA-256 differs from the one in the registry."""

    def __init__(self, filename: str, url: str, expected: str, actual: str):
        self.filename = filename
        self.url = url
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"Checksum mismatch for {filename!r} downloaded from {url}: expected SHA-256 {expected}, "
            f"got {actual}. The file was deleted. The server may hold a different version or a damaged "
            "copy: run the command again, try another server with --mirror URL, or download the file "
            "yourself and pass it with --from PATH."
        )


class UnsafeArchiveError(FetchError):
    """An archive with a member that would be written outside the target folder."""

    def __init__(self, archive: Path, member: str, reason: str):
        self.archive = Path(archive)
        self.member = member
        self.reason = reason
        super().__init__(
            f"Archive {str(self.archive)!r} was rejected: member {member!r} {reason}, so extracting it "
            "would write outside the target folder. Nothing was extracted. The file is damaged or was "
            "not made by the dataset's publisher; delete it and download it again from a trusted source."
        )


class ManualDownloadError(FetchError):
    """A dataset whose publisher allows no automatic download; the message has the instructions."""

    def __init__(self, spec: DatasetSpec):
        self.name = spec.name
        self.instructions = spec.manual_instructions
        super().__init__(
            f"Dataset {spec.name!r} ({spec.title}) cannot be downloaded automatically. "
            f"{spec.manual_instructions} The dataset is then installed into {str(spec.path)!r}."
        )


class LayoutError(FetchError):
    """Files that do not have the layout the dataset's loader expects."""


class DataRootNotWritableError(FetchError):
    """The data root cannot be written, and the dataset is not in it yet."""


# --- layout ---------------------------------------------------------------------


def layout_problem(spec: DatasetSpec, root: os.PathLike | str | None = None) -> str | None:
    """Check that ``root`` has the layout the loaders of ``spec`` read.

    Parameters
    ----------
    spec : DatasetSpec
    root : path, optional
        Folder to check; default: the dataset's folder in the data root.

    Returns
    -------
    str or None
        None when the layout is complete, otherwise what is missing, in a few words.
    """
    root = spec.path if root is None else Path(root)
    if not root.is_dir():
        return f"folder {str(root)!r} does not exist"
    for relative in spec.required_paths:
        if not any(root.glob(relative)):
            return f"{relative!r} is missing in {str(root)!r}"
    if spec.name == "lfw":
        from .loaders import lfw_image_root

        try:
            lfw_image_root(root)
        except DatasetNotFoundError:
            return f"no folder of <Name>/<Name>_0001.jpg images in {str(root)!r}"
    return None


def find_dataset_root(spec: DatasetSpec, folder: os.PathLike | str, depth: int = _SEARCH_DEPTH) -> Path | None:
    """Find the folder with the layout of ``spec`` at most ``depth`` levels below ``folder``.

    Downloaded archives wrap the dataset in folders whose names vary (Kaggle's
    ``archive/``, a GitHub ``<repo>-master/``), so the dataset is found by its
    content, breadth first, skipping hidden folders such as ``__MACOSX``.
    """
    level = [Path(folder)]
    for _ in range(depth + 1):
        following = []
        for candidate in level:
            if layout_problem(spec, candidate) is None:
                return candidate
            with contextlib.suppress(OSError):
                following.extend(sorted(p for p in candidate.iterdir() if p.is_dir() and not is_hidden(p)))
        level = following
    return None


# --- download -------------------------------------------------------------------


def source_url(source: Source, mirror_url: str | None = None) -> str:
    """Return the address to download ``source`` from.

    A mirror replaces the upstream base address and keeps the file name:
    with ``mirror_url="https://data.example.org/mfr"`` the LFW archive is read
    from ``https://data.example.org/mfr/lfw-deepfunneled.zip``. ``mirror_url``
    defaults to the ``MFR_MIRROR_URL`` environment variable; without either,
    the upstream address :attr:`Source.url` is returned.
    """
    if mirror_url is None:
        mirror_url = os.environ.get(MIRROR_URL_VARIABLE) or None
    if not mirror_url:
        return source.url
    return f"{mirror_url.rstrip('/')}/{quote(source.filename)}"


def _expected_sha256(source: Source) -> str | None:
    if not source.sha256:
        return None
    value = source.sha256.strip().lower()
    return value.split(":", 1)[1] if value.startswith("sha256:") else value


def _sha256(path: Path) -> str:
    import pooch

    return pooch.file_hash(str(path), alg="sha256")


def _downloader(url: str):
    import pooch

    if url.startswith(("http://", "https://")):
        return pooch.HTTPDownloader(progressbar=True, chunk_size=1 << 16, timeout=_DOWNLOAD_TIMEOUT_S)
    return pooch.choose_downloader(url, progressbar=True)


def download(source: Source, mirror_url: str | None = None, force: bool = False, directory: os.PathLike | str | None = None) -> Path:
    """Download one file of a dataset into the download cache, atomically.

    Parameters
    ----------
    source : Source
        The file; its SHA-256, when recorded, is checked.
    mirror_url : str, optional
        Base address replacing the upstream one (see :func:`source_url`).
    force : bool
        Download again even when the cache already contains the file.
    directory : path, optional
        Download folder; default ``cache_dir("downloads")``.

    Returns
    -------
    Path
        ``<directory>/<source.filename>``.

    Raises
    ------
    DownloadError
        The transfer failed; no file is left in ``directory``.
    ChecksumError
        The file arrived but its SHA-256 is not the recorded one; it is deleted.
    """
    import requests

    directory = cache_dir("downloads") if directory is None else Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / source.filename
    expected = _expected_sha256(source)
    url = source_url(source, mirror_url)

    if final.is_file() and not force:
        if expected is None or _sha256(final) == expected:
            log.info("Using %s from the download cache.", final)
            return final
        log.warning("%s in the download cache has the wrong SHA-256; downloading it again.", final)

    handle, partial_name = tempfile.mkstemp(dir=directory, prefix=f".{source.filename}.", suffix=".part")
    os.close(handle)
    partial = Path(partial_name)
    log.info("Downloading %s", url)
    try:
        try:
            _downloader(url)(url, str(partial), None)
        except (requests.exceptions.RequestException, OSError) as error:
            raise DownloadError(
                f"Downloading {url} failed ({type(error).__name__}: {error}). Nothing was saved; run the "
                "command again to retry, use --mirror URL for another server, or download the file yourself "
                "and pass it with --from PATH."
            ) from error
        actual = _sha256(partial)
        if expected is not None and actual != expected:
            raise ChecksumError(source.filename, url, expected, actual)
        if expected is None:
            log.info("%s has SHA-256 %s (no checksum is recorded for it).", source.filename, actual)
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    return final


# --- safe extraction -------------------------------------------------------------


_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def _unsafe_name(name: str) -> str | None:
    """Return why an archive member name is unsafe, or None."""
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or _WINDOWS_DRIVE.match(normalized):
        return "has an absolute path"
    if ".." in PurePosixPath(normalized).parts:
        return "contains '..'"
    return None


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_link(archive: Path, member: str, link_target: str, target: Path, relative_to_member: bool) -> None:
    """Reject a link whose target resolves outside ``target``."""
    if link_target.startswith("/") or _WINDOWS_DRIVE.match(link_target):
        raise UnsafeArchiveError(archive, member, f"is a link to the absolute path {link_target!r}")
    base = target / PurePosixPath(member.replace("\\", "/")).parent if relative_to_member else target
    if not _inside(Path(os.path.normpath(base / link_target)), target):
        raise UnsafeArchiveError(archive, member, f"is a link to {link_target!r}, outside the archive")


def _zip_members(archive: Path, handle: zipfile.ZipFile, target: Path) -> list[zipfile.ZipInfo]:
    members = handle.infolist()
    for info in members:
        reason = _unsafe_name(info.filename)
        if reason:
            raise UnsafeArchiveError(archive, info.filename, reason)
        if stat.S_ISLNK(info.external_attr >> 16):
            link_target = handle.read(info).decode("utf-8", "replace")
            _check_link(archive, info.filename, link_target, target, relative_to_member=True)
    return members


def _tar_members(archive: Path, handle: tarfile.TarFile, target: Path) -> list[tarfile.TarInfo]:
    members = handle.getmembers()
    for member in members:
        reason = _unsafe_name(member.name)
        if reason:
            raise UnsafeArchiveError(archive, member.name, reason)
        if member.issym():
            _check_link(archive, member.name, member.linkname, target, relative_to_member=True)
        elif member.islnk():
            # A hard link names another member, relative to the archive root.
            _check_link(archive, member.name, member.linkname, target, relative_to_member=False)
        elif not (member.isfile() or member.isdir()):
            raise UnsafeArchiveError(archive, member.name, "is a device file or FIFO")
    return members


def extract_archive(archive: os.PathLike | str, target: os.PathLike | str) -> Path:
    """Extract a ``.zip`` or tar archive (``.tar``, ``.tgz``, ``.tar.gz``) into ``target``, safely.

    Every member is checked before anything is written. The archive is
    rejected as a whole when a member has an absolute path, contains ``..``,
    is a symbolic or hard link that resolves outside ``target``, or (tar) is a
    device file or FIFO. Tar archives are also extracted with the standard
    library's ``"data"`` extraction filter where Python provides it.

    Parameters
    ----------
    archive : path
        The archive; its format is detected from its content, not its name.
    target : path
        Folder that receives the members; created when missing.

    Returns
    -------
    Path
        ``target``.

    Raises
    ------
    UnsafeArchiveError
        A member would land outside ``target``; nothing was written.
    FetchError
        The file is neither a zip nor a tar archive, or it is damaged.
    """
    from tqdm.auto import tqdm

    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    target = target.resolve()
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as handle:
                members = _zip_members(archive, handle, target)
                for info in tqdm(members, desc=f"Extracting {archive.name}", unit="file", disable=len(members) < 1000):
                    handle.extract(info, target)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as handle:
                members = _tar_members(archive, handle, target)
                options = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                for member in tqdm(members, desc=f"Extracting {archive.name}", unit="file", disable=len(members) < 1000):
                    handle.extract(member, target, **options)
        else:
            raise FetchError(
                f"{str(archive)!r} is neither a zip nor a tar archive. Check that the download is complete, "
                "or pass the extracted folder with --from."
            )
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
        raise FetchError(
            f"Archive {str(archive)!r} is damaged ({error}). Delete it and download it again."
        ) from error
    return target


# --- installing into the data root ----------------------------------------------


@contextlib.contextmanager
def _staging(spec: DatasetSpec) -> Iterator[Path]:
    """Yield a temporary folder next to the dataset's final place, removed at the end."""
    root = spec.path.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{spec.folder}.partial-", dir=root))
    except OSError as error:
        if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        raise DataRootNotWritableError(
            f"Cannot install dataset {spec.name!r}: the data root {str(root)!r} is not writable ({error}). "
            "Set MFR_DATA_DIR to a writable folder, or ask whoever manages the read-only copy to add the dataset."
        ) from error
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _commit(spec: DatasetSpec, staged: Path, staging: Path) -> Path:
    """Move ``staged`` (inside ``staging``) to the dataset's folder, replacing what is there.

    An existing folder is moved aside first and put back if the final rename
    fails, so the data root keeps either the old dataset or the new one.
    """
    destination = spec.path
    link_target = previous = None
    if destination.is_symlink():
        link_target = os.readlink(destination)
        destination.unlink()
    elif destination.exists():
        previous = staging / ".previous"
        os.replace(destination, previous)
    try:
        os.replace(staged, destination)
    except OSError:
        if previous is not None:
            os.replace(previous, destination)
        elif link_target is not None:
            os.symlink(link_target, destination, target_is_directory=True)
        raise
    log.info("Dataset %r is ready in %s", spec.name, destination)
    return destination


def _layout_error(spec: DatasetSpec, folder: Path, origin: str, hint: str = "") -> LayoutError:
    expected = ", ".join(spec.required_paths) or "its files"
    return LayoutError(
        f"{origin} does not contain dataset {spec.name!r} laid out as its loader expects "
        f"(expected {expected}; {layout_problem(spec, folder)}).{hint} Check that it is the download "
        f"described by `{INFO_COMMAND} {spec.name}`."
    )


def _check_layout(spec: DatasetSpec, folder: Path, origin: str, hint: str = "") -> Path:
    """Return the dataset root inside ``folder``, or raise :class:`LayoutError` naming ``origin``."""
    root = find_dataset_root(spec, folder)
    if root is None:
        raise _layout_error(spec, folder, origin, hint)
    return root


def _install_files(spec: DatasetSpec, files: Mapping[str, Path], origin: str, hint: str = "") -> Path:
    """Assemble the dataset from local files standing for its sources, then move it into place.

    ``files`` maps :attr:`Source.filename` to a local file; sources without
    an entry are left out. Archives are extracted and other files copied,
    each into its source's ``extract_to`` folder.
    """
    with _staging(spec) as staging:
        staged = staging / spec.folder
        staged.mkdir()
        for source in spec.sources:
            path = files.get(source.filename)
            if path is None:
                continue
            target = Path(os.path.normpath(staged / source.extract_to))
            if not _inside(target, staging):
                raise FetchError(f"Registry error: extract_to={source.extract_to!r} of {source.filename!r} leaves the data root.")
            if source.is_archive:
                extract_archive(path, target)
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target / source.filename)
        root = staged if layout_problem(spec, staged) is None else _check_layout(spec, staging, origin, hint)
        return _commit(spec, root, staging)


def _place_folder(spec: DatasetSpec, root: Path, copy: bool) -> Path:
    """Link (or copy) an existing dataset folder into the data root."""
    with _staging(spec) as staging:
        staged = staging / spec.folder
        if not copy:
            try:
                os.symlink(root.resolve(), staged, target_is_directory=True)
                log.info("Linking %s to %s", spec.path, root)
            except OSError as error:
                log.info("Cannot create a symbolic link (%s); copying instead.", error)
                copy = True
        if copy:
            log.info("Copying %s to %s", root, spec.path)
            shutil.copytree(root, staged, ignore=shutil.ignore_patterns(".*", "__MACOSX"))
        return _commit(spec, staged, staging)


def _install_from(spec: DatasetSpec, path: Path, copy: bool) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"--from path {str(path)!r} does not exist; pass a folder or an archive of dataset {spec.name!r}.")
    filenames = [source.filename for source in spec.sources]

    if path.is_dir():
        root = find_dataset_root(spec, path)
        if root is not None:
            if root.resolve() == spec.path.resolve():
                log.info("Dataset %r is already in place at %s", spec.name, root)
                return spec.path
            if _inside(spec.path.resolve(), root.resolve()) or _inside(root.resolve(), spec.path.resolve()):
                raise FetchError(
                    f"Cannot install {str(root)!r} as {str(spec.path)!r}: one folder contains the other. "
                    "Pass a copy outside the data root, or set MFR_DATA_DIR to the folder that contains the dataset."
                )
            return _place_folder(spec, root, copy)
        files = {name: path / name for name in filenames}
        if filenames and all(p.is_file() for p in files.values()):
            return _install_files(spec, files, f"The files in {str(path)!r}")
        raise _layout_error(spec, path, f"Folder {str(path)!r}")

    archives = [source for source in spec.sources if source.is_archive]
    if len(archives) == 1:
        # The user's archive stands for the registry's archive, whatever its name or
        # format. The other downloads (the LFW protocol files) are taken from its folder.
        others = {source.filename: path.parent / source.filename for source in spec.sources if not source.is_archive}
        files = {name: other for name, other in others.items() if other.is_file()}
        files[archives[0].filename] = path
        missing = [name for name in others if name not in files]
        hint = f" Put {', '.join(missing)} next to the archive, or pass a folder containing them all." if missing else ""
        return _install_files(spec, files, f"Archive {str(path)!r}", hint)

    with _staging(spec) as staging:
        extracted = extract_archive(path, staging / "extracted")
        root = _check_layout(spec, extracted, f"Archive {str(path)!r}")
        return _commit(spec, root, staging)


def fetch(
    name: str,
    source: os.PathLike | str | None = None,
    mirror_url: str | None = None,
    force: bool = False,
    copy: bool = False,
) -> Path:
    """Put a dataset into the data root, unless it is already there.

    Parameters
    ----------
    name : str
        Registry name: ``"lfw"``, ``"fmd"``, ``"rmfrd"``, ``"mask_classification"``
        or ``"att_faces"``.
    source : path, optional
        A copy the user already has, used without network. It can be:

        * a folder with the dataset's layout, found up to three levels down.
          It is linked into the data root, or copied when ``copy`` is True or
          links are not possible.
        * a folder containing the files the registry downloads, under the
          same names.
        * an archive of the dataset, which is extracted.
    mirror_url : str, optional
        Base address of a mirror serving the registry's file names; default
        ``MFR_MIRROR_URL``. Ignored when ``source`` is given.
    force : bool
        Download and install again even when the dataset is present; the old
        folder is replaced only once the new one is complete.
    copy : bool
        With a folder ``source``, copy it instead of linking it.

    Returns
    -------
    Path
        The dataset's folder, ``<data root>/<spec.folder>``.

    Raises
    ------
    ManualDownloadError
        The dataset has no automatic download and ``source`` is None; the
        message contains the publisher's download instructions.
    DownloadError, ChecksumError, UnsafeArchiveError, LayoutError
        The download or its content is not usable; the data root is unchanged.
    DataRootNotWritableError
        The dataset is missing and the data root is read-only.
    """
    spec = get_dataset(name)
    destination = spec.path
    problem = layout_problem(spec)
    if problem is None and not force:
        log.info("Dataset %r is already present in %s; use force=True (--force) to fetch it again.", name, destination)
        return destination
    if (destination.exists() or destination.is_symlink()) and problem is not None and not force:
        raise FetchError(
            f"Dataset {name!r} is incomplete in {str(destination)!r} ({problem}). "
            "Fetch it again with --force to replace that folder, or delete the folder first."
        )

    if source is not None:
        return _install_from(spec, Path(source).expanduser(), copy)
    if not spec.sources:
        raise ManualDownloadError(spec)
    files = {src.filename: download(src, mirror_url=mirror_url, force=force) for src in spec.sources}
    return _install_files(spec, files, f"The download of {name!r}")
