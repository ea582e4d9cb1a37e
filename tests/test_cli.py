"""``lingerlab audit`` end to end: a subprocess runs the command on fixtures built here (a torchvision
ResNet-18 "source" and a 2-class "fine-tuned" copy saved as state dicts, tiny ImageFolders with a
corrupt, a greyscale and a CMYK image), checks the report, results.json and CSVs, that every
bad argument gives exit status 2 and one line, that no file is unpickled without --trust-pickle, and
that the head and the Grad-CAM layer are found when not given."""

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
from lingerlab.cli import args as cli_args
from lingerlab.cli.verdicts import STATUSES, TEST_FIELDS
from lingerlab.gates import GATES
from lingerlab.html_page import esc
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


def _sequential(num_classes: int) -> torch.nn.Sequential:
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    ).eval()


class _Payload:
    """A pickle whose unpickling creates the file ``marker`` (it runs ``open(marker, "w")``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


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
    torch.manual_seed(2)
    seq_source, seq_target = _sequential(N_SOURCE), _sequential(2)
    torch.save(seq_source, root / "seq_source.pt")
    torch.save(seq_target, root / "seq_target.pt")
    torch.jit.save(torch.jit.script(seq_target), root / "seq_target_script.pt")
    torch.jit.save(torch.jit.trace(tuned, torch.zeros(1, 3, SIZE, SIZE)), root / "target_traced.pt")
    torch.save({"model": _Payload(root / "unpickled")}, root / "payload.pt")
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
    return {
        "root": root,
        "source_w": root / "source.pt",
        "target_w": root / "target.pt",
        "target_full": root / "target_full.pt",
        "target": root / "target",
        "source": root / "source",
        "seq_source": root / "seq_source.pt",
        "seq_target": root / "seq_target.pt",
        "seq_script": root / "seq_target_script.pt",
        "target_traced": root / "target_traced.pt",
        "payload": root / "payload.pt",
        "marker": root / "unpickled",
        "classes": root / "classes.txt",
        "classes5": root / "classes5.txt",
        "empty": root / "empty_source",
    }


def _args(f: dict[str, Path], out: Path, **changes: str | None) -> list[str]:
    opts = {
        "--source-model": "torchvision:resnet18",
        "--source-weights": str(f["source_w"]),
        "--target-model": "torchvision:resnet18",
        "--target-weights": str(f["target_w"]),
        "--target-dir": str(f["target"]),
        "--source-dir": str(f["source"]),
        "--source-classes": str(f["classes"]),
        "--baseline": "none",
        "--profile": "smoke",
        "--image-size": str(SIZE),
        "--cam-layer": "layer3",
        "--p-lo": "0.05",
        "--device": "cpu",
        "--out": str(out),
    }
    opts.update(changes)
    args = ["audit"]
    for k, v in opts.items():
        if v is not None:
            args += [k, v]
    return args


def _run(args: list[str], tmp_path: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "LINGERLAB_CACHE": str(tmp_path / "cache"),
        "PYTHONWARNINGS": "ignore",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
    }  # 2 shared cores: one thread each
    return subprocess.run(
        [sys.executable, "-m", "lingerlab", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=tmp_path,
    )


def _check_outputs(out: Path, baseline: str) -> dict:
    html = (out / "report.html").read_text()
    for sid in SECTION_IDS:
        assert f'id="{sid}"' in html, f"section {sid} missing from the report"
    assert "Traceback" not in html and not re.search(r"\bError\b", html)
    assert "<script" not in html and not re.search(r"""(src|href)=["']https?:""", html), (
        "the page must be self-contained"
    )
    assert html.count("data:image/png;base64,") >= 4
    assert "corrupt.jpg" in html, "the skipped file is listed"
    res = json.loads((out / "results.json").read_text())
    for key in (
        "command",
        "versions",
        "parameters",
        "models",
        "data",
        "source_only",
        "lingering",
        "composites",
        "distraction",
        "detection",
        "gates",
        "verdicts",
        "verdict_counts",
        "protocol",
        "findings",
        "files",
        "target_val_acc",
    ):
        assert key in res, key
    assert res["data"]["n_skipped"] == 1 and res["data"]["n_target_train"] == 26  # 24 + grey + CMYK
    assert res["data"]["n_source_images"] == 30 and res["baseline"] == baseline
    assert 0 <= res["detection"]["eq5_auroc"] <= 1
    for name in (
        "counts",
        "source_only",
        "lingering",
        "composites",
        "distraction",
        "distraction_by_class",
        "detection",
        "gates",
        "verdicts",
        "data_summary",
        "models",
        "skipped_files",
    ):
        assert (out / f"{name}.csv").stat().st_size > 0, name
    assert set(res["files"]) == {p.name for p in out.iterdir()}
    # the book's protocol: every test has one of the four verdicts, its gate or its detectable effect
    assert set(res["verdict_counts"]) == set(STATUSES) and sum(res["verdict_counts"].values()) == len(res["verdicts"])
    for v in res["verdicts"]:
        assert set(TEST_FIELDS) <= set(v) and v["verdict"] in STATUSES, v
        assert (v["verdict"] == "not testable") == bool(v["gate"]), v
        assert esc(v["verdict_text"]) in html and esc(v["claim"]) in html
    assert 'id="verdicts"' in html and "<h3>Gates</h3>" in html and "<h3>Findings</h3>" in html
    return res


