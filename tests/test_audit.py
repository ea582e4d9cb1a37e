"""audit.Audit: stages chained over a tiny hand-built world; disk cache keyed by what each stage reads."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lingerlab import cache as _cache
from lingerlab.recipe import Recipe
from lingerlab.inference import predict
from lingerlab.tuning import pick_rate
from lingerlab.audit import Audit
from lingerlab.worlds.base import PlantedTruth, World, WorldSpec

N_SRC = 6


class TinyNet(nn.Module):
    """conv -> BN -> ReLU -> pool -> fc: a head named ``fc`` and a Grad-CAM layer named ``conv``."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(h.mean(dim=(2, 3)))


def make_scratch() -> nn.Module:
    return TinyNet(2)


def tiny_spec(**changes) -> WorldSpec:
    """The tiny world's facts: head ``fc``, Grad-CAM at ``conv``, M^t on the first 20 target images."""
    recipes = {
        "M^t": Recipe("M^t", lr=0.01, epochs=1, batch_size=8, train_subset=range(20)),
        "M^b": Recipe("M^b (competent)", init="scratch", optimizer="adam", lr=0.01, epochs=1, batch_size=8),
    }
    kw = dict(
        arch="TinyNet",
        head="fc",
        cam_layer="conv",
        input_size=16,
        recipes=recipes,
        n_composites_per_class=3,
        planted=PlantedTruth(shared=frozenset({0, 1}), source_only=frozenset({2, 3, 4, 5})),
    )
    return WorldSpec(**{**kw, **changes})


def make_tiny_world(seed: int = 0, **spec_changes) -> World:
    """Random 16 px images: 6 source classes (8 images each, class-dependent colour), a 2-class target."""
    g = torch.Generator().manual_seed(seed)
    ys = torch.arange(N_SRC).repeat_interleave(8)
    xs = (
        torch.rand(len(ys), 3, 16, 16, generator=g) * 0.5
        + (ys[:, None, None, None] % 3 == torch.arange(3)[None, :, None, None]) * 0.5
    )
    yt = torch.arange(40) % 2
    xt = torch.rand(40, 3, 16, 16, generator=g) * 0.5 + yt[:, None, None, None] * 0.4
    yv = torch.arange(16) % 2
    xv = torch.rand(16, 3, 16, 16, generator=g) * 0.5 + yv[:, None, None, None] * 0.4
    torch.manual_seed(seed)
    src = TinyNet(N_SRC).eval()
    fp = _cache.fingerprint("tiny", seed, src, xs, xt, xv)
    return World(
        name="tiny",
        profile=None,
        seed=seed,
        source_model=src,
        source_classes=[f"s{i}" for i in range(N_SRC)],
        source_data=TensorDataset(xs, ys),
        target_train=TensorDataset(xt, yt),
        target_val=TensorDataset(xv, yv),
        target_classes=["a", "b"],
        make_scratch=make_scratch,
        spec=tiny_spec(**spec_changes),
        fingerprint=fp,
    )


@pytest.fixture()
def cache_root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LINGERLAB_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture()
def world() -> World:
    return make_tiny_world()


def _audit(world: World, **kw) -> Audit:
    return Audit(world, device="cpu", **kw)


def test_stages_and_shapes(cache_root, world):
    a = _audit(world, v_lo=3)
    v = a.counts()
    assert v.shape == (N_SRC,) and int(v.sum()) == a.k * 20  # Eq. 1 over M^t's 20 training images
    F = a.source_only()
    assert F.tolist() == [c for c in range(N_SRC) if v[c] <= 3]
    t = a.lingering()
    assert list(t.columns) == ["class", "name", "v", "n_images", "p_source", "p_st", "p_st_source_bn", "lingering"]
    assert t["class"].tolist() == F.tolist()
    assert (t["lingering"] == (t["p_st"] > a.p_lo)).all()
    assert a.lingering_classes() == t.loc[t["lingering"], "class"].tolist()
    comp = a.composites(classes=[2, 3])
    assert len(comp) == 6 and a.composite_classes(comp).tolist() == [2, 2, 2, 3, 3, 3]
    assert comp.masks.float().mean().item() == pytest.approx(round(0.4 * 16) ** 2 / 256)
    d = a.distraction_table(models=("M^t", "M^b (same data)"), classes=[2, 3])
    assert len(d) == 12 and set(d["model"]) == {"M^t", "M^b (same data)"}
    assert d["distraction"].between(0, 1).all() and d["null"].between(0, 1).all()
    m = a.maps("M^t", comp, comp.target_label)
    assert m.shape == (6, 16, 16)
    det = a.detection(classes=[2, 3])
    from lingerlab.ood import DETECTORS

    assert set(det["table"]["score"]) | set(det["skipped"]) == {"eq5", *DETECTORS}


