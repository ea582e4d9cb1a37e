"""The sweeps: remedy_table / size_sweep / arch_comparison on a tiny random world (schema and wiring)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lingerlab.recipe import Recipe
from lingerlab import remedy_summary, remedy_sweep, worlds
from lingerlab.arch_sweep import arch_comparison
from lingerlab.audit import Audit
from lingerlab.mitigation_plots import plot_remedies
from lingerlab.models import Normalized
from lingerlab.remedies import NotFeasible, Remedy, default_remedies, remedy_arms, retrain_source
from lingerlab.remedy_summary import summarize_remedies
from lingerlab.remedy_sweep import REMEDY_COLUMNS, remedy_table
from lingerlab.size_sweep import size_sweep
from lingerlab.worlds.base import World, WorldSpec

matplotlib.use("Agg")


class Tiny(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class MakeTiny:
    def __init__(self, n: int) -> None:
        self.n = n
        self.cache_key = ("Tiny", n)

    def __call__(self) -> nn.Module:
        return Normalized(Tiny(self.n), (0.5,) * 3, (0.25,) * 3)


MT = dict(lr=0.05, epochs=1, batch_size=8, bn="update")  # the tiny world's fine-tuning recipe
SOURCE = dict(lr=1e-2, epochs=1, optimizer="adam", batch_size=16, lr_schedule="cosine")  # how M^s was trained


def tiny_world(name: str = "tiny", retrainable: bool = True, seed: int = 0) -> World:
    g = torch.Generator().manual_seed(seed)
    n_src = 6
    torch.manual_seed(seed)
    src = MakeTiny(n_src)().eval()
    with torch.no_grad():
        src.model.fc.bias[0] = 10.0  # M^s puts class 0 first on every image: F = {1, ..., 5}
    xs = torch.rand(n_src * 6, 3, 10, 10, generator=g)
    ys = torch.arange(n_src).repeat_interleave(6)
    xs_tr = torch.rand(n_src * 8, 3, 10, 10, generator=g)
    ys_tr = torch.arange(n_src).repeat_interleave(8)
    xt = torch.rand(40, 3, 10, 10, generator=g)
    yt = torch.arange(40) % 2
    xv = torch.rand(12, 3, 10, 10, generator=g)
    yv = torch.arange(12) % 2
    recipes = {
        "M^t": Recipe("M^t", train_subset=range(24), **MT),
        "M^b": Recipe("M^b (competent)", init="scratch", optimizer="adam", lr=0.01, epochs=1, batch_size=8),
    }
    spec = WorldSpec(
        arch="Tiny",
        head="model.fc",
        cam_layer="model.features.0",
        input_size=10,
        recipes=recipes,
        source_train=TensorDataset(xs_tr, ys_tr) if retrainable else None,
        source_recipe=Recipe("M^s", init="scratch", **SOURCE) if retrainable else None,
    )
    return World(
        name=name,
        profile=None,
        seed=seed,
        source_model=src,
        source_classes=[f"c{i}" for i in range(n_src)],
        source_data=TensorDataset(xs, ys),
        target_train=TensorDataset(xt, yt),
        target_val=TensorDataset(xv, yv),
        target_classes=["a", "b"],
        make_scratch=MakeTiny(2),
        spec=spec,
        fingerprint=f"{name}-{seed}-{retrainable}",
    )


def _audit(world: World) -> Audit:
    return Audit(world, v_lo=0, n_null=2, device="cpu", cache=False)


def test_remedy_table_has_documented_columns_and_one_row_per_remedy_and_seed():
    audit = _audit(tiny_world())
    table = remedy_table(audit, seeds=(0,), n_boot=50)
    assert list(table.columns) == REMEDY_COLUMNS
    names = [r.name for r in default_remedies(audit)]
    assert len(table) == len(names) and set(table["remedy"]) == set(names)
    assert table["feasible"].all()
    plain = table[table["remedy"] == "plain fine-tuning"]
    assert np.allclose(plain["time_overhead"], 1.0)
    ok = table[table["kind"] != "retrain_source"]
    for c in ("target_acc", "composite_acc", "distraction", "distraction_null"):
        assert ok[c].between(0, 1).all(), c
    assert (ok["distraction_ci_lo"] <= ok["distraction"] + 1e-12).all()
    assert (ok["distraction"] <= ok["distraction_ci_hi"] + 1e-12).all()
    assert (table["n_source_only"] == 5).all()
    assert table.loc[table["kind"] == "retrain_source", "n_lingering"].isna().all()
    assert table.loc[table["kind"].isin(["prune", "prune_finetune"]), "n_pruned"].notna().all()
    assert (table["time_overhead"] > 0).all()
    s = summarize_remedies(table)
    assert list(s["remedy"]) == names and np.isclose(s.loc[0, "d_target_acc"], 0.0)
    fig = plot_remedies(s)
    assert len(fig.axes) >= 4


def test_remedy_table_is_deterministic_and_marks_infeasible_retraining():
    audit = _audit(tiny_world(retrainable=False))
    pick = ["plain fine-tuning", "retrain source without F", "unlearning"]
    a = remedy_table(audit, remedies=pick, seeds=(0,), n_boot=50)
    b = remedy_table(_audit(tiny_world(retrainable=False)), remedies=pick, seeds=(0,), n_boot=50)
    row = a[a["remedy"] == "retrain source without F"].iloc[0]
    assert not row["feasible"] and row["note"].startswith("not feasible here")
    assert np.isnan(row["target_acc"])
    cols = ["target_acc", "composite_acc", "distraction", "n_lingering", "mean_p_st"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    with pytest.raises(NotFeasible):
        retrain_source(tiny_world(retrainable=False), [0])


def test_remedy_table_validates():
    audit = _audit(tiny_world())
    with pytest.raises(ValueError, match="remedies"):
        remedy_table(audit, remedies=["nope"], seeds=(0,))
    with pytest.raises(ValueError, match="seeds"):
        remedy_table(audit, seeds=())
    with pytest.raises(ValueError, match="kind"):
        Remedy("x", "magic")
    arms = remedy_arms(audit, ["L1 penultimate"])
    assert isinstance(arms["L1 penultimate"](0), nn.Module)


def test_size_sweep_rows_and_nested_subsets():
    audit = _audit(tiny_world())
    t = size_sweep(audit, sizes=[8, 16], seeds=(0, 1))
    assert list(t["n_train"]) == [8, 8, 16, 16] and list(t["seed"]) == [0, 1, 0, 1]
    assert {
        "target_acc",
        "distraction",
        "distraction_null",
        "excess_error",
        "flip_rate",
        "n_lingering",
        "mean_p_st",
        "n_composites_L",
        "train_s",
    } <= set(t.columns)
    # each model's measures are over its own lingering set: no L, no composites, NaN measures
    for r in t.itertuples():
        assert (r.n_composites_L == 0) == (r.n_lingering == 0)
        assert np.isnan(r.distraction) == (r.n_composites_L == 0)
    with pytest.raises(ValueError, match="sizes"):
        size_sweep(audit, sizes=[1000], seeds=(0,))
    # the subsets grow from M^t's own D^t: nested, and n = |D^t| is M^t itself
    from lingerlab.size_sweep import _growth_order

    own = audit.recipe("M^t").train_subset
    order = _growth_order(own, len(audit.world.target_train), 0)
    assert sorted(order) == list(range(len(audit.world.target_train)))
    assert sorted(order[: len(own)]) == sorted(own) and order == _growth_order(own, len(audit.world.target_train), 0)


# ------------------------------------------------------------------------------------- worlds.load_arch


def _fake_loaders(monkeypatch, tmp_path, **loaders):
    """Point world names at fake loaders (the ``shapes`` profiles still resolve) and the torch hub cache
    at an empty folder."""
    mod = types.ModuleType("fake_worlds")
    for name, fn in loaders.items():
        setattr(mod, f"load_{name}", fn)
        monkeypatch.setitem(worlds._LOADERS, name, ("fake_worlds", f"load_{name}", {}))
    monkeypatch.setitem(sys.modules, "fake_worlds", mod)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return mod


def test_load_arch_dispatches_on_the_loader_signature(monkeypatch, tmp_path):
    seen = {}

    def takes_arch(profile, seed, *, arch="Tiny"):
        seen["arch"] = arch
        return tiny_world()

    def own_only(profile, seed, *, device=None):
        return tiny_world()

    _fake_loaders(monkeypatch, tmp_path, shapes=takes_arch, lite0=own_only)
    assert isinstance(worlds.load_arch("shapes", "Wide"), World) and seen["arch"] == "Wide"
    seen.clear()
    worlds.load_arch("shapes", None)
    assert seen["arch"] == "Tiny"  # None: the loader's own default
    assert worlds.load_arch("lite0", "tiny").spec.arch == "Tiny"  # its own arch, any case
    with pytest.raises(NotFeasible, match="offers only 'Tiny'"):
        worlds.load_arch("lite0", "resnet18")  # no source_model=: torchvision is not an option
    with pytest.raises(ValueError, match="name"):
        worlds.load_arch("nope", None)
    with pytest.raises(TypeError, match="download"):
        worlds.load_arch("shapes", None, download="yes")


def _hub_file(tmp_path) -> Path:
    import torchvision

    url = torchvision.models.get_model_weights("resnet18").DEFAULT.url
    return tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1]


def test_load_arch_torchvision_source_never_downloads_without_download(monkeypatch, tmp_path):
    import torchvision

    built = []

    def get_model(arch, weights=None, **kw):
        if weights is not None and not _hub_file(tmp_path).is_file() and not built_with_download:
            raise AssertionError("get_model called with weights: it would download")
        built.append((arch, weights))
        torch.manual_seed(0)
        return Tiny(1000)

    built_with_download = False
    monkeypatch.setattr(torchvision.models, "get_model", get_model)
    loaded = {}

    def takes_source(profile, seed, *, source_model=None, download=False):
        w = tiny_world()
        if source_model is not None:
            w.source_model = source_model
        loaded["world"], loaded["download"] = w, download
        return w

    _fake_loaders(monkeypatch, tmp_path, paper=takes_source)
    path = _hub_file(tmp_path)
    with pytest.raises(FileNotFoundError) as e:
        worlds.load_arch("paper", "resnet18")
    assert "https://download.pytorch.org/models/" in str(e.value) and str(path) in str(e.value)
    assert "download=True" in str(e.value) and not built
    with pytest.raises(NotFeasible, match="offers only"):
        worlds.load_arch("paper", "no_such_net")  # not torchvision, not the world's own

    path.parent.mkdir(parents=True)
    path.write_bytes(b"")  # weights in the cache: built from there
    w = worlds.load_arch("paper", "resnet18")
    assert built == [("resnet18", "DEFAULT")] and loaded["download"] is False
    assert isinstance(w.source_model, Normalized) and isinstance(w.source_model.model, Tiny)
    assert w.spec.arch == "resnet18" and w.spec.head == "model.fc"
    assert all(r.head == "model.fc" for r in w.spec.recipes.values())
    assert w.spec.recipes["M^t"].replace(head=None) == tiny_world().spec.recipes["M^t"]
    assert loaded["world"].spec.arch == "Tiny" and loaded["world"].spec.recipes["M^t"].head is None  # not mutated

    path.unlink()
    built_with_download = True
    worlds.load_arch("paper", "resnet18", download=True)
    assert built[-1] == ("resnet18", "DEFAULT") and loaded["download"] is True


def test_arch_comparison_skips_only_what_cannot_be_had_here(monkeypatch, tmp_path):
    def own_only(profile, seed, *, device=None):
        return tiny_world()

    def paper(profile, seed, *, source_model=None):
        raise AssertionError("resnet18 weights are not cached here: the loader must not run")

    _fake_loaders(monkeypatch, tmp_path, shapes=own_only, paper=paper)
    kw = dict(audit_kwargs={"v_lo": 0, "n_null": 2, "device": "cpu", "cache": False}, n_boot=50, seeds=(0, 1))
    res = arch_comparison([("shapes", None), ("shapes", "Tiny"), ("shapes", "resnet50"), ("paper", "resnet18")], **kw)
    t = res.table
    assert list(t["available"]) == [True, True, False, False]
    assert "offers only" in t.loc[2, "note"] and t.loc[3, "note"].startswith("FileNotFoundError")
    assert t.loc[0, "arch"] == "Tiny" and 0 <= t.loc[0, "acc_reference"] <= 1
    # the same world twice: the same numbers, |L| <= |F with images| <= |F| = 5, and a perfect overlap
    for col in ("n_F", "n_L", "acc_reference", "acc_baseline", "distraction_reference", "excess_error_baseline"):
        assert t.loc[0, col] == t.loc[1, col] or (np.isnan(t.loc[0, col]) and np.isnan(t.loc[1, col])), col
    assert (
        t.loc[0, "n_F"] == 5 and t.loc[0, "n_L_min"] <= t.loc[0, "n_L"] <= t.loc[0, "n_L_max"] <= t.loc[0, "n_F_images"]
    )
    assert list(t["label"]) == ["shapes", "shapes: Tiny", "shapes: resnet50", "paper: resnet18"]
    assert set(res.tests) == {"shapes", "shapes: Tiny"}
    assert len(res.overlap) == 1
    o = res.overlap.iloc[0]
    assert o.jaccard_F == 1.0 and (o.jaccard_L == 1.0 or (np.isnan(o.jaccard_L) and o.n_L_common == 0))
    for label, L in res.lingering.items():
        assert sorted(L) == [0, 1]
        ctl = res.tests[label].controls
        assert set(ctl.loc[ctl.in_L, "source_class"]) <= set().union(*map(set, L.values()))
    verdicts = {"holds", "does not hold", "inconclusive", "not testable", "not measured"}
    assert {t.loc[0, "distraction_excess_verdict"], t.loc[0, "excess_error_verdict"]} <= verdicts
    # labelled specs with world options; a baseline the world does not compare is an error naming the arms
    # (p_lo ~ 0: every class of F with images lingers, so L is F's classes with images in every seed)
    kw0 = {**kw, "audit_kwargs": {**kw["audit_kwargs"], "p_lo": 1e-9}}
    res = arch_comparison({"A": ("shapes", None, {}), "B": ("shapes", None, {"device": "cpu"})}, **kw0)
    assert list(res.table["label"]) == ["A", "B"] and list(res.overlap[["a", "b"]].iloc[0]) == ["A", "B"]
    assert (res.table["n_L"] == res.table["n_F_images"]).all() and res.table.loc[0, "n_L"] > 0
    assert res.overlap.loc[0, "jaccard_L"] == 1.0 and res.overlap.loc[0, "n_L_common"] == res.table.loc[0, "n_L"]
    v = res.view()
    assert list(v["architecture"]) == ["A", "B"] and v.loc[0, "|F|"] == 5 and len(v.columns) == 11
    assert v.loc[0, "excess error, M^t - M^b"].endswith(res.table.loc[0, "excess_error_verdict"])
    assert v.loc[0, "excess error on L, M^t"].startswith(f"{res.table.loc[0, 'excess_error_reference']:.3f} [")
    from lingerlab.mitigation_plots import plot_arch

    fig = plot_arch(res)
    assert len(fig.axes) == 4 and len(fig.axes[3].patches) == 1  # one overlap bar: A vs B
    # other source images (another world, not another model of one world): no overlap row
    _fake_loaders(
        monkeypatch, tmp_path, shapes=own_only, lite0=lambda profile, seed, *, device=None: tiny_world(seed=1)
    )
    res = arch_comparison({"A": ("shapes", None), "C": ("lite0", None)}, **kw0)
    assert res.table["available"].all() and res.overlap.empty
    with pytest.raises(ValueError, match="repeat the label"):
        arch_comparison([("shapes", None), ("shapes", None)], **kw)
    with pytest.raises(ValueError, match="baseline must be an arm"):
        arch_comparison([("shapes", None)], baseline="M^b (nope)", **kw)

    def broken(profile, seed, *, device=None):
        raise ValueError("a bug, not a missing file")

    _fake_loaders(monkeypatch, tmp_path, shapes=broken)
    with pytest.raises(ValueError, match="a bug"):
        arch_comparison([("shapes", None)], **kw)
    with pytest.raises(TypeError, match="pairs"):
        arch_comparison(["shapes"], **kw)
    with pytest.raises(TypeError, match="triples"):
        arch_comparison([("shapes", None, "width=8")], **kw)


def test_figure8_specs_name_every_lite_variant_and_two_cnn_widths():
    from lingerlab.arch_sweep import _as_spec, figure8_specs
    from lingerlab.worlds.lite_models import VARIANTS

    specs = figure8_specs(24)
    assert list(specs["lite0"].values()) == [(name, None) for name in VARIANTS]
    assert [opts["width"] for _, _, opts in map(_as_spec, specs["shapes"].values())] == [8, 24]
    assert all(_as_spec(s_) for group in specs.values() for s_ in group.values())
    with pytest.raises(ValueError, match="shapes_width"):
        figure8_specs(0)


def test_remedy_tests_score_every_remedy_on_plain_L_composites_with_holm():
    from lingerlab.fair_test import FAMILY_MEASURES

    # p_lo below M^s's own p_c: every source-only class lingers, so L is not empty
    audit = Audit(tiny_world(), v_lo=0, n_null=2, device="cpu", cache=False, p_lo=1e-7)
    rems = [
        Remedy("plain fine-tuning", "plain"),
        Remedy("lr x5", "finetune", {"lr": 0.25}),
        Remedy("WiSE", "wise_ft", {"alpha": 0.5}),
    ]
    memo: dict = {}
    table = remedy_sweep.remedy_table(audit, rems, seeds=(0, 1, 2), n_boot=50, memo=memo)
    n_built = len(memo)
    out = remedy_sweep.remedy_tests(audit, rems, seeds=(0, 1, 2), n_boot=200, memo=memo)
    assert len(memo) == n_built  # the table's models, not new ones
    assert set(out["remedy"]) == {"lr x5", "WiSE"} and len(out) == 2 * len(FAMILY_MEASURES)
    assert (out["p_holm"] >= out["p_perm"] - 1e-12).all()
    assert set(out["verdict"]) <= {"lowers it", "does not lower it", "inconclusive", "not measured"}
    assert out.attrs["p_floor"] == pytest.approx(0.1)
    r = out.set_index(["remedy", "measure"]).loc[("lr x5", "err_source_only")]
    assert r.effect == pytest.approx(r.remedy_value - r.plain, abs=1e-9)
    assert r.ci_lo <= r.effect <= r.ci_hi
    assert "pruned_fraction" in table and "at_chance" in table
    on_L = out.attrs["on_L"].set_index("remedy")
    assert list(on_L.index) == ["plain fine-tuning", "lr x5", "WiSE"]
    assert on_L.loc["lr x5", "composite_acc_L"] == pytest.approx(1 - r.remedy_value, abs=1e-9)
    assert (on_L["composite_acc_L_lo"] <= on_L["composite_acc_L"] + 1e-12).all()


def test_summarize_remedies_marks_a_remedy_at_chance_from_the_table_itself():
    metrics = {
        m: 0.5
        for m in (
            "composite_acc",
            "distraction",
            "distraction_null",
            "distraction_excess",
            "n_lingering",
            "mean_p_st",
            "pruned_fraction",
            "time_overhead",
        )
    }
    rows = [
        {"remedy": name, "seed": s, "feasible": True, "note": "", "chance": 0.5, "target_acc": acc, **metrics}
        for name, acc in (("plain fine-tuning", 0.9), ("lesion", 0.52))
        for s in (0, 1)
    ]
    table = pd.concat([pd.DataFrame(rows[:2]), pd.DataFrame(rows[2:])], ignore_index=True)  # no attrs survive
    s = summarize_remedies(table).set_index("remedy")
    assert bool(s.loc["lesion", "at_chance"]) and not bool(s.loc["plain fine-tuning", "at_chance"])


def _planted_summary() -> pd.DataFrame:
    """A remedy table with planted paired changes (2 seeds), summarised."""
    planted = {  # remedy: (target_acc, composite_acc, n_lingering, time_overhead, feasible)
        "plain fine-tuning": (0.90, 0.50, 10, 1.0, True),
        "gainer": (0.895, 0.60, 9, 1.5, True),
        "small gainer": (0.90, 0.52, 10, 1.0, True),
        "costly": (0.80, 0.70, 10, 1.0, True),
        "slow": (0.90, 0.70, 10, 3.0, True),
        "eraser": (0.90, 0.50, 4, 1.0, True),
        "lesion": (0.52, 0.55, 0, 1.0, True),
        "absent": (np.nan, np.nan, np.nan, np.nan, False),
    }
    rows = []
    for name, (acc, comp, nl, t, ok) in planted.items():
        for s_, jitter in ((0, -0.001), (1, 0.001)):
            rows.append(
                {
                    "remedy": name,
                    "seed": s_,
                    "feasible": ok,
                    "note": "",
                    "chance": 0.5,
                    "target_acc": acc,
                    "composite_acc": comp
                    + (jitter if name == "small gainer" else 0.0)
                    + (0.02 * (2 * s_ - 1) if name == "small gainer" else 0.0),
                    "distraction": 0.1,
                    "distraction_null": 0.1,
                    "distraction_excess": 0.0,
                    "n_lingering": nl,
                    "mean_p_st": 0.3,
                    "pruned_fraction": np.nan,
                    "time_overhead": t,
                }
            )
    return summarize_remedies(pd.DataFrame(rows))


def test_remedy_advice_applies_its_rule_to_planted_changes():
    adv = remedy_summary.remedy_advice(_planted_summary())
    answers = adv.answer.tolist()
    # within the costs (>= -0.01 target accuracy, <= 2x time): gainer (+0.1), then small gainer, then eraser (0)
    assert answers[0].startswith("gainer (+0.100 composite acc., -0.005 target acc.)")
    assert answers[1].startswith("small gainer") and answers[2].startswith("eraser")
    assert answers[3] == "eraser, lesion"  # |L| <= 5 = half of plain's 10
    assert answers[4] == "lesion"
    assert not any(a.startswith(("costly", "slow")) for a in answers[:3])


def test_remedy_effects_by_world_gives_one_verdict_per_remedy_and_world():
    sm = _planted_summary()
    t = remedy_summary.remedy_effects_by_world({"a": sm, "b": sm[sm.remedy != "gainer"]})
    assert list(t.columns.get_level_values(0).unique()) == ["a", "b"]
    v = t[("a", "verdict")]
    assert v["plain fine-tuning"] == "reference" and v["gainer"] == "try" and v["costly"] == "costs too much"
    assert v["slow"] == "costs too much" and v["eraser"] == "gain within its SD; removes memories"
    assert v["lesion"] == "lesion" and v["absent"] == "not feasible"
    assert v["small gainer"] == "gain within its SD"  # +0.02 mean with an SD over seeds of about 0.03
    assert t.loc["gainer", ("a", "d_composite_acc")] == pytest.approx(0.1)
    assert pd.isna(t.loc["gainer", ("b", "verdict")])  # not measured in world b


def test_measure_reads_eq3_from_F_images_only_and_agrees_with_the_full_pass():
    from lingerlab.lingering import lingering
    from lingerlab.models import source_target_model

    audit = _audit(tiny_world())
    F = audit.source_only().tolist()
    assert 0 < len(F) < len(audit.world.source_classes)  # class 0 is shared: its images are left out
    model = audit.model("M^t", 0)
    row = remedy_sweep.measure(audit, model, 0, n_boot=20)
    sub = remedy_sweep._images_of(audit, F)
    assert set(sub.tensors[1].tolist()) == set(F) and len(sub) == sum(len(audit.class_images(c)) for c in F)
    full = lingering(source_target_model(model, audit.source_model()), audit.world.source_data, F, p_lo=audit.p_lo)
    assert row["n_lingering"] == int(full["lingering"].sum())
    assert np.isclose(row["mean_p_st"], float(full["p_st"].mean()), rtol=0, atol=1e-6)
    # no class of the list has images: the whole of D^c is read, and Eq. 3 marks each untestable
    assert remedy_sweep._images_of(audit, [len(audit.world.source_classes) + 5]) is audit.world.source_data


def test_size_trends_name_what_falls_and_what_rises():
    from lingerlab.size_sweep import describe_trends, size_trends

    rng = np.random.default_rng(0)
    rows = [
        {
            "n_train": n,
            "seed": s,
            "n_lingering": 10 - n / 100 + rng.normal(0, 0.1),
            "distraction": 0.2 + n / 1000 + rng.normal(0, 0.01),
            "distraction_excess": rng.normal(),
            "err_source_only": np.nan,
            "excess_error": rng.normal(),
            "flip_rate": rng.normal(),
        }
        for n in (50, 100, 200, 400)
        for s in range(3)
    ]
    t = size_trends(pd.DataFrame(rows)).set_index("measure")
    assert t.loc["n_lingering", "trend"] == "falls" and t.loc["distraction", "trend"] == "rises"
    assert t.loc["err_source_only", "trend"] == "not measured" and t.loc["err_source_only", "points"] == 0
    assert t.loc["n_lingering", "spearman_rho"] < -0.9
    text = describe_trends(t.reset_index(), "toy")
    assert "falls: n_lingering" in text and "rises: distraction" in text and "not measured: err_source_only" in text
