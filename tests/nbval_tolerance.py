"""nbval plugin: compare the numbers in text outputs within a tolerance, everything else exactly.

Numbers printed from trained models move in their later digits on another CPU type (other SIMD
kernels and thread counts change the order of float sums, and training amplifies that into a model
that differs like another seed would), so an exact comparison of those outputs fails on every machine
but the one that wrote the notebooks. This plugin replaces ``nbval.plugin.IPyNbCell.compare_outputs``:
after nbval's sanitize regexes (``--nbval-sanitize-with``), each text output (stdout, stderr, and every
``text/*`` MIME type, including papermill/myst-nb glue records) is split into numbers and the text
between them. The text must be equal, up to the width of runs of spaces (table columns re-align when a
number changes width); each pair of numbers must agree within the cell's tolerance from
``TOLERANCES``; an estimate printed with its 95% interval (``0.03 [-0.01, +0.07]``) within the spread
the two intervals report (:func:`_interval_agrees`). Words such as verdicts are text, so a changed
verdict always fails.

``text/html`` is skipped where the same output has a ``text/plain`` with content (a DataFrame shows the
same numbers in both); it is compared by the same rule where ``text/plain`` is only an object's repr
such as ``<IPython.core.display.HTML object>``. Non-text outputs are compared as nbval does.

Load it with ``pytest -p tests.nbval_tolerance --nbval ...`` from the repository root (the Makefile's
``nbval`` target does); it changes nothing unless ``--nbval`` or ``--nbval-lax`` is given.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import nbval.plugin as nbval_plugin
import pytest


@dataclass(frozen=True)
class Tolerance:
    """How far a fresh number may be from the stored one.

    A float (a number written with a decimal point or an exponent) passes when
    ``|fresh - stored| <= max(atol, rtol * |stored|)``; an integer when
    ``|fresh - stored| <= max(count_tol, count_rtol * |stored|)``. ``exact`` compares the whole output
    exactly, as nbval itself does.
    """

    atol: float = 0.0
    rtol: float = 0.0
    count_tol: float = 0.0
    count_rtol: float = 0.0
    exact: bool = False

    def allowed(self, stored: float, is_float: bool) -> float:
        """The largest difference allowed from the stored value ``stored``."""
        if is_float:
            return max(self.atol, self.rtol * abs(stored))
        return max(self.count_tol, self.count_rtol * abs(stored))

    def describe(self) -> str:
        """A one-line statement of the rule, for failure reports."""
        if self.exact:
            return "whole outputs exactly"
        floats = f"floats within max(atol {self.atol:g}, rtol {self.rtol:g} x |stored|)"
        if not self.count_tol and not self.count_rtol:
            return f"{floats}, integers exactly"
        return f"{floats}, integers within max(count_tol {self.count_tol:g}, count_rtol {self.count_rtol:g} x |stored|)"


# ---------------------------------------------------------------------------------------------------
# The tolerances, in this one place. A cell's rule is picked by its tags (`exact` before `trained`,
# else `default`), then a cell may override fields with metadata {"nbval-tolerance": {"atol": 0.05}}.
#
# ATOL: 2 x the seed-to-seed standard error of a validation accuracy at profile smoke, the spread that
#   another CPU type reproduces (its models differ as another seed's would). The `shapes` world's 500
#   target validation images give sqrt(0.93 x 0.07 / 500) = 0.011, and notebook 5 shows target-accuracy
#   SDs over seeds of 0.003-0.012 and composite-accuracy SDs of 0.012-0.020: SE about 0.01, so
#   ATOL = 0.02. Rounding to the printed 3 decimals adds at most 0.0005. (`lite*` worlds validate on 60
#   images, SE about 0.03 at accuracy 0.95: a cell that shows a single seed's lite accuracy needs an
#   override such as {"atol": 0.06}.)
# RTOL: the same 2 SE relative to a rate's full scale of 1, for numbers on other scales (percentages,
#   means of counts, gains above 1); max() rather than a sum, so a rate in [0, 1] gets ATOL and no more.
# COUNT_TOL, COUNT_RTOL (cells tagged `trained` only): one item, or 5% of a larger count. A count of
#   items over a threshold moves like N x a rate, 2 SE = 0.02 N, which is 5% of a count of 0.4 N; the
#   smoke runs on two CPU types in benchmarks/README.md differ by one in |F| and in |L|.
# Untagged cells compare integers exactly: seeds, classes and sizes printed from the configuration.
# Measured between those two runs' stored outputs (cells with the same source): of the float pairs that
#   differ, half differ by at most 0.01, 70% by 0.023, 90% by 0.07. Rates over a dozen classes (F has
#   13) move in steps near 0.07, beyond ATOL: their cells need an override, and a borderline verdict or
#   a changed class list still fails, as it should.
# ---------------------------------------------------------------------------------------------------
ATOL = 0.02
RTOL = 0.02
COUNT_TOL = 1
COUNT_RTOL = 0.05

TOLERANCES: dict[str, Tolerance] = {
    "exact": Tolerance(exact=True),
    "trained": Tolerance(atol=ATOL, rtol=RTOL, count_tol=COUNT_TOL, count_rtol=COUNT_RTOL),
    "default": Tolerance(atol=ATOL, rtol=RTOL),
}
TAG_ORDER = ("exact", "trained")  # the first of a cell's tags found here picks its rule
OVERRIDE_KEY = "nbval-tolerance"  # cell metadata: {"nbval-tolerance": {"atol": 0.05, ...}}
OVERRIDE_FIELDS = ("atol", "rtol", "count_tol", "count_rtol")

# A number: optional sign, digits with an optional fraction, or a bare fraction, optional exponent. It
# must not touch a letter, digit, underscore or dot on either side, so identifiers (`Lite0`, `fig3a`,
# `seed_3`), versions (`2.14.1`) and hashes stay text; a sign counts only after a non-word character,
# so ranges such as `0.914-0.962` are two positive numbers; a sentence's final dot is not a fraction.
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?(?!\.?\w)")
_SPACES = re.compile(r"[ \t]+")
_OPEN = re.compile(r"\s*\[\s*")  # between an estimate and its interval: "0.03 [-0.01, +0.07]"
_COMMA = re.compile(r"\s*,\s*")
#: how far an interval's half-width may grow or shrink (a factor) before it counts as changed
HALF_WIDTH_RATIO = 1.5
_PLACEHOLDER = "\x00"
# text/plain that only names the object (the content is in another MIME type)
_OBJECT_REPR = re.compile(r"<[\w.]+ object(?: at 0x[0-9A-Za-z]+)?>")
_GLUE_PREFIX = "application/papermill.record/"
_STREAM_KEYS = ("stdout", "stderr")
_MAX_REPORTED = 10


@dataclass(frozen=True)
class NumberMismatch:
    """One pair of numbers outside the tolerance."""

    stored: str
    fresh: str
    allowed: float
    is_float: bool
    line: int  # 1-based line of the stored text
    stored_line: str
    fresh_line: str


@dataclass(frozen=True)
class TextComparison:
    """The outcome of comparing a stored and a fresh text output."""

    text_differs: bool = False
    first_diff_line: int = 0  # 1-based; set when text_differs
    mismatches: tuple[NumberMismatch, ...] = ()

    @property
    def equal(self) -> bool:
        """True when the outputs agree under the rule."""
        return not self.text_differs and not self.mismatches


def split_numbers(text: str) -> tuple[str, list[re.Match[str]]]:
    """Return ``text`` with its numbers replaced by a placeholder, and the numbers' matches."""
    matches = list(NUMBER.finditer(text))
    return NUMBER.sub(_PLACEHOLDER, text), matches


