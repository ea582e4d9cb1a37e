"""Up-front parameter checks: every error names the parameter and what would be valid.

A value of the wrong type raises ``TypeError``, one of the right type but not allowed (out of range,
NaN, not a choice) ``ValueError``. NumPy scalars are accepted and come back as Python values.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence, Sized

import numpy as np

__all__ = [
    "check_range",
    "check_int_range",
    "check_probability",
    "check_choice",
    "check_bool",
    "check_nonempty",
    "check_same_length",
    "check_seeds",
]

_MAX_REPR = 80


def _show(value: Any) -> str:
    """``type value`` for messages, the repr cut to a readable length (tensors, long lists)."""
    try:
        r = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        r = f"<{type(value).__name__} object>"
    if len(r) > _MAX_REPR:
        r = r[: _MAX_REPR - 3] + "..."
    return f"{type(value).__name__} {r}"


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not _is_bool(value)


def _is_real(value: Any) -> bool:
    return _is_int(value) or isinstance(value, (float, np.floating))


def _interval(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    left = "(" if lo_open or lo is None else "["
    right = ")" if hi_open or hi is None else "]"
    lo_s = "-inf" if lo is None else f"{lo:g}"
    hi_s = "inf" if hi is None else f"{hi:g}"
    return f"{left}{lo_s}, {hi_s}{right}"


def check_range(
    name: str,
    value: float,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """``value`` (a Python int or float) if it is a real number with ``lo (<|<=) value (<|<=) hi``:
    a bool or a non-number raises TypeError, NaN or a value outside ValueError."""
    interval = _interval(lo, hi, lo_open, hi_open)
    if not _is_real(value):
        raise TypeError(f"{name} must be a real number in {interval}; got {_show(value)}")
    value = int(value) if _is_int(value) else float(value)
    ok = not (isinstance(value, float) and math.isnan(value))
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if not ok:
        raise ValueError(f"{name} must be in {interval}; got {value!r}")
    return value


def check_probability(name: str, value: float, *, lo_open: bool = False, hi_open: bool = False) -> float:
    """``check_range(name, value, 0, 1, ...)`` returning a Python float."""
    return float(check_range(name, value, 0, 1, lo_open=lo_open, hi_open=hi_open))


def check_int_range(name: str, value: int, lo: int, hi: int | None = None) -> int:
    """``value`` as a Python int if it is an integer with ``lo <= value <= hi``: a bool, a float (even
    ``3.0``) or a non-number raises TypeError, a value out of range ValueError."""
    interval = f"[{lo}, {hi}]" if hi is not None else f"[{lo}, inf)"
    if not _is_int(value):
        raise TypeError(f"{name} must be an integer in {interval}; got {_show(value)}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{name} must be an integer in {interval}; got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a Python bool if it is a (NumPy) bool; anything else, 0/1 included, raises TypeError."""
    if not _is_bool(value):
        raise TypeError(f"{name} must be True or False; got {_show(value)}")
    return bool(value)


def _same_kind(value: Any, choice: Any) -> bool:
    """Whether ``value`` has a type ``choice`` could equal (numbers by kind, bools only as bools)."""
    if _is_bool(choice):
        return _is_bool(value)
    if _is_int(choice):
        return _is_int(value)
    if isinstance(choice, (float, np.floating)):
        return _is_real(value)
    if choice is None:
        return value is None
    return isinstance(value, type(choice))


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """The choice equal to ``value``: a value of no choice's type raises TypeError, one of a valid
    type that is none of the choices ValueError (both list the choices)."""
    choices = tuple(choices)
    listed = ", ".join(map(repr, choices))
    kinds = [c for c in choices if _same_kind(value, c)]
    if not kinds:
        raise TypeError(f"{name} must be one of {listed}; got {_show(value)}")
    for c in kinds:
        try:
            equal = bool(value == c)
        except Exception:  # noqa: BLE001 - e.g. an array compared with a string
            equal = False
        if equal:
            return c
    raise ValueError(f"{name} must be one of {listed}; got {value!r}")


def check_nonempty(name: str, data: Sized) -> None:
    """Raise ValueError when ``data`` has no items."""
    if len(data) == 0:
        raise ValueError(f"{name} is empty: pass at least one image")


def check_same_length(name_a: str, a: Sized, name_b: str, b: Sized) -> None:
    """Raise ValueError when two per-image sequences disagree in length."""
    if len(a) != len(b):
        raise ValueError(f"{name_a} and {name_b} must have one entry per image; got {len(a)} and {len(b)}")


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """Check that ``seeds`` is a non-empty sequence of non-negative integers; return them as a list."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise TypeError(f"seeds must be a sequence of non-negative integers; got {type(seeds).__name__}")
    seeds = [check_int_range("seeds", s, 0) for s in seeds]
    if not seeds:
        raise ValueError("seeds is empty: pass at least one seed")
    return seeds
