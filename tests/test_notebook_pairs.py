"""Every notebook is a jupytext pair: the .py (percent) source and the .ipynb with outputs agree."""

from __future__ import annotations

import json
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


def test_toc_lists_the_five_sections_and_the_results_page():
    assert [Path(n).name for n in NOTEBOOKS] == [
        "01_hypothesis",
        "02_source_only_features",
        "03_lingering_detection",
        "04_distraction",
        "05_mitigation",
        "06_results",
    ]


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_pair_in_sync(stem):
    py, ipynb = ROOT / f"{stem}.py", ROOT / f"{stem}.ipynb"
    assert py.exists() and ipynb.exists(), f"{stem}: both .py and .ipynb must exist (run `make sync`)"
    source = jupytext.read(py)
    stored = nbformat.read(ipynb, as_version=4)
    assert _cells(source) == _cells(stored), (
        f"{stem}.ipynb is out of sync with {stem}.py: run `make execute` (the .py is the source)"
    )


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
    views = [
        c
        for c in nb.cells
        for o in c.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert not views, f"{stem}.ipynb stores {len(views)} widget output(s): run `make execute`"


# An absolute path of some machine: a home or temp folder, this project's checkout, or a Windows drive. Not part
# of a URL or of a relative path (the character before it is no letter, digit, dot or dash).
ABSOLUTE_PATH = re.compile(r"(?<![\w.\-])(/home/|/root/|/tmp/|/work/|/Users/|/var/folders/)|\b[A-Z]:\\[\w$]")
# outputs stored as text; base64 images (image/png, ...) are skipped: '/tmp/' can occur in base64 by chance
_BINARY = ("image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf")


def _texts(nb):
    """``(where, text)`` for every string in the notebook's metadata, cell sources, cell metadata and outputs."""

    def walk(where, obj):
        if isinstance(obj, str):
            yield where, obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                if k not in _BINARY:
                    yield from walk(f"{where}.{k}", v)
        elif isinstance(obj, list):
            if obj and all(isinstance(x, str) for x in obj):
                yield where, "".join(obj)  # multi-line strings stored as lists of lines
            else:
                for i, v in enumerate(obj):
                    yield from walk(f"{where}[{i}]", v)

    yield from walk("metadata", nb.get("metadata", {}))
    for i, cell in enumerate(nb.get("cells", [])):
        yield from walk(f"cell {i} ({cell.get('cell_type')}) source", cell.get("source", ""))
        yield from walk(f"cell {i} metadata", cell.get("metadata", {}))
        for j, out in enumerate(cell.get("outputs", [])):
            yield from walk(f"cell {i} output {j}", out)


def absolute_paths(nb) -> list[str]:
    """Where ``nb`` (a notebook as a dict) holds an absolute path, with a snippet around each."""
    hits = []
    for where, text in _texts(nb):
        for m in ABSOLUTE_PATH.finditer(text):
            a, b = max(0, m.start() - 40), min(len(text), m.end() + 60)
            hits.append(f"{where}: ...{text[a:b]!r}...")
    return hits


def test_absolute_path_detector():
    def nb(**kw):
        return {"metadata": kw.pop("metadata", {}), "cells": [kw]}

    assert absolute_paths(nb(cell_type="code", source="x = 1", outputs=[])) == []
    found = absolute_paths(nb(cell_type="code", source="load('/home/ann/data')", outputs=[]))
    assert len(found) == 1 and "cell 0 (code) source" in found[0] and "/home/ann" in found[0]
    out = {"output_type": "stream", "name": "stderr", "text": ["ok\n", "cached under /tmp/pytest-1/x\n"]}
    assert "cell 0 output 0.text" in absolute_paths(nb(cell_type="code", source="", outputs=[out]))[0]
    html = {
        "output_type": "display_data",
        "data": {"text/html": "<td>C:\\Users\\ann\\x.png</td>", "image/png": "iVBOR/tmp/xyz"},
    }
    found = absolute_paths(nb(cell_type="code", source="", outputs=[html]))
    assert len(found) == 1 and "text/html" in found[0]  # the base64 image is not text
    meta = {"papermill": {"input_path": "/work/main/notebooks/01.ipynb"}}
    assert "metadata.papermill.input_path" in absolute_paths(nb(cell_type="markdown", source="", metadata=meta))[0]
    # URLs, relative paths, the home shorthand and LaTeX are not machine paths
    fine = (
        "see https://github.com/a/b/tree/main/tmp/x and https://x.org/home/y, notebooks/work/z, "
        "~/.cache/torch/hub, $a:\\alpha$ and `lingerlab/tmp/`"
    )
    assert absolute_paths(nb(cell_type="markdown", source=fine)) == []


@pytest.mark.parametrize("ipynb", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_no_absolute_paths_in_notebooks(ipynb):
    """Committed notebooks hold no path of the machine that ran them (in sources, outputs or metadata)."""
    nb = json.loads(ipynb.read_text(encoding="utf-8"))
    hits = absolute_paths(nb)
    assert not hits, f"{ipynb.name} holds {len(hits)} absolute path(s):\n" + "\n".join(hits[:20])


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_no_table_is_cut(stem):
    """Pandas never truncates a table the book shows (no "..." row or column)."""
    nb = nbformat.read(ROOT / f"{stem}.ipynb", as_version=4)
    for i, c in enumerate(nb.cells):
        for out in c.get("outputs", []):
            for mime, text in out.get("data", {}).items():
                if mime.endswith("text/html"):
                    text = "".join(text) if isinstance(text, list) else text
                    assert not re.search(r"<t[dh][^>]*>\.\.\.</t[dh]>", text), (
                        f"{stem}.ipynb cell {i}: a table is cut with '...'; raise pandas' display limits"
                    )
