"""scripts/colab.py: the repository URL is written in one place (pyproject.toml) and every Colab badge,
Colab install cell and book setting agrees with it."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _colab():
    spec = importlib.util.spec_from_file_location("colab_script", ROOT / "scripts" / "colab.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_badge_and_install_cell_agrees_with_pyproject():
    colab = _colab()
    assert colab.sync(ROOT, check=True) == []
    url = colab.repository_url(ROOT)
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        want = colab.expected(url, nb.stem)
        text = nb.read_text()
        assert want["badge"] in text and want["install"] in text, nb.name
        ipynb = nb.with_suffix(".ipynb").read_text()  # the paired notebook carries the same cells
        assert want["badge"] in ipynb and want["install"].replace('"', '\\"') in ipynb, nb.name


def test_a_changed_url_is_caught_and_rewritten(tmp_path):
    colab = _colab()
    root = tmp_path / "repo"
    for part in ("notebooks", "book"):
        (root / part).mkdir(parents=True)
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        shutil.copy(nb, root / "notebooks" / nb.name)
    shutil.copy(ROOT / "_config.yml", root / "_config.yml")
    shutil.copy(ROOT / "book" / "run_it_yourself.md", root / "book" / "run_it_yourself.md")
    (root / "pyproject.toml").write_text(
        (ROOT / "pyproject.toml")
        .read_text()
        .replace("https://github.com/lingerlab/lingerlab", "https://github.com/someone/fork")
    )
    problems = colab.sync(root, check=True)
    n_nb = len(list((root / "notebooks").glob("*.py")))
    assert len(problems) == 2 * n_nb + 2  # badge and install per notebook, _config.yml, the clone line
    assert colab.sync(root) != [] and colab.sync(root, check=True) == []
    text = (root / "notebooks" / "01_hypothesis.py").read_text()
    assert "colab.research.google.com/github/someone/fork/blob/main/notebooks/01_hypothesis.ipynb" in text
    assert '"lingerlab[book] @ git+https://github.com/someone/fork"' in text
    assert "url: https://github.com/someone/fork" in (root / "_config.yml").read_text()


def test_a_bad_url_names_the_setting(tmp_path):
    colab = _colab()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[project.urls]\nRepository = "ftp://x"\n')
    with pytest.raises(ValueError, match="Repository"):
        colab.repository_url(tmp_path)
