"""Exercises with automatic feedback.

Each exercise is an :class:`Exercise` with three methods:

``check(answer)``
    Print a confirmation when the answer is right; raise
    :class:`IncorrectAnswer` with a message that says what is wrong (shape,
    dtype, which value and by how much) when it is not.
``hint()``
    Print a hint.
``solution()``
    Print the reference solution.

In the notebooks, the student's code sits between nbgrader's solution markers::

    ### BEGIN SOLUTION
    chin = landmarks["mouth_left"] ...
    ### END SOLUTION
    exercise.check(chin)

The student version of a notebook replaces the marked region by code that
raises ``NotImplementedError``, so an unfinished exercise fails with a clear
message and the rest of the notebook still runs (see :mod:`course_lib.student`).

Setting the environment variable ``MFR_HIDE_SOLUTIONS=1`` makes
:meth:`Exercise.solution` print a notice instead of the solution, for course
runs where exercises are graded. The reference code is still readable in the
installed package, so this discourages rather than prevents.
"""

from __future__ import annotations

import os
import textwrap
from typing import Any, Callable

import numpy as np


HIDE_SOLUTIONS_VARIABLE = "MFR_HIDE_SOLUTIONS"


class IncorrectAnswer(AssertionError):
    """An answer that fails an exercise's check; the message says what is wrong."""


class Exercise:
    """One exercise: a prompt, a checker, a hint and a solution.

    Parameters
    ----------
    name : str
        Short title shown in feedback, for example ``"LBP code of a 3x3 patch"``.
    checker : callable
        ``checker(answer)`` raises :class:`IncorrectAnswer` with a specific
        message when the answer is wrong, and returns a short confirmation
        string (or None) when it is right.
    hint : str
    solution : str
        Reference code, shown by :meth:`solution`.
    """

    def __init__(self, name: str, checker: Callable[[Any], str | None], hint: str, solution: str):
        self.name = name
        self._checker = checker
        self._hint = hint
        self._solution = textwrap.dedent(solution).strip()

    def check(self, answer: Any) -> None:
        """Check ``answer``; print a confirmation or raise :class:`IncorrectAnswer`.

        Returns None, so a notebook cell that ends with ``check()`` shows only the confirmation.
        """
        if answer is None or answer is Ellipsis:
            raise IncorrectAnswer(f"{self.name}: no answer yet. Replace the placeholder with your code, then run the cell again.")
        try:
            confirmation = self._checker(answer)
        except IncorrectAnswer as error:
            raise IncorrectAnswer(f"{self.name}: {error}") from None
        print(f"Correct: {self.name}." + (f" {confirmation}" if confirmation else ""))

    def hint(self) -> None:
        """Print the hint."""
        print(f"Hint for {self.name}: {self._hint}")

    def solution(self) -> None:
        """Print the reference solution, unless ``MFR_HIDE_SOLUTIONS`` is set to 1."""
        if os.environ.get(HIDE_SOLUTIONS_VARIABLE, "").strip().lower() in {"1", "true", "yes", "on"}:
            print(f"Solutions are hidden in this course run ({HIDE_SOLUTIONS_VARIABLE}=1). Try hint() instead.")
            return
        print(f"Solution for {self.name}:\n{self._solution}")

    def __repr__(self) -> str:
        return f"Exercise({self.name!r})"


def expect_array(
    answer: Any,
    expected: np.ndarray,
    what: str = "your answer",
    atol: float = 1e-6,
    rtol: float = 1e-5,
    check_dtype: bool = False,
) -> None:
    """Compare an array answer with the expected array and raise a specific :class:`IncorrectAnswer`.

    The message names the first problem found, in this order: not an array,
    wrong shape, wrong dtype (when ``check_dtype``), non-finite values, values
    that differ (the worst element, its index, and the size of the error).
    """
    try:
        array = np.asarray(answer)
    except (TypeError, ValueError):
        raise IncorrectAnswer(f"{what} should be an array, got {type(answer).__name__}.") from None
    expected = np.asarray(expected)
    if array.shape != expected.shape:
        raise IncorrectAnswer(f"{what} has shape {array.shape}, expected {expected.shape}.")
    if check_dtype and array.dtype != expected.dtype:
        raise IncorrectAnswer(f"{what} has dtype {array.dtype}, expected {expected.dtype}.")
    if not np.issubdtype(array.dtype, np.number) and not np.issubdtype(array.dtype, np.bool_):
        raise IncorrectAnswer(f"{what} has non-numeric dtype {array.dtype}.")
    values = array.astype(np.float64)
    reference = expected.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise IncorrectAnswer(f"{what} contains NaN or infinity at {int(np.sum(~np.isfinite(values)))} position(s).")
    error = np.abs(values - reference)
    tolerance = atol + rtol * np.abs(reference)
    if np.any(error > tolerance):
        worst = np.unravel_index(int(np.argmax(error - tolerance)), error.shape) if error.ndim else ()
        wrong = int(np.sum(error > tolerance))
        raise IncorrectAnswer(
            f"{what} differs from the expected value at {wrong} of {error.size} position(s); "
            f"the largest error is at index {tuple(int(i) for i in worst)}: "
            f"got {values[worst]:.6g}, expected {reference[worst]:.6g} (off by {error[worst]:.3g})."
        )


def expect_number(answer: Any, expected: float, what: str = "your answer", atol: float = 1e-6, rtol: float = 1e-5) -> None:
    """Compare a scalar answer with the expected value; the message says by how much it is off."""
    try:
        value = float(answer)
    except (TypeError, ValueError):
        raise IncorrectAnswer(f"{what} should be a number, got {type(answer).__name__} {answer!r}.") from None
    if not np.isfinite(value):
        raise IncorrectAnswer(f"{what} is {value}, expected a finite number.")
    if abs(value - expected) > atol + rtol * abs(expected):
        direction = "too high" if value > expected else "too low"
        raise IncorrectAnswer(f"{what} is {value:.6g}, expected {expected:.6g}: {direction} by {abs(value - expected):.3g}.")
