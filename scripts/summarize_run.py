#!/usr/bin/env python
"""Summarise a folder of executed notebooks (e.g. a ``--profile full`` run on a GPU) as Markdown.

    python scripts/summarize_run.py book/gpu_run          # writes book/gpu_run/summary.md

For each notebook, in ``_toc.yml`` order: its wall time (``timings.json`` from ``scripts/execute.py``),
whether any cell raised, and the text output of every cell (the last one is the notebook's
summary cell of its key numbers). ``env.txt``, when present, is quoted first (the machine). The
numbers are copied from the notebooks' stored outputs, never typed in.
"""
from __future__ import annotations

import argparse
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
    shown = [c for c in code if any(_text(o).strip() for o in c.get("outputs", []))]
    texts = ["\n".join(_text(o).rstrip() for o in c["outputs"] if _text(o).strip()) for c in shown]
    params = next((_source(c).strip() for c in code if "injected-parameters" in c.get("metadata", {}).get("tags", [])), "")
    return {"errors": errors, "outputs": texts, "parameters": params}


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
    args = ap.parse_args(argv)
    if not args.run.is_dir():
        ap.error(f"run folder {args.run} does not exist")
    out = args.out or args.run / "summary.md"
    out.write_text(markdown(args.run))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
