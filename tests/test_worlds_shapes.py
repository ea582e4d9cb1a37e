"""The procedural ``shapes`` world: rendering, planted truth, and (slow) recovery by Eqs. 1-2.

The slow tests train the smoke world's three models once per session (cached on disk under
``$LINGERLAB_CACHE``, so a second session reads them back) and print the measured numbers (``-s``).
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Subset

from lingerlab.arms import recipe_table
from lingerlab.recipe import Recipe
from lingerlab.lingering import default_p_lo
from lingerlab.features import default_k, precision_recall, source_class_counts, source_only
from lingerlab.models import source_target_model
from lingerlab.profiles import get_profile
from lingerlab.inference import evaluate, predict
from lingerlab.training import finetune, train_scratch
from lingerlab.worlds import PlantedTruth, World, WorldSpec, load_world
from lingerlab.worlds.shapes_augment import Occlude, ZoomOut
from lingerlab.worlds.shapes_render import SHAPES, _target_params, class_table, render_source, render_target

TINY = dict(
    n_shapes=4,
    n_textures=2,
    n_shared=2,
    source_train_per_class=24,
    source_val_per_class=4,
    target_train=48,
    finetune_train=16,
    target_val=16,
    source={"epochs": 1},
    finetune={"epochs": 1},
    scratch={"epochs": 1},
    width=8,
)


def _load_tiny(cache_dir):
    with pytest.MonkeyPatch.context() as mp:  # its own cache folder, only while loading
        mp.setenv("LINGERLAB_CACHE", str(cache_dir))
        return load_world("shapes", "smoke", progress=False, device="cpu", **TINY)


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def tiny(tiny_cache):
    """A seconds-sized shapes world (8 classes, 1 epoch)."""
    return _load_tiny(tiny_cache)


def test_rendering_is_deterministic():
    p = get_profile("shapes", "smoke")
    y = torch.arange(24)
    a = render_source(p, y, torch.Generator().manual_seed(3))
    b = render_source(p, y, torch.Generator().manual_seed(3))
    c = render_source(p, y, torch.Generator().manual_seed(4))
    assert a.shape == (24, 3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    assert 0 <= float(a.min()) and float(a.max()) <= 1
    assert torch.equal(a, (a * 255).round() / 255)  # 8-bit exact: cached uint8 copies are identical


def test_zoom_out_is_seeded():
    x = torch.rand(16, 3, 32, 32)
    z = ZoomOut(0.35, 0.8, 1.0)
    a, b = z(x, torch.Generator().manual_seed(0)), z(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and not torch.equal(a, x) and a.shape == x.shape
    assert torch.equal(ZoomOut(prob=0.0)(x, torch.Generator()), x)
    with pytest.raises(ValueError, match="zoom_max"):
        ZoomOut(0.5, 0.4)
    assert ZoomOut(0.35, 0.8, 0.5).label == "zoom-out to 35-80% of the side, p=0.5"
    assert ZoomOut(0.35, 0.8, 0.5).cache_key == ("ZoomOut", 0.35, 0.8, 0.5)


def test_occluder_covers_one_square_and_is_seeded():
    x = torch.rand(16, 3, 32, 32)
    o = Occlude(1.0, 0.3, 0.5)
    a, b = o(x, torch.Generator().manual_seed(0)), o(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape
    for img, orig in zip(a, x):
        rows, cols = (img != orig).any(0).nonzero().unbind(1)
        h, w = int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1
        assert h == w and 0.3 * 32 - 1 <= h <= 0.5 * 32 + 1  # one square of 30-50% of the side
    assert torch.equal(Occlude(0.0)(x, torch.Generator()), x)
    with pytest.raises(ValueError, match="source_occlusion"):
        Occlude(1.5)
    assert Occlude(0.5).label == "occluder square of 30-50% of the side, p=0.5"
    w_prof = get_profile("shapes", "smoke", source_occlusion=0.0)
    assert w_prof.source_occlusion == 0.0


def test_clutter_changes_only_the_clutter():
    p = get_profile("shapes", "smoke")
    g = torch.Generator().manual_seed(0)
    prm = _target_params(p, torch.arange(8) % 2, torch.tensor([5, 9]), g)
    plain = render_target(p, prm, torch.Generator().manual_seed(1), 0.0)
    again = render_target(p, prm, torch.Generator().manual_seed(2), 0.0)
    clut = render_target(p, prm, torch.Generator().manual_seed(1), 1.0, lines=(4, 6))
    assert torch.equal(plain, again)
    changed = (clut != plain).any(1).float().mean()
    assert 0.02 < float(changed) < 0.5


def test_tiny_world_fields(tiny):
    w = tiny
    assert isinstance(w, World) and w.name == "shapes" and w.fingerprint
    n = 4 * 2
    assert len(w.source_classes) == n == len(class_table(w.profile)) and len(set(w.source_classes)) == n
    assert w.planted_shared | w.planted_source_only == set(range(n))
    assert not w.planted_shared & w.planted_source_only
    planted = w.spec.planted
    assert planted.shared == w.planted_shared and planted.source_only == w.planted_source_only
    glyph_classes = {c for c, (s, _, _) in enumerate(class_table(w.profile)) if SHAPES[s] in ("tee", "aitch")}
    assert glyph_classes == set(planted.lookalike) and glyph_classes <= w.planted_shared
    assert len(planted.co_occurring) == 2 and planted.co_occurring <= w.planted_shared
    assert len(planted.class_attributes) == n and planted.class_attributes[0][2] == "any"
    # only co-occurring classes are ever pasted into target images
    which = planted.target_train_shared_class[planted.target_train_has_shared]
    assert set(which.tolist()) <= set(planted.co_occurring)
    mt, mb = w.spec.recipes["M^t"], w.spec.recipes["M^b"]
    assert len(w.target_train) == 48 and len(mt.train_subset) == 16 and mt.init == "source"
    assert mb.train_subset is None and isinstance(mb.augment, ZoomOut) and mb.init == "scratch"
    assert w.spec.v_lo == 1 and w.spec.composite_scale == 0.4 and w.spec.source_train is not None
    x, y = w.target_val[0]
    assert x.shape == (3, 32, 32) and w.make_scratch()(x[None].repeat(2, 1, 1, 1)).shape == (2, 2)
    assert w.source_model(x[None]).shape == (1, n)
    clut = w.spec.make_cluttered(0)
    assert len(clut) == len(w.target_val) and torch.equal(clut.tensors[1], w.target_val.tensors[1])
    assert not torch.equal(clut.tensors[0], w.target_val.tensors[0])


def test_tiny_world_spec_is_complete(tiny):
    w, spec = tiny, tiny.spec
    assert isinstance(spec, WorldSpec) and isinstance(spec.planted, PlantedTruth)
    modules = dict(w.source_model.named_modules())
    assert isinstance(modules[spec.head], torch.nn.Linear) and spec.cam_layer in modules
    assert spec.arch == "SmallResNet" and spec.input_size == 32
    assert spec.mean == tuple(w.source_model.mean.flatten().tolist())
    assert spec.std == tuple(w.source_model.std.flatten().tolist())
    assert list(spec.comparison) == ["M^t (zoom-out)", *w.profile.comparison_baselines]
    assert spec.reference_arm == "M^t (zoom-out)" and spec.lr_search == w.profile.lr_search
    assert spec.n_composites_per_class == w.profile.n_composites_per_class
    assert all(isinstance(r, Recipe) for r in spec.recipes.values())
    assert len({spec.recipes["M^t"], spec.recipes["M^b"]}) == 2  # hashable (frozen)
    assert isinstance(hash(spec.recipes["M^t"]), int) and w.recipe("M^b") is spec.recipes["M^b"]
    # the fair partner differs from M^t only in M^b's augmentation
    zoom = spec.recipes["M^t (zoom-out)"]
    assert zoom.augment is spec.recipes["M^b"].augment and zoom.augment is not None
    assert zoom.replace(augment=None, name="M^t", description=spec.recipes["M^t"].description) == spec.recipes["M^t"]
    table = recipe_table(spec.recipes.values(), len(w.target_train))
    assert len(table) == 3 and list(table["training images"]) == [16, 48, 16]
    assert table["augmentation"].iloc[1] == "zoom-out to 35-80% of the side, p=0.5"
    # M^s is trained from the profile's source recipe; the loader adds only its occluder and description
    sr = spec.source_recipe
    assert sr.replace(augment=None, description="") == w.profile.source.replace(description="")
    assert isinstance(sr.augment, Occlude) and sr.init == "scratch"
    assert spec.make_source is not None and len(spec.source_train) == 24 * 8
    assert spec.provenance["source_accuracy"] == float(spec.provenance["source_history"]["val_acc"].iloc[-1])


def test_recipes_carry_the_profile(tiny):
    """Field by field, the training arguments are the profile's."""
    p, r = tiny.profile, tiny.spec.recipes
    kt, kb = vars(r["M^t"]), vars(r["M^b"])
    keys = "lr epochs optimizer batch_size bn lr_schedule augment head momentum weight_decay freeze num_workers".split()
    assert {k: kt[k] for k in keys} == dict(
        lr=p.finetune.lr,
        epochs=p.finetune.epochs,
        optimizer=p.finetune.optimizer,
        batch_size=p.finetune.batch_size,
        bn="update",
        lr_schedule=p.finetune.lr_schedule,
        augment=None,
        head=None,
        momentum=0.9,
        weight_decay=0.0,
        freeze=(),
        num_workers=0,
    )
    assert {k: kb[k] for k in keys if k != "augment"} == dict(
        lr=p.scratch.lr,
        epochs=p.scratch.epochs,
        optimizer="adam",
        batch_size=p.scratch.batch_size,
        bn="update",
        lr_schedule="cosine",
        head=None,
        momentum=0.9,
        weight_decay=0.0,
        freeze=(),
        num_workers=0,
    )
    assert kb["train_subset"] is None and len(kt["train_subset"]) == p.finetune_train
    z = kb["augment"]
    assert (z.lo, z.hi, z.prob) == (p.zoom_min, p.zoom_max, p.zoom_prob)