def test_second_audit_hits_disk_cache(cache_root, world):
    a = _audit(world, v_lo=3)
    t1, d1 = a.lingering(), a.distraction_table(classes=[2, 3], models=("M^t",))
    assert a.computed["counts"] == 1 and a.computed["class_probs"] == 1 and a.computed["maps"] == 2
    b = _audit(world, v_lo=3)
    t2, d2 = b.lingering(), b.distraction_table(classes=[2, 3], models=("M^t",))
    assert sum(b.computed.values()) == 0
    pd.testing.assert_frame_equal(t1, t2)
    pd.testing.assert_frame_equal(d1, d2)
    a.lingering()  # in-memory memo as well
    assert a.computed["class_probs"] == 1


def test_changed_parameters_recompute_only_dependents(cache_root, world):
    a = _audit(world, v_lo=3)
    base = a.lingering()
    b = _audit(world, v_lo=3, p_lo=0.3)  # p_lo: re-threshold only, no model, no Eq. 1
    t = b.lingering()
    assert sum(b.computed.values()) == 0
    assert (t["lingering"] == (t["p_st"] > 0.3)).all()
    pd.testing.assert_series_equal(t["p_st"], base["p_st"])
    c = _audit(world, v_lo=3, k=2)  # k: Eq. 1 again, the class means are reused
    c.lingering()
    assert c.computed["counts"] == 1 and c.computed["class_probs"] == 0
    d = _audit(world, v_lo=3)
    d.target_model(seed=1)  # another seed: a new M^t, so new class means
    d.lingering(seed=1)
    assert d.computed["class_probs"] == 1 and d.computed["counts"] == 0


