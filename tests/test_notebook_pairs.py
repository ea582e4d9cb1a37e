"""Every notebook is a jupytext pair: the .py (percent) source and the .ipynb with outputs agree."""
from __future__ import annotations

import re
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
TOC = (ROOT / "_toc.yml").read_text()
NOTEBOOKS = re.findall(r"notebooks/[0-9A-Za-z_]+", TOC)


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_toc_lists_the_five_sections():
    assert [Path(n).name for n in NOTEBOOKS] == [
        "01_hypothesis", "02_source_only_features", "03_lingering_detection", "04_distraction",
        "05_mitigation"]


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_pair_in_sync(stem):
    py, ipynb = ROOT / f"{stem}.py", ROOT / f"{stem}.ipynb"
    assert py.exists() and ipynb.exists(), f"{stem}: both .py and .ipynb must exist (run `make sync`)"
    source = jupytext.read(py)
    stored = nbformat.read(ipynb, as_version=4)
    assert _cells(source) == _cells(stored), (
        f"{stem}.ipynb is out of sync with {stem}.py: run `make execute` (the .py is the source)")


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_notebook_contract(stem):
    nb = nbformat.read(ROOT / f"{stem}.ipynb", as_version=4)
    ks = nb.metadata.get("kernelspec", {})
    assert ks.get("name") and ks.get("language") == "python", "papermill needs kernelspec metadata"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    params = tagged[0].source
    for name in ("world", "profile", "seed", "device"):
        assert re.search(rf"^{name}\s*=", params, re.M), f"parameter {name!r} missing"
    assert re.search(r'^profile\s*=\s*"smoke"', params, re.M), "the default profile is smoke"
    first = nb.cells[0]
    assert first.cell_type == "code" and "google.colab" in first.source, "first cell: Colab-only install"
    assert any("colab-badge" in c.source for c in nb.cells if c.cell_type == "markdown")


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_executed_without_errors(stem):
    """The committed outputs come from a complete run: every code cell ran, none raised."""
    nb = nbformat.read(ROOT / f"{stem}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), f"{stem}.ipynb has unexecuted cells: run `make execute`"
    for c in code:
        for out in c.get("outputs", []):
            assert out.get("output_type") != "error", f"{stem}: a cell raised {out.get('ename')}"
            if out.get("output_type") == "stream":
                assert "Traceback (most recent call last)" not in out.get("text", ""), f"{stem}: traceback in output"


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_no_widget_state_is_stored(stem):
    """A progress bar shown as a widget during a cold run leaves widget state in the notebook's
    metadata; jupyter-book would then load the widget manager from a CDN on that page."""
    nb = nbformat.read(ROOT / f"{stem}.ipynb", as_version=4)
    assert "widgets" not in nb.metadata, f"{stem}.ipynb stores widget state: run `make execute` (it strips it)"
    views = [c for c in nb.cells for o in c.get("outputs", [])
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert not views, f"{stem}.ipynb stores {len(views)} widget output(s): run `make execute`"
