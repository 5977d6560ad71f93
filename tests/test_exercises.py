"""Tests of the exercise framework: right answers pass, wrong ones get specific messages."""

import numpy as np
import pytest

from course_lib.exercises import Exercise, IncorrectAnswer, expect_array, expect_number


def _mean_exercise():
    expected = np.array([[1.0, 2.0], [3.0, 4.0]])

    def checker(answer):
        expect_array(answer, expected, what="the mean image", check_dtype=False)
        return "The mean image is right."

    return Exercise("mean image", checker, hint="Average over axis 0.", solution="answer = images.mean(axis=0)")


def test_check_correct_prints(capsys):
    exercise = _mean_exercise()
    assert exercise.check(np.array([[1.0, 2.0], [3.0, 4.0]])) is None
    output = capsys.readouterr().out
    assert "Correct: mean image." in output
    assert "The mean image is right." in output


def test_check_none_says_no_answer():
    with pytest.raises(IncorrectAnswer, match="mean image: no answer yet"):
        _mean_exercise().check(None)


def test_check_ellipsis_says_no_answer():
    with pytest.raises(IncorrectAnswer, match="no answer yet"):
        _mean_exercise().check(...)


def test_check_prefixes_exercise_name():
    with pytest.raises(IncorrectAnswer) as error:
        _mean_exercise().check(np.zeros((3, 2)))
    assert str(error.value).startswith("mean image: ")


def test_array_wrong_shape_names_both_shapes():
    with pytest.raises(IncorrectAnswer) as error:
        expect_array(np.zeros((3, 2)), np.zeros((2, 2)), what="the mean image")
    message = str(error.value)
    assert "shape (3, 2)" in message
    assert "expected (2, 2)" in message


def test_array_wrong_dtype_names_both_dtypes():
    with pytest.raises(IncorrectAnswer) as error:
        expect_array(np.zeros(3, np.float64), np.zeros(3, np.uint8), check_dtype=True)
    message = str(error.value)
    assert "dtype float64" in message
    assert "expected uint8" in message


def test_array_dtype_ignored_by_default():
    expect_array(np.zeros(3, np.float64), np.zeros(3, np.uint8))


def test_array_value_off_says_where_and_how_much():
    answer = np.array([1.0, 2.0, 3.5])
    with pytest.raises(IncorrectAnswer) as error:
        expect_array(answer, np.array([1.0, 2.0, 3.0]))
    message = str(error.value)
    assert "1 of 3 position(s)" in message
    assert "index (2,)" in message
    assert "got 3.5, expected 3" in message
    assert "off by 0.5" in message


def test_array_nan_is_reported():
    with pytest.raises(IncorrectAnswer, match="NaN or infinity at 1 position"):
        expect_array(np.array([1.0, np.nan]), np.array([1.0, 2.0]))


def test_array_non_numeric_is_reported():
    with pytest.raises(IncorrectAnswer, match="non-numeric dtype"):
        expect_array(np.array(["a", "b"]), np.array([1.0, 2.0]))


def test_array_within_tolerance_passes():
    expect_array(np.array([1.0 + 1e-9]), np.array([1.0]))


def test_number_too_high_says_by_how_much():
    with pytest.raises(IncorrectAnswer) as error:
        expect_number(0.25, 0.2, what="FMR")
    message = str(error.value)
    assert "FMR is 0.25, expected 0.2" in message
    assert "too high by 0.05" in message


def test_number_too_low_says_direction():
    with pytest.raises(IncorrectAnswer, match="too low by 0.1"):
        expect_number(0.1, 0.2)


def test_number_not_a_number_names_type():
    with pytest.raises(IncorrectAnswer, match="should be a number, got str"):
        expect_number("abc", 1.0)


def test_number_infinite_is_reported():
    with pytest.raises(IncorrectAnswer, match="expected a finite number"):
        expect_number(float("inf"), 1.0)


def test_messages_never_bare_incorrect():
    cases = [
        lambda: expect_array(np.zeros(2), np.zeros(3)),
        lambda: expect_array(np.ones(3), np.zeros(3)),
        lambda: expect_number(2.0, 1.0),
        lambda: _mean_exercise().check(None),
    ]
    for case in cases:
        with pytest.raises(IncorrectAnswer) as error:
            case()
        message = str(error.value)
        assert message.strip().lower() != "incorrect"
        assert len(message) > 25


def test_hint_and_solution_print(capsys):
    exercise = _mean_exercise()
    exercise.hint()
    exercise.solution()
    output = capsys.readouterr().out
    assert "Hint for mean image: Average over axis 0." in output
    assert "answer = images.mean(axis=0)" in output


def test_incorrect_answer_is_assertion_error():
    assert issubclass(IncorrectAnswer, AssertionError)


def test_solution_hidden_by_setting(capsys, monkeypatch):
    monkeypatch.setenv("MFR_HIDE_SOLUTIONS", "1")
    _mean_exercise().solution()
    output = capsys.readouterr().out
    assert "Solutions are hidden" in output
    assert "images.mean" not in output
