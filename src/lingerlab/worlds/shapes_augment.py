"""The augmentations of the ``shapes`` world: :class:`ZoomOut` (the scratch baseline's) and
:class:`Occlude` (the source model's)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import check_range
from .shapes_render import _background, _clutter_params, _draw_clutter, _finish, _uniform

__all__ = ["ZoomOut", "Occlude"]


def _fresh_background(generator: torch.Generator, m: int, h: int, x: Tensor) -> Tensor:
    """``m`` new backgrounds of side ``h``, half of them cluttered, on ``x``'s device and dtype."""
    bg = _background(generator, m, h)
    clut = _clutter_params(generator, m, (2, 5))
    return _finish(_draw_clutter(bg, clut, h, torch.rand(m, generator=generator) < 0.5)).to(x.device, x.dtype)


class ZoomOut:
    """Zoom-out augmentation: with probability ``prob`` shrink an image to ``lo``-``hi`` of its side
    and paste it at a random place on a fresh plain or (half the time) cluttered background."""

    def __init__(self, lo: float = 0.35, hi: float = 0.8, prob: float = 0.5) -> None:
        check_range("zoom_min", lo, 0, 1, lo_open=True)
        check_range("zoom_max", hi, lo, 1)
        check_range("zoom_prob", prob, 0, 1)
        self.lo, self.hi, self.prob = lo, hi, prob
        self.cache_key = ("ZoomOut", lo, hi, prob)

    @property
    def label(self) -> str:
        """One line for the recipe table, e.g. ``"zoom-out to 35-80% of the side, p=0.5"``."""
        return f"zoom-out to {round(self.lo * 100, 1):g}-{round(self.hi * 100, 1):g}% of the side, p={self.prob:g}"

    def __repr__(self) -> str:
        return f"ZoomOut(lo={self.lo}, hi={self.hi}, prob={self.prob})"

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        n, _, h, w = x.shape
        apply = torch.rand(n, generator=generator) < self.prob
        if not bool(apply.any()):
            return x
        idx = apply.nonzero().flatten()
        m = len(idx)
        s = _uniform(generator, m, self.lo, self.hi)
        tx, ty = ((torch.rand(m, generator=generator) * 2 - 1) * (1 - s) for _ in range(2))
        bg = _fresh_background(generator, m, h, x)
        theta = torch.zeros(m, 2, 3)
        theta[:, 0, 0], theta[:, 1, 1] = 1 / s, 1 / s
        theta[:, 0, 2], theta[:, 1, 2] = -tx / s, -ty / s
        grid = F.affine_grid(theta.to(x.device, x.dtype), [m, 3, h, w], align_corners=False)
        small = F.grid_sample(x[idx], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        ones = torch.ones(m, 1, h, w, device=x.device, dtype=x.dtype)
        mask = F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out = x.clone()
        out[idx] = small + (1 - mask) * bg
        return out


class Occlude:
    """Occlusion augmentation of M^s's training images: with probability ``prob`` a square of
    ``lo``-``hi`` of the side, filled with a fresh background (clutter half the time), covers a random
    place, as objects in photos are partly hidden (and as the composites' pasted patch hides them)."""

    def __init__(self, prob: float, lo: float = 0.3, hi: float = 0.5) -> None:
        check_range("source_occlusion", prob, 0, 1)
        check_range("occlusion_min", lo, 0, 1, lo_open=True)
        check_range("occlusion_max", hi, lo, 1)
        self.prob, self.lo, self.hi = prob, lo, hi
        self.cache_key = ("Occlude", prob, lo, hi)

    @property
    def label(self) -> str:
        """One line for the recipe table."""
        return f"occluder square of {round(self.lo * 100):g}-{round(self.hi * 100):g}% of the side, p={self.prob:g}"

    def __repr__(self) -> str:
        return f"Occlude(prob={self.prob}, lo={self.lo}, hi={self.hi})"

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        n, _, h, w = x.shape
        idx = (torch.rand(n, generator=generator) < self.prob).nonzero().flatten()
        m = len(idx)
        if m == 0:
            return x
        side = (_uniform(generator, m, self.lo, self.hi) * h).round().long().clamp(1, h)
        top = (torch.rand(m, generator=generator) * (h - side + 1)).long()
        left = (torch.rand(m, generator=generator) * (w - side + 1)).long()
        bg = _fresh_background(generator, m, h, x)
        rows = torch.arange(h).view(1, h, 1)
        cols = torch.arange(w).view(1, 1, w)
        inside = (
            (rows >= top.view(-1, 1, 1))
            & (rows < (top + side).view(-1, 1, 1))
            & (cols >= left.view(-1, 1, 1))
            & (cols < (left + side).view(-1, 1, 1))
        ).to(x.device)
        out = x.clone()
        out[idx] = torch.where(inside[:, None], bg, x[idx])
        return out
