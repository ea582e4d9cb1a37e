"""Up-front parameter checks: every error names the parameter and what would be valid."""
from __future__ import annotations

import math
from typing import Any, Sized


def check_range(name: str, value: float, lo: float | None = None, hi: float | None = None,
                *, lo_open: bool = False, hi_open: bool = False) -> float:
    """Raise ValueError unless ``lo (<|<=) value (<|<=) hi``; return ``value``.

    The message names the parameter, the valid range in interval notation and the value given.
    """
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if not ok:
        left = "(" if lo_open or lo is None else "["
        right = ")" if hi_open or hi is None else "]"
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise ValueError(f"{name} must be in {left}{lo_s}, {hi_s}{right}; got {value!r}")
    return value


def check_int_range(name: str, value: int, lo: int, hi: int | None = None) -> int:
    """Raise ValueError unless ``value`` is an int with ``lo <= value <= hi``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        hi_s = "" if hi is None else f", {hi}"
        raise ValueError(f"{name} must be an integer in [{lo}{hi_s}{']' if hi is not None else ', inf)'}; got {value!r}")
    return value


def check_nonempty(name: str, data: Sized) -> None:
    """Raise ValueError when ``data`` has no items."""
    if len(data) == 0:
        raise ValueError(f"{name} is empty: pass at least one image")


def check_same_length(name_a: str, a: Sized, name_b: str, b: Sized) -> None:
    """Raise ValueError when two per-image sequences disagree in length."""
    if len(a) != len(b):
        raise ValueError(f"{name_a} and {name_b} must have one entry per image; got {len(a)} and {len(b)}")


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> Any:
    """Raise ValueError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value