def test_image_extensions_agree():
    from lingerlab.worlds.custom import IMAGE_EXTENSIONS

    assert cli_args.IMAGE_EXTENSIONS == IMAGE_EXTENSIONS


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
    r = _run(_args(fixtures, out, **{"--cam-layer": None}), tmp)  # head and Grad-CAM layer found
    return r, out, time.perf_counter() - t0


def test_audit_end_to_end_no_baseline(no_baseline_run):
    r, out, wall = no_baseline_run
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "error" not in r.stderr.lower()
    assert "report: " in r.stdout
    res = _check_outputs(out, "none")
    # at 32 px layer4's map is 1x1, so the last spatial map before global pooling is layer3's
    assert "lingerlab audit: head: fc (nn.Linear 512->10, found)" in r.stdout.splitlines()
    assert "lingerlab audit: cam layer: layer3 (output 256x2x2, found)" in r.stdout.splitlines()
    assert res["head"] == {"name": "fc", "how": "found", "module": "nn.Linear 512->10"}
    assert res["cam_layer"] == {"name": "layer3", "how": "found", "output": "256x2x2"}
    assert res["protocol"]["kind"].startswith("no baseline")
    assert {v["kind"] for v in res["verdicts"]} == {"within model"}, "no M^b: no test between arms"
    assert res["source_only"]["n_F"] >= 1 and res["composites"]["n"] >= 3
    print(f"end-to-end (no baseline): {wall:.1f} s")


