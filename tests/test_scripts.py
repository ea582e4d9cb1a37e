"""scripts/execute.py: the notebook runner (order, parameters, widgets, nothing lost on failure or kill)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import execute  # noqa: E402

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
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={WIDGET: {"model_id": "a"}, "text/plain": "bar"}),
        nbformat.v4.new_output("stream", name="stdout", text="kept\n"),
    ]
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


def test_a_failing_notebook_keeps_its_output_and_leaves_a_failed_copy(tmp_path):
    good = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}
    )
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
    assert ran.metadata["lingerlab"]["profile"] == "smoke" and ran.metadata["lingerlab"]["cache"] in ("cold", "warm")
    t = json.loads(timings.read_text())
    assert not t["bad"]["ok"] and "ValueError: boom" in t["bad"]["error"] and t["ok"]["ok"]
    assert "bad.failed.ipynb" in t["bad"]["error"]
    assert not list(tmp_path.glob("*.running.ipynb"))


def _sleeping_notebook(path: Path, marker: Path) -> bytes:
    """A notebook whose cell writes its kernel's pid to ``marker``, then sleeps; return its bytes."""
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}
    )
    nb.cells = [
        nbformat.v4.new_code_cell(
            f"import os, pathlib, time\npathlib.Path({str(marker)!r}).write_text(str(os.getpid()))\ntime.sleep(120)"
        )
    ]
    nbformat.write(nb, path)
    return path.read_bytes()


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # zombie: ended
    except OSError:
        return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_killed_run_leaves_the_stored_notebook_unchanged(tmp_path, sig):
    """Killing execute.py while a cell runs stops the notebook and its kernel, leaves the stored notebook
    byte-identical and removes the running copy."""
    nb, marker = tmp_path / "slow.ipynb", tmp_path / "kernel.pid"
    before = _sleeping_notebook(nb, marker)
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'scripts')!r}); import execute; from pathlib import Path; "
        f"p = Path({str(nb)!r}); execute.run_one(p, p, {{}})"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, "LINGERLAB_CACHE": str(tmp_path / "c")},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (marker.is_file() and marker.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, "the notebook's cell never started"
            time.sleep(0.1)
        assert (tmp_path / "slow.running.ipynb").is_file()  # papermill writes its copy, not the notebook
        proc.send_signal(sig)
        assert proc.wait(timeout=60) != 0
    finally:
        proc.kill()
    assert nb.read_bytes() == before
    assert sorted(p.name for p in tmp_path.glob("*.ipynb")) == ["slow.ipynb"]
    kernel, deadline = int(marker.read_text()), time.monotonic() + 20
    while not _gone(kernel) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _gone(kernel), "the kernel outlived the run"


def _stored(path: Path) -> bytes:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print('stored')")]
    nbformat.write(nb, path)
    return path.read_bytes()


def test_an_interrupt_after_papermill_wrote_part_leaves_nothing(tmp_path, monkeypatch):
    nb = tmp_path / "n.ipynb"
    before = _stored(nb)

    def interrupted(src, out, params, kernel):
        out.write_text("{ half a notebook")
        raise KeyboardInterrupt

    monkeypatch.setattr(execute, "_papermill", interrupted)
    with pytest.raises(KeyboardInterrupt):
        execute.run_one(nb, nb, {})
    assert nb.read_bytes() == before and sorted(tmp_path.iterdir()) == [nb]


def test_a_run_replaces_the_notebook_and_records_cache_and_machine(tmp_path, monkeypatch):
    nb, cache = tmp_path / "n.ipynb", tmp_path / "cache"
    _stored(nb)
    (tmp_path / "n.failed.ipynb").write_text("{}")  # an older failure
    monkeypatch.setenv("LINGERLAB_CACHE", str(cache))

    def trains(src, out, params, kernel):
        (cache / "stage").mkdir(parents=True)
        (cache / "stage" / "key-code.pt").write_bytes(b"model")
        ran = nbformat.read(src, as_version=4)
        ran.metadata["papermill"] = {
            "duration": 1.5,
            "start_time": "2026-01-02T03:04:05+00:00",
            "input_path": str(src),
            "output_path": str(out),
        }
        nbformat.write(ran, out)

    monkeypatch.setattr(execute, "_papermill", trains)
    seconds, error = execute.run_one(nb, nb, {}, profile="smoke", device="cpu")
    assert error is None and sorted(tmp_path.glob("*.ipynb")) == [nb]
    meta = nbformat.read(nb, as_version=4).metadata
    assert meta["papermill"]["input_path"] == "n.ipynb"
    run = meta["lingerlab"]
    assert run["cache"] == "cold" and run["cache_entries"] == {"before": 0, "after": 1}
    assert run["profile"] == "smoke" and run["device"] == "cpu" and run["machine"]["device"] == "cpu"
    monkeypatch.setattr(
        execute, "_papermill", lambda src, out, params, kernel: nbformat.write(nbformat.read(src, as_version=4), out)
    )
    execute.run_one(nb, nb, {}, device="cpu")
    assert nbformat.read(nb, as_version=4).metadata["lingerlab"]["cache"] == "warm"