def test_failing_compute_leaves_no_entry(cache_root, world, monkeypatch):
    import lingerlab.audit as audit_mod

    def boom(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(audit_mod, "source_class_counts", boom)
    with pytest.raises(RuntimeError, match="interrupted"):
        _audit(world).counts()
    assert not list((cache_root / "counts").glob("*")) if (cache_root / "counts").exists() else True
    monkeypatch.undo()
    monkeypatch.setenv("LINGERLAB_CACHE", str(cache_root))
    assert _audit(world).counts().sum() > 0


def test_interrupted_write_leaves_no_partial_file(cache_root, world, monkeypatch):
    def broken_replace(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(KeyboardInterrupt):
        _audit(world).counts()
    monkeypatch.undo()
    leftovers = list((cache_root / "counts").iterdir()) if (cache_root / "counts").exists() else []
    assert leftovers == []


def test_corrupt_entry_is_recomputed(cache_root, world):
    a = _audit(world)
    v = a.counts()
    (entry,) = list((cache_root / "counts").glob("*.pt"))
    entry.write_bytes(b"not a torch file")
    b = _audit(world)
    assert torch.equal(b.counts(), v) and b.computed["counts"] == 1


def test_arms_and_errors(cache_root, world):
    a = _audit(world)
    a.zoo.add("remedy", lambda seed: a.target_model(seed, lr=0.02))
    assert "remedy" in a.zoo.names() and isinstance(a.model("remedy"), nn.Module)
    with pytest.raises(ValueError, match="built-in"):
        a.zoo.add("M^t", lambda s: a.target_model(s))
    with pytest.raises(ValueError, match="model must be"):
        a.model("nope")
    for kw, word in [
        ({"p_lo": 1.5}, "p_lo"),
        ({"k": 0}, "k"),
        ({"q": 1.0}, "q"),
        ({"scale": 0}, "scale"),
        ({"v_lo": -1}, "v_lo"),
        ({"n_composites_per_class": 0}, "n_composites_per_class"),
    ]:
        with pytest.raises(ValueError, match=word):
            _audit(world, **kw)
    with pytest.raises(ValueError, match="model must be"):
        a.model("M^b (half)")
    with pytest.raises(ValueError, match="classes"):
        a.composites(classes=[99])
    with pytest.raises(TypeError, match="World"):
        Audit(object())
    # same-data baseline: the reference's recipe from random weights (same images, epochs, schedule)
    ref, base = a.recipe(world.spec.reference_arm), a.recipe("M^b (same data)")
    assert base.init == "scratch" and ref.init == "source"
    assert (base.train_subset, base.epochs, base.batch_size, base.lr_schedule, base.augment) == (
        ref.train_subset,
        ref.epochs,
        ref.batch_size,
        ref.lr_schedule,
        ref.augment,
    )
    assert len(a.history("M^b (same data)")) == ref.epochs
    assert a.v_lo == round(0.01 * 20)


def test_matched_recipe(cache_root, world):
    a = _audit(world, match_tol=0.5)
    r = a.zoo.matched(seeds=(0,))
    assert r["within_tol"] and abs(r["val_acc"] - r["target_acc"]) <= 0.5
    assert len(r["train_subset"]) == r["n_images"]
    assert isinstance(a.model("M^b (matched acc)"), nn.Module)


def test_matched_recipe_reuses_the_competent_run(cache_root, world):
    """The first try (all of the recipe's images) is the competent run itself: trained once, under
    one cache key, and a match at that size gives the competent model for every seed."""
    a = _audit(world, match_tol=1.0)  # every size is within tolerance: n = N wins
    r = a.zoo.matched(seeds=(0,))
    assert r["n_images"] == len(world.target_train) and len(r["tries"]) == 1
    assert len(list((cache_root / "scratch").glob("*.pt"))) == 1
    for seed in (0, 1):
        matched, competent = a.model("M^b (matched acc)", seed), a.model("M^b (competent)", seed)
        assert all(torch.equal(u, v) for u, v in zip(matched.state_dict().values(), competent.state_dict().values()))
    assert len(list((cache_root / "scratch").glob("*.pt"))) == 2  # seeds 0 and 1, nothing twice


def test_composite_scale_defaults_to_the_world(cache_root, world):
    """scale=None reads world.spec.composite_scale (default: the paper's 0.4); the composites follow it."""
    assert _audit(world).scale == 0.4
    world = make_tiny_world(composite_scale=0.6)
    a = _audit(world)
    assert a.scale == 0.6 and _audit(world, scale=0.5).scale == 0.5
    comp = a.composites()
    side = world.target_val[0][0].shape[-1]
    area = comp.masks.flatten(1).float().sum(1)
    assert torch.allclose(area, torch.full_like(area, round(0.6 * side) ** 2))


def test_accuracy_on_given_data(cache_root, world):
    """``accuracy(data=...)`` agrees with the logits on a labelled dataset and on an (images, labels)
    pair; the default is the target validation set; a malformed pair names ``data``."""
    audit = Audit(world, device="cpu")
    x, y = world.target_val.tensors
    assert audit.accuracy("M^t") == audit.accuracy("M^t", data=world.target_val) == audit.accuracy("M^t", data=(x, y))
    flipped = 1 - y
    manual = float((audit.logits("M^t", x).argmax(1) == flipped).double().mean())
    assert audit.accuracy("M^t", data=(x, flipped)) == pytest.approx(manual)
    assert audit.accuracy("M^t", data=(x, y)) + manual == pytest.approx(1.0)  # two classes
    with pytest.raises(ValueError, match="data must be a labelled Dataset"):
        audit.accuracy("M^t", data=(x, y[:-1]))


AUDIT_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from test_audit import make_tiny_world
from lingerlab.audit import Audit
a = Audit(make_tiny_world(), device="cpu", v_lo=3)
v = a.counts()
a.lingering()
a.composites(classes=[2, 3])
print(json.dumps({{"computed": dict(a.computed), "counts": v.tolist(), "module": __import__("lingerlab").__file__}}))
"""


def test_changing_eq1_code_recomputes_eq1_and_downstream_but_not_models(tmp_path):
    """The cache follows the code: against a copy of the package, a docstring/comment edit of
    ``features.source_class_counts`` recomputes nothing; a change of its body recomputes Eq. 1 and
    every stage after it (Eq. 3's class means, the composites) but trains no model again."""
    import json
    import shutil
    import subprocess
    import sys

    pkg = tmp_path / "pkg"
    shutil.copytree(Path(__file__).parents[1] / "src" / "lingerlab", pkg / "lingerlab")
    env = {**os.environ, "PYTHONPATH": str(pkg), "LINGERLAB_CACHE": str(tmp_path / "cache")}
    script = AUDIT_SCRIPT.format(tests=str(Path(__file__).parent))

    def run() -> dict:
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    features = pkg / "lingerlab" / "features.py"
    first = run()
    assert first["module"].startswith(str(pkg))
    assert first["computed"]["counts"] == 1 and first["computed"]["class_probs"] == 1
    assert sum(run()["computed"].values()) == 0  # warm: nothing recomputed
    import re

    text = features.read_text()
    doc = '"""Eq. 1: ``v(c) = |{x in D^t : c in top_k(M^s(x))}|`` for every source class c.'
    ret = re.compile(r"(?m)^( *)return counts\[0\]$")  # the return of Eq. 1
    assert doc in text and len(ret.findall(text)) == 1
    features.write_text(ret.sub(lambda m: f"{m[1]}# a comment\n{m[0]}", text.replace(doc, doc + " (edited)")))
    assert sum(run()["computed"].values()) == 0  # docstring and comment: nothing
    features.write_text(ret.sub(lambda m: f"{m[0]} * 2", features.read_text()))
    changed = run()
    assert changed["counts"] == [2 * c for c in first["counts"]]
    assert changed["computed"]["counts"] == 1 and changed["computed"]["class_probs"] == 1
    assert changed["computed"]["composites"] == 1
    scratch_runs = list((tmp_path / "cache" / "finetune").glob("*.pt"))
    assert len(scratch_runs) == 1  # M^t was not trained again


def test_a_given_target_model_is_measured_not_trained(cache_root):
    """A user's own fine-tuned model (``spec.given["M^t"]``) is M^t for every seed: nothing is trained
    for it, and Eq. 3 reads its backbone."""
    torch.manual_seed(3)
    mine = TinyNet(2).eval()
    world = make_tiny_world(given={"M^t": mine})
    a = _audit(world, v_lo=3)
    assert a.target_model(0) is mine and a.target_model(1) is mine and a.model("M^t", 2) is mine
    a.lingering()
    assert not (cache_root / "finetune").exists() or not list((cache_root / "finetune").glob("*.pt"))
    with pytest.raises(ValueError, match="given may hold only"):
        make_tiny_world(given={"M^x": mine})
    with pytest.raises(TypeError, match="nn.Module"):
        make_tiny_world(given={"M^t": "model.pt"})


def test_world_arms_and_the_comparison_reference(tmp_path, monkeypatch):
    """A world's further recipes are arms of its zoo; the reference must be one of the comparison arms;
    Eq. 3 runs for any fine-tuned arm (or model) and refuses a scratch one."""
    monkeypatch.setenv("LINGERLAB_CACHE", str(tmp_path))
    base = tiny_spec()
    extra = base.recipes["M^t"].replace(name="M^t (aug)", augment=None, lr=0.02)
    w = make_tiny_world(
        recipes={**base.recipes, "M^t (aug)": extra},
        comparison_arms={"M^t (aug)": "M^t (aug)", "M^b (same data)": "M^b (same data)"},
        comparison_reference="M^t (aug)",
    )
    audit = Audit(w, device="cpu")
    assert "M^t (aug)" in audit.zoo.names() and audit.recipe("M^t (aug)") is extra
    assert w.spec.reference_arm == "M^t (aug)"
    with pytest.raises(ValueError, match="built-in or world arm"):
        audit.zoo.add("M^t (aug)", extra)
    L = audit.lingering_classes(0, "M^t (aug)")
    assert L == audit.lingering_classes(0, audit.model("M^t (aug)", 0))
    with pytest.raises(ValueError, match="fine-tuned"):
        audit.lingering(0, "M^b")
    with pytest.raises(ValueError, match="comparison_reference"):
        tiny_spec(comparison_reference="nope")


def test_every_compared_arm_goes_through_the_same_lr_search(cache_root):
    w = make_tiny_world(lr_search=(0.003, 0.05))
    a = _audit(w)
    ref, base = a.recipe(w.spec.reference_arm), a.recipe("M^b (same data)")
    s = a.zoo.searches()
    assert sorted(set(s["arm"])) == sorted({ref.name, base.name})
    for recipe in (ref, base):
        trials = s[s["arm"] == recipe.name]
        assert list(trials["lr"]) == [0.003, 0.05] and int(trials["picked"].sum()) == 1
        best = trials.loc[trials["picked"]].iloc[0]
        runs = [predict(a.zoo.train(recipe.replace(lr=lr), 0)[0], w.target_val) for lr in trials["lr"]]
        correct = [(logits.argmax(1) == y).numpy() for logits, y in runs]
        assert recipe.lr == best["lr"] == pick_rate(list(trials["lr"]), correct)
        # the picked trial is the arm's seed-0 model: its accuracy is what the search saw
        assert a.accuracy(a.zoo.train(recipe, 0)[0]) == pytest.approx(best["val_acc"])
        # the recipe table finds a search by the recipe it picked, not by its name
        assert a.zoo.search_of(recipe).equals(trials.reset_index(drop=True))
    assert a.zoo.search_of(ref.replace(lr=0.123)).empty
    # arms outside the comparison keep their own rate; without a grid nothing is searched
    assert a.recipe("M^b").lr == w.recipe("M^b").lr
    plain = _audit(make_tiny_world())
    assert plain.recipe("M^t").lr == 0.01 and plain.zoo.searches().empty


def test_rate_sensitivity_reads_L_at_every_rate_of_the_search(cache_root):
    from lingerlab.rate_sensitivity import rate_sensitivity

    w = make_tiny_world(lr_search=(0.003, 0.05))
    a = _audit(w)
    ref = a.recipe(w.spec.reference_arm)
    t = rate_sensitivity(a, w.spec.reference_arm, seeds=(0, 1))
    assert list(t["lr"]) == [0.003, 0.05] and list(t["picked"]) == [lr == ref.lr for lr in (0.003, 0.05)]
    for row in t.itertuples():
        # a reference agrees: |L| of each seed's model at that rate, from Audit.lingering directly
        models = [a.zoo.train(ref.replace(lr=row.lr), s)[0] for s in (0, 1)]
        sizes = [int(a.lingering(s, m)["lingering"].sum()) for s, m in zip((0, 1), models)]
        assert row[4] == ", ".join(map(str, sizes)) and row[5] == float(pd.Series(sizes).median())
    # the picked row is the arm's own models
    picked = t.loc[t["picked"]].iloc[0]
    assert picked["|L| per seed"] == ", ".join(str(len(a.lingering_classes(s, w.spec.reference_arm))) for s in (0, 1))
    with pytest.raises(ValueError, match="fine-tuned"):
        rate_sensitivity(a, "M^b")


def test_rate_text_states_the_pick_and_an_empty_L():
    from lingerlab.rate_sensitivity import rate_text

    table = pd.DataFrame(
        {
            "lr": [3e-4, 1e-3, 3e-3],
            "picked": [True, False, False],
            "target acc (mean)": [0.981, 0.982, 0.980],
            "|L| per seed": ["7, 5", "0, 1", "0, 0"],
            "|L| (median)": [5.5, 0.5, 0.0],
        }
    )
    text = rate_text(table, "shapes")
    assert "at the picked 0.0003 (target accuracy 0.981) the median |L| per seed is 5.5" in text
    assert "0.001: 0.5 (accuracy 0.982); 0.003: 0 (accuracy 0.980)" in text
    assert "forgot the source-only classes" in text
    assert "forgot" not in rate_text(table.iloc[:2], "shapes")
    assert "no other rate" in rate_text(table.iloc[:1], "shapes")
    with pytest.raises(ValueError, match="exactly one picked"):
        rate_text(table.assign(picked=False), "shapes")