def test_seed_may_be_a_numpy_integer(tiny, tiny_cache):
    import numpy as np

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LINGERLAB_CACHE", str(tiny_cache))
        w = load_world("shapes", "smoke", seed=np.int64(0), progress=False, device="cpu", **TINY)
    assert type(w.seed) is int and w.fingerprint == tiny.fingerprint
    with pytest.raises(TypeError, match="seed"):
        load_world("shapes", "smoke", seed=0.0)


def test_tiny_world_is_cached_and_deterministic(tiny, tiny_cache):
    assert (tiny_cache / "shapes_data").is_dir() and (tiny_cache / "scratch").is_dir()
    again = _load_tiny(tiny_cache)
    assert again.fingerprint == tiny.fingerprint
    assert torch.equal(again.target_train.tensors[0], tiny.target_train.tensors[0])
    sa, sb = again.source_model.state_dict(), tiny.source_model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_profile_errors():
    with pytest.raises(ValueError, match="n_shapes"):
        load_world("shapes", "smoke", n_shapes=20)
    with pytest.raises(ValueError, match="n_shared"):
        load_world("shapes", "smoke", n_shared=100)
    with pytest.raises(ValueError, match="target_train"):
        load_world("shapes", "smoke", target_train=10, finetune_train=20)


# ----------------------------------------------------------------------------- smoke: the real thing


