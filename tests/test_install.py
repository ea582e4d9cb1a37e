"""The package as a user gets it (as Colab would): the built wheel, installed with its ``[book]`` extra
into a fresh virtual environment, runs notebook 1 at ``profile=smoke`` from a folder outside the
repository, reading no file of the repository. ``make test-install``; about 2-3 minutes, most of it
pip installing torch from this machine's disk (``-c requirements/constraints.txt``).

The kernel that runs the notebook is the fresh environment's python, started with an IPython startup
file (in a temporary ``IPYTHONDIR``; no cell is added to the notebook) that records, through an audit
hook, every path under the repository it opens, lists or imports from, and at exit where ``lingerlab``
came from."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.install

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "requirements" / "constraints.txt"
NOTEBOOK = ROOT / "notebooks" / "01_hypothesis.ipynb"
KERNEL = "lingerlab-fresh"
# What must come from this machine's disk (a file: URL), never the network; and how much the rest may
# download from it (pip's "Downloading NAME (SIZE)" lines): a CUDA library of torch's fetched from PyPI
# would be hundreds of MB, torch itself about a GB.
LOCAL = ("torch", "torchvision")
MAX_DOWNLOAD_MB, MAX_TOTAL_MB = 100, 300
_DOWNLOAD = re.compile(r"^\s*Downloading (\S+) \(([\d.]+) (bytes|kB|MB|GB)\)", re.M)
_UNIT_MB = {"bytes": 1e-6, "kB": 1e-3, "MB": 1.0, "GB": 1e3}

PROBE = """\
import atexit, json, os, sys

_REPO = {repo!r}
_LOG = {log!r}
_hits = []


def _under_repo(p):
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    if not isinstance(p, (str, os.PathLike)):
        return None
    p = os.path.abspath(os.fspath(p))
    return p if p == _REPO or p.startswith(_REPO + os.sep) else None


def _hook(event, args):
    if event in ("open", "os.listdir", "os.scandir", "os.chdir", "import") and args:
        p = _under_repo(args[0] if event != "import" else (args[1] or ""))
        if p is not None and len(_hits) < 50:
            _hits.append([event, p])


sys.addaudithook(_hook)


def _dump():
    mod = sys.modules.get("lingerlab")
    in_repo = sorted(k for k, v in list(sys.modules.items())
                     if _under_repo(getattr(v, "__file__", None) or "") is not None)
    with open(_LOG, "w") as f:
        json.dump({{"executable": sys.executable, "prefix": sys.prefix, "sys_path": sys.path,
                    "lingerlab": getattr(mod, "__file__", None), "repo_access": _hits,
                    "modules_in_repo": in_repo}}, f)


