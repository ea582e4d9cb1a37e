"""``lingerlab audit`` end to end: a subprocess runs the command on fixtures built here (a torchvision
ResNet-18 "source" and a 2-class "fine-tuned" copy saved as state dicts, tiny ImageFolders with a
corrupt, a greyscale and a CMYK image), checks the report, results.json and CSVs, and that every
bad argument gives exit status 2 and one line."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lingerlab import cli
from lingerlab.report_html import SECTION_IDS

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32
N_SOURCE = 10
SOURCE_NAMES = [f"class_{i}" for i in range(N_SOURCE)]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _img(seed: int, size: int = SIZE) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, 3)
    arr = np.clip(base + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def _resnet(num_classes: int, seed: int):
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None, num_classes=num_classes).eval()


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    source = _resnet(N_SOURCE, 0)
    torch.save(source.state_dict(), root / "source.pt")
    tuned = _resnet(N_SOURCE, 0)
    torch.manual_seed(1)
    tuned.fc = torch.nn.Linear(512, 2)  # the "fine-tuned" copy: a new 2-class head
    with torch.no_grad():
        for p in tuned.layer4.parameters():
            p.add_(0.01 * torch.randn_like(p))
    torch.save(tuned.state_dict(), root / "target.pt")
    torch.save(tuned, root / "target_full.pt")
    for split, n in (("train", 12), ("val", 5)):
        for c in ("cats", "dogs"):
            d = root / "target" / split / c
            d.mkdir(parents=True)
            for i in range(n):
                _img(hash((split, c, i)) % 10_000).save(d / f"{i}.png")
    odd = root / "target" / "train" / "cats"
    (odd / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    _img(77).convert("L").save(odd / "grey.png")
    _img(78).convert("CMYK").save(odd / "cmyk.jpg")
    for i in range(N_SOURCE):
        d = root / "source" / str(i)
        d.mkdir(parents=True)
        for j in range(3):
            _img(1000 + 10 * i + j).save(d / f"{j}.png")
    (root / "classes.txt").write_text("\n".join(SOURCE_NAMES) + "\n")
    (root / "classes5.txt").write_text("\n".join(SOURCE_NAMES[:5]) + "\n")
    (root / "empty_source").mkdir()
    (root / "empty_source" / "0").mkdir()
    return {"root": root, "source_w": root / "source.pt", "target_w": root / "target.pt",
            "target_full": root / "target_full.pt", "target": root / "target", "source": root / "source",
            "classes": root / "classes.txt", "classes5": root / "classes5.txt", "empty": root / "empty_source"}


def _args(f: dict[str, Path], out: Path, **changes: str | None) -> list[str]:
    opts = {"--source-model": "torchvision:resnet18", "--source-weights": str(f["source_w"]),
            "--target-model": "torchvision:resnet18", "--target-weights": str(f["target_w"]),
            "--target-dir": str(f["target"]), "--source-dir": str(f["source"]),
            "--source-classes": str(f["classes"]), "--baseline": "none", "--profile": "smoke",
            "--image-size": str(SIZE), "--cam-layer": "layer3", "--p-lo": "0.05", "--device": "cpu",
            "--out": str(out)}
    opts.update(changes)
    args = ["audit"]
    for k, v in opts.items():
        if v is not None:
            args += [k, v]
    return args


def _run(args: list[str], tmp_path: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "LINGERLAB_CACHE": str(tmp_path / "cache"), "PYTHONWARNINGS": "ignore",
           "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}  # 2 shared cores: one thread each
    return subprocess.run([sys.executable, "-m", "lingerlab", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=tmp_path)


def _check_outputs(out: Path, baseline: str) -> dict:
    html = (out / "report.html").read_text()
    for sid in SECTION_IDS:
        assert f'id="{sid}"' in html, f"section {sid} missing from the report"
    assert "Traceback" not in html and not re.search(r"\bError\b", html)
    assert "<script" not in html and not re.search(r"""(src|href)=["']https?:""", html), "the page must be self-contained"
    assert html.count("data:image/png;base64,") >= 4
    assert "corrupt.jpg" in html, "the skipped file is listed"
    res = json.loads((out / "results.json").read_text())
    for key in ("command", "versions", "parameters", "models", "data", "source_only", "lingering", "composites",
                "distraction", "detection", "verdicts", "protocol", "files", "target_val_acc"):
        assert key in res, key
    assert res["data"]["n_skipped"] == 1 and res["data"]["n_target_train"] == 26  # 24 + grey + CMYK
    assert res["data"]["n_source_images"] == 30 and res["baseline"] == baseline
    assert 0 <= res["detection"]["eq5_auroc"] <= 1
    for name in ("counts", "source_only", "lingering", "composites", "distraction", "distraction_by_class",
                 "detection", "verdicts", "data_summary", "models", "skipped_files"):
        assert (out / f"{name}.csv").stat().st_size > 0, name
    assert set(res["files"]) == {p.name for p in out.iterdir()}
    return res


