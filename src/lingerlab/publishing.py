"""Putting results on the book's pages: every figure checked for legible type at page width, saved
and glued (:func:`publish`), and Markdown text the book glues (:class:`Findings`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .report import glue, savefig

#: The smallest type a figure of the book may carry *as the page shows it* (legible at page width).
MIN_FONT_PT = 9.0
#: The width the book's pages give a figure: the content column of the book's theme is at most 774 CSS
#: px wide (measured in Chromium), and the notebooks' inline figures are drawn at 100 dpi, so a
#: figure wider than this many inches is shown scaled down, and its type with it.
PAGE_WIDTH_IN = 7.74
#: The width the book's figures are designed at (inches): within the page, so shown at full size.
BOOK_WIDTH_IN = 7.5


def shown_scale(fig: Any, page_width_in: float = PAGE_WIDTH_IN) -> float:
    """How much the page scales ``fig`` down: ``min(1, page width / the figure's tight width)``."""
    fig.canvas.draw()
    width = fig.get_tightbbox(fig.canvas.get_renderer()).width  # inches, as bbox_inches="tight" saves it
    return min(1.0, page_width_in / max(width, 1e-9))


def small_text(fig: Any, min_pt: float = MIN_FONT_PT, page_width_in: float | None = PAGE_WIDTH_IN) -> list[str]:
    """The visible texts of ``fig`` smaller than ``min_pt`` points as the page shows them (size times
    :func:`shown_scale`; ``page_width_in=None``: as drawn), each as ``'<text>' (<size> pt)``."""
    from matplotlib.text import Text

    scale = 1.0 if page_width_in is None else shown_scale(fig, page_width_in)
    return [
        f"{t.get_text()[:30]!r} ({t.get_fontsize() * scale:.3g} pt)"
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip() and t.get_fontsize() * scale < min_pt - 0.05
    ]  # 0.05 pt: rounding


# the book's symbols as typed in code and labels (M^t, M^st, D^c, p_c), not already inside $...$
_SYMBOL = re.compile(r"(?<![$\\\w{])(M\^(?:st|s|t|b)|D\^[ct]|p_c)(?![\w}$])")


def book_notation(text: str) -> str:
    """``text`` with the book's symbols typeset as in its prose: ``"M^t (zoom-out)"`` ->
    ``"$M^t$ (zoom-out)"``, ``"p_c(M^st)"`` -> ``"$p_c$($M^{st}$)"``; text already in ``$...$`` is kept."""
    if len(re.findall(r"(?<!\\)\$", text)) % 2 or "\\$" in text:
        return text
    parts = text.split("$")
    for i in range(0, len(parts), 2):  # only outside math
        parts[i] = _SYMBOL.sub(lambda m: "$" + re.sub(r"\^(\w\w+)", r"^{\1}", m.group(1)) + "$", parts[i])
    return "$".join(parts)


def publish(fig: Any, name: str, *, key: str | None = None, dpi: int = 120) -> Path:
    """Show one figure of the book: its texts put in :func:`book_notation`, checked legible
    (:data:`MIN_FONT_PT`; else ``ValueError`` naming the small texts, before anything is written), saved as
    ``<figures_dir>/<name>.png``, glued as ``key`` (default ``fig_<name>``; displayed without myst-nb), closed."""
    import matplotlib.pyplot as plt
    from matplotlib.text import Text
    from matplotlib.ticker import FixedFormatter, FuncFormatter

    for t in fig.findobj(Text):
        t.set_text(book_notation(t.get_text()))
    for ax in fig.axes:  # tick labels are redrawn from their formatter, so it is the formatter that changes
        for axis in (ax.xaxis, ax.yaxis):
            fmt = axis.get_major_formatter()
            if isinstance(fmt, FixedFormatter):  # labels given as text
                fmt.seq = [book_notation(str(x)) for x in fmt.seq]
            elif isinstance(fmt, FuncFormatter):
                fmt.func = lambda x, pos, f=fmt.func: book_notation(str(f(x, pos)))

    small = small_text(fig)
    if small:
        raise ValueError(
            f"figure {name!r}: text below {MIN_FONT_PT:g} pt at page width ({PAGE_WIDTH_IN:g} in; "
            f"the figure is shown at {shown_scale(fig):.2f} of its size) is not legible: "
            + ", ".join(small[:8])
            + (" ..." if len(small) > 8 else "")
            + f"; make it at most {BOOK_WIDTH_IN:g} in wide or its type larger"
        )
    path = savefig(fig, name, dpi=dpi)
    try:
        import myst_nb  # noqa: F401
    except ImportError:  # pragma: no cover - Colab without the book's extras
        from IPython.display import display

        display(fig)
    else:
        glue(key or f"fig_{name}", fig, display=True)
    plt.close(fig)
    return path


class Findings:
    """Markdown text shown as Markdown in a notebook and as HTML elsewhere (``{glue:md}`` on its page,
    ``{glue}`` with ``:doc:`` on another)."""

    def __init__(self, markdown: str) -> None:
        if not isinstance(markdown, str):
            raise TypeError(f"markdown must be a str; got {type(markdown).__name__}")
        self.markdown = markdown

    def _repr_markdown_(self) -> str:
        return self.markdown

    def _repr_html_(self) -> str:
        try:
            from markdown_it import MarkdownIt
        except ImportError:  # pragma: no cover - markdown-it-py comes with the book's extras
            import html

            return f"<pre>{html.escape(self.markdown)}</pre>"
        return MarkdownIt("commonmark").render(self.markdown)

    def __repr__(self) -> str:
        return self.markdown
