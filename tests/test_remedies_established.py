"""remedies.established and its registry entries: L2-SP, BSS, LP-FT, WiSE-FT, DFR, Co-Tuning, bounded pruning."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from lingerlab import training
from lingerlab.models import find_head, split_model
from lingerlab.recipe import Recipe
from lingerlab.remedies import Remedy, build
from lingerlab.remedies.pruning import cap_channels
from lingerlab.remedies.established import (
    BSS,
    L2SP,
    CoTuning,
    bss_penalty,
    category_relationship,
    fit_linear_head,
    interpolate_weights,
)
from test_remedies import _images, _model, _tiny_audit


def _labels(n: int, k: int = 2) -> torch.Tensor:
    return torch.arange(n) % k


# ------------------------------------------------------------------------------------- L2-SP


def test_l2_sp_equals_its_definition():
    src = _model()
    ft = training.finetune(
        src,
        torch.utils.data.TensorDataset(_images(16), _labels(16)),
        None,
        Recipe("t", epochs=1, lr=0.1),
        num_classes=2,
        cache=False,
        progress=False,
        device="cpu",
    )[0]
    pen = L2SP(src, alpha=0.3, beta=0.7, head="model.fc")
    with torch.no_grad():
        sp = sum(
            (p - dict(src.named_parameters())[k]).pow(2).sum()
            for k, p in ft.named_parameters()
            if not k.startswith("model.fc")
        )
        l2 = sum(p.pow(2).sum() for k, p in ft.named_parameters() if k.startswith("model.fc"))
    assert float(pen(ft).detach()) == pytest.approx(float(0.15 * sp + 0.35 * l2), rel=1e-5)
    assert float(L2SP(src, 0.3, 0.0, head="model.fc")(copy.deepcopy(src)).detach()) == 0.0  # at the source: no SP term


def test_l2_sp_with_a_very_large_weight_keeps_the_backbone_at_the_source():
    src = _model()
    data = torch.utils.data.TensorDataset(_images(32), _labels(32))
    r = Recipe("t", epochs=20, lr=0.1, optimizer="sgd", momentum=0.0, batch_size=8, bn="freeze")
    kw = dict(num_classes=2, cache=False, progress=False, device="cpu")

    def drift(m):
        s = dict(src.named_parameters())
        return max(
            float((p - s[k]).detach().abs().max()) for k, p in m.named_parameters() if not k.startswith("model.fc")
        )

    plain = drift(training.finetune(src, data, None, r, **kw)[0])
    # SGD with lr * alpha = 1 pulls each backbone weight back to w0 at every step (w <- w0 - lr * grad)
    held = drift(
        training.finetune(
            src, data, None, r.replace(extra_loss=L2SP(src, alpha=10.0, beta=0.0, head="model.fc")), **kw
        )[0]
    )
    assert plain > 0 and held < 0.1 * plain


# ------------------------------------------------------------------------------------- BSS


def test_bss_penalty_equals_numpy_svd():
    f = torch.randn(12, 7, generator=torch.Generator().manual_seed(0))
    sv = np.linalg.svd(f.double().numpy(), compute_uv=False)
    for k in (1, 3, 7, 20):
        assert float(bss_penalty(f, k)) == pytest.approx(float((np.sort(sv)[: min(k, 7)] ** 2).sum()), rel=1e-4)
    with pytest.raises(ValueError, match="k"):
        bss_penalty(f, 0)


def test_bss_reads_the_head_input_of_the_training_forward():
    m, x = _model(), _images(10)
    feats = split_model(m, "model.fc")[0](x)
    with BSS(eta=0.5, k=2, head="model.fc") as pen:
        m(x)
        assert float(pen(m, x)) == pytest.approx(0.5 * float(bss_penalty(feats, 2)), rel=1e-5)
    assert pen.cache_key == ("bss", 0.5, 2, "model.fc")


# ------------------------------------------------------------------------------------- LP-FT, DFR: linear heads


@pytest.mark.parametrize("k", [2, 3])
def test_fit_linear_head_gives_the_logistic_regression_probabilities(k):
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(k)
    z, y = torch.randn(60, 5, generator=g), _labels(60, k)
    z[:, 0] += y.float()
    lin = fit_linear_head(z, y, k, C=0.5)
    ref = LogisticRegression(C=0.5, max_iter=2000, random_state=0).fit(z.double().numpy(), y.numpy())
    got = lin(z).softmax(1).detach().double().numpy()
    assert np.allclose(got, ref.predict_proba(z.double().numpy()), atol=1e-5)
    with pytest.raises(ValueError, match="every class"):
        fit_linear_head(z[y == 0], y[y == 0], k)


def test_lp_ft_starts_from_the_probe_head():
    from lingerlab._data import gather
    from lingerlab.remedies.pruning import penultimate_features

    audit = _tiny_audit()
    w = audit.world
    x, y = gather(audit.target_data())
    probe_head = fit_linear_head(penultimate_features(w.source_model, x, head="model.fc"), y, 2)
    recipe = audit.recipe
    audit.recipe = lambda name: recipe(name).replace(epochs=0) if name == "M^t" else recipe(name)
    start = build(audit, Remedy("lp", "lp_ft"), 0)  # zero epochs of fine-tuning: the probe itself
    lin = find_head(start.model, "model.fc")[1]
    assert torch.allclose(lin.weight, probe_head.weight) and torch.allclose(lin.bias, probe_head.bias)
    s_src = w.source_model.state_dict()
    assert all(torch.equal(v, s_src[k]) for k, v in start.model.state_dict().items() if not k.startswith("model.fc"))
    audit.recipe = recipe
    arm = build(audit, Remedy("lp", "lp_ft"), 0)
    assert not torch.allclose(find_head(arm.model, "model.fc")[1].weight, probe_head.weight)  # then it trains
    assert arm.train_s > 0 and "probe" in arm.note


def test_dfr_refits_only_the_head_on_held_out_images():
    audit = _tiny_audit()
    mt = audit.target_model(0)
    arm = build(audit, Remedy("dfr", "dfr", {"n_per_kind": 8}), 0)
    same = [k for k, _ in mt.named_parameters() if not k.startswith("model.fc")]
    after = dict(arm.model.named_parameters())
    assert all(torch.equal(p, after[k]) for k, p in mt.named_parameters() if k in same)
    assert not torch.equal(find_head(arm.model, "model.fc")[1].weight, find_head(mt, "model.fc")[1].weight)
    assert "8 held-out clean images + 8 composites" in arm.note


# ------------------------------------------------------------------------------------- WiSE-FT


def test_wise_ft_endpoints_are_exact_and_the_middle_is_the_mean():
    audit = _tiny_audit()
    src, mt = audit.world.source_model, audit.target_model(0)
    one, zero, half = (interpolate_weights(src, mt, a, head="model.fc") for a in (1.0, 0.0, 0.5))
    s_src, s_mt = src.state_dict(), mt.state_dict()
    for k, v in s_mt.items():
        assert torch.equal(one.state_dict()[k], v)
        if not k.startswith("model.fc") and torch.is_floating_point(v):
            assert torch.equal(zero.state_dict()[k], s_src[k])
            assert torch.allclose(half.state_dict()[k], 0.5 * (s_src[k] + v))
        else:
            assert torch.equal(zero.state_dict()[k], v)  # the head (and integer buffers) stay M^t's
    with pytest.raises(ValueError, match="alpha"):
        interpolate_weights(src, mt, 1.5)
    arm = build(audit, Remedy("w", "wise_ft", {"alpha": 0.5}), 0)
    assert all(torch.equal(a, b) for a, b in zip(arm.model.state_dict().values(), half.state_dict().values()))


# ------------------------------------------------------------------------------------- Co-Tuning


def test_category_relationship_is_the_mean_source_prediction_per_class():
    p = torch.softmax(torch.randn(10, 4, generator=torch.Generator().manual_seed(0)), 1)
    y = _labels(10)
    rel = category_relationship(p, y, 2)
    assert torch.allclose(rel[1], p[y == 1].mean(0)) and torch.allclose(rel.sum(1), torch.ones(2))
    with pytest.raises(ValueError, match="no image"):
        category_relationship(p, torch.zeros(10, dtype=torch.long), 2)


def test_co_tuning_loss_is_the_soft_cross_entropy_of_the_source_head():
    src = _model(num_classes=5)
    m, x, y = _model(1, num_classes=2), _images(6), _labels(6)
    _, s_head = split_model(src, "model.fc")
    rel = torch.softmax(torch.randn(2, 5, generator=torch.Generator().manual_seed(3)), 1)
    feats = split_model(m, "model.fc")[0](x)
    ref = -(rel[y] * s_head(feats).log_softmax(1)).sum(1).mean()
    with CoTuning(s_head, rel, weight=2.0, head="model.fc") as pen:
        m(x)
        assert float(pen(m, x, y)) == pytest.approx(2 * float(ref), rel=1e-5)
    assert not any(p.requires_grad for p in pen.source_head.parameters())
    with pytest.raises(ValueError, match="source classes"):
        CoTuning(s_head, rel[:, :3])


# ------------------------------------------------------------------------------------- bounded pruning


def test_cap_channels_keeps_the_channels_in_the_most_source_sets():
    sets = {0: torch.tensor([1, 2, 3]), 1: torch.tensor([2, 3]), 2: torch.tensor([3])}
    assert cap_channels(torch.tensor([1, 2, 3, 5]), sets, 2).tolist() == [2, 3]
    assert cap_channels(torch.tensor([1, 2, 3]), sets, 0).tolist() == []


@pytest.mark.parametrize("cap", [0.0, 0.34, 1.0])
def test_bounded_pruning_never_prunes_more_than_its_fraction(cap):
    audit = _tiny_audit()
    free = build(audit, Remedy("p", "prune", {"a_t_quantile": 0.1}), 0)
    arm = build(audit, Remedy("p", "prune", {"a_t_quantile": 0.1, "max_fraction": cap}), 0)
    assert arm.n_channels == find_head(audit.target_model(0), "model.fc")[1].in_features
    assert arm.pruned_fraction <= cap + 1e-12
    assert arm.n_pruned == min(free.n_pruned, int(cap * arm.n_channels))
    with pytest.raises(ValueError, match="max_fraction"):
        Remedy("p", "prune", {"max_fraction": 1.5})


def test_capped_variants_share_one_computation_of_the_channel_sets(monkeypatch):
    """With one memo (as the remedy table passes), the channel sets of a model are computed once for
    its uncapped and capped variants; each arm prunes what it prunes alone and is charged their time."""
    import lingerlab.remedies.pruning as B

    audit = _tiny_audit()
    kinds = [
        ("prune", {"a_t_quantile": 0.1}),
        ("prune", {"a_t_quantile": 0.1, "max_fraction": 0.34}),
        ("prune_finetune", {"a_t_quantile": 0.1}),
        ("prune_finetune", {"a_t_quantile": 0.1, "max_fraction": 0.34}),
    ]
    alone = [build(audit, Remedy("p", k, p), 0) for k, p in kinds]
    calls = []
    real = B.channel_sets
    monkeypatch.setattr(B, "channel_sets", lambda *a, **k: calls.append(1) or real(*a, **k))
    memo: dict = {}
    shared = [build(audit, Remedy("p", k, p), 0, memo) for k, p in kinds]
    assert len(calls) == 4  # source and target sets of M^t once, of M^s once
    for a, b in zip(alone, shared):
        assert (a.n_pruned, a.note) == (b.n_pruned, b.note) and b.train_s > 0
        assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
