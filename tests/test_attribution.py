"""Grad-CAM (A(x, M, c) of Eq. 4): the fast path against pytorch-grad-cam, and its contract."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from lingerlab.attribution import CAM_METHODS, cam, gradcam
from lingerlab.cam_layers import _resolve, vit_reshape_transform

pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

TOL = 1e-4


def default_layer(model: nn.Module) -> str:
    """The qualified name of the layer ``layer=None`` picks for ``model``."""
    return _resolve(model, None)[1]


def _reference(model: nn.Module, x: torch.Tensor, t: torch.Tensor, layer: str, reshape_transform=None) -> torch.Tensor:
    """pytorch-grad-cam's GradCAM on a deep copy (it leaves eval mode and param grads behind)."""
    model = copy.deepcopy(model)
    with pgc.GradCAM(model, [model.get_submodule(layer)], reshape_transform=reshape_transform) as g:
        return torch.from_numpy(g(x, [ClassifierOutputTarget(int(c)) for c in t]))


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks for m in model.modules())


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10)


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(8, 3, 96, 96, generator=g), torch.randint(0, 10, (8,), generator=g)


def _efficientnet() -> nn.Module:
    m = torchvision.models.efficientnet_b0(num_classes=10)
    with torch.no_grad():  # random init gives maps of ~1e-9: scale the head so they are not trivial
        m.classifier[1].weight.normal_(0, 100.0)
    return m


def _vit() -> nn.Module:
    m = torchvision.models.VisionTransformer(
        image_size=64, patch_size=16, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128, num_classes=10
    )
    with torch.no_grad():  # torchvision zero-initialises the head, which makes every map constant
        m.heads.head.weight.normal_(0, 0.5)
    return m


@pytest.mark.parametrize(
    "arch,size,layer,reshape",
    [
        ("resnet18", 96, "layer4", None),
        ("efficientnet_b0", 96, "features.8", None),
        ("vit", 64, "encoder.layers.encoder_layer_1.ln_1", vit_reshape_transform),
    ],
)
def test_matches_pytorch_grad_cam(arch, size, layer, reshape):
    torch.manual_seed(0)
    model = {
        "resnet18": lambda: torchvision.models.resnet18(num_classes=10),
        "efficientnet_b0": _efficientnet,
        "vit": _vit,
    }[arch]()
    assert default_layer(model) == layer
    g = torch.Generator().manual_seed(2)
    x, t = torch.rand(8, 3, size, size, generator=g), torch.randint(0, 10, (8,), generator=g)
    ours = gradcam(model, x, t, reshape_transform=reshape)  # layer=None -> default layer
    ref = _reference(model, x, t, layer, reshape)
    assert ours.shape == ref.shape == (8, size, size)
    assert (ours - ref).abs().max().item() < TOL
    assert (ours.amax(dim=(1, 2)) > 0.99).sum() >= 4  # the comparison is not between blank maps
    if arch == "vit":  # the default ViT layer brings its reshape transform
        assert torch.equal(gradcam(model, x, t), ours)


def test_map_contract(resnet, batch):
    x, t = batch
    resnet.train()
    resnet.layer2.eval()  # mixed modes must come back exactly
    before = {n: m.training for n, m in resnet.named_modules()}
    maps = gradcam(resnet, x, t)
    assert maps.shape == (8, 96, 96) and maps.dtype == torch.float32 and maps.device == x.device
    assert maps.min() >= 0 and maps.max() <= 1
    peak = maps.amax(dim=(1, 2))
    assert ((peak > 0.999) | (maps.amin(dim=(1, 2)) == peak)).all()  # max 1 unless constant
    assert {n: m.training for n, m in resnet.named_modules()} == before
    assert _no_hooks(resnet)
    assert all(p.grad is None for p in resnet.parameters())
    resnet.eval()