def _normalise_spaces(skeleton: str) -> list[str]:
    """Lines with runs of spaces and tabs collapsed to one space and stripped at both ends."""
    return [_SPACES.sub(" ", line).strip() for line in skeleton.split("\n")]


def _is_float(token: str) -> bool:
    return any(c in token for c in ".eE")


def _value(token: str) -> float:
    return float(token) if _is_float(token) else int(token)


def _intervals(text: str, nums: list[re.Match[str]]) -> dict[int, tuple[float, float]]:
    """The estimates printed with a 95% interval, ``x [lo, hi]`` (floats, ``lo <= x <= hi``): the index
    of ``x`` among ``nums`` -> ``(x, half-width)``; the interval's two ends follow at the next indices."""
    out: dict[int, tuple[float, float]] = {}
    for i in range(len(nums) - 2):
        x, lo, hi = nums[i : i + 3]
        if not (
            all(_is_float(m.group()) for m in (x, lo, hi))
            and _OPEN.fullmatch(text[x.end() : lo.start()])
            and _COMMA.fullmatch(text[lo.end() : hi.start()])
            and text[hi.end() : hi.end() + 1] == "]"
        ):
            continue
        xv, lov, hiv = float(x.group()), float(lo.group()), float(hi.group())
        if lov <= xv <= hiv:
            out[i] = (xv, (hiv - lov) / 2)
    return out


