"""The ``lite0``/``lite1``/``lite2`` worlds: real EfficientNet-Lite ImageNet weights and photos, installed offline.

The slow tests measure how many source-only classes linger in M^st with BatchNorm statistics frozen
vs updated during fine-tuning (run with ``-s`` to see the numbers).
"""

from __future__ import annotations

import pytest
import torch

from lingerlab.arms import recipe_table
from lingerlab.recipe import Recipe
from lingerlab.features import default_k, source_class_counts, source_only
from lingerlab.models import batchnorm_layers, source_target_model
from lingerlab.inference import evaluate, predict
from lingerlab.training import finetune, train_scratch
from lingerlab.worlds import load_world
from lingerlab.worlds.lite_models import (
    LITE0_MEAN,
    LITE0_STD,
    VARIANTS,
    fold_same_padding,
    imagenet_classes,
    lite_source_model,
    weights_path,
)
from lingerlab._data import square_resize
from lingerlab.worlds.lite_photos import (
    SAMPLE_PHOTOS,
    _to_tensor,
    foolbox_photos,
    photo_table,
    target_photos,
)


@pytest.fixture(scope="module")
def world():
    return load_world("lite0", "smoke", device="cpu", progress=False)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("size", ["smoke", "native"])
def test_source_model_sees_real_photos(variant, size):
    """Top-1 on scikit-image's chelsea and coffee, at the smoke profile's size and the native one
    (recorded: every variant says Egyptian cat and espresso at both)."""
    import skimage.data as skd
    from lingerlab.profiles import get_profile

    names = imagenet_classes()
    px = get_profile(variant, "smoke").image_size if size == "smoke" else VARIANTS[variant].native_size
    model = lite_source_model(variant, px)
    x = torch.stack([square_resize(_to_tensor(getattr(skd, n)()), px) for n in ("chelsea", "coffee")])
    with torch.no_grad():
        top1 = model(x).argmax(1).tolist()
    assert [names[i] for i in top1] == ["Egyptian cat", "espresso"]


