"""The up-front parameter checks: TypeError for a wrong type, ValueError for a bad value, NumPy scalars welcome."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lingerlab._validation import (
    check_bool,
    check_choice,
    check_int_range,
    check_nonempty,
    check_probability,
    check_range,
    check_same_length,
)

NUMPY_INTS = [np.int64(3), np.int32(3), np.uint8(3), np.int16(3), np.uint64(3)]


# ------------------------------------------------------------------------------------------ check_range


@pytest.mark.parametrize("value", [0.5, 1, 0, 1.0, np.float64(0.5), np.float32(0.5), np.float16(0.5), np.int64(3)])
def test_range_accepts_python_and_numpy_reals(value):
    out = check_range("x", value, 0, 5)
    assert out == value
    assert type(out) is (int if isinstance(value, (int, np.integer)) else float)


@pytest.mark.parametrize("value", NUMPY_INTS)
def test_range_returns_python_int_for_numpy_ints(value):
    out = check_range("x", value, 0, 10)
    assert out == 3 and type(out) is int


@pytest.mark.parametrize(
    "value", [True, False, np.bool_(True), "0.5", None, [0.5], (0.5,), {"a": 1}, 1j, np.array([0.5]), object()]
)
def test_range_wrong_type_is_type_error(value):
    with pytest.raises(TypeError, match=r"^q must be a real number in \(0, 1\); got "):
        check_range("q", value, 0, 1, lo_open=True, hi_open=True)


def test_range_type_error_names_type_and_value():
    with pytest.raises(TypeError, match=r"q must be a real number .*; got str '0\.5'"):
        check_range("q", "0.5", 0, 1)
    with pytest.raises(TypeError, match=r"got bool True"):
        check_range("q", True, 0, 1)
    with pytest.raises(TypeError, match=r"got NoneType None"):
        check_range("q", None, 0, 1)


@pytest.mark.parametrize(
    "value, kw, interval",
    [
        (0, {"lo_open": True}, r"\(0, 1\]"),
        (1, {"hi_open": True}, r"\[0, 1\)"),
        (-0.1, {}, r"\[0, 1\]"),
        (1.5, {}, r"\[0, 1\]"),
        (float("nan"), {}, r"\[0, 1\]"),
        (np.float64("nan"), {}, r"\[0, 1\]"),
        (np.int64(2), {}, r"\[0, 1\]"),
        (float("inf"), {}, r"\[0, 1\]"),
    ],
)
def test_range_bad_value_is_value_error(value, kw, interval):
    with pytest.raises(ValueError, match=rf"^p_lo must be in {interval}; got "):
        check_range("p_lo", value, 0, 1, **kw)


def test_range_open_ended():
    assert check_range("lr", 1e9, 0, None, lo_open=True) == 1e9
    assert check_range("w", -5, None, 0) == -5
    assert check_range("w", float("inf"), 0) == math.inf
    with pytest.raises(ValueError, match=r"lr must be in \(0, inf\)"):
        check_range("lr", 0.0, 0, None, lo_open=True)
    with pytest.raises(ValueError, match=r"w must be in \(-inf, 0\]"):
        check_range("w", 1, None, 0)


def test_probability():
    assert check_probability("p", 1) == 1.0 and type(check_probability("p", np.int64(1))) is float
    with pytest.raises(ValueError, match=r"p must be in \(0, 1\)"):
        check_probability("p", 1, lo_open=True, hi_open=True)
    with pytest.raises(TypeError, match="p must be a real number"):
        check_probability("p", "1")


# ------------------------------------------------------------------------------------------ check_int_range


@pytest.mark.parametrize("value", [3, *NUMPY_INTS])
def test_int_range_accepts_python_and_numpy_ints(value):
    out = check_int_range("k", value, 1, 10)
    assert out == 3 and type(out) is int


@pytest.mark.parametrize(
    "value", [3.0, 3.5, np.float64(3.0), True, False, np.bool_(True), "3", None, [3], np.array(3), np.array([3])]
)
def test_int_range_wrong_type_is_type_error(value):
    with pytest.raises(TypeError, match=r"^k must be an integer in \[1, 10\]; got "):
        check_int_range("k", value, 1, 10)


def test_int_range_bad_value_is_value_error():
    with pytest.raises(ValueError, match=r"^seed must be an integer in \[0, inf\); got -1$"):
        check_int_range("seed", -1, 0)
    with pytest.raises(ValueError, match=r"^k must be an integer in \[1, 5\]; got 6$"):
        check_int_range("k", np.int64(6), 1, 5)
    with pytest.raises(ValueError, match=r"n_null"):
        check_int_range("n_null", np.uint8(0), 1)
    assert check_int_range("seed", 2**40, 0) == 2**40


# ------------------------------------------------------------------------------------------ check_choice


def test_choice_accepts_and_returns_the_choice():
    assert check_choice("bn", "update", ("update", "freeze")) == "update"
    out = check_choice("bn", np.str_("freeze"), ("update", "freeze"))
    assert out == "freeze" and type(out) is str
    assert check_choice("n", np.int64(2), (1, 2)) == 2 and type(check_choice("n", np.int64(2), (1, 2))) is int
    assert check_choice("x", None, ("auto", None)) is None
    assert check_choice("flag", np.bool_(False), (True, False)) is False
    assert check_choice("bn", "freeze", ["update", "freeze"]) == "freeze"  # any iterable of choices


def test_choice_bad_value_is_value_error():
    with pytest.raises(ValueError, match=r"^bn must be one of 'update', 'freeze'; got 'Update'$"):
        check_choice("bn", "Update", ("update", "freeze"))
    with pytest.raises(ValueError, match="n must be one of 1, 2; got 3"):
        check_choice("n", 3, (1, 2))


@pytest.mark.parametrize("value", [1, 1.0, True, None, b"update", np.int64(0)])
def test_choice_wrong_type_is_type_error(value):
    with pytest.raises(TypeError, match=r"^optimizer must be one of 'sgd', 'adam'; got "):
        check_choice("optimizer", value, ("sgd", "adam"))


def test_choice_bool_is_not_an_int_choice():
    with pytest.raises(TypeError, match="n must be one of 1, 2; got bool True"):
        check_choice("n", True, (1, 2))


@pytest.mark.parametrize("value", [["sgd"], {"sgd": 1}, {"sgd"}, np.array(["sgd", "adam"])])
def test_choice_unhashable_values_do_not_crash(value):
    with pytest.raises(TypeError, match=r"optimizer must be one of 'sgd', 'adam'"):
        check_choice("optimizer", value, ("sgd", "adam"))


def test_choice_unhashable_value_of_a_listed_type():
    with pytest.raises(ValueError, match=r"x must be one of \[1\], \[2\]; got \[3\]"):
        check_choice("x", [3], ([1], [2]))
    assert check_choice("x", [2], ([1], [2])) == [2]
    arr = np.array([1, 2])
    with pytest.raises(ValueError, match="x must be one of"):  # ambiguous truth value: not a match, no crash
        check_choice("x", arr, (np.array([1, 2]),))


def test_long_reprs_are_cut():
    with pytest.raises(TypeError) as e:
        check_choice("kind", list(range(1000)), ("blur", "plain"))
    assert len(str(e.value)) < 200 and "..." in str(e.value)


# ------------------------------------------------------------------------------------------ check_bool


@pytest.mark.parametrize(
    "value, want", [(True, True), (False, False), (np.bool_(True), True), (np.bool_(False), False)]
)
def test_bool_accepts_bools(value, want):
    out = check_bool("progress", value)
    assert out is want


@pytest.mark.parametrize("value", [0, 1, "true", "False", None, 1.0, np.int64(1)])
def test_bool_rejects_others(value):
    with pytest.raises(TypeError, match=r"^progress must be True or False; got "):
        check_bool("progress", value)


# ------------------------------------------------------------------------------------------ sizes


def test_nonempty_and_same_length():
    check_nonempty("images", [1])
    with pytest.raises(ValueError, match="images is empty"):
        check_nonempty("images", [])
    check_same_length("a", [1, 2], "b", "xy")
    with pytest.raises(ValueError, match="a and b must have one entry per image; got 2 and 1"):
        check_same_length("a", [1, 2], "b", [1])


# ------------------------------------------------------------------------------------------ through the public API


def test_public_functions_take_numpy_scalars_and_reject_wrong_types():
    from lingerlab.features import default_k, source_only

    assert default_k(np.int64(1000)) == 5
    assert source_only([0, 3, 1], np.float32(1)).tolist() == [0, 2]
    assert source_only([0, 3, 1], np.int64(1)).tolist() == [0, 2]
    with pytest.raises(TypeError, match="num_source_classes must be an integer"):
        default_k("1000")
    with pytest.raises(TypeError, match="num_source_classes must be an integer"):
        default_k(1000.0)
    with pytest.raises(TypeError, match="v_lo must be a real number"):
        source_only([0, 3, 1], "1")
    with pytest.raises(ValueError, match=r"v_lo must be in \[0, inf\)"):
        source_only([0, 3, 1], -1)
