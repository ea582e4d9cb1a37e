#!/usr/bin/env python
"""Summarise a folder of executed notebooks (e.g. a ``--profile full`` run on a GPU) as Markdown.

    python scripts/summarize_run.py book/gpu_run          # writes book/gpu_run/summary.md
    python scripts/summarize_run.py book/gpu_run --figure 04_distraction:11   # and one figure as a PNG

For each notebook, in ``_toc.yml`` order: its wall time (``timings.json`` from ``scripts/execute.py``),
whether any cell raised, and the text output of every cell (the last one is the notebook's
summary cell of its key numbers). ``env.txt``, when present, is quoted first (the machine). The
numbers are copied from the notebooks' stored outputs, never typed in.
"""
from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from execute import toc_notebooks  # noqa: E402


def _text(output: dict) -> str:
    """The plain-text form of one notebook output ('' for images and stderr)."""
    if output.get("output_type") == "stream":
        return "" if output.get("name") == "stderr" else "".join(output.get("text", ""))
    text = output.get("data", {}).get("text/plain", "")
    text = "".join(text) if isinstance(text, list) else text
    return "" if text.startswith("<Figure") else text


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def summarize(nb_path: Path) -> dict[str, object]:
    """``errors`` (list of 'ename: evalue'), ``parameters`` (papermill's injected cell) and ``outputs``:
    the text output of every code cell that shows any (tables and printed lines; no figures, no stderr)."""
    nb = json.loads(nb_path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    errors = [f"{o['ename']}: {o['evalue']}" for c in code for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    texts = []
    for c in code:
        parts = [t.rstrip() for t in map(_text, c.get("outputs", [])) if t.strip()]
        if parts:
            texts.append("\n".join(parts))
    params = next((_source(c).strip() for c in code if "injected-parameters" in c.get("metadata", {}).get("tags", [])), "")
    return {"errors": errors, "outputs": texts, "parameters": params}


def figure_bytes(nb_path: Path, cell: int, index: int = 0) -> bytes:
    """The ``index``-th PNG output of code cell number ``cell`` (position among all cells) of a notebook."""
    nb = json.loads(nb_path.read_text())
    if not 0 <= cell < len(nb["cells"]):
        raise ValueError(f"cell must be in 0..{len(nb['cells']) - 1} for {nb_path.name}; got {cell}")
    pngs = [o["data"]["image/png"] for o in nb["cells"][cell].get("outputs", []) if "image/png" in o.get("data", {})]
    if not 0 <= index < len(pngs):
        raise ValueError(f"cell {cell} of {nb_path.name} has {len(pngs)} PNG output(s); asked for number {index}")
    data = pngs[index]
    return base64.b64decode("".join(data) if isinstance(data, list) else data)


def markdown(run: Path) -> str:
    timings = json.loads((run / "timings.json").read_text()) if (run / "timings.json").is_file() else {}
    lines = []
    if (run / "env.txt").is_file():
        lines += ["Machine and packages (`env.txt`):", "", "```text", (run / "env.txt").read_text().strip(), "```", ""]
    rows, blocks = [], []
    for nb in toc_notebooks():
        path = run / nb.name
        if not path.is_file():
            rows.append(f"| `{nb.stem}` | not run | | |")
            continue
        s = summarize(path)
        t = timings.get(nb.stem, {})
        secs = f"{float(t['seconds']):.0f} s" if "seconds" in t else "?"
        rows.append(f"| `{nb.stem}` | {secs} | {'; '.join(s['errors']) or 'none'} | {t.get('note', '')} |")
        params = " ".join(str(s["parameters"]).splitlines()[1:]) or "defaults"
        blocks += [f"### `{nb.stem}`", "", f"Parameters: `{params}`. Text output of every cell that printed or showed a table:", ""]
        for text in s["outputs"]:  # type: ignore[union-attr]
            blocks += ["```text", text, "```", ""]
    head = ["| notebook | wall time | errors | note |", "|---|---|---|---|"]
    total = sum(float(t["seconds"]) for t in timings.values() if "seconds" in t)
    return "\n".join(lines + head + rows + ["", f"Total: {total:.0f} s.", ""] + blocks)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="folder with the executed .ipynb files (and timings.json, env.txt)")
    ap.add_argument("--out", type=Path, default=None, help="default: RUN/summary.md")
    ap.add_argument("--figure", action="append", default=[], metavar="NOTEBOOK:CELL[:K]",
                    help="also write the K-th (default 0) PNG output of that cell to RUN/figures/NOTEBOOK-cellCELL-K.png")
    args = ap.parse_args(argv)
    if not args.run.is_dir():
        ap.error(f"run folder {args.run} does not exist")
    out = args.out or args.run / "summary.md"
    out.write_text(markdown(args.run))
    print(f"wrote {out}")
    for spec in args.figure:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[1:]):
            ap.error(f"--figure takes NOTEBOOK:CELL[:K], e.g. 04_distraction:11; got {spec!r}")
        name, cell, k = parts[0], int(parts[1]), int(parts[2]) if len(parts) == 3 else 0
        png = args.run / "figures" / f"{name}-cell{cell}-{k}.png"
        png.parent.mkdir(exist_ok=True)
        png.write_bytes(figure_bytes(args.run / f"{name}.ipynb", cell, k))
        print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