def _interval_agrees(stored: tuple[float, float], fresh: tuple[float, float]) -> bool:
    """Two estimates with their 95% intervals agree when the estimates differ by at most
    1.96 sqrt(se_s^2 + se_f^2) = sqrt(hw_s^2 + hw_f^2) (the 95% range of the difference of two
    independent estimates; a rerun on other numerics shares data and seeds, so this is generous) and the
    half-widths by at most a factor :data:`HALF_WIDTH_RATIO` (a broken interval, e.g. a zero-width one,
    fails)."""
    (xs, hs), (xf, hf) = stored, fresh
    if abs(xf - xs) > (hs**2 + hf**2) ** 0.5 + 0.0005:  # + the last printed digit
        return False
    if hs == hf:
        return True
    return min(hs, hf) > 0 and max(hs, hf) / min(hs, hf) <= HALF_WIDTH_RATIO + 1e-9


def compare_text(stored: str, fresh: str, tol: Tolerance) -> TextComparison:
    """Compare two sanitized texts: numbers within ``tol``, the text between them exactly.

    Runs of spaces and tabs count as one space, and spaces at the start and end of a line are ignored.
    An estimate printed with its 95% interval is compared by :func:`_interval_agrees` instead.
    """
    if tol.exact:
        if stored == fresh:
            return TextComparison()
        first = next(
            (i for i, (a, b) in enumerate(zip(stored.split("\n"), fresh.split("\n")), 1) if a != b),
            min(stored.count("\n"), fresh.count("\n")) + 1,
        )
        return TextComparison(text_differs=True, first_diff_line=first)
    stored_lines, fresh_lines = stored.split("\n"), fresh.split("\n")
    if len(stored_lines) != len(fresh_lines):
        return TextComparison(text_differs=True, first_diff_line=min(len(stored_lines), len(fresh_lines)) + 1)
    mismatches = []
    for number, (s_line, f_line) in enumerate(zip(stored_lines, fresh_lines), 1):
        if s_line == f_line:
            continue
        s_skel, s_nums = split_numbers(s_line)
        f_skel, f_nums = split_numbers(f_line)
        if _normalise_spaces(s_skel) != _normalise_spaces(f_skel):
            return TextComparison(text_differs=True, first_diff_line=number)
        s_iv, f_iv = _intervals(s_line, s_nums), _intervals(f_line, f_nums)
        skip: set[int] = set()
        for k, iv in s_iv.items():
            if k in f_iv:
                skip.update((k, k + 1, k + 2))
                if not _interval_agrees(iv, f_iv[k]):
                    s, f = s_nums[k], f_nums[k]
                    allowed = (iv[1] ** 2 + f_iv[k][1] ** 2) ** 0.5
                    mismatches.append(NumberMismatch(s.group(), f.group(), allowed, True, number, s_line, f_line))
        for k, (s, f) in enumerate(zip(s_nums, f_nums)):
            if k in skip or s.group() == f.group():
                continue
            is_float = _is_float(s.group()) or _is_float(f.group())
            s_val, f_val = _value(s.group()), _value(f.group())
            allowed = tol.allowed(s_val, is_float)
            if not abs(f_val - s_val) <= allowed:  # also true for a NaN difference
                mismatches.append(NumberMismatch(s.group(), f.group(), allowed, is_float, number, s_line, f_line))
    return TextComparison(mismatches=tuple(mismatches))


