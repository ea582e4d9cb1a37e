#!/usr/bin/env python
"""Execute the book's notebooks with papermill, in ``_toc.yml`` order, and time each one.

Used by ``make execute`` / ``make book-full`` and, unchanged, on a machine without the Makefile's
virtual environment (a GPU box or Colab)::

    python scripts/execute.py                                  # profile smoke, outputs in place
    python scripts/execute.py --profile full --device cuda     # paper scale, on a GPU
    python scripts/execute.py --profile full --device cuda --output-dir /tmp/full --keep-going

Progress bars that ran as widgets (a cold cache trains models inside the kernel) leave ipywidgets
state in the notebook; it is dropped, so the book's pages load nothing from a CDN. The wall time of
each notebook is printed and, with ``--timings FILE``, written as JSON.

A notebook's output is replaced only when every cell ran (see :func:`run_one`): one that fails leaves
its executed copy as ``<name>.failed.ipynb``; an interrupt (Ctrl-C, SIGTERM) leaves the stored
notebook as it was. Each executed notebook records in its ``lingerlab`` metadata whether the model
cache was cold or warm and the machine it ran on; after a run over the book's own notebooks (no
``--output-dir``), the book's execution-statistics page is regenerated from the stored notebooks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
STATS = ROOT / "book" / "generated" / "execution_statistics.md"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def toc_notebooks(toc: Path = ROOT / "_toc.yml") -> list[Path]:
    """The notebooks named in ``_toc.yml`` (``file: notebooks/...``), in order."""
    if not toc.is_file():
        raise FileNotFoundError(f"{toc} not found: run from a lingerlab checkout")
    names = re.findall(r"file:\s*(notebooks/\S+)", toc.read_text())
    if not names:
        raise ValueError(f"{toc} names no notebooks/ entries")
    return [ROOT / f"{n.removesuffix('.ipynb')}.ipynb" for n in names]


def strip_widgets(path: Path, name: str | None = None, meta: dict[str, Any] | None = None) -> int:
    """Drop ipywidgets state and widget-view outputs from the notebook at ``path``; return how many.
    Papermill's record of the input and output paths keeps only the file ``name`` (no absolute path
    of the machine that ran it); ``meta``, if given, is stored as the notebook's ``lingerlab`` metadata."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    if meta is not None:
        nb.metadata["lingerlab"] = meta
    dropped = int(nb.metadata.pop("widgets", None) is not None)
    pm_meta = nb.metadata.get("papermill")
    if pm_meta is not None:
        for key in ("input_path", "output_path"):
            if pm_meta.get(key):
                pm_meta[key] = name or Path(pm_meta[key]).name
    for cell in nb.cells:
        if cell.cell_type == "code":
            kept = [o for o in cell.outputs if WIDGET_VIEW not in o.get("data", {})]
            dropped += len(cell.outputs) - len(kept)
            cell.outputs = kept
    nbformat.write(nb, path)
    return dropped


def _parameters_cell(nb: Path) -> str:
    """The source of the notebook's cell tagged ``parameters`` ('' if none)."""
    import nbformat

    for cell in nbformat.read(nb, as_version=4).cells:
        if "parameters" in cell.metadata.get("tags", []):
            return cell.source
    return ""


def parameters(profile: str, device: str) -> dict[str, str]:
    """Papermill parameters: none for the default (smoke, auto), so the stored notebooks keep no
    injected-parameters cell; otherwise ``profile`` and ``device``."""
    return {} if (profile, device) == ("smoke", "auto") else {"profile": profile, "device": device}


# Papermill runs in a child process: while a kernel runs it replaces the SIGINT/SIGTERM handlers of
# its process, so an interrupt would not reach this script; here the parent keeps them and stops the child.
_PAPERMILL = """\
import json, sys
import papermill as pm
nb, out, params, kernel, cwd = json.loads(sys.argv[1])
try:
    pm.execute_notebook(nb, out, parameters=params, kernel_name=kernel, cwd=cwd, progress_bar=False)
except Exception as exc:
    last = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
    print(f"{type(exc).__name__}: {last}")
    sys.exit(1)
"""


def _papermill(nb: Path, out: Path, params: dict[str, str], kernel: str) -> str | None:
    """Execute ``nb`` into ``out`` with papermill in a child process; return its error, or None.

    An interrupt (SIGINT, or SIGTERM while :func:`_terminate_raises` is in force) stops the child,
    waits for it to end and re-raises."""
    args = json.dumps([str(nb), str(out), params, kernel, str(nb.parent)])
    child = subprocess.Popen([sys.executable, "-c", _PAPERMILL, args], stdout=subprocess.PIPE, text=True)
    try:
        stdout, _ = child.communicate()
    except BaseException:
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        raise
    if child.returncode == 0:
        return None
    lines = stdout.strip().splitlines()
    return lines[-1] if lines else f"papermill exited with status {child.returncode}"


