"""HTML building blocks of a self-contained page: figures as base64 PNG ``<img>`` tags, escaped pandas tables
and the page's own CSS (no script, stylesheet, font or image is fetched)."""

from __future__ import annotations

import base64
import html
import io
import math
import re
from dataclasses import dataclass, field
from string import Template
from typing import Any, Sequence

import numpy as np
import pandas as pd

__all__ = ["Section", "esc", "table_html", "markdown_html", "img", "render_page"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 0 1.2em 3em; color: #1d2330; line-height: 1.45; }
h1 { font-size: 1.6em; margin: 1em 0 0.2em; }
h2 { font-size: 1.25em; border-bottom: 2px solid #d8dde6; padding-bottom: 0.2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.4em; }
nav { background: #f3f5f9; padding: 0.5em 0.8em; border-radius: 6px; }
nav a { margin-right: 1.1em; color: #1f4e9c; text-decoration: none; }
table.data { border-collapse: collapse; font-size: 0.86em; margin: 0.5em 0 1em; }
table.data th, table.data td { border: 1px solid #d8dde6; padding: 0.2em 0.5em; text-align: left;
                                font-variant-numeric: tabular-nums; vertical-align: top; }
table.data th { background: #eef1f6; }
.note { color: #4a5365; font-size: 0.92em; }
.warn { background: #fff6e0; border-left: 4px solid #e0a100; padding: 0.4em 0.7em; margin: 0.6em 0; }
.headline { display: flex; flex-wrap: wrap; gap: 0.8em; margin: 0.8em 0; }
.headline div { background: #f3f5f9; border-radius: 6px; padding: 0.5em 0.9em; min-width: 9em; }
.headline b { display: block; font-size: 1.35em; }
img.fig { max-width: 100%; height: auto; border: 1px solid #e4e7ee; margin: 0.4em 0; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.88em; }
pre { background: #f6f7fa; padding: 0.6em; overflow-x: auto; white-space: pre-wrap; }
.scroll { max-height: 26em; overflow-y: auto; overflow-x: auto; }
"""

_PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>$css</style>
</head>
<body>
<h1>$title</h1>
<p class="note">$subtitle</p>
<nav>$nav</nav>
$summary
$sections
<hr>
<p class="note">$footer</p>
</body>
</html>
""")


def esc(text: Any) -> str:
    """``text`` as HTML text (``&``, ``<``, ``>`` and quotes escaped)."""
    return html.escape(str(text), quote=True)


@dataclass
class Section:
    """One ``<section id=...>`` of the page: a heading and HTML parts (already escaped)."""

    id: str
    title: str
    parts: list[str] = field(default_factory=list)

    def add(self, *parts: str) -> "Section":
        self.parts.extend(parts)
        return self

    def p(self, text: str, cls: str | None = None) -> "Section":
        """A paragraph of plain text (escaped)."""
        return self.add(f"<p{f' class={cls!r}' if cls else ''}>{esc(text)}</p>")

    def render(self) -> str:
        return f'<section id="{esc(self.id)}">\n<h2>{esc(self.title)}</h2>\n' + "\n".join(self.parts) + "\n</section>"


def _fmt(x: Any) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if math.isnan(x):
            return "\u2013"
        ax = abs(x)
        if ax == 0:
            return "0"
        if ax < 1e-3 or ax >= 1e5:
            return f"{x:.3g}"
        return f"{x:.4g}" if ax >= 1 else f"{x:.3f}"
    return str(x)


def table_html(df: pd.DataFrame, *, max_rows: int | None = 200, scroll: bool = False) -> str:
    """``df`` as an escaped HTML table (numbers to about 3 significant digits, NaN as a dash);
    longer tables are cut to ``max_rows`` rows with a note (the CSV next to the report has them all)."""
    if df is None or len(df) == 0:
        return '<p class="note">(no rows)</p>'
    cut = max_rows is not None and len(df) > max_rows
    shown = (df.head(max_rows) if cut else df).copy()
    for col in shown.columns:
        if shown[col].dtype == object or pd.api.types.is_numeric_dtype(shown[col]):  # bool is numeric
            shown[col] = ["\u2013" if v is None else _fmt(v) for v in shown[col]]  # NaN: a dash too
    out = shown.to_html(index=False, escape=True, border=0, classes="data", na_rep="\u2013")
    if cut:
        out += f'<p class="note">first {max_rows} of {len(df)} rows (all of them are in the CSV file)</p>'
    return f'<div class="scroll">{out}</div>' if scroll else out


def markdown_html(text: str) -> str:
    """The small Markdown of ``fair_test_text.findings`` as escaped HTML: paragraphs, bullets (lines
    starting with a dash), bold (double asterisks) and code (backquotes)."""

    def inline(line: str) -> str:
        out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", esc(line))
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)

    parts = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = [ln for ln in block.splitlines() if ln.strip()]
        if lines and all(ln.lstrip().startswith("- ") for ln in lines):
            parts.append("<ul>" + "".join(f"<li>{inline(ln.lstrip()[2:])}</li>" for ln in lines) + "</ul>")
        elif lines:
            parts.append(f"<p>{inline(' '.join(lines))}</p>")
    return "\n".join(parts)


def img(fig: Any, alt: str) -> str:
    """An ``<img>`` tag holding ``fig`` as an embedded PNG (a ``data:image/png;base64,...`` URI)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return f'<img class="fig" alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def render_page(title: str, subtitle: str, summary_html: str, sections: Sequence[Section], footer: str) -> str:
    """The whole page: title, a navigation bar to each section, the summary and the sections."""
    nav = " ".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    return _PAGE.substitute(
        title=esc(title),
        subtitle=esc(subtitle),
        css=_CSS,
        nav=nav,
        summary=summary_html,
        sections="\n".join(s.render() for s in sections),
        footer=esc(footer),
    )
