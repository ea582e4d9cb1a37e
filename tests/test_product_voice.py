"""The product speaks of itself only: no file of it refers to work sessions or issue numbers.

Scans the tracked README, book pages and stylesheets, package sources, notebook sources, tests,
benchmarks (their README is the one place for dated measurements: dates, yes; session or issue
numbers, no) and scripts. Also keeps the README short enough for a newcomer.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: What the scan covers, as git pathspecs: files git tracks or would track (not ignored), so .venv and
#: _build never count and a new file counts before its first commit.
SCANNED = [
    "README.md",
    "book/**/*.md",
    "book/**/*.css",
    "src/**/*.py",
    "notebooks/*.py",
    "tests/**/*.py",
    "benchmarks/**/*.py",
    "benchmarks/README.md",
    "scripts/**/*.py",
]

# The pattern is assembled from pieces so that this file's own source holds no phrase it forbids.
_S, _I = "sess" + "ions?", "iss" + "ues?"
VOICE = re.compile(rf"\b({_S} [0-9]+|this {_S[:-2]}|earlier {_S[:-2]}|{_I} #?[0-9]+)\b", re.IGNORECASE)

README_MAX_LINES = 120


def _tracked(pathspecs: list[str]) -> list[Path]:
    out = subprocess.run(
        [
            "git",
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
            "--",
            *(f":(glob){p}" for p in pathspecs),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return [ROOT / p for p in sorted(set(out.split("\0"))) if p and (ROOT / p).is_file()]


def voice_hits(files: list[Path]) -> list[str]:
    """``path:line: text`` for every line of ``files`` that names a session or an issue number."""
    hits = []
    for f in files:
        for n, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if VOICE.search(line):
                hits.append(f"{f.relative_to(ROOT)}:{n}: {line.strip()[:120]}")
    return hits


def test_pattern_catches_what_it_should():
    said = [
        "as in " + "sess" + "ion 12",
        "Sess" + "ions 12-14",
        "th" + "is session's run",
        "an earl" + "ier session",
        "iss" + "ue 15",
        "Iss" + "ue #20",
        "iss" + "ues 9",
    ]
    for s in said:
        assert VOICE.search(s), s
    for s in ["a session of work", "issues a warning", "at issue here", "the 2026-12-02 run", "tissue 15"]:
        assert not VOICE.search(s), s


def test_scan_covers_the_product():
    files = {f.relative_to(ROOT).as_posix() for f in _tracked(SCANNED)}
    for expected in [
        "README.md",
        "benchmarks/README.md",
        "src/lingerlab/audit.py",
        "tests/test_product_voice.py",
        "book/_static/lingerlab.css",
    ]:
        assert expected in files, expected
    assert not any(f.startswith((".venv/", "_build/")) for f in files)


def test_no_sessions_or_issue_numbers():
    hits = voice_hits(_tracked(SCANNED))
    assert not hits, "the product speaks of its development:\n" + "\n".join(hits)


def test_readme_is_short():
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines (at most {README_MAX_LINES})"
