"""scripts/: the notebook runner (execute.py) and the run summariser (summarize_run.py), and the GPU run
they produced (book/gpu_run): its transcript is generated, and every number on its page is in it."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import execute  # noqa: E402
import summarize_run  # noqa: E402

RUN = ROOT / "book" / "gpu_run"
WIDGET = "application/vnd.jupyter.widget-view+json"


def test_the_results_page_reads_where_a_run_writes():
    """scripts/execute.py passes --output-dir as `claims_dir` only to a notebook whose parameters cell
    defines it (the results page reads the other notebooks' outputs from there)."""
    assert 'claims_dir = "."' in execute._parameters_cell(ROOT / "notebooks" / "06_results.ipynb")
    assert "claims_dir" not in execute._parameters_cell(ROOT / "notebooks" / "04_distraction.ipynb")


def test_toc_notebooks_follow_the_toc():
    """The same notebooks, in the same order, as the pair tests read from _toc.yml (which pin the five)."""
    from test_notebook_pairs import NOTEBOOKS

    assert execute.toc_notebooks() == [ROOT / f"{n}.ipynb" for n in NOTEBOOKS]
    assert all(p.is_file() for p in execute.toc_notebooks())


def test_default_run_injects_no_parameters():
    assert execute.parameters("smoke", "auto") == {}
    assert execute.parameters("full", "cuda") == {"profile": "full", "device": "cuda"}
    assert execute.parameters("smoke", "cpu") == {"profile": "smoke", "device": "cpu"}


def test_strip_widgets_drops_widget_state_and_views_only(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    cell = nbformat.v4.new_code_cell("x = 1")
    cell.outputs = [nbformat.v4.new_output("display_data", data={WIDGET: {"model_id": "a"}, "text/plain": "bar"}),
                    nbformat.v4.new_output("stream", name="stdout", text="kept\n")]
    nb.cells = [cell, nbformat.v4.new_markdown_cell("text")]
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    assert execute.strip_widgets(path) == 2  # the state and one view
    back = nbformat.read(path, as_version=4)
    assert "widgets" not in back.metadata
    assert [o.output_type for o in back.cells[0].outputs] == ["stream"]
    assert execute.strip_widgets(path) == 0


def test_bad_profile_is_refused(capsys):
    with pytest.raises(SystemExit):
        execute.main(["--profile", "huge"])
    assert "--profile must be 'smoke' or 'full'" in capsys.readouterr().err


def test_gpu_run_is_complete():
    """Every notebook of the archived run ran; the one it lacks is the results page, added after that run,
    which trains nothing (it reads the other notebooks' outputs)."""
    timings = json.loads((RUN / "timings.json").read_text())
    ran = [p for p in execute.toc_notebooks() if (RUN / p.name).is_file()]
    assert list(timings) == [p.stem for p in ran]
    assert {p.stem for p in execute.toc_notebooks()} - {p.stem for p in ran} <= {"06_results"}
    assert all(t["ok"] for t in timings.values())
    for p in ran:
        s = summarize_run.summarize(RUN / p.name)
        assert s["errors"] == [] and 'profile = "full"' in s["parameters"] and 'device = "cuda"' in s["parameters"]


def test_gpu_run_transcript_is_generated():
    """book/gpu_run/summary.md is exactly what summarize_run writes from the stored notebooks."""
    assert (RUN / "summary.md").read_text() == summarize_run.markdown(RUN)


def test_every_number_on_the_gpu_page_is_in_the_transcript():
    page = (ROOT / "book" / "gpu_run.md").read_text()
    transcript = (RUN / "summary.md").read_text()
    numbers = set(re.findall(r"(?<![\d.])\d+\.\d+(?![\d])", page))
    assert len(numbers) > 40
    missing = sorted(n for n in numbers if not re.search(rf"(?<![\d.]){re.escape(n)}(?!\d)", transcript))
    assert not missing, f"numbers on book/gpu_run.md that the run's outputs do not contain: {missing}"


def test_a_failing_notebook_keeps_its_output_and_leaves_a_failed_copy(tmp_path):
    good = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                             "display_name": "Python 3"}})
    good.cells = [nbformat.v4.new_code_cell("print(6 * 7)")]
    bad = nbformat.v4.new_notebook(metadata=good.metadata)
    bad.cells = [nbformat.v4.new_code_cell("raise ValueError('boom')")]
    ok_path, bad_path = tmp_path / "ok.ipynb", tmp_path / "bad.ipynb"
    nbformat.write(good, ok_path)
    nbformat.write(bad, bad_path)
    before = bad_path.read_bytes()
    timings = tmp_path / "t.json"
    assert execute.main([str(bad_path), str(ok_path), "--keep-going", "--timings", str(timings)]) == 1
    assert bad_path.read_bytes() == before  # the source notebook is untouched
    failed = nbformat.read(tmp_path / "bad.failed.ipynb", as_version=4)
    assert any(o.output_type == "error" and "boom" in o.evalue for o in failed.cells[-1].outputs)
    ran = nbformat.read(ok_path, as_version=4)
    assert "42" in "".join(o.get("text", "") for o in ran.cells[-1].outputs)
    t = json.loads(timings.read_text())
    assert not t["bad"]["ok"] and "ValueError: boom" in t["bad"]["error"] and t["ok"]["ok"]
    assert "bad.failed.ipynb" in t["bad"]["error"]
    assert not list(tmp_path.glob("*.running.ipynb"))


def test_gpu_run_figures_are_the_notebooks_outputs():
    figures = sorted((RUN / "figures").glob("*.png"))
    assert len(figures) == 3
    page = (ROOT / "book" / "gpu_run.md").read_text()
    for png in figures:
        name, cell, k = re.fullmatch(r"(.+)-cell(\d+)-(\d+)", png.stem).groups()
        assert png.read_bytes() == summarize_run.figure_bytes(RUN / f"{name}.ipynb", int(cell), int(k))
        assert f"gpu_run/figures/{png.name}" in page
    with pytest.raises(ValueError, match="PNG output"):
        summarize_run.figure_bytes(RUN / "04_distraction.ipynb", 11, 5)

