"""Tests of the student-version generator, with both versions executed.

The solution versions must pass every exercise check. The student versions
must stop with ``NotImplementedError`` in exactly the exercise cells while every
other cell still runs. Small synthetic notebooks test the generator's details;
notebook 07 is tested end to end in quick mode; the tests marked ``student``
execute the student version of every notebook of the course (slow: each takes
as long as the notebook itself).
"""

import importlib.util
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from course_lib.student import (
    CODE_PLACEHOLDER,
    MARKDOWN_PLACEHOLDER,
    NOT_IMPLEMENTED_MESSAGE,
    MarkerError,
    make_student_notebook,
    write_student_notebooks,
)

REPOSITORY = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPOSITORY / "notebooks").glob("*.ipynb"))
NOTEBOOK_07 = REPOSITORY / "notebooks" / "07_society_and_security.ipynb"

SETUP = """\
from course_lib.exercises import Exercise, expect_number

double = Exercise("double", lambda answer: expect_number(answer, 6.0, what="double(3)"), hint="Multiply by 2.", solution="x * 2")
total = Exercise("total", lambda answer: expect_number(answer, 10.0, what="the total"), hint="Use sum().", solution="sum(values)")
"""

INDENTED_EXERCISE = """\
def twice(x):
    ### BEGIN SOLUTION
    return x * 2
    ### END SOLUTION

double.check(twice(3))
"""

PLAIN_EXERCISE = """\
values = [1, 2, 3, 4]
### BEGIN SOLUTION
answer = sum(values)
### END SOLUTION
total.check(answer)
"""

HIDDEN_TESTS = """\
total.check(10)
### BEGIN HIDDEN TESTS
assert sum([1, 2, 3, 4]) == 10
### END HIDDEN TESTS
"""


def _synthetic_notebook():
    notebook = new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [
        new_markdown_cell("# A synthetic notebook"),
        new_code_cell(SETUP),
        new_code_cell(INDENTED_EXERCISE, outputs=[new_output("stream", name="stdout", text="Correct: double.\n")], execution_count=3),
        new_markdown_cell("Why?\n\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION\n"),
        new_code_cell(PLAIN_EXERCISE, outputs=[new_output("stream", name="stdout", text="Correct: total.\n")], execution_count=4),
        new_code_cell(HIDDEN_TESTS),
        new_code_cell("print('later cell', 1 + 1)", outputs=[new_output("stream", name="stdout", text="later cell 2\n")], execution_count=6),
    ]
    return notebook


def _execute(notebook, cwd, timeout=900):
    """Execute every cell in order, continuing after errors; returns the seconds taken."""
    start = time.perf_counter()
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", allow_errors=True, resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return time.perf_counter() - start


def _errors(notebook):
    """Map cell index to ``(ename, evalue)`` for every code cell that raised."""
    errors = {}
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                errors[index] = (output.ename, output.evalue)
    return errors


def _assert_only_exercises_fail(notebook, report):
    errors = _errors(notebook)
    exercise_cells = set(report.exercise_cells)
    assert exercise_cells, f"{report.name} has no exercise cells; each notebook needs at least two."
    for index in sorted(exercise_cells):
        assert index in errors, f"{report.name}: exercise cell {index} ran without error in the student version."
        assert errors[index] == ("NotImplementedError", NOT_IMPLEMENTED_MESSAGE), f"{report.name}: exercise cell {index} raised {errors[index]}."
    others = {index: error for index, error in errors.items() if index not in exercise_cells}
    assert not others, (
        f"{report.name}: cells other than exercises failed in the student version: {others}. "
        "A cell after an exercise must not read a variable that only the exercise's solution defines."
    )


