"""Images of a labelled dataset as tensors (split by class, or stacked for a remedy to draw from), and
fine-tuning on composites (a settings-level remedy measured in notebook 5)."""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .._data import ImageData, gather, num_items
from .._validation import check_range
from ..cache import fingerprint

__all__ = ["images_by_class", "as_image_tensor", "CompositeAugment", "composite_augment"]


def images_by_class(data: ImageData, classes: Iterable[int] | None = None) -> dict[int, Tensor]:
    """Split a labelled dataset into ``{class: images [n, 3, H, W]}`` (only ``classes``, if given)."""
    if num_items(data) == 0:
        raise ValueError("data is empty: pass at least one image")
    x, y = gather(data)
    if y is None:
        raise ValueError("data has no labels: pass a Dataset of (image, class id) pairs")
    y = y.long()
    wanted = sorted({int(c) for c in y.tolist()}) if classes is None else [int(c) for c in classes]
    return {c: x[y == c] for c in wanted}


def as_image_tensor(data: ImageData | Sequence[ImageData], name: str) -> Tensor:
    """``data`` (a tensor, a dataset, or a list of them) as one image tensor ``[N, 3, H, W]``, N >= 1
    (else a ValueError naming the parameter ``name``)."""
    if isinstance(data, (list, tuple)):
        parts = [as_image_tensor(d, name) for d in data]
        x = torch.cat(parts) if parts else torch.empty(0)
    else:
        x = gather(data)[0] if num_items(data) else torch.empty(0)
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"{name} must hold at least one image [N, 3, H, W]; got shape {tuple(x.shape)}")
    return x


class CompositeAugment:
    """``augment(x, generator)`` for ``finetune``: with probability ``p`` per image, paste the target
    image (at ``scale``, random place) onto a random image of ``backgrounds``; the label stays.

    Teaches the model that source objects around a target object do not change its class. Draws come
    from the training loop's generator, so runs are reproducible.
    """

    def __init__(self, backgrounds: ImageData | Sequence[ImageData], p: float = 0.5, scale: float = 0.4) -> None:
        self.p = float(check_range("p", p, 0, 1))
        self.scale = float(check_range("scale", scale, 0, 1, lo_open=True))
        self.backgrounds = as_image_tensor(backgrounds, "backgrounds").detach()
        self.cache_key = ("composite_augment", self.p, self.scale, fingerprint(self.backgrounds))

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        n, _, h, w = x.shape
        gd = generator.device
        pick = torch.rand(n, generator=generator, device=gd) < self.p
        bg_idx = torch.randint(0, len(self.backgrounds), (n,), generator=generator, device=gd)
        ph, pw = max(1, round(self.scale * h)), max(1, round(self.scale * w))
        top = torch.randint(0, h - ph + 1, (n,), generator=generator, device=gd)
        left = torch.randint(0, w - pw + 1, (n,), generator=generator, device=gd)
        sel = torch.nonzero(pick).flatten().tolist()
        if not sel:
            return x
        bg = self.backgrounds[bg_idx[sel]].to(x.device, x.dtype)
        if bg.shape[-2:] != (h, w):
            bg = F.interpolate(bg, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        patches = F.interpolate(x[sel], size=(ph, pw), mode="bilinear", antialias=True, align_corners=False)
        out = x.clone()
        for j, i in enumerate(sel):
            t0, l0 = int(top[i]), int(left[i])
            img = bg[j].clone()
            img[:, t0 : t0 + ph, l0 : l0 + pw] = patches[j]
            out[i] = img
        return out


#: An ``augment`` for ``finetune`` that trains on composites (see :class:`CompositeAugment`).
composite_augment = CompositeAugment