@pytest.mark.parametrize("variant", ["lite0", "lite2"])
def test_folded_padding_gives_the_packages_outputs(variant):
    """make_lite folds the symmetric 'same' paddings into the convolutions: the package's own model
    (pads kept) with the same weights gives the same logits, in train mode and in eval mode."""
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding

    torch.manual_seed(0)
    ours = lite_source_model(variant, 112)
    theirs = EfficientNet.from_name(VARIANTS[variant].model_name, image_size=112)
    theirs.load_state_dict(ours.model.state_dict())
    pads = [
        m
        for m in theirs.modules()
        if isinstance(m, Conv2dStaticSamePadding) and isinstance(m.static_padding, torch.nn.ZeroPad2d)
    ]
    kept = [
        m
        for m in ours.modules()
        if isinstance(m, Conv2dStaticSamePadding) and isinstance(m.static_padding, torch.nn.ZeroPad2d)
    ]
    assert 0 < len(kept) < len(pads) and fold_same_padding(ours.model) == 0  # folded once, idempotent
    x = torch.rand(4, 3, 112, 112)
    xn = (x - torch.tensor(LITE0_MEAN).view(1, 3, 1, 1)) / torch.tensor(LITE0_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(ours.eval()(x), theirs.eval()(xn), atol=1e-4)
        outs = []
        for net, inp in ((ours, x), (theirs, xn)):  # train mode: the same dropout and drop-connect draws
            torch.manual_seed(1)
            outs.append(net.train()(inp))
        assert torch.allclose(*outs, atol=1e-4)


def test_variants_are_data():
    assert [VARIANTS[v].native_size for v in ("lite0", "lite1", "lite2")] == [224, 240, 260]
    assert weights_path("lite0").is_file() and weights_path("lite2").is_file()
    with pytest.raises(ValueError, match="variant"):
        weights_path("lite7")
    from lingerlab.profiles import get_profile

    assert [get_profile(v, "full").image_size for v in ("lite0", "lite1", "lite2")] == [224, 240, 260]
    assert len({get_profile(v, "smoke") for v in ("lite0", "lite1", "lite2")}) == 1  # one task at smoke


@pytest.mark.parametrize("variant", ["lite1", "lite2"])
def test_lite1_lite2_worlds_share_lite0s_task(world, variant):
    other = load_world(variant, "smoke", device="cpu")
    assert other.name == variant and other.spec.arch == VARIANTS[variant].arch
    for a, b in ((other.target_train, world.target_train), (other.target_val, world.target_val)):
        assert all(torch.equal(x, y) for x, y in zip(a.tensors, b.tensors))
    assert other.spec.source_groups == world.spec.source_groups  # the same photos, the same views
    assert torch.equal(other.source_data.tensors[0], world.source_data.tensors[0])
    assert other.fingerprint != world.fingerprint
    assert other.make_scratch.cache_key[0] == variant
    with pytest.raises(ValueError, match="unknown option"):
        load_world(variant, "smoke", variant="lite0")


def test_photo_table_lists_every_candidate(world):
    table = photo_table(world.source_model, world.profile.image_size)
    assert len(table) == len(foolbox_photos()) + len(SAMPLE_PHOTOS)
    assert set(table.use) == {"source", "target", "excluded"}
    fool = table[table.package == "foolbox"]
    assert (fool.label_from == "file").all() and fool.label.tolist() == [lab for _, lab in foolbox_photos()]
    sk = table[table.package != "foolbox"]
    assert (sk.label_from == "M^s top-1").all() and (sk.label_name == sk.top1_name).all()
    assert ((table.p_label > 0) & (table.p_label <= table.p_top1 + 1e-6)).all()
    assert table.set_index("photo").loc["skimage.coffee", "label_name"] == "espresso"
    assert world.spec.provenance["photo_table"] == table.to_dict("records")
    faces = target_photos()
    assert set(faces) == set(table.photo[table.use == "target"]) >= {"skimage.astronaut", "matplotlib.grace_hopper"}
    assert all(img.shape[0] == 3 and 0 <= float(img.min()) <= float(img.max()) <= 1 for img in faces.values())


def test_world_fields(world):
    p = world.profile
    n_photos = len(foolbox_photos()) + sum(ph.use == "source" for ph in SAMPLE_PHOTOS)
    assert len(world.source_data) == n_photos * p.dc_per_class
    x, y = world.source_data[0]
    assert x.shape == (3, p.image_size, p.image_size) and 0 <= float(x.min()) and float(x.max()) <= 1
    labels = world.source_data.tensors[1]
    assert int(labels[0]) == foolbox_photos()[0][1]
    assert len(world.source_classes) == 1000 and world.source_classes[0] == "tench"
    assert world.target_classes == ["not face", "face"]
    assert len(world.target_train) + len(world.target_val) == 200
    assert torch.bincount(world.target_val.tensors[1]).tolist() == [30, 30]
    assert world.spec.recipes["M^t"].bn == "update" and world.spec.recipes["M^t"].head == "model._fc"
    momenta = {round(m.momentum, 6) for m in batchnorm_layers(world.make_scratch()).values()}
    assert momenta == {0.1}
    assert {round(m.momentum, 6) for m in batchnorm_layers(world.source_model).values()} == {0.01}
    photos = world.spec.provenance["source_photos"]
    sk = [name for name, _, _ in photos if name.startswith("skimage")]
    assert sk == ["skimage.chelsea", "skimage.coffee", "skimage.rocket", "skimage.stereo_motorcycle"]
    assert photos[-4][1] in range(281, 286)  # chelsea labelled as a cat
    groups = world.spec.source_groups
    assert isinstance(groups, tuple) and len(groups) == len(world.source_data)
    assert groups[: p.dc_per_class] == (photos[0][0],) * p.dc_per_class and groups[-1] == "skimage.stereo_motorcycle"


def test_world_spec_is_complete(world):
    p, spec = world.profile, world.spec
    modules = dict(world.source_model.named_modules())
    assert isinstance(modules[spec.head], torch.nn.Linear) and spec.cam_layer in modules
    assert (spec.arch, spec.head, spec.cam_layer) == ("EfficientNet-Lite0", "model._fc", "model._conv_head")
    assert spec.input_size == p.image_size and spec.v_lo == 0 and spec.planted is None
    assert (spec.mean, spec.std) == (LITE0_MEAN, LITE0_STD)
    assert spec.provenance["weights_path"] == str(weights_path("lite0"))
    assert all(isinstance(r, Recipe) for r in spec.recipes.values())
    assert isinstance(hash(spec.recipes["M^t"]), int) and len(set(spec.recipes.values())) == 2
    assert len(recipe_table(spec.recipes.values(), len(world.target_train))) == 2
    kt, kb = vars(spec.recipes["M^t"]), vars(spec.recipes["M^b"])
    keys = "lr epochs optimizer batch_size bn lr_schedule augment head momentum weight_decay freeze num_workers".split()
    assert {k: kt[k] for k in keys} == dict(
        lr=p.finetune.lr,
        epochs=p.finetune.epochs,
        optimizer=p.finetune.optimizer,
        batch_size=p.finetune.batch_size,
        bn=p.finetune.bn,
        lr_schedule="constant",
        augment=None,
        head="model._fc",
        momentum=0.9,
        weight_decay=0.0,
        freeze=(),
        num_workers=0,
    )
    assert {k: kb[k] for k in keys} == dict(
        lr=p.scratch.lr,
        epochs=p.scratch.epochs,
        optimizer="adam",
        batch_size=p.scratch.batch_size,
        bn="update",
        lr_schedule="constant",
        augment=None,
        head="model._fc",
        momentum=0.9,
        weight_decay=0.0,
        freeze=(),
        num_workers=0,
    )
    assert kt["train_subset"] is None and kb["train_subset"] is None
    # the scratch net gets precise BatchNorm statistics (a three-epoch run's running averages lag); M^t does not
    assert (kt["precise_bn"], kb["precise_bn"]) == (False, p.scratch.precise_bn) == (False, True)


def test_world_is_deterministic(world):
    again = load_world("lite0", "smoke", device="cpu", progress=False)
    assert again.fingerprint == world.fingerprint
    assert torch.equal(again.source_data.tensors[0], world.source_data.tensors[0])
    other = load_world("lite0", "smoke", seed=1, device="cpu", progress=False)
    assert other.fingerprint != world.fingerprint
    assert not torch.equal(other.source_data.tensors[0], world.source_data.tensors[0])


def test_bn_policy_is_a_world_parameter():
    w = load_world("lite0", "smoke", finetune={"bn": "freeze"}, device="cpu")
    assert w.spec.recipes["M^t"].bn == "freeze"
    with pytest.raises(ValueError, match="'finetune': bn must be one of 'update', 'freeze'"):
        load_world("lite0", "smoke", finetune={"bn": "maybe"})


def lingering_count(world, bn: str, p_lo: float = 0.01) -> dict:
    """Fine-tune with BN ``bn``; Eq. 1-3 over the classes that have D^c images."""
    mt, hist = finetune(
        world.source_model,
        world.target_train,
        world.target_val,
        world.spec.recipes["M^t"].replace(bn=bn),
        progress=False,
        device="cpu",
        num_classes=2,
    )
    v = source_class_counts(world.source_model, world.target_train, k=default_k(1000))
    f = set(source_only(v, world.spec.v_lo).tolist())
    y = world.source_data.tensors[1]
    cand = sorted(f & set(y.tolist()))
    out = {}
    for name, model in (("M^s", world.source_model), ("M^st", source_target_model(mt, world.source_model))):
        p = predict(model, world.source_data)[0].softmax(1)
        out[name] = torch.stack([p[y == c, c].mean() for c in cand])
    return {
        "bn": bn,
        "val_acc": evaluate(mt, world.target_val),
        "n_source_only_with_dc": len(cand),
        "lingering": int((out["M^st"] > p_lo).sum()),
        "mean_p_st": float(out["M^st"].mean()),
        "mean_p_s": float(out["M^s"].mean()),
        "seconds": float(hist["wall_s"].iloc[-1]),
    }


@pytest.mark.slow
def test_bn_policy_changes_what_lingers(world):
    """Measured, not assumed: the BatchNorm policy of fine-tuning moves how much of M^s survives in M^st."""
    upd = lingering_count(world, "update")
    frz = lingering_count(world, "freeze")
    print(f"\nlite0 smoke lingering (p_lo=0.01): BN updated {upd}\nBN frozen {frz}")
    assert upd["val_acc"] >= 0.9 and frz["val_acc"] >= 0.9
    assert upd["n_source_only_with_dc"] >= 15 and upd["mean_p_s"] > 0.3
    assert abs(frz["mean_p_st"] - upd["mean_p_st"]) > 0.05


@pytest.mark.slow
def test_scratch_baseline_learns(world):
    mb, hist = train_scratch(
        world.make_scratch,
        world.target_train,
        world.target_val,
        world.spec.recipes["M^b"],
        progress=False,
        device="cpu",
    )
    acc = evaluate(mb, world.target_val)
    print(f"\nlite0 smoke scratch: val acc {acc:.3f}, {hist['wall_s'].iloc[-1]:.0f}s")
    assert acc >= 0.85


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["lite1", "lite2"])
def test_lite1_lite2_fine_tune_and_keep_memories(variant):
    """The same recipe serves the larger models: M^t learns the task and source-only classes linger."""
    from lingerlab.audit import Audit

    audit = Audit(load_world(variant, "smoke", device="cpu", progress=False), device="cpu")
    acc = audit.accuracy("M^t", 0)
    table = audit.lingering(0)
    tested = table[table["n_images"] > 0]
    print(
        f"\n{variant} smoke: M^t val acc {acc:.3f}; {int(tested.lingering.sum())} of {len(tested)} testable "
        "source-only classes linger"
    )
    assert acc >= 0.8
    assert len(tested) >= 15 and tested["lingering"].mean() >= 0.5
