"""No result number is typed into the book's prose.

Numbers on a page come from glue (``{glue:text}`key:.3f```, ``{glue}`key```, glued tables and figures)
or from generated files. This test scans ``book/*.md`` and the markdown cells of every notebook and
fails on a literal number outside a glue role. What may stay literal is whitelisted by pattern below:
references (equation, figure, section, notebook and appendix numbers, years, model names), and
parameters stated as settings (a setting is chosen before the run, so it cannot disagree with it).
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = re.findall(r"notebooks/[0-9A-Za-z_]+", (ROOT / "_toc.yml").read_text())
# book/generated/ holds pages written by scripts (tests/test_execstats.py checks they are what the
# stored notebooks' metadata give); the prose pages are scanned here.
PAGES = sorted((ROOT / "book").glob("*.md"))

# Removed before scanning: markup that holds no prose numbers.
_STRIP = [
    r"```\{glue[^`]*?```",  # glued blocks (figures, tables)
    r":::\{glue[\s\S]*?:::",
    r"\{glue(?::\w+)?\}`[^`]*`",  # inline glue roles
    r"\{(?:ref|numref|doc|term|eq|download)\}`[^`]*`",
    r"\$\$[\s\S]*?\$\$",
    r"\$[^$\n]+\$",  # mathematics: symbols and equations, not results
    r"```[\s\S]*?```",
    r"`[^`\n]*`",  # code
    r"\]\([^)]*\)",
    r"https?://\S+",  # link targets
    r"^\s*:[\w-]+:.*$",  # directive options
    r"<[^>\n]+>",  # html tags
    r"^#+ .*$",  # headings carry section numbers
]

# References and settings: literal numbers that are not results.
ALLOWED = [
    r"\b(?:Eqs?|Equations?|Figs?|Figures?|Sec|Sections?|Tables?|Appendix|App|notebooks?|chapters?|issues?|Part)\.?"
    r" ?\d+[a-z]?(?:(?:-|–|, | and | or |/)\d+[a-z]?)*",
    r"\b(?:19|20)\d\d[a-z]?\b",  # years
    r"\b(?:ResNet|Lite|EfficientNet-Lite|ViT-B|H|A|V)-?\d+\b",  # model and GPU names
    r"\btop-?\d+\b",
    r"\bk ?= ?\d+\b",
    r"\bp ?< ?0?\.\d+\b",
    r"\b\d+-core\b",
    r"\b\d+(?:\.\d+)? ?(?:px|pixels|seeds?|epochs?|cores?|minutes?|min|s|GB|MB|GiB|MiB|pt|views?|composites"
    r" per|images per|steps?|classes per|channels|bits)\b",
    r"(?:\b\d+ ?%, )*\b\d+ ?% and \d+ ?% of the layer\b",
    r"\b9[05] ?%(?: interval)?",
    r"\b80 ?% power\b",
    r"\b\d+ ?% of (?:each|the area|the pixels|the layer|its|a)\b",
    r"\b\d+(?:-| to )\d+ ?%",
    r"\b\d+ ?x ?\d+\b",  # image sizes, 25x25
    r"\b(?:one|two|three)?\s*\d\s*(?:-|x)\s*\d\b",
    r"\b0 and 1\b",
    r"\balpha \d\b",
    r"\bat (?:0|1)\b",
    r"\bseeds? \d+(?:-\d+)?\b",
    r"\bseed-\d+\b",  # seeds are named by number
    r"\bchance(?: level)?:? (?:AUROC |FPR )?0?\.\d+\b",
    r"\b0?\.\d+ is chance\b",
    r"\bFPR 0?\.\d+\b",
    r"\bwithin 0?\.\d+ of chance\b",  # the at-chance margin, a setting
    r"\b\d+ ?% of clean images\b",
    r"\b1000(?:-way| classes| ImageNet)\b",
    r"\bImageNet's 1000\b",
    r"\bPMLR \d+\b",
]
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?%?(?![\w])")


def literal_numbers(text: str) -> list[str]:
    """The literal numbers in a markdown text that no whitelist pattern covers, each with its context."""
    for pattern in _STRIP:
        text = re.sub(pattern, " ", text, flags=re.M)
    text = re.sub(r"^\s*\d+\.\s", " ", text, flags=re.M)  # ordered-list markers
    text = re.sub(r"\s+", " ", text)  # a setting may wrap across lines
    for pattern in ALLOWED:
        text = re.sub(pattern, " ", text, flags=re.I)
    return [text[max(0, m.start() - 40) : m.end() + 20].replace("\n", " ").strip() for m in NUMBER.finditer(text)]


def _markdown(path: Path) -> str:
    if path.suffix == ".md":
        return path.read_text()
    nb = jupytext.read(path)
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def test_scanner_catches_a_typed_result_and_passes_glue():
    assert literal_numbers("M^t's accuracy on composites is 0.87 against 0.5.")
    assert literal_numbers("4 of 13 classes linger")
    assert not literal_numbers("Eq. 4 over L is {glue:text}`nb04_eq4:.3f` (Figure 3a, 2024).")
    assert not literal_numbers("```{glue} nb04_fig\n:doc: ../notebooks/04_distraction.ipynb\n```")
    assert not literal_numbers("five seeds at 112 px; the 95% interval; $p^{lo} = 10/|C|$")


@pytest.mark.parametrize(
    "path", PAGES + [ROOT / f"{n}.py" for n in NOTEBOOKS], ids=lambda p: p.relative_to(ROOT).as_posix()
)
def test_no_typed_result_numbers(path):
    found = literal_numbers(_markdown(path))
    assert not found, (
        f"{path.relative_to(ROOT)}: literal numbers outside glue (glue them, or state them "
        "as a setting the whitelist covers):\n  " + "\n  ".join(found)
    )