def cell_tolerance(metadata: Mapping[str, Any]) -> tuple[str, Tolerance]:
    """The rule's name and the ``Tolerance`` for a cell with this metadata.

    The first tag of ``TAG_ORDER`` the cell carries picks the rule (else ``default``); a tolerant rule
    then takes the fields of the ``nbval-tolerance`` metadata mapping. Raises ValueError on an unknown
    field or a value that is not a non-negative number.
    """
    tags = metadata.get("tags") or []
    name = next((tag for tag in TAG_ORDER if tag in tags), "default")
    tol = TOLERANCES[name]
    override = metadata.get(OVERRIDE_KEY)
    if override is None or tol.exact:
        return name, tol
    if not isinstance(override, Mapping):
        raise ValueError(f"cell metadata {OVERRIDE_KEY!r} must be a mapping of {', '.join(OVERRIDE_FIELDS)}")
    unknown = sorted(set(override) - set(OVERRIDE_FIELDS))
    if unknown:
        raise ValueError(
            f"cell metadata {OVERRIDE_KEY!r} has unknown field(s) {', '.join(unknown)}; "
            f"valid: {', '.join(OVERRIDE_FIELDS)}"
        )
    for key, value in override.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"cell metadata {OVERRIDE_KEY!r}: {key} must be a non-negative number, not {value!r}")
    fields = ", ".join(f"{k} {v:g}" for k, v in override.items())
    return f"{name} with {fields}", dataclasses.replace(tol, **override)


def _mime(key: str) -> str:
    return key[len(_GLUE_PREFIX) :] if key.startswith(_GLUE_PREFIX) else key


def is_text_key(key: str) -> bool:
    """True for the output fields whose numbers are compared within the tolerance."""
    return key in _STREAM_KEYS or _mime(key).startswith("text/")


def _has_content(plain: Any) -> bool:
    return isinstance(plain, str) and not _OBJECT_REPR.fullmatch(plain.strip())


def drop_shadowed_html(output: Mapping[str, Any]) -> Mapping[str, Any]:
    """``output`` without its ``text/html`` where a ``text/plain`` with content stands beside it."""
    data = output.get("data")
    if not isinstance(data, Mapping):
        return output
    drop = {
        key
        for key in data
        if _mime(key) == "text/html" and _has_content(data.get(key[: -len("text/html")] + "text/plain"))
    }
    if not drop:
        return output
    return {**output, "data": {k: v for k, v in data.items() if k not in drop}}


def _flatten(
    cell: nbval_plugin.IPyNbCell, outputs: Iterable[Mapping[str, Any]], skip: Iterable[str]
) -> dict[str, list[Any]]:
    """nbval's layout: output field (``data`` flattened by MIME type) -> sanitized values in order."""
    flat: dict[str, list[Any]] = defaultdict(list)
    for output in outputs:
        output = drop_shadowed_html(output)
        for key in output.keys():
            if key in skip:
                continue
            if key == "data":
                for mime in output[key].keys():
                    if mime not in skip:
                        flat[mime].append(cell.sanitize(output[key][mime]))
            else:
                flat[key].append(cell.sanitize(output[key]))
    return flat


def _clip(line: str, width: int = 110) -> str:
    return line if len(line) <= width else line[: width - 3] + "..."


def _report_numbers(cell: nbval_plugin.IPyNbCell, key: str, rule: str, tol: Tolerance, result: TextComparison) -> None:
    cc = cell.colors
    n = len(result.mismatches)
    tb = cell.comparison_traceback
    tb.append(
        f"{cc.OKBLUE} mismatch '{key}': {n} number{'s' if n > 1 else ''} outside the tolerance "
        f"(rule '{rule}': {tol.describe()}){cc.FAIL}"
    )
    for m in result.mismatches[:_MAX_REPORTED]:
        kind = "float" if m.is_float else "integer"
        diff = abs(_value(m.fresh) - _value(m.stored))
        hint = " (integers are exact unless the cell is tagged 'trained')" if not m.is_float and not m.allowed else ""
        tb.append(
            f"  line {m.line}: stored {m.stored}, fresh {m.fresh}: {kind}s differ by {diff:.4g}, "
            f"tolerance {m.allowed:g}{hint}"
        )
        tb.append(f"    stored | {_clip(m.stored_line)}")
        tb.append(f"    fresh  | {_clip(m.fresh_line)}")
    if n > _MAX_REPORTED:
        tb.append(f"  ... and {n - _MAX_REPORTED} more")
    tb.append(cc.ENDC)


def _report_text(cell: nbval_plugin.IPyNbCell, key: str, rule: str, stored: str, fresh: str, line: int) -> None:
    stored_lines, fresh_lines = stored.split("\n"), fresh.split("\n")
    at = line - 1
    cell.comparison_traceback.extend(
        [
            f"{cell.colors.OKBLUE} text of '{key}' differs (rule '{rule}': numbers within the tolerance, "
            f"other text exactly up to runs of spaces); first at line {line}:{cell.colors.ENDC}",
            f"    stored | {_clip(stored_lines[at]) if at < len(stored_lines) else '<no line>'}",
            f"    fresh  | {_clip(fresh_lines[at]) if at < len(fresh_lines) else '<no line>'}",
        ]
    )
    cell.format_output_compare(key, stored, fresh)


