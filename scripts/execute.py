#!/usr/bin/env python
"""Execute the book's notebooks with papermill, in ``_toc.yml`` order, and time each one.

Used by ``make execute`` / ``make book-full`` and, unchanged, on a machine without the Makefile's
virtual environment (a GPU box or Colab)::

    python scripts/execute.py                                  # profile smoke, outputs in place
    python scripts/execute.py --profile full --device cuda     # paper scale, on a GPU
    python scripts/execute.py --profile full --device cuda --output-dir /tmp/full --keep-going

Progress bars that ran as widgets (a cold cache trains models inside the kernel) leave ipywidgets
state in the notebook; it is dropped, so the book's pages load nothing from a CDN. The wall time of
each notebook is printed and, with ``--timings FILE``, written as JSON. A notebook that fails does
not overwrite its output: the executed copy is left as ``<name>.failed.ipynb``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def toc_notebooks(toc: Path = ROOT / "_toc.yml") -> list[Path]:
    """The notebooks named in ``_toc.yml`` (``file: notebooks/...``), in order."""
    if not toc.is_file():
        raise FileNotFoundError(f"{toc} not found: run from a lingerlab checkout")
    names = re.findall(r"file:\s*(notebooks/\S+)", toc.read_text())
    if not names:
        raise ValueError(f"{toc} names no notebooks/ entries")
    return [ROOT / f"{n.removesuffix('.ipynb')}.ipynb" for n in names]


def strip_widgets(path: Path, name: str | None = None) -> int:
    """Drop ipywidgets state and widget-view outputs from the notebook at ``path``; return how many.
    Papermill's record of the input and output paths keeps only the file ``name`` (no absolute path
    of the machine that ran it)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
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


def run_one(nb: Path, out: Path, params: dict[str, str], kernel: str = "python3") -> tuple[float, str | None]:
    """Execute ``nb`` into ``out`` with papermill; return (seconds, error or None).

    The notebook is written to ``<out>.running.ipynb`` first and moved onto ``out`` only when every
    cell ran, so a failure never overwrites a good notebook: the executed copy, with the traceback,
    is left as ``<stem>.failed.ipynb`` beside ``out``."""
    import papermill as pm

    tmp = out.with_name(f"{out.stem}.running.ipynb")
    failed = out.with_name(f"{out.stem}.failed.ipynb")
    start = time.perf_counter()
    error = None
    try:
        pm.execute_notebook(str(nb), str(tmp), parameters=params, kernel_name=kernel, cwd=str(nb.parent),
                            progress_bar=False)
    except Exception as exc:  # papermill has written the notebook, with the error, to `tmp`
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        error = f"{type(exc).__name__}: {last}"
    except BaseException:  # interrupted: leave nothing half-written behind
        tmp.unlink(missing_ok=True)
        raise
    seconds = round(time.perf_counter() - start, 1)
    if tmp.is_file():
        strip_widgets(tmp, nb.name)
        os.replace(tmp, out if error is None else failed)
        if error is not None:
            error += f" (executed copy: {failed})"
    if error is None:
        failed.unlink(missing_ok=True)  # an older failure of this notebook is stale now
    return seconds, error


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="smoke", help="the notebooks' `profile` parameter (smoke or full)")
    ap.add_argument("--device", default="auto", help="the notebooks' `device` parameter (auto, cpu, cuda, cuda:N)")
    ap.add_argument("--output-dir", type=Path, default=None,
                    help="write executed notebooks here (default: over the input notebooks)")
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
    for nb in notebooks:
        out = nb if args.output_dir is None else args.output_dir / nb.name
        print(f"== papermill {nb.relative_to(ROOT) if nb.is_relative_to(ROOT) else nb} "
              f"(profile={args.profile}, device={args.device})", flush=True)
        # A notebook that reads the others' outputs (the results page: `claims_dir`) reads them where
        # this run writes them.
        nb_params = dict(params)
        if args.output_dir is not None and re.search(r"^claims_dir\s*=", _parameters_cell(nb), re.M):
            nb_params["claims_dir"] = str(args.output_dir.resolve())
        seconds, error = run_one(nb, out, nb_params, args.kernel)
        timings[nb.stem] = {"seconds": seconds, "ok": error is None, **({"error": error} if error else {})}
        print(f"   {seconds:.0f} s{'' if error is None else '  FAILED: ' + error}", flush=True)
        if args.timings is not None:  # written after every notebook: a run cut short keeps what finished
            args.timings.write_text(json.dumps(timings, indent=1) + "\n")
        if error is not None:
            failed.append(nb.stem)
            if not args.keep_going:
                break
    total = sum(float(t["seconds"]) for t in timings.values())  # type: ignore[arg-type]
    print(f"== {len(timings) - len(failed)}/{len(notebooks)} notebooks ran, {total:.0f} s in all"
          + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