@contextlib.contextmanager
def _terminate_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt, as SIGINT does (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_one(
    nb: Path,
    out: Path,
    params: dict[str, str],
    kernel: str = "python3",
    *,
    profile: str = "smoke",
    device: str = "auto",
) -> tuple[float, str | None]:
    """Execute ``nb`` into ``out`` with papermill; return (seconds, error or None).

    Papermill writes ``<stem>.running.ipynb`` beside ``out``, which replaces ``out`` (``os.replace``)
    only when every cell ran, so ``out`` is never left half-written: after a failure the executed
    copy, with the traceback, is left as ``<stem>.failed.ipynb``; after an interrupt (SIGINT, SIGTERM,
    KeyboardInterrupt) the running copy is removed and the interrupt re-raised. Only a process killed
    outright (SIGKILL) leaves ``<stem>.running.ipynb`` behind; ``out`` is unchanged either way.
    The notebook's ``lingerlab`` metadata records the model cache (cold or warm) and the machine
    (:func:`lingerlab.execstats.run_metadata`)."""
    from lingerlab import execstats

    tmp = out.with_name(f"{out.stem}.running.ipynb")
    failed = out.with_name(f"{out.stem}.failed.ipynb")
    try:
        with _terminate_raises():
            before = execstats.cache_entries()
            start = time.perf_counter()
            error = _papermill(nb, tmp, params, kernel)
            seconds = round(time.perf_counter() - start, 1)
            if tmp.is_file():
                meta = execstats.run_metadata(before, execstats.cache_entries(), profile=profile, device=device)
                strip_widgets(tmp, nb.name, meta)
                os.replace(tmp, out if error is None else failed)
                if error is not None:
                    error += f" (executed copy: {failed})"
    finally:
        tmp.unlink(missing_ok=True)  # present only if interrupted before the replace
    if error is None:
        failed.unlink(missing_ok=True)  # an older failure of this notebook is stale now
    return seconds, error


def write_stats(page: Path = STATS) -> bool:
    """Regenerate the execution-statistics page from the stored notebooks of ``_toc.yml``; return
    whether it changed."""
    from lingerlab import execstats

    text = execstats.page(toc_notebooks())
    if page.is_file() and page.read_text() == text:
        return False
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="smoke", help="the notebooks' `profile` parameter (smoke or full)")
    ap.add_argument("--device", default="auto", help="the notebooks' `device` parameter (auto, cpu, cuda, cuda:N)")
    ap.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="write executed notebooks here (default: over the input notebooks)",
    )
    ap.add_argument("--keep-going", action="store_true", help="run the next notebook after one fails")
    ap.add_argument("--timings", type=Path, default=None, help="write {notebook: seconds} as JSON here")
    ap.add_argument("--kernel", default="python3", help="Jupyter kernel name (default python3)")
    ap.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook in _toc.yml")
    args = ap.parse_args(argv)
    if args.profile not in ("smoke", "full"):
        ap.error(f"--profile must be 'smoke' or 'full'; got {args.profile!r}")

    notebooks = [p.resolve() for p in args.notebooks] or toc_notebooks()
    missing = [str(p) for p in notebooks if not p.is_file()]
    if missing:
        ap.error(f"notebook(s) not found: {', '.join(missing)} (run `make sync` to create .ipynb from .py)")
    if args.output_dir is not None:
        args.output_dir.mkdir(parents=True, exist_ok=True)
    params = parameters(args.profile, args.device)
    timings: dict[str, dict[str, object]] = {}
    failed = []
    interrupted = False
    try:
        for nb in notebooks:
            out = nb if args.output_dir is None else args.output_dir / nb.name
            print(
                f"== papermill {nb.relative_to(ROOT) if nb.is_relative_to(ROOT) else nb} "
                f"(profile={args.profile}, device={args.device})",
                flush=True,
            )
            # A notebook that reads the others' outputs (the results page: `claims_dir`) reads them where
            # this run writes them.
            nb_params = dict(params)
            if args.output_dir is not None and re.search(r"^claims_dir\s*=", _parameters_cell(nb), re.M):
                nb_params["claims_dir"] = str(args.output_dir.resolve())
            seconds, error = run_one(nb, out, nb_params, args.kernel, profile=args.profile, device=args.device)
            timings[nb.stem] = {"seconds": seconds, "ok": error is None, **({"error": error} if error else {})}
            print(f"   {seconds:.0f} s{'' if error is None else '  FAILED: ' + error}", flush=True)
            if args.timings is not None:  # written after every notebook: a run cut short keeps what finished
                args.timings.write_text(json.dumps(timings, indent=1) + "\n")
            if error is not None:
                failed.append(nb.stem)
                if not args.keep_going:
                    break
    except KeyboardInterrupt:
        interrupted = True
        print("   interrupted: the notebook it was running is left as it was", flush=True)
    total = sum(float(t["seconds"]) for t in timings.values())  # type: ignore[arg-type]
    print(
        f"== {len(timings) - len(failed)}/{len(notebooks)} notebooks ran, {total:.0f} s in all"
        + (f"; failed: {', '.join(failed)}" if failed else ""),
        flush=True,
    )
    if args.output_dir is None and set(notebooks) & set(toc_notebooks()) and write_stats():
        print(f"== {STATS.relative_to(ROOT)} regenerated", flush=True)
    return 130 if interrupted else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
