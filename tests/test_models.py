"""models: Normalized, find_head / split_model across architectures, replace_head, M^st."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn
from torchvision import models as tvm
from torchvision.models.convnext import CNBlockConfig

from lingerlab.models import (
    Normalized,
    batchnorm_layers,
    eval_mode,
    find_head,
    replace_head,
    source_target_model,
    split_model,
)

X = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _vgg() -> nn.Module:
    # A real torchvision VGG whose layers are shrunk (built on the meta device, then small parts swapped in),
    # so the structure is VGG's: features, avgpool, classifier = [Linear, ReLU, Dropout] x 2 + Linear.
    with torch.device("meta"):
        m = tvm.VGG(nn.Sequential(), num_classes=10, init_weights=False)
    m.features = tvm.vgg.make_layers([8, "M"])
    m.classifier = nn.Sequential(
        nn.Linear(8 * 7 * 7, 16),
        nn.ReLU(True),
        nn.Dropout(),
        nn.Linear(16, 16),
        nn.ReLU(True),
        nn.Dropout(),
        nn.Linear(16, 10),
    )
    return m


_TORCHVISION = {
    "resnet": (lambda: tvm.resnet18(num_classes=10), "fc"),
    "vgg": (_vgg, "classifier.6"),
    "efficientnet": (lambda: tvm.efficientnet_b0(num_classes=10), "classifier.1"),
    "mobilenetv3": (lambda: tvm.mobilenet_v3_small(num_classes=10), "classifier.3"),
    "convnext": (
        lambda: tvm.ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)], num_classes=10),
        "classifier.2",
    ),
    "vit": (
        lambda: tvm.VisionTransformer(
            image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=10
        ),
        "heads.head",
    ),
}


def _check_split(model: nn.Module, expected: str) -> None:
    model.eval()
    name, head = find_head(model)
    assert name == expected and isinstance(head, nn.Linear)
    backbone, h = split_model(model)
    assert isinstance(backbone.get_submodule(expected), nn.Identity)
    with torch.no_grad():
        torch.testing.assert_close(h(backbone(X)), model(X))
    # the original model is untouched
    assert model.get_submodule(expected) is head


@pytest.mark.parametrize("arch", ["resnet", "vgg", "efficientnet", "mobilenetv3", "convnext", "vit"])
def test_split_torchvision(arch):
    make, expected = _TORCHVISION[arch]
    torch.manual_seed(0)
    model = make()
    _check_split(model, expected)
    _check_split(Normalized(model), "model." + expected)


@pytest.mark.parametrize("name,expected", [("resnet10t", "fc"), ("convnext_atto", "head.fc")])
def test_split_timm(name, expected):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    _check_split(timm.create_model(name, pretrained=False, num_classes=5), expected)


def test_split_efficientnet_lite():
    if importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        pytest.skip("efficientnet_lite_pytorch is not installed")
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    _check_split(EfficientNet.from_name("efficientnet-lite0", num_classes=5), "_fc")


class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.proj = nn.Linear(4, 6)
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        return self.out(torch.relu(self.proj(self.body(x))))


def test_unknown_model_lists_candidates_and_named_head_works():
    model = Custom().eval()
    with pytest.raises(ValueError, match=r"head=.*'out' \(Linear 6 -> 3\), 'proj'"):
        find_head(model)
    _check_split_named = split_model(model, head="out")
    backbone, head = _check_split_named
    torch.testing.assert_close(head(backbone(X)), model(X))
    # the name may be given relative to the wrapped model
    assert find_head(Normalized(model), head="out")[0] == "model.out"
    with pytest.raises(ValueError, match="nn.Linear"):
        find_head(model, head="body")
    with pytest.raises(ValueError, match="not a module"):
        find_head(model, head="nope")


def test_dataparallel_like_wrapper():
    class Wrap(nn.Module):  # anything ending in DataParallel with .module
        def __init__(self, m):
            super().__init__()
            self.module = m

        def forward(self, x):
            return self.module(x)

    Wrap.__name__ = "FakeDataParallel"
    model = tvm.resnet18(num_classes=3).eval()
    assert find_head(Wrap(model))[0] == "module.fc"


def test_normalized():
    inner = nn.Identity()
    m = Normalized(inner, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert m.model is inner
    torch.testing.assert_close(m(torch.full((1, 3, 2, 2), 0.75)), torch.ones(1, 3, 2, 2))
    assert set(m.state_dict()) == {"mean", "std"}
    with pytest.raises(ValueError, match="std"):
        Normalized(inner, std=(0.0, 1, 1))


def test_replace_head_seeded():
    model = tvm.resnet18(num_classes=10)
    a = replace_head(model, 4, generator=torch.Generator().manual_seed(3))
    b = replace_head(model, 4, generator=3)
    assert a.fc.out_features == 4 and a.fc.in_features == 512
    torch.testing.assert_close(a.fc.weight, b.fc.weight)
    torch.testing.assert_close(a.fc.bias, b.fc.bias)
    assert model.fc.out_features == 10  # input untouched
    assert a.fc.weight.abs().max() <= 1 / 512**0.5
    torch.testing.assert_close(a.layer1[0].conv1.weight, model.layer1[0].conv1.weight)
    with pytest.raises(ValueError, match=r"num_classes must be an integer in \[1"):
        replace_head(model, 0)


def _perturb(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
        for bn in batchnorm_layers(model).values():
            bn.running_mean.add_(torch.randn(bn.running_mean.shape, generator=g))
            bn.running_var.mul_(2.0)
            bn.num_batches_tracked.fill_(seed)
    return model


def test_source_target_model():
    torch.manual_seed(0)
    source = Normalized(tvm.resnet18(num_classes=10))
    target = replace_head(_perturb(tvm.resnet18(num_classes=10), 1), 2, generator=0)
    target = Normalized(target).train()
    mst = source_target_model(target, source)
    assert not mst.training and target.training
    sd, ssd, tsd = mst.state_dict(), source.state_dict(), target.state_dict()
    for k, v in sd.items():
        ref = ssd[k] if k.startswith("model.fc.") else tsd[k]
        torch.testing.assert_close(v, ref, msg=k)
    assert mst.model.fc is not source.model.fc
    assert mst(X).shape == (2, 10)

    mst_bn = source_target_model(target, source, bn="source")
    for name, bn in batchnorm_layers(mst_bn).items():
        sbn = source.get_submodule(name)
        for buf in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(getattr(bn, buf), getattr(sbn, buf))
        torch.testing.assert_close(bn.weight, target.get_submodule(name).weight)  # affine stays the target's
    with pytest.raises(ValueError, match="bn must be one of"):
        source_target_model(target, source, bn="both")


def test_source_target_model_mismatch():
    with pytest.raises(ValueError, match="architecture"):
        source_target_model(tvm.resnet18(num_classes=3), tvm.mobilenet_v3_small(num_classes=10))
    small = Custom()
    small.out = nn.Linear(6, 3)
    other = Custom()
    other.body.insert(0, nn.BatchNorm2d(3))
    with pytest.raises(ValueError, match="BatchNorm"):
        source_target_model(small, other, bn="source", head="out")


def test_eval_mode_restores():
    m = tvm.resnet18(num_classes=3).train()
    m.layer1.eval()
    with eval_mode(m):
        assert not any(x.training for x in m.modules())
    assert m.training and not m.layer1.training and m.layer2.training


def test_batchnorm_layers():
    names = list(batchnorm_layers(tvm.resnet18(num_classes=3)))
    assert names[0] == "bn1" and len(names) == 20
