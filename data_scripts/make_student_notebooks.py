"""Write the student versions of the course notebooks.

Usage::

    python data_scripts/make_student_notebooks.py [--out DIR] [--clear-all-outputs] [notebooks ...]

Without notebook arguments every ``notebooks/*.ipynb`` is converted. Each
region between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes
``# YOUR CODE HERE`` plus a ``raise NotImplementedError(...)`` line, hidden-test
regions are removed, and the outputs of the changed cells are cleared. The
source notebooks are not modified. See ``course_lib/student.py`` for details.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from course_lib.student import MarkerError, write_student_notebooks  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write student versions of the course notebooks (solutions replaced by placeholders).")
    parser.add_argument(
        "notebooks",
        nargs="*",
        type=Path,
        help="source notebooks to convert (default: every notebooks/*.ipynb of the repository)",
    )
    parser.add_argument("--out", type=Path, default=REPOSITORY / "student", help="output folder (default: student/ in the repository root)")
    parser.add_argument(
        "--clear-all-outputs",
        action="store_true",
        help="clear the outputs of every code cell, not only of the exercise cells",
    )
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    notebooks = arguments.notebooks or sorted((REPOSITORY / "notebooks").glob("*.ipynb"))
    if not notebooks:
        parser.error(f"no notebooks found in {REPOSITORY / 'notebooks'}; pass the notebooks to convert.")
    try:
        reports = write_student_notebooks(notebooks, arguments.out, clear_all_outputs=arguments.clear_all_outputs)
    except (MarkerError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    exercises = sum(len(report.exercise_cells) for report in reports)
    print(f"Wrote {len(reports)} student notebook(s) with {exercises} exercise cell(s) to {arguments.out}.")
    for report in reports:
        if not report.exercise_cells:
            print(f"warning: {report.name} has no exercise cells (no '### BEGIN SOLUTION' marker).", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
