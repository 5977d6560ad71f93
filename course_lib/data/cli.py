"""Command-line tool ``mfr-data``: fetch, verify and describe the datasets of the course.

Examples
--------
::

    mfr-data fetch lfw mask_classification
    mfr-data fetch att_faces --from ~/Downloads/att_faces.zip
    mfr-data fetch all --mirror https://data.example.org/mfr
    mfr-data verify --deep
    mfr-data info rmfrd

``python data_scripts/mfr_data.py`` runs the same tool from a checkout.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from typing import Sequence

from ..config import CACHE_DIR_VARIABLE, DATA_DIR_VARIABLE, cache_dir, data_dir
from .registry import DATASETS, get_dataset



def _build_parser() -> argparse.ArgumentParser:
    names = ", ".join(DATASETS)
    manual = ", ".join(name for name, spec in DATASETS.items() if not spec.sources)
    parser = argparse.ArgumentParser(
        prog="mfr-data",
        description=(
            "Fetch, verify and describe the datasets of the masked face recognition course. "
            f"Datasets: {names}."
        ),
        epilog=(
            f"The data root is {DATA_DIR_VARIABLE} (now: {data_dir()}); downloads are kept in "
            f"<{CACHE_DIR_VARIABLE}>/downloads."
        ),
    )
    parser.add_argument(
        "--data-dir",
        metavar="PATH",
        help=f"data root to use for this command; sets {DATA_DIR_VARIABLE}.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only warnings and errors.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fetch = commands.add_parser(
        "fetch",
        help="download a dataset, or install a copy you already have, into the data root.",
        description=(
            "Put datasets into the data root. A dataset already present is left as it is unless --force "
            f"is given. {manual} cannot be downloaded automatically: fetching them without --from prints "
            "where to get them."
        ),
    )
    fetch.add_argument("names", nargs="+", metavar="NAME", choices=[*DATASETS, "all"], help=f"dataset(s): {names}, or all.")
    fetch.add_argument(
        "--from",
        dest="source",
        metavar="PATH",
        help=(
            "install from a copy you already have, without network: a folder with the dataset's layout "
            "(linked into the data root), a folder holding the downloaded files, or an archive "
            "(.zip, .tar, .tgz, .tar.gz). Only with one dataset name."
        ),
    )
    fetch.add_argument(
        "--mirror",
        metavar="URL",
        help=(
            "base address of a mirror that serves the same file names as upstream, for example "
            "https://data.example.org/mfr; default: the MFR_MIRROR_URL environment variable."
        ),
    )
    fetch.add_argument("--force", action="store_true", help="download and install again even when the dataset is present.")
    fetch.add_argument("--copy", action="store_true", help="with --from FOLDER, copy the folder instead of linking it.")

    verify = commands.add_parser(
        "verify",
        help="report which datasets are present, and whether they are complete or a subset.",
        description="Count the images, people and boxes of each dataset on disk. Exits with status 1 when a dataset is missing.",
    )
    verify.add_argument("names", nargs="*", metavar="NAME", help=f"dataset(s) to check: {names}; default: all.")
    verify.add_argument(
        "--deep",
        action="store_true",
        help="also decode every image and list the unreadable ones (slow); such files also give exit status 1.",
    )

    info = commands.add_parser(
        "info",
        help="describe a dataset: title, size, terms, citation, homepage and where it is on disk.",
    )
    info.add_argument("name", nargs="?", metavar="NAME", choices=[*DATASETS, None], help=f"dataset: {names}; default: all.")
    return parser


def _run_fetch(arguments: argparse.Namespace) -> int:
    from .fetch import FetchError, fetch

    names = list(DATASETS) if "all" in arguments.names else list(dict.fromkeys(arguments.names))
    if arguments.source and len(names) > 1:
        print("--from names the copy of one dataset: fetch one dataset at a time with --from.", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        try:
            path = fetch(name, source=arguments.source, mirror_url=arguments.mirror, force=arguments.force, copy=arguments.copy)
        except (FetchError, FileNotFoundError) as error:
            print(f"{name}: {error}", file=sys.stderr)
            failed.append(name)
            continue
        print(f"{name}: ready in {path}")
    if failed:
        print(f"Not fetched: {', '.join(failed)}.", file=sys.stderr)
        return 1
    return 0


def _run_verify(arguments: argparse.Namespace) -> int:
    from .verify import verify

    reports = verify(arguments.names or None, deep=arguments.deep, progress=arguments.deep)
    print(f"Data root: {data_dir()}")
    for report in reports:
        print(report.summary())
    bad = [report.name for report in reports if not report.ok]
    if bad:
        print(f"Not usable: {', '.join(bad)}.", file=sys.stderr)
        return 1
    return 0


def _format_info(name: str) -> str:
    from .fetch import layout_problem

    spec = get_dataset(name)
    problem = layout_problem(spec)
    where = f"{spec.path} (present)" if problem is None else f"{spec.path} (missing: {problem})"
    size = ", ".join(f"{value:,} {key}" for key, value in spec.full_size.items())
    if spec.sources:
        origin = "downloaded from " + ", ".join(source.url for source in spec.sources)
    else:
        origin = spec.manual_instructions
    fields = [
        ("Title", spec.title),
        ("Description", spec.description),
        ("Full size", size),
        ("Terms", spec.terms),
        ("Citation", spec.citation),
        ("Homepage", spec.homepage),
        ("On disk", where),
        ("Source", origin),
    ]
    if spec.sources:
        fields.append(("Mirror files", "a --mirror URL must serve " + ", ".join(s.filename for s in spec.sources)))
    lines = [f"{spec.name}"]
    for label, text in fields:
        wrapped = textwrap.wrap(text, width=100, initial_indent=f"  {label + ':':<14}", subsequent_indent=" " * 16, break_on_hyphens=False)
        lines.extend(wrapped)
    return "\n".join(lines)


def _run_info(arguments: argparse.Namespace) -> int:
    names = [arguments.name] if arguments.name else list(DATASETS)
    print(f"Data root: {data_dir()}\nDownload cache: {cache_dir('downloads', create=False)}\n")
    print("\n\n".join(_format_info(name) for name in names))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mfr-data`` command line; return the exit status (0 on success)."""
    parser = _build_parser()
    arguments = parser.parse_args(argv)
    unknown = [name for name in getattr(arguments, "names", []) if name not in DATASETS and name != "all"]
    if unknown:
        parser.error(f"unknown dataset {unknown[0]!r}; choose from {', '.join(DATASETS)}.")
    if arguments.data_dir:
        os.environ[DATA_DIR_VARIABLE] = os.path.abspath(os.path.expanduser(arguments.data_dir))
    logging.basicConfig(level=logging.WARNING if arguments.quiet else logging.INFO, format="%(message)s")
    runners = {"fetch": _run_fetch, "verify": _run_verify, "info": _run_info}
    return runners[arguments.command](arguments)


if __name__ == "__main__":
    sys.exit(main())