def _cli_main():
    path = REPOSITORY / "data_scripts" / "make_student_notebooks.py"
    spec = importlib.util.spec_from_file_location("make_student_notebooks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


# --- generator -------------------------------------------------------------------


def test_student_keeps_indentation():
    student, _ = make_student_notebook(_synthetic_notebook(), name="synthetic.ipynb")
    lines = student.cells[2].source.splitlines()
    assert lines[1] == f"    {CODE_PLACEHOLDER}"
    assert lines[2] == f'    raise NotImplementedError("{NOT_IMPLEMENTED_MESSAGE}")'
    assert "return x * 2" not in student.cells[2].source
    assert lines[-1] == "double.check(twice(3))"


def test_student_removes_markers():
    student, _ = make_student_notebook(_synthetic_notebook())
    for cell in student.cells:
        assert "### BEGIN" not in cell.source
        assert "### END" not in cell.source


def test_student_markdown_placeholder():
    student, _ = make_student_notebook(_synthetic_notebook())
    assert student.cells[3].source == f"Why?\n\n{MARKDOWN_PLACEHOLDER}\n"


def test_student_strips_hidden_tests():
    student, report = make_student_notebook(_synthetic_notebook())
    assert student.cells[5].source == "total.check(10)\n"
    assert report.hidden_test_regions == 1


def test_student_clears_changed_outputs():
    student, _ = make_student_notebook(_synthetic_notebook())
    assert student.cells[2].outputs == []
    assert student.cells[2].execution_count is None
    assert student.cells[4].outputs == []


def test_student_keeps_other_outputs():
    student, _ = make_student_notebook(_synthetic_notebook())
    assert student.cells[6].outputs[0].text == "later cell 2\n"


def test_student_clear_all_outputs():
    student, _ = make_student_notebook(_synthetic_notebook(), clear_all_outputs=True)
    assert all(cell.outputs == [] for cell in student.cells if cell.cell_type == "code")


def test_student_leaves_source_unchanged():
    notebook = _synthetic_notebook()
    before = nbformat.writes(notebook)
    make_student_notebook(notebook)
    assert nbformat.writes(notebook) == before


def test_student_report_counts():
    _, report = make_student_notebook(_synthetic_notebook(), name="synthetic.ipynb")
    assert report.name == "synthetic.ipynb"
    assert report.exercise_cells == (2, 4)
    assert report.changed_cells == (2, 3, 4, 5)
    assert report.solution_regions == 3


@pytest.mark.parametrize(
    ("source", "line", "problem"),
    [
        ("x = 1\n### BEGIN SOLUTION\ny = 2\n", 2, "has no end marker"),
        ("x = 1\n### END SOLUTION\n", 2, "has no begin marker"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", 2, "begins before"),
        ("### BEGIN SOLUTION\n### END HIDDEN TESTS\n", 2, "closed by the end marker of a hidden-test region"),
        ("### BEGIN HIDDEN TESTS\nassert True\n", 1, "hidden-test region"),
    ],
)
def test_unbalanced_markers_name_cell(source, line, problem):
    notebook = _synthetic_notebook()
    notebook.cells.append(new_code_cell(source))
    with pytest.raises(MarkerError) as error:
        make_student_notebook(notebook, name="broken.ipynb")
    message = str(error.value)
    assert message.startswith(f"broken.ipynb, cell 7 (counting from 0), line {line}: ")
    assert problem in message
    assert (error.value.notebook, error.value.cell, error.value.line) == ("broken.ipynb", 7, line)


def test_write_leaves_source_file(tmp_path):
    source = tmp_path / "source" / "01_demo.ipynb"
    source.parent.mkdir()
    nbformat.write(_synthetic_notebook(), source)
    before = source.read_bytes()
    reports = write_student_notebooks([source], tmp_path / "student")
    assert source.read_bytes() == before
    written = nbformat.read(tmp_path / "student" / "01_demo.ipynb", as_version=4)
    assert CODE_PLACEHOLDER in written.cells[4].source
    assert reports[0].exercise_cells == (2, 4)


def test_write_rejects_source_folder(tmp_path):
    source = tmp_path / "01_demo.ipynb"
    nbformat.write(_synthetic_notebook(), source)
    with pytest.raises(ValueError, match="would be overwritten"):
        write_student_notebooks([source], tmp_path)


def test_write_marker_error_writes_nothing(tmp_path):
    good = tmp_path / "source" / "01_good.ipynb"
    bad = tmp_path / "source" / "02_bad.ipynb"
    good.parent.mkdir()
    nbformat.write(_synthetic_notebook(), good)
    broken = _synthetic_notebook()
    broken.cells.append(new_code_cell("### BEGIN SOLUTION\n"))
    nbformat.write(broken, bad)
    with pytest.raises(MarkerError, match="02_bad.ipynb, cell 7"):
        write_student_notebooks([good, bad], tmp_path / "student")
    assert not (tmp_path / "student").exists()


def test_cli_writes_notebooks(tmp_path, capsys):
    main = _cli_main()
    source = tmp_path / "source" / "01_demo.ipynb"
    source.parent.mkdir()
    nbformat.write(_synthetic_notebook(), source)
    assert main(["--out", str(tmp_path / "out"), str(source)]) == 0
    assert (tmp_path / "out" / "01_demo.ipynb").is_file()
    assert "Wrote 1 student notebook(s) with 2 exercise cell(s)" in capsys.readouterr().out


def test_cli_reports_marker_error(tmp_path, capsys):
    main = _cli_main()
    broken = _synthetic_notebook()
    broken.cells.append(new_code_cell("x = 1\n### END SOLUTION\n"))
    source = tmp_path / "source" / "03_broken.ipynb"
    source.parent.mkdir()
    nbformat.write(broken, source)
    assert main(["--out", str(tmp_path / "out"), str(source)]) == 1
    assert "error: 03_broken.ipynb, cell 7" in capsys.readouterr().err


# --- both versions executed ------------------------------------------------------


def test_synthetic_solutions_pass(tmp_path):
    notebook = _synthetic_notebook()
    _execute(notebook, tmp_path)
    assert _errors(notebook) == {}
    assert "Correct: double." in notebook.cells[2].outputs[0].text
    assert "Correct: total." in notebook.cells[4].outputs[0].text


def test_synthetic_student_fails_only_exercises(tmp_path):
    student, report = make_student_notebook(_synthetic_notebook(), name="synthetic.ipynb")
    _execute(student, tmp_path)
    _assert_only_exercises_fail(student, report)
    assert student.cells[6].outputs[0].text == "later cell 2\n"


def test_notebook07_student_version(tmp_path, monkeypatch):
    monkeypatch.setenv("MFR_QUICK", "1")
    notebook = nbformat.read(NOTEBOOK_07, as_version=4)
    student, report = make_student_notebook(notebook, name=NOTEBOOK_07.name)
    assert len(report.exercise_cells) >= 2
    _execute(student, NOTEBOOK_07.parent)
    _assert_only_exercises_fail(student, report)


@pytest.mark.student
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_student_notebook_runs(path, monkeypatch, record_property):
    monkeypatch.setenv("MFR_QUICK", "1")
    notebook = nbformat.read(path, as_version=4)
    student, report = make_student_notebook(notebook, name=path.name)
    assert len(report.exercise_cells) >= 2, f"{path.name} has {len(report.exercise_cells)} exercise cell(s); each notebook needs at least two."
    seconds = _execute(student, path.parent)
    record_property("seconds", round(seconds, 1))
    print(f"{path.name}: student version executed in {seconds:.0f} s")
    _assert_only_exercises_fail(student, report)


def test_marker_with_trailing_text_ignored():
    notebook = new_notebook(cells=[new_code_cell("x = 1  ### BEGIN SOLUTION\n### BEGIN SOLUTION: no\n")])
    student, report = make_student_notebook(notebook)
    assert student.cells[0].source == notebook.cells[0].source
    assert report.exercise_cells == ()
