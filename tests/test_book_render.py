"""Render every page of the built book in headless Chromium: screenshots, no tracebacks, local math."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
PAGES = ["book/intro"] + re.findall(r"file:\s*(\S+)", (ROOT / "_toc.yml").read_text())
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=8000",
]

pytestmark = [
    pytest.mark.render,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found: install Debian's `chromium` to render pages"),
    pytest.mark.skipif(not (HTML / "index.html").exists(), reason="book not built: run `make bookcheck` first"),
]


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("page", PAGES)
def test_page_renders(page, tmp_path):
    html = HTML / f"{page}.html"
    assert html.exists(), f"{html} missing from the built book"
    shot = ROOT / "_build" / "screenshots" / (page.replace("/", "_") + ".png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2400", html.as_uri())
    assert shot.exists() and shot.stat().st_size > 20_000, "screenshot missing or blank"
    dom = _chromium(tmp_path, "--dump-dom", html.as_uri()).stdout
    assert "Traceback (most recent call last)" not in dom, f"{page}: a Python traceback is on the page"
    assert not re.search(r'class="[^"]*\boutput\b[^"]*\berror\b', dom), f"{page}: an error output is on the page"
    assert "cdn.jsdelivr.net" not in dom and "mathjax@" not in dom, "MathJax must be served locally"


def test_equations_render_offline(tmp_path):
    dom = _chromium(tmp_path, "--dump-dom", (HTML / "book" / "method.html").as_uri()).stdout
    assert "_static/mathjax/tex-chtml.js" in dom
    assert dom.count("<mjx-container") >= 5, "MathJax did not typeset the method page's equations"


_SCROLL_CHECK = """<script>
window.addEventListener("load", () => {
  document.querySelectorAll("details").forEach(d => { d.open = true; });   // hidden cells, opened
  document.querySelectorAll(".toggle-hidden, .tag_hide-input .cell_input").forEach(e => { e.style.display = "block"; });
  const bad = [];
  document.querySelectorAll("div.cell pre, div.highlight pre").forEach(p => {
    if (p.getClientRects().length && p.scrollWidth > p.clientWidth + 1) bad.push(p.textContent.trim().slice(0, 60));
  });
  const out = document.createElement("div");
  out.id = "lingerlab-scroll-check";
  out.setAttribute("data-bad", JSON.stringify(bad));
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.parametrize("page", PAGES)
def test_no_code_cell_scrolls_sideways(page, tmp_path):
    """At a laptop window width, no code cell or text output of a page (hidden cells
    opened) is wider than the content column; book/_static/lingerlab.css wraps them."""
    import html as _html
    import json

    src = HTML / f"{page}.html"
    probe = src.with_name(src.stem + ".scrollcheck.html")  # beside the page, so its assets load
    probe.write_text(src.read_text().replace("</body>", _SCROLL_CHECK + "</body>"))
    try:
        dom = _chromium(tmp_path, "--window-size=1280,2400", "--dump-dom", probe.as_uri()).stdout
    finally:
        probe.unlink()
    m = re.search(r'id="lingerlab-scroll-check" data-bad="([^"]*)"', dom)
    assert m, f"{page}: the scroll check did not run"
    bad = json.loads(_html.unescape(m.group(1)))
    assert not bad, f"{page}: code cells wider than the content column: {bad}"
