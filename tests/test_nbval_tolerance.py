"""The nbval tolerance plugin (tests/nbval_tolerance.py): numbers within a tolerance, words exactly.

One synthetic notebook holds a cell per case, with stored outputs written by hand; a single
``pytest --nbval`` run in a subprocess (one kernel) validates it with the plugin and the book's sanitize
file, and each case reads its cell's outcome from the JUnit XML report.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

REPO = Path(__file__).resolve().parents[1]


def _load_plugin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nbval_tolerance", Path(__file__).with_name("nbval_tolerance.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


tol = _load_plugin()


@dataclass
class Case:
    """A notebook cell: its source, the outputs stored for it, its metadata and the expected outcome."""

    source: str
    outputs: list[Any]
    passes: bool
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


def stdout(text: str) -> Any:
    return new_output("stream", name="stdout", text=text)


def display(data: dict[str, str]) -> Any:
    return new_output("display_data", data=data)


def result(plain: str) -> Any:
    return new_output("execute_result", data={"text/plain": plain}, execution_count=1)


HTML_OBJECT = "<IPython.core.display.HTML object>"
SHOW_BUNDLE = "from IPython.display import display\ndisplay({bundle!r}, raw=True)"

CASES: dict[str, Case] = {
    # (a) a float within the tolerance; an execute_result's text/plain too
    "float_within": Case("print(0.5012)", [stdout("0.5000\n")], passes=True),
    "result_within": Case("0.5 + 0.0123", [result("0.5")], passes=True),
    # (b) a float beyond it
    "float_beyond": Case("print(0.5312)", [stdout("0.5000\n")], passes=False),
    # (c) a cell tagged exact fails on any difference, and passes when equal
    "exact_differs": Case("print(0.5012)", [stdout("0.5000\n")], passes=False, tags=["exact"]),
    "exact_equal": Case("print('10 seeds, acc 0.5')", [stdout("10 seeds, acc 0.5\n")], passes=True, tags=["exact"]),
    # (d) words compare exactly, even beside numbers within the tolerance
    "verdict_changed": Case(
        "print('flip_rate on L: holds, p 0.049')",
        [stdout("flip_rate on L: inconclusive, p 0.051\n")],
        passes=False,
        tags=["trained"],
    ),
    # (e) integers: exact by default, within count_tol in a cell tagged trained
    "count_default": Case("print(f'|F| = {12 + 1}')", [stdout("|F| = 12\n")], passes=False),
    "count_trained": Case("print(f'|F| = {12 + 1}')", [stdout("|F| = 12\n")], passes=True, tags=["trained"]),
    "count_trained_beyond": Case(
        "print(f'{400 + 40} errors')", [stdout("411 errors\n")], passes=False, tags=["trained"]
    ),
    # (f) regressions of the kind the book cares about
    "quantile_regression": Case(
        "values = [i / 10 for i in range(11)]\nprint(f'quantile q = 0.8 of p_c: {sorted(values)[7]:.3f}')",
        [stdout("quantile q = 0.8 of p_c: 0.800\n")],
        passes=False,
        tags=["trained"],
    ),
    "seed_count": Case(
        "seeds = list(range(9))\nprint(f'seeds per arm: {len(seeds)}')", [stdout("seeds per arm: 10\n")], passes=False
    ),
    # an estimate with its interval moves within the spread both intervals report, sqrt(hw_s^2 + hw_f^2)
    "interval_within": Case(
        "print('effect +0.096 [+0.029, +0.169]')", [stdout("effect +0.026 [-0.040, +0.091]\n")], passes=True
    ),
    "interval_beyond": Case(
        "print('effect +0.046 [+0.036, +0.056]')", [stdout("effect +0.026 [+0.016, +0.036]\n")], passes=False
    ),
    # a collapsed interval is a regression, even around the same estimate
    "interval_collapsed": Case("print('0.221 [0.221, 0.221]')", [stdout("0.221 [0.199, 0.244]\n")], passes=False),
    # a per-cell override of the tolerance, and a malformed one
    "override_atol": Case(
        "print(0.5312)", [stdout("0.5000\n")], passes=True, metadata={"nbval-tolerance": {"atol": 0.05}}
    ),
    "override_unknown": Case(
        "print(0.5)", [stdout("0.5\n")], passes=False, metadata={"nbval-tolerance": {"atoll": 0.05}}
    ),
    # the sanitize file still applies: wall times are replaced before numbers are compared
    "sanitized_time": Case(
        "print('trained in 3.2 s, acc 0.5012')", [stdout("trained in 9.9 s, acc 0.5000\n")], passes=True
    ),
    # table columns re-align when a number changes width: runs of spaces count as one
    "realigned_columns": Case("print('  arm    acc\\nM^t  10.01')", [stdout("  arm   acc\nM^t  9.99\n")], passes=True),
    # a number more or fewer is a change of text
    "extra_number": Case("print('acc 0.5, 0.6')", [stdout("acc 0.5\n")], passes=False),
    # text/html is skipped beside a text/plain with content (a DataFrame), so only text/plain counts
    "html_beside_plain": Case(
        SHOW_BUNDLE.format(bundle={"text/plain": "acc 0.501", "text/html": "<td>0.9</td>"}),
        [display({"text/plain": "acc 0.500", "text/html": "<td>0.5</td>"})],
        passes=True,
    ),
    # ... but compared by the same rule where text/plain only names the object
    "html_object_within": Case(
        "from IPython.display import HTML, display\ndisplay(HTML('<b>holds</b> 0.801'))",
        [display({"text/plain": HTML_OBJECT, "text/html": "<b>holds</b> 0.8"})],
        passes=True,
    ),
    "html_object_beyond": Case(
        "from IPython.display import HTML, display\ndisplay(HTML('<b>holds</b> 0.7'))",
        [display({"text/plain": HTML_OBJECT, "text/html": "<b>holds</b> 0.8"})],
        passes=False,
    ),
}


@pytest.fixture(scope="module")
def nbval_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bool, str]]:
    """Validate the synthetic notebook once; map each case to (passed, failure report)."""
    tmp = tmp_path_factory.mktemp("nbval")
    nb = new_notebook()
    for case in CASES.values():
        metadata = {**case.metadata, **({"tags": case.tags} if case.tags else {})}
        nb.cells.append(new_code_cell(case.source, outputs=case.outputs, execution_count=1, metadata=metadata))
    path = tmp / "cases.ipynb"
    nbformat.write(nb, path)
    (tmp / "pytest.ini").write_text("[pytest]\n")
    report = tmp / "report.xml"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "tests.nbval_tolerance",
        "--nbval",
        "--nbval-current-env",
        "--nbval-sanitize-with",
        str(REPO / "notebooks" / "nbval-sanitize.cfg"),
        "--color=no",
        "-c",
        str(tmp / "pytest.ini"),
        f"--junitxml={report}",
        str(path),
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert report.exists(), proc.stdout + proc.stderr
    names = list(CASES)
    outcomes: dict[str, tuple[bool, str]] = {}
    for testcase in ET.parse(report).iter("testcase"):  # named "Cell <index>" by nbval
        failures = [el for el in testcase if el.tag in ("failure", "error")]
        index = int(testcase.get("name", "").removeprefix("Cell "))
        outcomes[names[index]] = (not failures, "\n".join((el.text or "") for el in failures))
    assert len(outcomes) == len(CASES), proc.stdout
    return outcomes


@pytest.mark.parametrize("name", list(CASES))
def test_cell_outcome(nbval_run: dict[str, tuple[bool, str]], name: str) -> None:
    passed, report = nbval_run[name]
    assert passed == CASES[name].passes, report or f"{name} passed but should fail"


def test_report_names_both_numbers_and_tolerance(nbval_run: dict[str, tuple[bool, str]]) -> None:
    report = nbval_run["float_beyond"][1]
    assert "stored 0.5000, fresh 0.5312" in report
    assert "tolerance 0.02" in report
    assert "rule 'default'" in report


def test_reports_of_regressions(nbval_run: dict[str, tuple[bool, str]]) -> None:
    assert "stored 0.800, fresh 0.700" in nbval_run["quantile_regression"][1]
    assert "stored 10, fresh 9: integers differ by 1, tolerance 0" in nbval_run["seed_count"][1]
    assert "stored 411, fresh 440" in nbval_run["count_trained_beyond"][1]
    assert "inconclusive" in nbval_run["verdict_changed"][1]
    assert "unknown field(s) atoll" in nbval_run["override_unknown"][1]


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("Lite0 at 112 px, fig3a, seed_3", ["112"]),
        ("0.914-0.962 [-0.125, +0.019]", ["0.914", "0.962", "-0.125", "+0.019"]),
        ("p 5.41e-06, torch 2.14.1, 0xADDRESS", ["5.41e-06"]),
        ("holds in 9 of 10 seeds.", ["9", "10"]),
    ],
)
def test_split_numbers(text: str, numbers: list[str]) -> None:
    assert [m.group() for m in tol.split_numbers(text)[1]] == numbers


def test_rules_by_tag_and_override() -> None:
    assert tol.cell_tolerance({"tags": ["trained", "exact"]})[1].exact
    name, rule = tol.cell_tolerance({"tags": ["trained"], "nbval-tolerance": {"atol": 0.05}})
    assert name == "trained with atol 0.05" and rule.atol == 0.05 and rule.count_tol == tol.COUNT_TOL
    assert tol.cell_tolerance({})[1] == tol.TOLERANCES["default"]
    with pytest.raises(ValueError, match="non-negative"):
        tol.cell_tolerance({"nbval-tolerance": {"atol": -1}})


def test_compare_text_bounds() -> None:
    default, trained = tol.TOLERANCES["default"], tol.TOLERANCES["trained"]
    assert tol.compare_text("acc 0.80", "acc 0.819", default).equal
    assert not tol.compare_text("acc 0.80", "acc 0.83", default).equal
    assert tol.compare_text("gain 10.0", "gain 10.19", default).equal  # rtol on a larger scale
    assert tol.compare_text("|L| 100", "|L| 105", trained).equal  # count_rtol
    assert not tol.compare_text("|L| 100", "|L| 106", trained).equal
    # the interval rule: estimates within sqrt(0.0655^2 + 0.07^2) = 0.096 of each other agree ...
    assert tol.compare_text("+0.026 [-0.040, +0.091]", "+0.096 [+0.029, +0.169]", default).equal
    assert not tol.compare_text("+0.026 [-0.040, +0.091]", "+0.126 [+0.059, +0.189]", default).equal
    # ... when the half-widths agree within a factor 1.5
    assert tol.compare_text("0.50 [0.40, 0.60]", "0.50 [0.35, 0.65]", default).equal
    assert not tol.compare_text("0.50 [0.40, 0.60]", "0.50 [0.30, 0.70]", default).equal
    # integers and an estimate outside its brackets are not intervals: the plain rules apply
    assert not tol.compare_text("|L| 2 [3, 7]", "|L| 4 [5, 9]", default).equal
    assert not tol.compare_text("0.9 [0.1, 0.5]", "0.7 [0.1, 0.5]", default).equal
    assert not tol.compare_text("[0.1, 0.9] 0.50", "[0.1, 0.9] 0.60", default).equal
