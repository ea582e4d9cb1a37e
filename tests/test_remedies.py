"""remedies: the registry of named remedies, and their primitives (Sec. 5.1 / App. B) on tiny random CNNs
(properties, not numbers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lingerlab import remedies, training
from lingerlab.remedies import (
    REGISTRY,
    ChannelMask,
    CompositeAugment,
    L1Penultimate,
    NotFeasible,
    Remedy,
    UnlearningLoss,
    build,
    channel_sets,
    channels_to_prune,
    composite_augment,
    default_remedies,
    describe,
    feature_set,
    images_by_class,
    kl_to_uniform,
    l1_penultimate,
    penultimate_features,
    prune_channels,
    register,
    retrain_source,
    unlearning_loss,
)
from lingerlab.models import Normalized, find_head, replace_head, source_target_model, split_model
from lingerlab.recipe import Recipe
from lingerlab.training import finetune


class TinyCNN(nn.Module):
    def __init__(self, num_classes: int = 5, width: int = 6) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def _model(seed: int = 0, num_classes: int = 5) -> nn.Module:
    torch.manual_seed(seed)
    return Normalized(TinyCNN(num_classes), (0.5,) * 3, (0.25,) * 3).eval()


def _images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------- L1


def test_l1_equals_hand_computed_value_and_reuses_the_forward():
    m = _model()
    m.train()
    x = _images(4)
    backbone, _ = split_model(m)
    backbone.train()
    with l1_penultimate(0.3) as l1:
        m(x)  # first call: hooks attached afterwards -> one recompute
        first = l1(m, x, None)
        calls = []
        h = m.register_forward_hook(lambda *a: calls.append(1))
        out = m(x)  # the loop's own forward
        second = l1(m, x, None)  # must reuse it: no extra forward
        h.remove()
        assert len(calls) == 1
        assert out.shape == (4, 5)
    expected = 0.3 * backbone(x).abs().mean()
    assert torch.allclose(first, expected, atol=1e-6)
    assert torch.allclose(second, expected, atol=1e-6)
    assert not l1.handles  # hooks removed on exit
    assert len(m.model.fc._forward_hooks) == 0 and len(m._forward_pre_hooks) == 0


def test_l1_first_step_leaves_batchnorm_statistics_alone():
    m = _model()
    m.train()
    bn = m.model.features[1]
    before = bn.running_mean.clone()
    with l1_penultimate(1.0) as l1:
        l1(m, _images(4), None)  # recompute path
    assert torch.equal(bn.running_mean, before)


def test_l1_gradient_flows_and_zero_weight_is_zero():
    m = _model()
    x = _images(3)
    with l1_penultimate(0.5) as l1:
        m(x)
        loss = l1(m, x, None)
        loss.backward()
    assert m.model.features[0].weight.grad is not None and m.model.features[0].weight.grad.abs().sum() > 0
    assert float(l1_penultimate(0.0)(m, x, None)) == 0.0


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_l1_rejects_negative_weight(bad):
    with pytest.raises(ValueError, match="weight"):
        l1_penultimate(bad)


def test_l1_as_finetune_extra_loss_changes_training_and_leaves_no_hooks(tmp_path, monkeypatch):
    monkeypatch.setenv("LINGERLAB_CACHE", str(tmp_path))
    x, y = _images(16, 3), torch.arange(16) % 2
    data = TensorDataset(x, y)
    src = _model()
    r = Recipe("t", lr=0.1, epochs=2, batch_size=8)
    kw = dict(num_classes=2, seed=0, progress=False)
    plain, _ = finetune(src, data, None, r, **kw)
    with l1_penultimate(5.0) as l1:
        reg, _ = finetune(src, data, None, r.replace(extra_loss=l1), **kw)
    assert all(len(mod._forward_hooks) == 0 and len(mod._forward_pre_hooks) == 0 for mod in reg.modules())
    f_plain = penultimate_features(plain, x).abs().mean()
    f_reg = penultimate_features(reg, x).abs().mean()
    assert f_reg < f_plain


# ------------------------------------------------------------------------------------- unlearning


def test_kl_to_uniform_is_zero_for_uniform_and_positive_otherwise():
    assert torch.allclose(kl_to_uniform(torch.zeros(3, 7)), torch.zeros(3), atol=1e-6)
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    p = logits.softmax(1)
    expected = (p * (p * 3).log()).sum(1)
    assert torch.allclose(kl_to_uniform(logits), expected, atol=1e-6)
    assert (kl_to_uniform(logits) > 0).all()


def test_unlearning_loss_zero_for_uniform_head_positive_otherwise():
    src = _model()
    tgt = replace_head(src, 2, generator=0)
    imgs = _images(6)
    uniform_head = nn.Linear(6, 5)
    nn.init.zeros_(uniform_head.weight)
    nn.init.zeros_(uniform_head.bias)
    with unlearning_loss(uniform_head, imgs, weight=1.0, batch=4) as u:
        assert abs(float(u(tgt, None, None).detach())) < 1e-6
    _, head = split_model(src)
    with unlearning_loss(head, imgs, weight=2.0, batch=6) as u:
        val = u(tgt, None, None)
    # reference: M^st on the same draw of images (first draw from the seeded generator)
    idx = torch.randint(0, 6, (6,), generator=torch.Generator().manual_seed(0))
    mst = source_target_model(tgt, src)
    ref = 2.0 * kl_to_uniform(mst(imgs[idx])).mean()
    assert float(val.detach()) > 0
    assert torch.allclose(val, ref, atol=1e-5)


def test_unlearning_loss_trains_backbone_not_source_head_and_keeps_bn_stats():
    src = _model()
    tgt = replace_head(src, 2, generator=0).train()
    _, head = split_model(src)
    u = unlearning_loss(head, [_images(3), _images(3, 9)], weight=1.0, batch=4)
    bn = tgt.model.features[1]
    before = bn.running_mean.clone()
    loss = u(tgt, None, None)
    loss.backward()
    u.remove()
    assert torch.equal(bn.running_mean, before) and bn.training
    assert tgt.model.features[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in u.source_head.parameters())


def test_unlearning_loss_validates():
    head = nn.Linear(6, 5)
    with pytest.raises(ValueError, match="weight"):
        unlearning_loss(head, _images(2), weight=-0.1)
    with pytest.raises(ValueError, match="batch"):
        unlearning_loss(head, _images(2), weight=1.0, batch=0)
    with pytest.raises(ValueError, match="lingering_images"):
        unlearning_loss(head, torch.empty(0, 3, 8, 8), weight=1.0)
    with pytest.raises(ValueError, match="source_head"):
        unlearning_loss(nn.Conv2d(3, 3, 1), _images(2), weight=1.0)


# ------------------------------------------------------------------------------------- pruning


def test_feature_set_matches_slow_loop():
    m = _model()
    by_class = {0: _images(5, 1), 3: _images(4, 2), 7: _images(6, 3)}
    acts_all = {c: penultimate_features(m, d) for c, d in by_class.items()}
    a_t = float(torch.cat(list(acts_all.values())).median())
    sets = channel_sets(m, by_class, a_t)
    _, head = split_model(m)
    backbone, _ = split_model(m)
    for c, imgs in by_class.items():
        slow: list[int] = []
        for f in range(head.in_features):
            with torch.no_grad():
                above = [float(backbone(imgs[i : i + 1])[0, f]) > a_t for i in range(len(imgs))]
            if all(above):
                slow.append(f)
        assert sets[c].tolist() == slow
    assert feature_set(m, by_class[0], a_t).tolist() == sets[0].tolist()


def test_feature_set_on_a_conv_layer_uses_spatial_means():
    m = _model()
    imgs = _images(5)
    conv_out = m.model.features[0]((imgs - 0.5) / 0.25)
    means = conv_out.mean(dim=(2, 3))
    a_t = float(means.median())
    expected = torch.nonzero((means > a_t).all(0)).flatten()
    assert feature_set(m, imgs, a_t, layer="model.features.0").tolist() == expected.tolist()


def test_channels_to_prune_is_source_union_minus_target_union():
    src = {1: torch.tensor([0, 2, 5]), 2: torch.tensor([5, 7])}
    tgt = {0: torch.tensor([2]), 1: torch.tensor([7, 9])}
    assert channels_to_prune(src, tgt).tolist() == [0, 5]
    assert channels_to_prune([], tgt).tolist() == []


def test_prune_zeroes_exactly_the_chosen_channels():
    m = _model()
    x = _images(4)
    pruned = prune_channels(m, [1, 4])
    backbone, head = split_model(m)
    feats = backbone(x)
    feats_ref = feats.clone()
    feats_ref[:, [1, 4]] = 0
    assert torch.allclose(pruned(x), head(feats_ref), atol=1e-6)
    pf = penultimate_features(pruned, x)
    assert (pf[:, [1, 4]] == 0).all()
    keep = [0, 2, 3, 5]
    assert torch.allclose(pf[:, keep], feats[:, keep], atol=1e-6)
    assert torch.allclose(m(x), head(feats), atol=1e-6)  # the original is untouched


def test_pruned_mask_survives_finetuning_head_and_mst():
    m = _model()
    pruned = prune_channels(m, [0, 3])
    name, _ = find_head(pruned)
    assert name == "model.fc.1"
    new = replace_head(pruned, 2, generator=0)
    assert isinstance(new.model.fc[0], ChannelMask)
    assert (penultimate_features(new, _images(3))[:, [0, 3]] == 0).all()
    mst = source_target_model(new, m)
    assert (penultimate_features(mst, _images(3))[:, [0, 3]] == 0).all()
    twice = prune_channels(pruned, [5])
    assert (penultimate_features(twice, _images(3))[:, [0, 3, 5]] == 0).all()


def test_prune_on_a_layer_and_validation():
    m = _model()
    x = _images(2)
    pruned = prune_channels(m, [2], layer="model.features.0")
    ref = m.model.features[0]((x - 0.5) / 0.25)
    got = pruned.model.features[0]((x - 0.5) / 0.25)
    assert (got[:, 2] == 0).all() and torch.allclose(got[:, [0, 1, 3]], ref[:, [0, 1, 3]])
    with pytest.raises(ValueError, match="channels"):
        prune_channels(m, [6])
    with pytest.raises(ValueError, match="layer"):
        prune_channels(m, [0], layer="nope")
    with pytest.raises(ValueError, match="a_t"):
        feature_set(m, x, float("nan"))
    with pytest.raises(ValueError, match="data_by_class"):
        channel_sets(m, {}, 0.0)


def test_images_by_class():
    x = _images(6)
    y = torch.tensor([0, 1, 0, 2, 1, 0])
    d = images_by_class(TensorDataset(x, y), [0, 2])
    assert set(d) == {0, 2} and torch.equal(d[0], x[[0, 2, 5]]) and torch.equal(d[2], x[[3]])


# ------------------------------------------------------------------------------------- composites


def test_composite_augment_pastes_target_on_backgrounds_deterministically():
    bg = torch.zeros(3, 3, 10, 10)
    aug = composite_augment(bg, p=1.0, scale=0.4)
    x = torch.ones(2, 3, 10, 10)
    out1 = aug(x, torch.Generator().manual_seed(0))
    out2 = aug(x, torch.Generator().manual_seed(0))
    assert torch.equal(out1, out2)
    assert ((out1 > 0).flatten(1).sum(1) == 3 * 16).all()  # a 4x4 patch of ones on a zero background
    assert torch.equal(composite_augment(bg, p=0.0)(x, torch.Generator().manual_seed(0)), x)
    with pytest.raises(ValueError, match="p must"):
        composite_augment(bg, p=1.5)


def test_pruning_a_layer_twice_composes():
    m = _model()
    x = _images(2)
    twice = prune_channels(prune_channels(m, [2], layer="model.features.0"), [4], layer="model.features.0")
    got = twice.model.features[0]((x - 0.5) / 0.25)
    assert (got[:, [2, 4]] == 0).all() and (got[:, [0, 1, 3, 5]] != 0).any()


# ------------------------------------------------------------------------------------- the registry

KINDS = (
    "plain",
    "finetune",
    "l1",
    "prune",
    "prune_finetune",
    "retrain_source",
    "unlearning",
    "composites",
    "l2_sp",
    "bss",
    "lp_ft",
    "wise_ft",
    "dfr",
    "co_tuning",
)


def test_registry_lists_every_kind_with_a_description():
    assert tuple(REGISTRY) == KINDS == remedies.kinds()
    table = describe()
    assert list(table.columns) == ["kind", "parameters", "description", "reference"]
    assert list(table["kind"]) == list(KINDS)
    assert (table["description"].str.len() > 10).all() and (table["reference"].str.len() > 0).all()
    assert not table["description"].str.contains("\n").any()
    assert table.set_index("kind").loc["l1", "parameters"] == "weight=0.05"
    assert "lr" in table.set_index("kind").loc["finetune", "parameters"]
    assert REGISTRY["unlearning"].defaults == {"weight": 1.0, "batch": 32}


def test_remedy_validates_kind_and_parameters_up_front():
    with pytest.raises(ValueError, match="kind must be one of 'plain', 'finetune', 'l1'.*'composites'"):
        Remedy("x", "nope")
    with pytest.raises(TypeError, match="kind"):
        Remedy("x", 3)
    with pytest.raises(ValueError, match="name"):
        Remedy("", "plain")
    with pytest.raises(ValueError, match="unknown parameter.*valid: weight"):
        Remedy("x", "l1", {"wieght": 0.1})
    with pytest.raises(ValueError, match="weight"):
        Remedy("x", "l1", {"weight": -1.0})
    with pytest.raises(TypeError, match="weight"):
        Remedy("x", "l1", {"weight": "big"})
    with pytest.raises(TypeError, match="batch"):
        Remedy("x", "unlearning", {"batch": 2.0})
    assert Remedy("x", "unlearning", {"batch": np.int64(8)}).params == {"batch": np.int64(8)}
    with pytest.raises(ValueError, match="classes"):
        Remedy("x", "prune", {"classes": "all"})
    with pytest.raises(ValueError, match="a_t_quantile"):
        Remedy("x", "prune_finetune", {"a_t_quantile": 1.5})
    with pytest.raises(ValueError, match="p must"):
        Remedy("x", "composites", {"p": 2.0})
    with pytest.raises(ValueError, match="unknown recipe field"):
        Remedy("x", "finetune", {"learning_rate": 0.1})
    with pytest.raises(ValueError, match="bn"):
        Remedy("x", "finetune", {"bn": "frozen"})
    with pytest.raises(ValueError, match="init"):
        Remedy("x", "finetune", {"init": "scratch"})
    with pytest.raises(ValueError, match="parameter"):
        Remedy("x", "plain", {"weight": 1.0})
    assert Remedy("a", "prune", {"a_t_quantile": 0.25}).describe() == "a_t_quantile=0.25"


def test_register_adds_a_kind_and_refuses_duplicates(monkeypatch):
    monkeypatch.setattr(remedies.registry, "REGISTRY", dict(REGISTRY))

    @register("noop", description="returns M^s itself", reference="test", strength=1)
    def noop(audit, params, seed, memo):
        return remedies.Arm(None, float(params["strength"]))

    assert remedies.registry.REGISTRY["noop"].build is noop
    r = Remedy("n", "noop")
    assert build(None, r, 0).train_s == 1.0
    assert build(None, Remedy("n", "noop", {"strength": 3}), 0).train_s == 3.0
    with pytest.raises(ValueError, match="registered already"):
        register("noop", description="again")(noop)
    assert "noop" not in REGISTRY  # the module's registry is back after the test


# ------------------------------------------------------------------------------------- builders on a tiny world


def _tiny_audit(retrainable: bool = True):
    from test_sweeps import tiny_world
    from lingerlab.audit import Audit

    return Audit(tiny_world(retrainable=retrainable), v_lo=0, n_null=2, device="cpu", cache=False)


def _direct_recipe(**overrides):
    """The tiny world's M^t recipe with ``overrides``, built by hand for a direct ``training.finetune``
    call: a remedy built through the registry must train under the same cache key."""
    from test_sweeps import MT

    return Recipe("direct", **{**MT, **overrides}, train_subset=list(range(24)))


def _recorded(audit, monkeypatch):
    calls = []
    train = audit.zoo.train

    def spy(recipe, seed, source=None):
        out = train(recipe, seed, source=source)
        calls.append((recipe, seed, source, out))
        return out

    monkeypatch.setattr(audit.zoo, "train", spy)
    return calls


def test_default_remedies_are_the_books_and_registered():
    audit = _tiny_audit()
    rs = default_remedies(audit)
    assert [r.name for r in rs] == [
        "plain fine-tuning",
        "L1 penultimate",
        "prune (post-hoc)",
        "prune (post-hoc, <= 5%)",
        "prune (post-hoc, <= 10%)",
        "prune (post-hoc, <= 25%)",
        "prune + fine-tune",
        "prune + fine-tune (<= 10%)",
        "retrain source without F",
        "unlearning",
        "bn=freeze",
        "lr x0.2",
        "lr x5",
        "fine-tune on composites",
        "L2-SP",
        "BSS",
        "LP-FT",
        "WiSE-FT alpha=0.25",
        "WiSE-FT alpha=0.5",
        "WiSE-FT alpha=0.75",
        "DFR (last layer)",
        "Co-Tuning",
    ]
    assert all(r.kind in REGISTRY for r in rs)
    params = {r.name: dict(r.params) for r in rs}
    assert params["lr x0.2"] == {"lr": 0.05 * 0.2} and params["lr x5"] == {"lr": 0.05 * 5}
    assert params["fine-tune on composites"] == {"p": 0.5, "scale": audit.scale}
    assert params["L1 penultimate"] == {"weight": 0.05}


@pytest.mark.parametrize("changes", [{"lr": 0.05 * 5}, {"bn": "freeze"}])
def test_a_recipe_remedy_trains_exactly_mt_replaced(changes, monkeypatch):
    audit = _tiny_audit()
    calls = _recorded(audit, monkeypatch)
    arm = build(audit, Remedy("r", "finetune", changes), 0)
    [(recipe, seed, source, (model, hist))] = calls
    assert recipe == audit.recipe("M^t").replace(**changes) and seed == 0 and source is None
    assert arm.model is model and audit.target_model(0, **changes) is model  # one model, one recipe
    # the same training arguments as a direct call: the same training.finetune cache key
    w = audit.world
    _, old = training.finetune(
        w.source_model,
        w.target_train,
        w.target_val,
        _direct_recipe(**changes),
        num_classes=2,
        seed=0,
        device="cpu",
        cache=False,
        progress=False,
    )
    assert hist.attrs["cache_key"] == old.attrs["cache_key"]


def test_extra_loss_and_augment_remedies_change_only_their_field(monkeypatch):
    audit = _tiny_audit()
    mt = audit.recipe("M^t")
    calls = _recorded(audit, monkeypatch)
    build(audit, Remedy("l1", "l1"), 0)
    build(audit, Remedy("u", "unlearning", {"batch": 4}), 0)
    build(audit, Remedy("c", "composites", {"p": 0.5, "scale": audit.scale}), 0)
    build(audit, Remedy("pf", "prune_finetune"), 0)
    recipes = [c[0] for c in calls if c[0] != mt]  # (unlearning also trains plain M^t to find L)
    l1, un, comp, pf = recipes
    assert isinstance(l1.extra_loss, L1Penultimate) and l1 == mt.replace(extra_loss=l1.extra_loss)
    assert l1.extra_loss.cache_key == ("l1_penultimate", 0.05, "model.fc")
    assert isinstance(un.extra_loss, UnlearningLoss) and un == mt.replace(extra_loss=un.extra_loss)
    assert un.extra_loss.batch == 4 and un.extra_loss.weight == 1.0
    assert isinstance(comp.augment, CompositeAugment) and comp == mt.replace(augment=comp.augment)
    assert comp.augment.scale == audit.scale
    assert pf == mt.replace(head="model.fc.1")
    pruned_source = [c[2] for c in calls if c[0] is pf][0]
    assert isinstance(pruned_source.model.fc[0], ChannelMask)


def test_retrain_source_repeats_the_source_recipe_without_F():
    from test_sweeps import SOURCE

    audit = _tiny_audit()
    w = audit.world
    F = audit.source_only().tolist()
    assert F == [1, 2, 3, 4, 5]
    model, hist = retrain_source(w, [0], cache=False, device="cpu")
    keep = [i for i, c in enumerate(w.spec.source_train.tensors[1].tolist()) if c != 0]
    val = w.source_data.tensors
    sel = [i for i, c in enumerate(val[1].tolist()) if c != 0]
    _, old = training.train_scratch(
        w.make_scratch,
        w.spec.source_train,
        TensorDataset(val[0][sel], val[1][sel]),
        Recipe("direct", init="scratch", train_subset=keep, **SOURCE),
        num_classes=6,
        seed=w.seed,
        device="cpu",
        cache=False,
        progress=False,
    )
    assert hist.attrs["cache_key"] == old.attrs["cache_key"]
    assert model.model.fc.out_features == 6
    with pytest.raises(NotFeasible, match="source training set"):
        retrain_source(_tiny_audit(retrainable=False).world, F)
    with pytest.raises(ValueError, match="every source class"):
        retrain_source(w, range(6))
    with pytest.raises(TypeError, match="exclude"):
        retrain_source(w, ["a"])