def _world_and_models(profile: str):
    w = load_world("shapes", profile, progress=False, device="cpu")
    n = len(w.target_classes)
    mt, ht = finetune(
        w.source_model,
        w.target_train,
        w.target_val,
        w.spec.recipes["M^t"],
        progress=False,
        device="cpu",
        num_classes=n,
    )
    mb, hb = train_scratch(
        w.make_scratch,
        w.target_train,
        w.target_val,
        w.spec.recipes["M^b"],
        progress=False,
        device="cpu",
    )
    return w, mt, mb, ht, hb


@pytest.fixture(scope="session")
def smoke():
    """The smoke world and its three models (cached on disk across sessions via LINGERLAB_CACHE)."""
    return _world_and_models("smoke")


@pytest.fixture(scope="session")
def full():
    """The full-profile world (144 classes) and its three models."""
    return _world_and_models("full")


@pytest.fixture(params=[pytest.param("smoke", marks=pytest.mark.slow), pytest.param("full", marks=pytest.mark.full)])
def trained(request):
    return request.param, request.getfixturevalue(request.param)


def test_models_are_competent(trained):
    profile, (w, mt, mb, ht, hb) = trained
    clut = w.spec.make_cluttered(0)
    acc = {
        "M^s source": evaluate(w.source_model, w.source_data),
        "M^t val": evaluate(mt, w.target_val),
        "M^t clutter": evaluate(mt, clut),
        "M^b val": evaluate(mb, w.target_val),
        "M^b clutter": evaluate(mb, clut),
    }
    secs = {
        "M^s": w.spec.provenance["source_history"]["wall_s"].iloc[-1],
        "M^t": ht["wall_s"].iloc[-1],
        "M^b": hb["wall_s"].iloc[-1],
    }
    print(
        f"\nshapes {profile} accuracies:",
        {k: round(v, 4) for k, v in acc.items()},
        "\ntraining seconds (cold run):",
        {k: round(float(v), 1) for k, v in secs.items()},
    )
    assert acc["M^s source"] >= 0.97
    assert acc["M^b val"] >= 0.95 and acc["M^b clutter"] >= 0.93
    assert acc["M^t val"] >= 0.9


