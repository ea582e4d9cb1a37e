"""Where a cold book run spends its time: every notebook's code cells executed in one process, in
``_toc.yml`` order, in an empty model cache, with each cell's wall time and every cache miss (a model
trained, a stage computed) timed exclusive of the misses nested inside it.

    python benchmarks/book_profile.py                      # the whole book, smoke profile
    python benchmarks/book_profile.py --out /tmp/prof.json notebooks/05_mitigation.py

Prints, per cell that missed the cache, its seconds and the seconds per stage (``finetune``,
``scratch``, ``class_probs``, ...). A profile, not a budget check: ``cold_budgets.py`` holds the
budgets. Cells run as plain Python (the jupytext ``.py`` sources), so the numbers are the
notebooks' work without papermill's kernel start and output capture.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _notebooks() -> list[Path]:
    toc = (ROOT / "_toc.yml").read_text()
    return [ROOT / f"{m}.py" for m in re.findall(r"file:\s*(notebooks/[\w.-]+?)(?:\.ipynb)?\s*$", toc, flags=re.M)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "notebooks", nargs="*", type=Path, help="jupytext .py sources (default: every notebook of _toc.yml)"
    )
    ap.add_argument("--out", type=Path, default=None, help="also write the cells and misses as JSON here")
    ap.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="model cache to use (default: an empty one; a run's cache, to profile later notebooks)",
    )
    args = ap.parse_args()
    paths = [p.resolve() for p in args.notebooks] or _notebooks()
    tmp = tempfile.mkdtemp(prefix="lingerlab-profile-")
    os.environ["LINGERLAB_CACHE"] = str(args.cache.resolve() if args.cache else Path(tmp) / "cache")
    os.environ["LINGERLAB_FIGURES"] = str(Path(tmp) / "figures")
    import matplotlib

    matplotlib.use("Agg")
    import lingerlab.cache as C

    stack: list[float] = []
    misses: list[dict] = []
    current = [""]
    original = C._load_or_compute

    def timed(path: Path, compute):  # type: ignore[no-untyped-def]
        if path.exists():
            return original(path, compute)
        t0 = time.perf_counter()
        stack.append(0.0)
        try:
            return original(path, compute)
        finally:
            dt = time.perf_counter() - t0
            child = stack.pop()
            if stack:
                stack[-1] += dt
            misses.append({"cell": current[0], "stage": path.parent.name, "exclusive_s": dt - child})

    C._load_or_compute = timed
    cells = []
    for nb in paths:
        g: dict = {"__name__": "__main__"}
        os.chdir(nb.parent)
        for i, src in enumerate(re.split(r"^# %%.*$", nb.read_text(), flags=re.M)):
            if not src.strip():
                continue
            current[0] = f"{nb.stem}#{i}"
            t0 = time.perf_counter()
            exec(compile(src, current[0], "exec"), g)
            cells.append({"cell": current[0], "s": time.perf_counter() - t0, "head": src.strip().splitlines()[0][:70]})
    by_cell: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for m in misses:
        by_cell[m["cell"]][m["stage"]] += m["exclusive_s"]
    total = sum(c["s"] for c in cells)
    print(f"{len(cells)} cells, {total:.0f} s")
    for c in cells:
        if c["cell"] in by_cell:
            stages = ", ".join(f"{k} {v:.0f} s" for k, v in by_cell[c["cell"]].most_common())
            print(f"{c['cell']:32s} {c['s']:6.0f} s  {stages}   [{c['head']}]")
    if args.out:
        args.out.write_text(json.dumps({"cells": cells, "misses": misses}, indent=1))


if __name__ == "__main__":
    main()