def test_layer_forms_batching_and_grad_modes(resnet, batch):
    x, t = batch
    base = gradcam(resnet, x, t)
    assert torch.equal(gradcam(resnet, x, t, "layer4"), base)
    assert torch.equal(gradcam(resnet, x, t, resnet.layer4), base)
    assert torch.allclose(gradcam(resnet, x, t.tolist(), batch_size=3), base, atol=1e-6)
    with torch.no_grad():  # works even where the caller turned autograd off
        assert torch.allclose(gradcam(resnet, x, t), base, atol=1e-6)
    with torch.inference_mode():
        xi = x.clone()
    assert torch.allclose(gradcam(resnet, xi, t), base, atol=1e-6)
    one = gradcam(resnet, x, 3)  # one int: the same class for every image
    assert torch.allclose(one, gradcam(resnet, x, torch.full((8,), 3)), atol=1e-6)
    ds = torch.utils.data.TensorDataset(x, t)  # any ImageData
    assert torch.allclose(gradcam(resnet, ds, t, batch_size=5), base, atol=1e-6)
    assert _no_hooks(resnet) and all(p.grad is None for p in resnet.parameters())


def test_other_layer_matches_reference(resnet, batch):
    x, t = batch
    # below layer3 sit layer4's ReLUs: a layout change's rounding can flip their masks, so compare
    # in the library's (contiguous) layout
    ours = gradcam(resnet, x, t, "layer3", channels_last=False)
    assert (ours - _reference(resnet, x, t, "layer3")).abs().max().item() < TOL


def test_densenet_inplace_relu_after_layer():
    """DenseNet runs F.relu(features, inplace=True) after `features`: the map must use the output as
    the layer produced it (pre-ReLU), i.e. what a copy with an out-of-place ReLU gives."""
    torch.manual_seed(0)
    model = torchvision.models.densenet121(num_classes=10).eval()
    g = torch.Generator().manual_seed(3)
    x, t = torch.rand(2, 3, 64, 64, generator=g), torch.tensor([1, 7])
    assert default_layer(model) == "features"
    ours = gradcam(model, x, t)
    # by hand: the same forward with an out-of-place ReLU, gradient w.r.t. the features
    feats = model.features(x)
    logits = model.classifier(torch.flatten(F.adaptive_avg_pool2d(F.relu(feats), 1), 1))
    (grad,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), feats)
    cam_map = (grad.mean((2, 3))[:, :, None, None] * feats).sum(1).clamp_min(0).detach().numpy()
    ref = torch.from_numpy(scale_cam_image(scale_cam_image(cam_map, (64, 64))))
    assert (feats < 0).any()  # the in-place ReLU would change these activations
    assert (ours - ref).abs().max().item() < TOL
    assert ours.amax() > 0.99
    assert _no_hooks(model)


def test_targets_and_layer_errors(resnet, batch):
    x, t = batch
    with pytest.raises(ValueError, match="targets"):
        gradcam(resnet, x, t[:5])
    with pytest.raises(ValueError, match="targets"):
        gradcam(resnet, x, torch.full((8,), 10))  # out of range for 10 classes
    with pytest.raises(ValueError, match="layer"):
        gradcam(resnet, x, t, "layer9")
    with pytest.raises(ValueError, match="images"):
        gradcam(resnet, x[0], t[:1])
    assert _no_hooks(resnet)

    class Mystery(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Conv2d(3, 4, 3)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.body(x).mean((2, 3)))

    with pytest.raises(ValueError, match=r"layer=.*body"):
        gradcam(Mystery(), x, 0)
    m = Mystery()
    assert gradcam(m, x, 0, "body").shape == (8, 96, 96)


def test_wrapper_with_model_attribute(resnet, batch):
    class Normalized(nn.Module):  # duck-typed like lingerlab.models.Normalized
        def __init__(self, model):
            super().__init__()
            self.model = model
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

        def forward(self, x):
            return self.model((x - self.mean) / self.std)

    x, t = batch
    wrapped = Normalized(resnet)
    assert default_layer(wrapped) == "model.layer4"
    ours = gradcam(wrapped, x, t)
    assert torch.allclose(ours, gradcam(resnet, (x - wrapped.mean) / wrapped.std, t), atol=1e-6)