def test_audit_end_to_end_scratch_baseline(fixtures, tmp_path):
    out = tmp_path / "out"
    r = _run(
        _args(fixtures, out, **{"--baseline": "scratch", "--baseline-seeds": "2", "--batch-size": "8", "--head": "fc"}),
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "M^b recipe (2 seeds)" in r.stdout
    assert "lingerlab audit: head: fc (nn.Linear 512->10, given)" in r.stdout.splitlines()
    assert "lingerlab audit: cam layer: layer3 (given)" in r.stdout.splitlines()
    res = _check_outputs(out, "scratch")
    assert res["head"]["how"] == res["cam_layer"]["how"] == "given" and res["cam_layer"]["name"] == "layer3"
    assert res["protocol"]["kind"].startswith("n seeds of M^b")
    assert (out / "fair_test.csv").exists() and (out / "baseline_recipe.csv").exists()
    assert len(res["target_val_acc"]["M^b"]) == 2
    claims = [v["claim"] for v in res["verdicts"]]
    assert "distraction_excess on L: M^t > M^b" in claims and "distraction_excess of M^t: L > F \\ L" in claims
    # 2 + 2 seeds: no permutation p reaches 0.05, so no between-arm test can hold
    assert not any(v["verdict"] == "holds" for v in res["verdicts"] if v["kind"] == "between arms")


def test_audit_with_a_pickled_model_and_a_given_baseline(fixtures, tmp_path):
    out = tmp_path / "out"
    r = _run(
        _args(
            fixtures,
            out,
            **{
                "--target-model": str(fixtures["target_full"]),
                "--target-weights": None,
                "--baseline": str(fixtures["target_full"]),
            },
        )
        + ["--trust-pickle"],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["baseline"] == "given" and res["protocol"]["kind"].startswith("two single given models")
    assert {v["baseline"] for v in res["verdicts"] if v["kind"] == "between arms"} == {"M^b"}


def test_results_hold_the_gates_and_the_four_verdicts(no_baseline_run):
    """results.json: the gates table's rows, every test with its verdict, effect, interval, Holm p,
    minimum detectable effect, gate and margin, and the counts of the four verdicts (as the CSVs)."""
    import pandas as pd

    r, out, _ = no_baseline_run
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["gates"] and {g["gate"] for g in res["gates"]} <= set(GATES)
    for g in res["gates"]:
        assert set(g) == {"gate", "subject", "value", "rule", "passed"} and isinstance(g["passed"], bool)
    for v in res["verdicts"]:
        for key in ("claim", "verdict", "effect", "ci_lo", "ci_hi", "p_holm", "mde", "gate", "margin"):
            assert key in v, key
        if v["verdict"] == "inconclusive":
            assert "detectable" in v["verdict_text"]
        if v["verdict"] == "not testable":
            assert v["gate"].split(" (")[0] in GATES and v["verdict_text"] == f"not testable: {v['gate']}"
    counts = pd.Series([v["verdict"] for v in res["verdicts"]]).value_counts().to_dict()
    assert res["verdict_counts"] == {s: counts.get(s, 0) for s in STATUSES}
    csv = pd.read_csv(out / "verdicts.csv")
    assert list(csv["claim"]) == [v["claim"] for v in res["verdicts"]]
    assert len(pd.read_csv(out / "gates.csv")) == len(res["gates"])
    assert "findings" in res and res["findings"].startswith(f"Of {len(res['verdicts'])} tests:")


def test_an_empty_L_makes_the_eq4_claims_not_testable(fixtures, tmp_path):
    """No class lingers (p_lo near 1): the Eq. 4 claims over L cannot be tested, and the report says
    which gate fails (the contrast size), never "inconclusive"."""
    out = tmp_path / "out"
    r = _run(
        _args(
            fixtures,
            out,
            **{"--p-lo": "0.99", "--baseline": "torchvision:resnet18", "--baseline-weights": str(fixtures["target_w"])},
        )
        + ["--quiet"],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["lingering"]["n_L"] == 0 and res["baseline"] == "given"
    eq4 = [v for v in res["verdicts"] if v["measure"] == "distraction_excess"]
    assert {v["kind"] for v in eq4} == {"between arms", "within model"}
    for v in eq4:
        assert v["verdict"] == "not testable" and v["gate"].startswith("contrast size"), v
    assert not any(v["verdict"] == "inconclusive" for v in res["verdicts"])
    gate = {(g["gate"], g["subject"]): g for g in res["gates"]}
    assert gate[("contrast size", "L")]["passed"] is False
    assert "not testable: contrast size" in (out / "report.html").read_text()


def test_without_composites_every_test_is_not_testable_for_the_contrast_size():
    """No class of F has images: nothing to test, and every claim says which gate fails (no run needed)."""
    from types import SimpleNamespace

    from lingerlab.cli import verdicts
    from lingerlab.fair_test_text import findings

    for has_baseline, n in ((True, 7), (False, 2)):
        run = SimpleNamespace(
            audit=None, comp=None, F=[3, 4], F_images=[], has_baseline=has_baseline, seeds=[0], baseline="given"
        )
        ft = verdicts.fair_test(run)
        assert len(ft.tests) == n and (ft.tests["verdict"] == "not testable").all()
        assert set(ft.tests["gate"]) <= {"contrast size (L)", "contrast size (L and F \\ L)"}
        assert not ft.gates.table["passed"].any() and "no class of F has images" in ft.gates.table["value"].iloc[0]
        assert verdicts.counts(ft) == {"holds": 0, "does not hold": 0, "inconclusive": 0, "not testable": n}
        assert all(r["verdict_text"].startswith("not testable: contrast size") for r in verdicts.records(ft))
        assert findings(ft).startswith(f"Of {n} tests: 0 holds")


def test_when_the_overlay_hides_every_object_every_test_fails_object_survival(fixtures, monkeypatch, tmp_path, capsys):
    """No class's object survives the pasted target: no class is left to test, and every claim names
    the object-survival gate (the gates table is still computed and written)."""
    from lingerlab import checks

    real = checks.source_survival

    def hidden(audit, comp, *args, **kwargs):
        out = real(audit, comp, *args, **kwargs)
        out["survives"] = False
        return out

    monkeypatch.setattr(checks, "source_survival", hidden)
    out = tmp_path / "out"
    rc, err = _main(_args(fixtures, out), monkeypatch, tmp_path, capsys)
    assert rc == 0, err
    res = json.loads((out / "results.json").read_text())
    assert res["verdict_counts"]["not testable"] == len(res["verdicts"]) == 2
    assert {v["gate"] for v in res["verdicts"]} == {"object survival (F)"}
    gate = {(g["gate"], g["subject"]): g for g in res["gates"]}
    assert gate[("object survival", "F")]["passed"] is False and len(res["gates"]) >= 5


BAD = {
    "missing target folder": ({"--target-dir": "no/such/folder"}, "--target-dir", "does not exist"),
    "spec does not parse": ({"--source-model": "nonsense"}, "--source-model", "is not a model spec"),
    "head does not exist": ({"--head": "nope"}, "--head", "'nope' is not a module"),
    "class-count mismatch": (
        {"--source-classes": "classes5"},
        "--source-classes",
        "has 5 names but the source model has 10",
    ),
    "empty source folder": ({"--source-dir": "empty"}, "--source-dir", "is empty"),
    "unknown architecture": (
        {"--target-model": "torchvision:resnet_nope"},
        "--target-model",
        "no classification model",
    ),
    "bad number": ({"--p-lo": "2"}, "--p-lo", "must be a number in (0, 1)"),
    "missing weights": ({"--target-weights": None}, "--target-weights", "names an architecture only"),
    "pickle without --trust-pickle": (
        {"--target-model": "target_full", "--target-weights": None},
        "--target-model",
        "unpickling runs code from the file",
    ),
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


def _main(args: list[str], monkeypatch, tmp_path, capsys) -> tuple[int, list[str]]:
    """``lingerlab`` in this process: exit status and the lines on stderr."""
    monkeypatch.setenv("LINGERLAB_CACHE", str(tmp_path / "cache"))
    rc = cli.main(args + ["--quiet"])
    return rc, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize(
    "flags",
    [{"--target-model": "payload", "--target-weights": None}, {"--target-weights": "payload"}],
    ids=["as model", "as weights"],
)
def test_no_file_is_unpickled_without_trust_pickle(flags, fixtures, monkeypatch, tmp_path, capsys):
    """A pickle that would create a file when unpickled: refused (exit 2) and the file is never created."""
    changes = {k: (str(fixtures[v]) if v in fixtures else v) for k, v in flags.items()}
    rc, err = _main(_args(fixtures, tmp_path / "out", **changes), monkeypatch, tmp_path, capsys)
    flag = next(iter(flags))
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"lingerlab audit: error: {flag}: {str(fixtures['payload'])!r} holds pickled")
    assert "--trust-pickle" in err[0] and "weights_only=True" in err[0] and "state dict" in err[0]
    assert not fixtures["marker"].exists(), "the pickle was run"
    assert not (tmp_path / "out").exists()


def test_torchscript_loads_without_trust_pickle(fixtures, monkeypatch, tmp_path, capsys):
    """TorchScript weights need no flag; a TorchScript model file is refused for what it is, not as a pickle."""
    from lingerlab.cli.loading import load_model

    spec = cli_args.parse_model_spec("torchvision:resnet18", "--target-model")
    model, info = load_model(
        spec,
        str(fixtures["target_traced"]),
        flag="--target-model",
        wflag="--target-weights",
        head=None,
        download=False,
        normalize=True,
        image_size=SIZE,
    )
    assert info["head"] == "model.fc" and info["head_how"] == "found" and info["outputs"] == 2
    x = torch.rand(2, 3, SIZE, SIZE)
    ref = torch.jit.load(fixtures["target_traced"])
    assert torch.allclose(model.model(x), ref(x), atol=1e-5)
    rc, err = _main(
        _args(fixtures, tmp_path / "out", **{"--target-model": str(fixtures["seq_script"]), "--target-weights": None}),
        monkeypatch,
        tmp_path,
        capsys,
    )
    assert rc == 2 and "is TorchScript" in err[0] and "--trust-pickle" not in err[0], err


def test_audit_finds_the_head_and_cam_layer_of_a_sequential(fixtures, tmp_path):
    """nn.Sequential models saved with torch.save(model): loaded with --trust-pickle, head and layer found."""
    out = tmp_path / "out"
    r = _run(
        _args(
            fixtures,
            out,
            **{
                "--source-model": str(fixtures["seq_source"]),
                "--source-weights": None,
                "--target-model": str(fixtures["seq_target"]),
                "--target-weights": None,
                "--cam-layer": None,
            },
        )
        + ["--trust-pickle", "--quiet"],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    # the head: the last nn.Linear with one output per class; the layer: the last ReLU, 16 x 16 x 16 at 32 px
    assert "lingerlab audit: head: 6 (nn.Linear 16->10, found)" in lines, r.stdout
    assert "lingerlab audit: cam layer: 3 (output 16x16x16, found)" in lines, r.stdout
    res = json.loads((out / "results.json").read_text())
    assert res["head"] == {"name": "6", "how": "found", "module": "nn.Linear 16->10"}
    assert res["cam_layer"] == {"name": "3", "how": "found", "output": "16x16x16"}
    assert res["models"]["M^t (target)"]["format"] == "torch.save(model)"


def _choices(fixtures, tmp_path, **changes: str | None) -> dict:
    """What the audit chooses for these arguments (models loaded, nothing run)."""
    from lingerlab.cli.main import _load

    args = cli.build_parser().parse_args(_args(fixtures, tmp_path / "out", **changes))
    checked = cli_args.validate(args)
    _load(checked)
    return checked.choices


def test_resnet18_head_and_cam_layer_at_64px(fixtures, monkeypatch, tmp_path):
    """torchvision ResNet-18 at 64 px: head fc, layer4 (2 x 2, the last map before global pooling)."""
    monkeypatch.setenv("LINGERLAB_CACHE", str(tmp_path / "cache"))
    got = _choices(fixtures, tmp_path, **{"--cam-layer": None, "--image-size": "64"})
    assert got["head"] == {"name": "fc", "how": "found", "module": "nn.Linear 512->10"}
    assert got["cam_layer"] == {"name": "layer4", "how": "found", "output": "512x2x2"}


def test_timm_resnet18_head_and_cam_layer(fixtures, monkeypatch, tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    torch.save(timm.create_model("resnet18", pretrained=False, num_classes=N_SOURCE).state_dict(), tmp_path / "s.pt")
    torch.save(timm.create_model("resnet18", pretrained=False, num_classes=2).state_dict(), tmp_path / "t.pt")
    monkeypatch.setenv("LINGERLAB_CACHE", str(tmp_path / "cache"))
    got = _choices(
        fixtures,
        tmp_path,
        **{
            "--source-model": "timm:resnet18",
            "--source-weights": str(tmp_path / "s.pt"),
            "--target-model": "timm:resnet18",
            "--target-weights": str(tmp_path / "t.pt"),
            "--cam-layer": None,
            "--image-size": "64",
        },
    )
    assert got["head"] == {"name": "fc", "how": "found", "module": "nn.Linear 512->10"}
    assert got["cam_layer"] == {"name": "layer4", "how": "found", "output": "512x2x2"}


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
        world = load_world(
            "custom",
            source_model=src,
            source_classes=SOURCE_NAMES,
            target_root=fixtures["target"],
            source_root=fixtures["source"],
            image_size=SIZE,
            device="cpu",
            target_model=tuned,
            baseline_model=tuned,
        )
        plain = load_world(
            "custom",
            source_model=src,
            source_classes=SOURCE_NAMES,
            target_root=fixtures["target"],
            source_root=fixtures["source"],
            image_size=SIZE,
            device="cpu",
        )
    assert world.spec.given["M^t"] is tuned and world.spec.given["M^b"] is tuned
    assert "given" in world.spec.recipes["M^t"].description and plain.spec.given == {}
    assert world.fingerprint != plain.fingerprint
    assert [Path(p).name for p in world.spec.provenance["skipped_files"]] == ["corrupt.jpg"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="target_model's head has 10 outputs"):
            load_world(
                "custom",
                source_model=src,
                source_classes=SOURCE_NAMES,
                target_root=fixtures["target"],
                source_root=fixtures["source"],
                image_size=SIZE,
                target_model=src,
            )
        with pytest.raises(ValueError, match="target_model must be an nn.Module"):
            load_world(
                "custom",
                source_model=src,
                source_classes=SOURCE_NAMES,
                target_root=fixtures["target"],
                source_root=fixtures["source"],
                image_size=SIZE,
                target_model="model.pt",
            )


@pytest.mark.render
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found: install Debian's `chromium` to render the report")
def test_report_renders_in_chromium(no_baseline_run, tmp_path):
    r, out, _ = no_baseline_run
    assert r.returncode == 0, r.stderr[-3000:]
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=5000",
    ]
    dom = subprocess.run(
        [CHROMIUM, *flags, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", (out / "report.html").as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    for sid in SECTION_IDS:
        assert f'id="{sid}"' in dom, sid
    assert dom.count("<img") >= 4 and "Traceback" not in dom
