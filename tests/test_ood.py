"""lingerlab.ood: pytorch-ood's detectors over a model, fitted once, called on batches."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lingerlab.detection import auroc
from lingerlab.ood import DETECTORS, OODBaselines, features_and_logits, knn_k


def _net(bias: bool = True, relu: bool = True) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Flatten(), nn.Linear(12, 16)] + ([nn.ReLU()] if relu else []) + [nn.Linear(16, 2, bias=bias)]
    return nn.Sequential(*layers).eval()


def _data(n: int = 200, scale: float = 1.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 2, 2, generator=g) * scale
    return x, (x.flatten(1)[:, 0] > 0).long()


def test_features_and_logits_is_one_forward_pass_of_the_model():
    net = _net()
    x, _ = _data(30)
    feats, logits = features_and_logits(net, x, head="3")
    assert feats.shape == (30, 16) and torch.allclose(logits, net(x), atol=1e-6)


def test_feature_detectors_find_inputs_far_from_the_training_features():
    net = _net()
    x, y = _data()
    base = OODBaselines(net, TensorDataset(x, y), head="3")
    assert base.n_train == 200 and not base.skipped and list(base.scorers) == list(DETECTORS)
    shifted = _data(60, seed=2)[0]
    shifted[:, 2] += 8.0  # another region of feature space
    near, far = base(_data(60, seed=1)[0]), base(shifted)
    for name in ("Mahalanobis", "ViM"):
        assert auroc(near[name], far[name]) > 0.95, name
    assert all(v.shape == (60,) and v.dtype == torch.float32 for v in near.values())


def test_mahalanobis_agrees_with_a_direct_computation():
    net = _net()
    x, y = _data()
    base = OODBaselines(net, TensorDataset(x, y), head="3", detectors=["Mahalanobis"])
    z, _ = features_and_logits(net, x, head="3")
    mus = torch.stack([z[y == c].mean(0) for c in (0, 1)]).double()
    cov = sum((z[y == c].double() - mus[c]).T @ (z[y == c].double() - mus[c]) for c in (0, 1))
    prec = torch.linalg.inv(cov + 1e-6 * torch.eye(16, dtype=torch.float64))
    q, _ = _data(20, seed=3)
    zq, _ = features_and_logits(net, q, head="3")
    ref = torch.stack([0.5 * (((zq.double() - m) @ prec) * (zq.double() - m)).sum(1) for m in mus], 1).amin(1)
    assert torch.allclose(base(q)["Mahalanobis"].double(), ref, rtol=1e-3, atol=1e-3)


def test_knn_agrees_with_a_direct_computation():
    net = _net()
    x, y = _data()
    base = OODBaselines(net, TensorDataset(x, y), head="3", detectors=["KNN"])
    z = nn.functional.normalize(features_and_logits(net, x, head="3")[0].double(), dim=1)
    q, _ = _data(20, seed=3)
    zq = nn.functional.normalize(features_and_logits(net, q, head="3")[0].double(), dim=1)
    ref = torch.cdist(zq, z).sort(1).values[:, knn_k(200) - 1]  # distance to the k-th nearest training feature
    assert torch.allclose(base(q)["KNN"].double(), ref, atol=1e-5)


def test_requirements_are_reported_not_raised():
    x, y = _data()
    no_bias = OODBaselines(_net(bias=False), TensorDataset(x, y), head="3", detectors=["ViM", "MaxLogit"])
    assert "ViM" in no_bias.skipped and "bias" in no_bias.skipped["ViM"] and list(no_bias.scorers) == ["MaxLogit"]
    signed = OODBaselines(_net(relu=False), TensorDataset(x, y), head="2", detectors=["ReAct"])
    assert "negative" in signed.skipped["ReAct"]
    logits_only = OODBaselines(_net(), None, head="3")
    assert set(logits_only.scorers) == {"MaxSoftmax", "MaxLogit", "EnergyBased"}
    assert set(logits_only.skipped) == {"Mahalanobis", "KNN", "ViM", "ReAct"}


def test_bad_parameters_name_what_is_valid():
    x, y = _data()
    with pytest.raises(ValueError, match="detectors"):
        OODBaselines(_net(), TensorDataset(x, y), head="3", detectors=["Mahalanobis", "ODIN"])
    with pytest.raises(ValueError, match="empty"):
        OODBaselines(_net(), TensorDataset(x, y), head="3", detectors=[])
    with pytest.raises(TypeError, match="sequence"):
        OODBaselines(_net(), TensorDataset(x, y), head="3", detectors="KNN")
    with pytest.raises(ValueError, match="train_labels"):
        OODBaselines(_net(), x, y[:10], head="3")


def test_knn_k_endpoints():
    assert knn_k(5) == 1 and knn_k(200) == 20 and knn_k(500) == 50 and knn_k(10**6) == 50