def test_default_layers_of_known_architectures():
    import timm
    from efficientnet_lite_pytorch import EfficientNet

    expected = {
        "vgg11": "features.20",
        "mobilenet_v3_small": "features.12",
        "convnext_tiny": "features.7",
        "densenet121": "features",
        "efficientnet_b0": "features.8",
        "resnet50": "layer4",
        "vit_b_16": "encoder.layers.encoder_layer_11.ln_1",
        "swin_t": "norm",
    }
    with torch.device("meta"):  # structure only: no memory, no init cost
        for name, layer in expected.items():
            assert default_layer(getattr(torchvision.models, name)()) == layer, name
        timm_expected = {
            "resnet18": "layer4",
            "efficientnet_b0": "bn2",
            "convnext_atto": "stages.3",
            "vit_tiny_patch16_224": "blocks.11.norm1",
            "mobilenetv3_small_050": "blocks.5",
        }
        for name, layer in timm_expected.items():
            assert default_layer(timm.create_model(name, pretrained=False)) == layer, name
        assert default_layer(EfficientNet.from_name("efficientnet-lite0")) == "_bn1"


def test_efficientnet_lite_matches_reference():
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    model = EfficientNet.from_name("efficientnet-lite0", num_classes=10)
    g = torch.Generator().manual_seed(4)
    x, t = torch.rand(4, 3, 64, 64, generator=g), torch.randint(0, 10, (4,), generator=g)
    assert (gradcam(model, x, t) - _reference(model, x, t, "_bn1")).abs().max().item() < TOL


def test_vit_reshape_transform():
    tokens = torch.arange(2 * 17 * 3, dtype=torch.float32).reshape(2, 17, 3)
    fmap = vit_reshape_transform(tokens)
    assert fmap.shape == (2, 3, 4, 4)
    assert torch.equal(fmap[:, :, 1, 2], tokens[:, 1 + 1 * 4 + 2])
    assert vit_reshape_transform(tokens[:, :13], grid=(3, 4)).shape == (2, 3, 3, 4)
    with pytest.raises(ValueError, match="grid"):
        vit_reshape_transform(tokens[:, :13])


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8)
        )
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        return self.head(F.relu(self.features(x)).mean((2, 3)))


def test_cam_methods():
    torch.manual_seed(0)
    model = _Tiny().train()
    x, t = torch.rand(3, 3, 32, 32), torch.tensor([0, 2, 4])
    p0 = next(model.parameters())
    p0.grad = torch.ones_like(p0)
    for method in ("gradcam", "gradcam++", "layercam", "xgradcam", "hirescam", "eigencam", "scorecam", "ablationcam"):
        maps = cam(model, x, t, method=method)
        assert maps.shape == (3, 32, 32) and maps.dtype == torch.float32 and maps.device == x.device
        assert maps.min() >= 0 and maps.max() <= 1 + 1e-6, method
        assert model.training and _no_hooks(model), method
        assert torch.equal(p0.grad, torch.ones_like(p0)), method
        assert all(p.grad is None for p in list(model.parameters())[1:]), method
    assert (cam(model, x, t, "gradcam") - gradcam(model, x, t)).abs().max() < TOL
    assert set(CAM_METHODS) >= {"gradcam", "gradcam++", "scorecam", "eigencam", "layercam"}
    with pytest.raises(ValueError, match="gradcam\\+\\+"):
        cam(model, x, t, method="nosuchcam")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_device_preserved(resnet, batch):
    x, t = batch
    model = copy.deepcopy(resnet).cuda()
    maps = gradcam(model, x.cuda(), t)
    assert maps.device.type == "cuda"
    assert (maps.cpu() - _reference(model, x.cuda(), t, "layer4")).abs().max().item() < TOL
    assert cam(model, x.cuda(), t, "gradcam++").device.type == "cuda"
