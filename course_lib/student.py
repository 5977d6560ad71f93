"""Generate student versions of the course notebooks.

The source notebooks hold the reference solutions between nbgrader's markers::

    ### BEGIN SOLUTION
    answer = images.mean(axis=0)
    ### END SOLUTION
    exercise.check(answer)

The student version replaces each marked region, markers included, by a
placeholder at the indentation of the ``### BEGIN SOLUTION`` line::

    # YOUR CODE HERE
    raise NotImplementedError("Exercise not implemented yet: ...")
    exercise.check(answer)

so an unfinished exercise stops at its own cell with a clear message, and every
other cell still runs (as long as no other cell reads a variable that only the
exercise defines). Regions between ``### BEGIN HIDDEN TESTS`` and
``### END HIDDEN TESTS`` are removed. In markdown cells a solution region becomes
``YOUR ANSWER HERE``. Outputs of the cells that changed are cleared, because
they show the solution's results.

These are the markers and replacements that nbgrader's ``generate_assignment``
uses by default, so the same source notebooks also work as nbgrader assignments.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path
from typing import Iterable

import nbformat

log = logging.getLogger(__name__)

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN_TESTS = "### BEGIN HIDDEN TESTS"
END_HIDDEN_TESTS = "### END HIDDEN TESTS"

CODE_PLACEHOLDER = "# YOUR CODE HERE"
MARKDOWN_PLACEHOLDER = "YOUR ANSWER HERE"
NOT_IMPLEMENTED_MESSAGE = "Exercise not implemented yet: write your code here, then run the cell again."
"""Message of the ``NotImplementedError`` raised by an unfinished exercise cell."""

NOT_IMPLEMENTED_LINE = f'raise NotImplementedError("{NOT_IMPLEMENTED_MESSAGE}")'


class MarkerError(ValueError):
    """Solution or hidden-test markers that do not pair up in a cell.

    Attributes
    ----------
    notebook : str
        Name of the notebook.
    cell : int
        Index of the cell in the notebook, counting from 0.
    line : int
        Line of the cell, counting from 1, where the problem was found.
    """

    def __init__(self, notebook: str, cell: int, line: int, problem: str):
        self.notebook = notebook
        self.cell = cell
        self.line = line
        super().__init__(
            f"{notebook}, cell {cell} (counting from 0), line {line}: {problem}. "
            f"Each '{BEGIN_SOLUTION}' needs one '{END_SOLUTION}' after it in the same cell "
            f"(and likewise '{BEGIN_HIDDEN_TESTS}' / '{END_HIDDEN_TESTS}'), without nesting."
        )


@dataclasses.dataclass(frozen=True)
class StudentNotebookReport:
    """What :func:`make_student_notebook` changed in one notebook.

    Attributes
    ----------
    name : str
        Name of the notebook.
    exercise_cells : tuple of int
        Indices of the code cells whose solution regions were replaced; in the
        student version each of them raises ``NotImplementedError``.
    changed_cells : tuple of int
        Indices of every cell that changed (exercise cells, markdown answers,
        cells that lost hidden tests).
    solution_regions : int
        Number of solution regions replaced.
    hidden_test_regions : int
        Number of hidden-test regions removed.
    """

    name: str
    exercise_cells: tuple[int, ...]
    changed_cells: tuple[int, ...]
    solution_regions: int
    hidden_test_regions: int


def _marker_at(line: str, marker: str) -> bool:
    # nbgrader matches a marker only when it is alone on its line (leading and trailing blanks allowed).
    return line.strip() == marker


def _indentation(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _strip_cell(source: str, cell_type: str, notebook: str, cell: int) -> tuple[str, int, int]:
    """Replace solution regions and drop hidden-test regions of one cell's source.

    Returns the new source, the number of solution regions and the number of
    hidden-test regions.
    """
    lines = source.splitlines()
    output: list[str] = []
    open_region: tuple[str, int] | None = None  # (kind, line number of its BEGIN marker)
    solutions = hidden = 0

    for number, line in enumerate(lines, start=1):
        begins_solution = _marker_at(line, BEGIN_SOLUTION)
        ends_solution = _marker_at(line, END_SOLUTION)
        begins_hidden = _marker_at(line, BEGIN_HIDDEN_TESTS)
        ends_hidden = _marker_at(line, END_HIDDEN_TESTS)

        if begins_solution or begins_hidden:
            if open_region is not None:
                kind, start = open_region
                raise MarkerError(notebook, cell, number, f"a new region begins before the {kind} region opened on line {start} ends")
            open_region = ("solution" if begins_solution else "hidden-test", number)
            if begins_solution:
                solutions += 1
                indent = _indentation(line)
                if cell_type == "code":
                    output.append(f"{indent}{CODE_PLACEHOLDER}")
                    output.append(f"{indent}{NOT_IMPLEMENTED_LINE}")
                else:
                    output.append(f"{indent}{MARKDOWN_PLACEHOLDER}")
            else:
                hidden += 1
            continue

        if ends_solution or ends_hidden:
            expected = "solution" if ends_solution else "hidden-test"
            if open_region is None:
                raise MarkerError(notebook, cell, number, f"an end marker of a {expected} region has no begin marker before it")
            if open_region[0] != expected:
                raise MarkerError(
                    notebook, cell, number, f"the {open_region[0]} region opened on line {open_region[1]} is closed by the end marker of a {expected} region"
                )
            open_region = None
            continue

        if open_region is None:
            output.append(line)

    if open_region is not None:
        kind, start = open_region
        raise MarkerError(notebook, cell, start, f"the {kind} region that begins here has no end marker")

    new_source = "\n".join(output)
    if source.endswith("\n") and new_source:
        new_source += "\n"
    return new_source, solutions, hidden


def make_student_notebook(
    notebook: nbformat.NotebookNode, name: str = "notebook", clear_all_outputs: bool = False
) -> tuple[nbformat.NotebookNode, StudentNotebookReport]:
    """Make the student version of a notebook; the input is not modified.

    Parameters
    ----------
    notebook : nbformat.NotebookNode
        Source notebook with solution markers.
    name : str
        Name used in error messages and in the report.
    clear_all_outputs : bool
        Clear the outputs of every code cell, not only of the cells that changed.

    Returns
    -------
    student : nbformat.NotebookNode
        The student version.
    report : StudentNotebookReport

    Raises
    ------
    MarkerError
        When markers in a cell do not pair up; the message names the notebook,
        the cell and the line.
    """
    student = copy.deepcopy(notebook)
    exercise_cells, changed_cells = [], []
    solution_total = hidden_total = 0

    for index, cell in enumerate(student.cells):
        if cell.cell_type not in ("code", "markdown"):
            continue
        new_source, solutions, hidden = _strip_cell(cell.source, cell.cell_type, name, index)
        solution_total += solutions
        hidden_total += hidden
        changed = solutions > 0 or hidden > 0
        if changed:
            cell.source = new_source
            changed_cells.append(index)
            if cell.cell_type == "code" and solutions > 0:
                exercise_cells.append(index)
        if cell.cell_type == "code" and (changed or clear_all_outputs):
            cell.outputs = []
            cell.execution_count = None

    report = StudentNotebookReport(
        name=name,
        exercise_cells=tuple(exercise_cells),
        changed_cells=tuple(changed_cells),
        solution_regions=solution_total,
        hidden_test_regions=hidden_total,
    )
    return student, report


def write_student_notebooks(
    paths: Iterable[str | Path], out_dir: str | Path = "student", clear_all_outputs: bool = False
) -> list[StudentNotebookReport]:
    """Write the student version of each notebook into ``out_dir`` under the same file name.

    Every notebook is converted before any file is written, so a marker error in
    one notebook leaves ``out_dir`` untouched. The source notebooks are only read.

    Parameters
    ----------
    paths : iterable of path
        Source notebooks (``.ipynb``).
    out_dir : path
        Destination folder; created when missing. It must not be the folder of
        a source notebook, which would be overwritten.
    clear_all_outputs : bool
        See :func:`make_student_notebook`.

    Returns
    -------
    list of StudentNotebookReport
        One report per notebook, in the order given.
    """
    out_dir = Path(out_dir)
    sources = [Path(p) for p in paths]
    if not sources:
        raise ValueError("No notebooks were given: pass the paths of the source notebooks (notebooks/*.ipynb).")
    for source in sources:
        if not source.is_file():
            raise FileNotFoundError(f"Notebook {str(source)!r} was not found.")
        if source.resolve().parent == out_dir.resolve():
            raise ValueError(
                f"The output folder {str(out_dir)!r} contains the source notebook {source.name}, which would be overwritten; "
                "choose another folder with --out."
            )

    converted = []
    for source in sources:
        notebook = nbformat.read(source, as_version=4)
        student, report = make_student_notebook(notebook, name=source.name, clear_all_outputs=clear_all_outputs)
        converted.append((source, student, report))

    out_dir.mkdir(parents=True, exist_ok=True)
    for source, student, report in converted:
        nbformat.validate(student)
        nbformat.write(student, out_dir / source.name)
        log.info(
            "%s: %d solution region(s) in %d exercise cell(s) replaced, %d hidden-test region(s) removed.",
            source.name,
            report.solution_regions,
            len(report.exercise_cells),
            report.hidden_test_regions,
        )
    return [report for _, _, report in converted]
