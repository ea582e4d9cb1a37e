"""The ``lite0`` world: real EfficientNet-Lite0 ImageNet weights and photos, installed offline.

The slow tests measure how many source-only classes linger in M^st with BatchNorm statistics frozen
vs updated during fine-tuning (run with ``-s`` to see the numbers).
"""
from __future__ import annotations

import pytest
import torch

from lingerlab.features import default_k, source_class_counts, source_only
from lingerlab.models import batchnorm_layers, source_target_model
from lingerlab.training import evaluate, finetune, predict, train_scratch
from lingerlab.worlds import load_world
from lingerlab.worlds.lite0 import _center_crop, _resize, _to_tensor, foolbox_photos, lite0_source_model


@pytest.fixture(scope="module")
def world():
    return load_world("lite0", "smoke", device="cpu", progress=False)


def test_source_model_sees_real_photos():
    import skimage.data as skd
    from lingerlab.worlds.lite0 import imagenet_classes
    names = imagenet_classes()
    model = lite0_source_model(224)
    x = torch.stack([_resize(_center_crop(_to_tensor(getattr(skd, n)())), 224) for n in ("chelsea", "coffee")])
    with torch.no_grad():
        top5 = model(x).topk(5, dim=1).indices.tolist()
    assert set(top5[0]) & set(range(281, 286)), [names[i] for i in top5[0]]          # a domestic cat
    assert {names[i] for i in top5[1]} & {"espresso", "cup"}, [names[i] for i in top5[1]]


def test_world_fields(world):
    p = world.profile
    n_photos = len(foolbox_photos()) + 3
    assert len(world.source_data) == n_photos * p.dc_per_class
    x, y = world.source_data[0]
    assert x.shape == (3, p.image_size, p.image_size) and 0 <= float(x.min()) and float(x.max()) <= 1
    labels = world.source_data.tensors[1]
    assert int(labels[0]) == foolbox_photos()[0][1]
    assert len(world.source_classes) == 1000 and world.source_classes[0] == "tench"
    assert world.target_classes == ["not face", "face"]
    assert len(world.target_train) + len(world.target_val) == 200
    assert torch.bincount(world.target_val.tensors[1]).tolist() == [30, 30]
    assert world.finetune_defaults["bn"] == "update" and world.finetune_defaults["head"] == "model._fc"
    momenta = {round(m.momentum, 6) for m in batchnorm_layers(world.make_scratch()).values()}
    assert momenta == {0.1}
    assert {round(m.momentum, 6) for m in batchnorm_layers(world.source_model).values()} == {0.01}
    sk = [name for name, _, _ in world.extra["source_photos"] if name.startswith("skimage")]
    assert sk == ["skimage.chelsea", "skimage.coffee", "skimage.rocket"]
    assert world.extra["source_photos"][-3][1] in range(281, 286)       # chelsea labelled as a cat


def test_world_is_deterministic(world):
    again = load_world("lite0", "smoke", device="cpu", progress=False)
    assert again.fingerprint == world.fingerprint
    assert torch.equal(again.source_data.tensors[0], world.source_data.tensors[0])
    other = load_world("lite0", "smoke", seed=1, device="cpu", progress=False)
    assert other.fingerprint != world.fingerprint
    assert not torch.equal(other.source_data.tensors[0], world.source_data.tensors[0])


def test_bn_policy_is_a_world_parameter():
    w = load_world("lite0", "smoke", finetune_bn="freeze", device="cpu")
    assert w.finetune_defaults["bn"] == "freeze"
    with pytest.raises(ValueError, match="finetune_bn"):
        load_world("lite0", "smoke", finetune_bn="maybe")


def lingering_count(world, bn: str, p_lo: float = 0.01) -> dict:
    """Fine-tune with BN ``bn``; Eq. 1-3 over the classes that have D^c images."""
    mt, hist = finetune(world.source_model, world.target_train, world.target_val, progress=False, device="cpu",
                        **{**world.finetune_defaults, "bn": bn})
    v = source_class_counts(world.source_model, world.target_train, k=default_k(1000))
    f = set(source_only(v, world.extra["v_lo"]).tolist())
    y = world.source_data.tensors[1]
    cand = sorted(f & set(y.tolist()))
    out = {}
    for name, model in (("M^s", world.source_model), ("M^st", source_target_model(mt, world.source_model))):
        p = predict(model, world.source_data)[0].softmax(1)
        out[name] = torch.stack([p[y == c, c].mean() for c in cand])
    return {"bn": bn, "val_acc": evaluate(mt, world.target_val), "n_source_only_with_dc": len(cand),
            "lingering": int((out["M^st"] > p_lo).sum()), "mean_p_st": float(out["M^st"].mean()),
            "mean_p_s": float(out["M^s"].mean()), "seconds": float(hist["wall_s"].iloc[-1])}


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
    mb, hist = train_scratch(world.make_scratch, world.target_train, world.target_val, progress=False,
                             device="cpu", **world.scratch_defaults)
    acc = evaluate(mb, world.target_val)
    print(f"\nlite0 smoke scratch: val acc {acc:.3f}, {hist['wall_s'].iloc[-1]:.0f}s")
    assert acc >= 0.85