_nbval_compare_outputs: Callable[..., bool] | None = None


def compare_outputs(
    self: nbval_plugin.IPyNbCell,
    test: list[Any],
    ref: list[Any],
    skip_compare: tuple[str, ...] | None = None,
) -> bool:
    """Tolerant replacement of ``IPyNbCell.compare_outputs``; same arguments and failure report."""
    try:
        rule, tol = cell_tolerance(self.cell.metadata)
    except ValueError as err:
        self.raise_cell_error(f"Invalid tolerance: {err}")
    if tol.exact and _nbval_compare_outputs is not None:
        if _nbval_compare_outputs(self, test, ref, skip_compare):
            return True
        self.comparison_traceback.insert(0, f"{self.colors.OKBLUE} rule '{rule}': {tol.describe()}{self.colors.ENDC}")
        return False
    skip = skip_compare or self.parent.skip_compare
    # looked up on the module at call time, so notebooks/conftest.py's replacement applies
    test_outs = _flatten(self, nbval_plugin.transform_streams_for_comparison(test), skip)
    ref_outs = _flatten(self, nbval_plugin.transform_streams_for_comparison(ref), skip)
    cc = self.colors
    self.comparison_traceback = []
    missing, unexpected = set(ref_outs) - set(test_outs), set(test_outs) - set(ref_outs)
    if missing or unexpected:
        what = "Missing output fields from running code" if missing else "Unexpected output fields from running code"
        self.comparison_traceback.append(f"{cc.FAIL}{what}: {missing or unexpected}{cc.ENDC}")
        return False
    for key, ref_values in ref_outs.items():
        test_values = test_outs[key]
        if len(test_values) != len(ref_values):
            self.comparison_traceback.append(
                f'{cc.OKBLUE}dissimilar number of outputs for key "{key}"'
                f"{cc.FAIL}<<<<<<<<<<<< Reference outputs from ipynb file:{cc.ENDC}"
            )
            self.comparison_traceback.extend(nbval_plugin._trim_base64(v) for v in ref_values)
            self.comparison_traceback.append(
                f"{cc.FAIL}============ disagrees with newly computed (test) output:{cc.ENDC}"
            )
            self.comparison_traceback.extend(nbval_plugin._trim_base64(v) for v in test_values)
            self.comparison_traceback.append(f"{cc.FAIL}>>>>>>>>>>>>{cc.ENDC}")
            return False
        for ref_out, test_out in zip(ref_values, test_values):
            if ref_out == test_out:
                continue
            if not (is_text_key(key) and isinstance(ref_out, str) and isinstance(test_out, str)):
                self.format_output_compare(key, ref_out, test_out)
                return False
            result = compare_text(ref_out, test_out, tol)
            if result.text_differs:
                _report_text(self, key, rule, ref_out, test_out, result.first_diff_line)
                return False
            if result.mismatches:
                _report_numbers(self, key, rule, tol, result)
                return False
    return True


def pytest_configure(config: pytest.Config) -> None:
    """Install the tolerant comparison when nbval validates notebooks."""
    global _nbval_compare_outputs
    if not (getattr(config.option, "nbval", False) or getattr(config.option, "nbval_lax", False)):
        return
    if _nbval_compare_outputs is None:
        _nbval_compare_outputs = nbval_plugin.IPyNbCell.compare_outputs
        nbval_plugin.IPyNbCell.compare_outputs = compare_outputs


def pytest_unconfigure(config: pytest.Config) -> None:
    """Restore nbval's own comparison."""
    global _nbval_compare_outputs
    if _nbval_compare_outputs is not None:
        nbval_plugin.IPyNbCell.compare_outputs = _nbval_compare_outputs
        _nbval_compare_outputs = None


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    """Name the tolerances in the header of pytest's report."""
    if _nbval_compare_outputs is None:
        return None
    return ["nbval tolerance, by cell tag:"] + [f"  {name}: {tol.describe()}" for name, tol in TOLERANCES.items()]