def test_image_extensions_agree():
    from lingerlab.worlds.custom import IMAGE_EXTENSIONS
    assert cli.IMAGE_EXTENSIONS == IMAGE_EXTENSIONS


def test_help_shows_two_worked_examples(tmp_path):
    r = _run(["audit", "--help"], tmp_path)
    assert r.returncode == 0
    assert r.stdout.count("lingerlab audit \\") == 2
    assert "torchvision:resnet18 --target-weights" in r.stdout and "--baseline none" in r.stdout


@pytest.fixture(scope="module")
def no_baseline_run(fixtures, tmp_path_factory):
    """One run with --baseline none (shared by the checks of its outputs and the render test)."""
    tmp = tmp_path_factory.mktemp("run_none")
    out = tmp / "out"
    t0 = time.perf_counter()
    r = _run(_args(fixtures, out), tmp)
    return r, out, time.perf_counter() - t0


def test_audit_end_to_end_no_baseline(no_baseline_run):
    r, out, wall = no_baseline_run
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "error" not in r.stderr.lower()
    assert "report: " in r.stdout
    res = _check_outputs(out, "none")
    assert res["protocol"]["kind"].startswith("no baseline")
    assert res["source_only"]["n_F"] >= 1 and res["composites"]["n"] >= 3
    print(f"end-to-end (no baseline): {wall:.1f} s")