def _hypergeom_sf(hits: int, n: int, planted: int, drawn: int) -> float:
    """P(at least ``hits`` planted classes among ``drawn`` classes picked at random from ``n``)."""
    from math import comb

    return sum(comb(planted, h) * comb(n - planted, drawn - h) for h in range(hits, min(planted, drawn) + 1)) / comb(
        n, drawn
    )


def test_hypergeom_sf_endpoints():
    assert _hypergeom_sf(0, 24, 14, 12) == pytest.approx(1.0)
    assert _hypergeom_sf(12, 24, 14, 12) == pytest.approx(91 / 2704156)  # C(14,12) / C(24,12)
    assert _hypergeom_sf(13, 24, 14, 12) == 0.0


def test_eq1_2_recover_planted_source_only(trained):
    """Eqs. 1-2 find the planted source-only classes: nearly every class found is planted (precision
    >= 0.9), every planted class that is not a texture sibling of a co-occurring object is found
    (recall >= 0.9 over them), and the overlap is beyond a random set of the same size (hypergeometric
    p < 0.01: with 14 of 24 classes planted source-only, a random 11-class set already holds 6.4 of them
    on average). A texture sibling (a striped square when the target images show a checked one) is
    what M^s perceives in target images where it was never drawn, so Eq. 1 may count it as shared:
    the siblings found are printed, not required."""
    profile, (w, *_) = trained
    d_t = Subset(w.target_train, list(w.spec.recipes["M^t"].train_subset))
    k = default_k(len(w.source_classes))
    v = source_class_counts(w.source_model, d_t, k=k)
    found = source_only(v, w.spec.v_lo)
    precision, recall = precision_recall(found, w.planted_source_only)
    planted = w.spec.planted
    co_shapes = {planted.class_attributes[c][0] for c in planted.co_occurring}
    siblings = {c for c in w.planted_source_only if planted.class_attributes[c][0] in co_shapes}
    _, recall_clear = precision_recall(found, w.planted_source_only - siblings)
    found_set = {int(c) for c in found}
    print(
        f"\nshapes {profile} Eq. 1-2 ({len(w.source_classes)} classes, M^s source accuracy "
        f"{evaluate(w.source_model, w.source_data):.3f}): k={k}, v_lo={w.spec.v_lo}, "
        f"precision {precision:.2f}, recall {recall:.2f} ({len(found)} found, {len(w.planted_source_only)} planted), "
        f"recall without texture siblings {recall_clear:.2f}, "
        f"siblings found {len(found_set & siblings)} of {len(siblings)}"
    )
    hits = len(found_set & {int(c) for c in w.planted_source_only})
    p_chance = _hypergeom_sf(hits, len(w.source_classes), len(w.planted_source_only), len(found))
    assert precision >= 0.9 and recall_clear >= 0.9 and p_chance < 0.01, (precision, recall_clear, p_chance)


def test_planted_source_only_classes_linger(trained):
    """Eq. 3 at this world's p_lo (10/n): more planted source-only classes linger in M^st than in the
    control that keeps M^s's head on M^b's backbone (chance 1/n is above the paper's 0.01)."""
    profile, (w, mt, mb, *_) = trained
    y = w.source_data.tensors[1]
    so = sorted(w.planted_source_only)
    p_lo = default_p_lo(len(w.source_classes))

    def mean_p(model):
        p = predict(model, w.source_data)[0].softmax(1)
        return torch.stack([p[y == c, c].mean() for c in so])

    p_st = mean_p(source_target_model(mt, w.source_model))
    n_linger = int((p_st > p_lo).sum())
    p_control = mean_p(source_target_model(mb, w.source_model))  # scratch backbone + source head
    n_control = int((p_control > p_lo).sum())
    print(
        f"\nshapes {profile} lingering (p_lo={p_lo:.3f}): {n_linger}/{len(so)} planted source-only classes, "
        f"mean p_c {float(p_st.mean()):.3f}; control (M^b backbone) {n_control}/{len(so)}, "
        f"mean p_c {float(p_control.mean()):.3f}"
    )
    assert n_linger >= 1 and n_linger > n_control
    assert float(p_st.mean()) > float(p_control.mean())


def test_comparison_baselines_are_profile_data():
    from lingerlab.worlds.shapes import _check_profile

    assert get_profile("shapes", "smoke").comparison_baselines == ("M^b (same data)",)
    assert "M^b (matched acc)" in get_profile("shapes", "full").comparison_baselines
    for bad in ((), ("M^b (nope)",)):
        with pytest.raises(ValueError, match="comparison_baselines"):
            _check_profile(get_profile("shapes", "smoke", comparison_baselines=bad))