atexit.register(_dump)
"""


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert res.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {res.returncode}\n"
        f"--- stdout\n{res.stdout[-4000:]}\n--- stderr\n{res.stderr[-8000:]}"
    )
    return res


def _inside(path: Path, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


def _clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that points Python or Jupyter at the repository or
    at another environment (``make`` puts ``.venv/bin`` first on PATH)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "PYTHONPATH",
            "PYTHONHOME",
            "PYTHONSTARTUP",
            "VIRTUAL_ENV",
            "JUPYTER_PATH",
            "LINGERLAB_FIGURES",
            "PYTEST_CURRENT_TEST",
        }
    }
    env["PATH"] = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p and not _inside(Path(p), ROOT)
    )
    env["PYTHONNOUSERSITE"] = "1"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def work():
    """A temporary folder outside the repository, removed afterwards (the environment is ~6 GB)."""
    d = Path(tempfile.mkdtemp(prefix="lingerlab-install-"))
    assert not _inside(d, ROOT), f"the temporary folder {d} lies inside the repository"
    try:
        yield d
    finally:
        # Deleting ~6 GB of small files takes a minute or more on a shared disk: a detached `rm`
        # does it after pytest has returned.
        try:
            _CLEANUP.append(
                subprocess.Popen(
                    ["rm", "-rf", "--", str(d)],
                    start_new_session=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        except OSError:
            shutil.rmtree(d, ignore_errors=True)


_CLEANUP: list[subprocess.Popen] = []  # kept referenced, so no ResourceWarning while rm still runs


def _source_files() -> list[Path]:
    """What a clone holds: tracked files and untracked ones git does not ignore (so no build/,
    egg-info or __pycache__ of this checkout leaks into the wheel)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
        files = [Path(p) for p in out.split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        files = [p.relative_to(ROOT) for p in (ROOT / "src").rglob("*") if "__pycache__" not in p.parts]
        files += [p.relative_to(ROOT) for p in ROOT.iterdir() if p.is_file()]
    return [p for p in files if (p.parts[0] == "src" or len(p.parts) == 1) and (ROOT / p).is_file()]


@pytest.fixture(scope="module")
def built(work):
    """``(wheel, source tree)``: the wheel built from a copy of the clone's files (building in place
    would write build/ into the repository and could pick up stale files from an earlier build/)."""
    src = work / "src"
    for rel in _source_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    dist = work / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", dist, src],
        env=_clean_env(),
    )
    wheels = sorted(dist.glob("lingerlab-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0], src


def test_the_wheel_ships_every_file_of_the_package(built):
    wheel, src = built
    pkg = src / "src" / "lingerlab"
    want = {
        p.relative_to(pkg.parent).as_posix()
        for p in pkg.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    with zipfile.ZipFile(wheel) as z:
        have = {n for n in z.namelist() if n.startswith("lingerlab/")}
    assert "lingerlab/__init__.py" in have
    assert not want - have, f"missing from {wheel.name}: {sorted(want - have)}"


@pytest.fixture(scope="module")
def venv(work, built):
    """A fresh environment with ``<wheel>[book]``, pinned by the constraints file, and a kernelspec
    inside it whose python is its own."""
    wheel, _ = built
    env_dir = work / "venv"
    _run([sys.executable, "-m", "venv", env_dir], env=_clean_env())
    py = env_dir / "bin" / "python"
    report = work / "pip-report.json"
    res = _run(
        [
            py,
            "-m",
            "pip",
            "install",
            "--progress-bar",
            "off",
            "--disable-pip-version-check",
            "-c",
            CONSTRAINTS,
            "--report",
            report,
            f"{wheel}[book]",
        ],
        env=_clean_env(),
        timeout=3600,
    )
    downloads = {name: float(n) * _UNIT_MB[unit] for name, n, unit in _DOWNLOAD.findall(res.stdout)}
    _run(
        [
            py,
            "-m",
            "ipykernel",
            "install",
            "--prefix",
            env_dir,
            "--name",
            KERNEL,
            "--display-name",
            "lingerlab (fresh venv)",
        ],
        env=_clean_env(),
    )
    return env_dir, json.loads(report.read_text()), downloads


def test_nothing_large_is_downloaded(venv):
    _, report, downloads = venv
    got = {i["metadata"]["name"].lower(): i["download_info"]["url"] for i in report["install"]}
    assert {"lingerlab", "papermill", "ipykernel", *LOCAL} <= set(got)
    remote = {n: got[n] for n in LOCAL if not got[n].startswith("file:")}
    assert not remote, f"downloaded from the network instead of this machine's disk: {remote}"
    big = sorted(downloads.items(), key=lambda kv: -kv[1])
    print(
        f"\n{len(downloads)} of {len(got)} packages downloaded, {sum(downloads.values()):.0f} MB; "
        f"largest: {', '.join(f'{n} ({mb:.1f} MB)' for n, mb in big[:3])}"
    )
    assert not big or big[0][1] < MAX_DOWNLOAD_MB, big[:3]
    assert sum(downloads.values()) < MAX_TOTAL_MB, big[:10]


def test_notebook_1_runs_from_the_installed_wheel_outside_the_repository(work, venv):
    env_dir, _, _ = venv
    py = env_dir / "bin" / "python"
    site = Path(
        _run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], env=_clean_env()).stdout.strip()
    )
    run = work / "run"
    run.mkdir()
    shutil.copy(NOTEBOOK, run / NOTEBOOK.name)
    # Jupyter and IPython see only the fresh environment and these folders, not the user's config.
    ipython, log = work / "ipython", work / "kernel-probe.json"
    (ipython / "profile_default" / "startup").mkdir(parents=True)
    (ipython / "profile_default" / "startup" / "00-probe.py").write_text(
        PROBE.format(repo=str(ROOT.resolve()), log=str(log))
    )
    env = _clean_env(
        PATH=os.pathsep.join([str(env_dir / "bin"), _clean_env()["PATH"]]),
        IPYTHONDIR=str(ipython),
        JUPYTER_DATA_DIR=str(work / "jupyter-data"),
        JUPYTER_CONFIG_DIR=str(work / "jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(work / "jupyter-runtime"),
        # models trained before are reused: the cache is keyed by data, parameters and code
        LINGERLAB_CACHE=os.environ.get("LINGERLAB_CACHE") or str(Path.home() / ".cache" / "lingerlab"),
    )
    _run(
        [py, "-m", "papermill", NOTEBOOK.name, "out.ipynb", "-p", "profile", "smoke", "-k", KERNEL, "--cwd", run],
        cwd=run,
        env=env,
        timeout=3600,
    )

    out = run / "out.ipynb"
    text = out.read_text()
    nb = json.loads(text)
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, [f"{e.get('ename')}: {e.get('evalue')}" for e in errors]
    assert nb["metadata"]["papermill"].get("exception") in (None, False)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c.get("execution_count") for c in code), "a code cell did not run"
    assert str(ROOT.resolve()) not in text, "the output notebook mentions the repository's path"

    assert log.is_file(), "the kernel's startup probe wrote nothing (did the kernel start from IPYTHONDIR?)"
    probe = json.loads(log.read_text())
    assert Path(probe["prefix"]).resolve() == env_dir.resolve(), probe["executable"]
    assert probe["lingerlab"] and _inside(Path(probe["lingerlab"]), site), probe["lingerlab"]
    assert not _inside(Path(probe["lingerlab"]), ROOT)
    assert not probe["modules_in_repo"], probe["modules_in_repo"]
    assert not probe["repo_access"], f"the kernel touched the repository: {probe['repo_access']}"
    assert not any(p and _inside(Path(p), ROOT) for p in probe["sys_path"]), probe["sys_path"]
