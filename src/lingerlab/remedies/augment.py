"""Fine-tuning on composites (a settings-level remedy measured in notebook 5): a target image pasted on a source image,
with the target label, as an ``augment`` of :func:`lingerlab.training.finetune`."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .._data import ImageData
from .._validation import check_range
from ..cache import fingerprint
from .images import as_image_tensor

__all__ = ["CompositeAugment", "composite_augment"]


class CompositeAugment:
    """``augment(x, generator)`` for ``finetune``: with probability ``p`` per image, paste the target
    image (at ``scale``, random place) onto a random image of ``backgrounds``; the label stays.

    Teaches the fine-tuned model that source objects around a target object do not change its class
    (a remedy row; the composites of the audit use held-out source images, see ``remedy_table``).
    Draws come from the training loop's generator, so runs are reproducible.
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


def composite_augment(
    backgrounds: ImageData | Sequence[ImageData], p: float = 0.5, scale: float = 0.4
) -> CompositeAugment:
    """An ``augment`` for ``finetune`` that trains on composites (see :class:`CompositeAugment`)."""
    return CompositeAugment(backgrounds, p, scale)
