#!/usr/bin/env python
"""Write (or check) every place that names the repository from its one source, ``pyproject.toml``'s
``[project.urls] Repository``: each notebook's Colab badge and Colab install cell, the book's
``repository.url`` (``_config.yml``) and the clone line of ``book/run_it_yourself.md``.

    python scripts/colab.py           # rewrite them from pyproject.toml
    python scripts/colab.py --check   # exit 1 and list what disagrees (tests/test_colab.py runs this)
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def repository_url(root: Path = ROOT) -> str:
    """``[project.urls] Repository`` of ``pyproject.toml``, without a trailing slash or ``.git``."""
    meta = tomllib.loads((root / "pyproject.toml").read_text())
    url = meta.get("project", {}).get("urls", {}).get("Repository")
    if not url or not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url.rstrip("/").removesuffix(".git")):
        raise ValueError(
            f"pyproject.toml [project.urls] Repository must be https://github.com/<owner>/<repo>; got {url!r}"
        )
    return url.rstrip("/").removesuffix(".git")


def expected(url: str, notebook: str) -> dict[str, str]:
    """The badge link and the pip requirement a notebook must carry for repository ``url``."""
    slug = url.removeprefix("https://github.com/")
    return {
        "badge": f"https://colab.research.google.com/github/{slug}/blob/main/notebooks/{notebook}.ipynb",
        "install": f'"lingerlab[book] @ git+{url}"',
    }


BADGE = re.compile(r"https://colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/main/notebooks/[\w.-]+\.ipynb")
INSTALL = re.compile(r'"lingerlab\[book\] @ git\+https://github\.com/[\w.-]+/[\w.-]+"')
CONFIG_URL = re.compile(r"(?m)^(repository:\n  url: )(\S+)$")
CLONE = re.compile(r"git clone https://github\.com/[\w.-]+/[\w.-]+")


def sync(root: Path = ROOT, check: bool = False) -> list[str]:
    """Rewrite (or, with ``check``, only compare) every place; return what disagreed."""
    url = repository_url(root)
    problems: list[str] = []

    def fix(path: Path, pattern: re.Pattern[str], want: str, count: int, what: str) -> None:
        text = path.read_text()
        found = pattern.findall(text)
        if len(found) != count:
            problems.append(f"{path.relative_to(root)}: expected {count} {what}, found {len(found)}")
            return
        if any(f != want for f in found):
            problems.append(f"{path.relative_to(root)}: {what} is {found[0]!r}, expected {want!r}")
            if not check:
                path.write_text(pattern.sub(lambda _m: want, text))

    notebooks = sorted((root / "notebooks").glob("[0-9][0-9]_*.py"))
    if not notebooks:
        problems.append("notebooks/: no NN_*.py notebooks found")
    for nb in notebooks:
        want = expected(url, nb.stem)
        fix(nb, BADGE, want["badge"], 1, "Colab badge link")
        fix(nb, INSTALL, want["install"], 1, "Colab install requirement")
    cfg = root / "_config.yml"
    m = CONFIG_URL.search(cfg.read_text())
    if m is None:
        problems.append("_config.yml: no repository: url: entry")
    elif m.group(2) != url:
        problems.append(f"_config.yml: repository.url is {m.group(2)!r}, expected {url!r}")
        if not check:
            cfg.write_text(CONFIG_URL.sub(lambda mm: mm.group(1) + url, cfg.read_text()))
    fix(root / "book" / "run_it_yourself.md", CLONE, f"git clone {url}", 1, "clone line")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when something disagrees")
    args = ap.parse_args(argv)
    problems = sync(check=args.check)
    for p in problems:
        print(("disagrees: " if args.check else "rewrote: ") + p)
    return 1 if (problems and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