def test_audit_end_to_end_scratch_baseline(fixtures, tmp_path):
    out = tmp_path / "out"
    r = _run(_args(fixtures, out, **{"--baseline": "scratch", "--baseline-seeds": "2", "--batch-size": "8"}),
             tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "M^b recipe (2 seeds)" in r.stdout
    res = _check_outputs(out, "scratch")
    assert res["protocol"]["kind"].startswith("n seeds of M^b")
    assert (out / "comparison.csv").exists() and (out / "baseline_recipe.csv").exists()
    assert len(res["target_val_acc"]["M^b"]) == 2
    claims = [v["claim"] for v in res["verdicts"]]
    assert any("scratch backbone" in c for c in claims) and any("distraction_excess" in c for c in claims)


def test_audit_with_a_pickled_model_and_a_given_baseline(fixtures, tmp_path):
    out = tmp_path / "out"
    r = _run(_args(fixtures, out, **{"--target-model": str(fixtures["target_full"]), "--target-weights": None,
                                     "--baseline": str(fixtures["target_full"])}), tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["baseline"] == "given" and res["protocol"]["kind"].startswith("two single given models")


BAD = {
    "missing target folder": ({"--target-dir": "no/such/folder"}, "--target-dir", "does not exist"),
    "spec does not parse": ({"--source-model": "nonsense"}, "--source-model", "is not a model spec"),
    "head does not exist": ({"--head": "nope"}, "--head", "'nope' is not a module"),
    "class-count mismatch": ({"--source-classes": "classes5"}, "--source-classes", "has 5 names but the source model has 10"),
    "empty source folder": ({"--source-dir": "empty"}, "--source-dir", "is empty"),
    "unknown architecture": ({"--target-model": "torchvision:resnet_nope"}, "--target-model", "no classification model"),
    "bad number": ({"--p-lo": "2"}, "--p-lo", "must be a number in (0, 1)"),
    "missing weights": ({"--target-weights": None}, "--target-weights", "names an architecture only"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_arguments_exit_2_with_one_line(case, fixtures, tmp_path):
    changes, flag, text = BAD[case]
    changes = {k: (str(fixtures[v]) if v in fixtures else v) for k, v in changes.items()}
    r = _run(_args(fixtures, tmp_path / "out", **changes), tmp_path, timeout=120)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("lingerlab audit: error: ") and flag in lines[0] and text in lines[0], lines[0]
    assert not (tmp_path / "out").exists()


def test_a_failure_during_the_audit_exits_1(monkeypatch, fixtures, tmp_path, capsys):
    """An exception inside a stage: exit 1, a one-line summary naming the stage, no traceback."""
    def boom(self):
        raise RuntimeError("simulated failure")
    monkeypatch.setattr(cli.AuditRun, "lingering", boom)
    monkeypatch.setenv("LINGERLAB_CACHE", str(tmp_path / "cache"))
    rc = cli.main(_args(fixtures, tmp_path / "out") + ["--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1].startswith("lingerlab audit: failed during lingering (Eq. 3): RuntimeError: simulated")
    assert not any("Traceback" in ln for ln in err)


def test_custom_world_takes_the_users_models(fixtures):
    """load_world("custom", target_model=..., baseline_model=...) puts them in WorldSpec.given."""
    import warnings

    from lingerlab.models import Normalized
    from lingerlab.worlds import load_world

    src = Normalized(_resnet(N_SOURCE, 0))
    tuned = Normalized(torch.load(fixtures["target_full"], weights_only=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        world = load_world("custom", source_model=src, source_classes=SOURCE_NAMES, target_root=fixtures["target"],
                           source_root=fixtures["source"], image_size=SIZE, device="cpu", target_model=tuned,
                           baseline_model=tuned)
        plain = load_world("custom", source_model=src, source_classes=SOURCE_NAMES, target_root=fixtures["target"],
                           source_root=fixtures["source"], image_size=SIZE, device="cpu")
    assert world.spec.given["M^t"] is tuned and world.spec.given["M^b"] is tuned
    assert "given" in world.spec.recipes["M^t"].description and plain.spec.given == {}
    assert world.fingerprint != plain.fingerprint
    assert [Path(p).name for p in world.spec.provenance["skipped_files"]] == ["corrupt.jpg"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="target_model's head has 10 outputs"):
            load_world("custom", source_model=src, source_classes=SOURCE_NAMES, target_root=fixtures["target"],
                       source_root=fixtures["source"], image_size=SIZE, target_model=src)
        with pytest.raises(ValueError, match="target_model must be an nn.Module"):
            load_world("custom", source_model=src, source_classes=SOURCE_NAMES, target_root=fixtures["target"],
                       source_root=fixtures["source"], image_size=SIZE, target_model="model.pt")


@pytest.mark.render
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found: install Debian's `chromium` to render the report")
def test_report_renders_in_chromium(no_baseline_run, tmp_path):
    r, out, _ = no_baseline_run
    assert r.returncode == 0, r.stderr[-3000:]
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--virtual-time-budget=5000"]
    dom = subprocess.run([CHROMIUM, *flags, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                          (out / "report.html").as_uri()], capture_output=True, text=True, timeout=120).stdout
    for sid in SECTION_IDS:
        assert f'id="{sid}"' in dom, sid
    assert dom.count("<img") >= 4 and "Traceback" not in dom
