"""Composite inputs I(c_s): a target image at 40% scale pasted on a source image (paper, Sec. 4).

Every composite keeps its overlay mask and box, so attribution can be split into the overlay and
background parts of Eq. 4 and the same patch can be pasted on control backgrounds (``paste``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from ._data import ImageData, gather, num_items
from ._validation import check_choice, check_int_range, check_range, check_same_length
from .models import as_generator


@dataclass
class Composites:
    """A batch of composites, one entry per composite in every field: ``images`` ``[N, 3, H, W]`` in
    [0, 1], ``masks`` ``[N, H, W]`` (True on the pasted patch), the pasted ``target_index`` and its
    ``target_label`` (-1: unlabelled), the background's ``source_index``, ``boxes`` (top, left, height,
    width) and ``source_label`` c_s (the class Eq. 4 attributes M^s to; -1: unknown)."""

    images: Tensor
    masks: Tensor
    target_index: Tensor
    target_label: Tensor
    source_index: Tensor
    boxes: Tensor
    source_label: Tensor | None = None

    def __post_init__(self) -> None:
        if self.source_label is None:
            self.source_label = torch.full((len(self.images),), -1, dtype=torch.long, device=self.images.device)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx: Tensor | slice | list[int]) -> "Composites":
        """The composites at ``idx`` (indices, a bool mask or a slice)."""
        if isinstance(idx, list):
            idx = torch.as_tensor(idx, dtype=torch.long)
        pick = lambda t: t[idx.to(t.device) if isinstance(idx, Tensor) else idx]
        return Composites(**{f.name: pick(getattr(self, f.name)) for f in fields(self)})

    def to(self, device: torch.device | str) -> "Composites":
        """All fields moved to ``device``."""
        return Composites(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def _collect(data: ImageData, name: str) -> tuple[Tensor, Tensor | None]:
    """All images (and labels, if any) of ``data`` as tensors (``_data.gather``), checked for shape."""
    if num_items(data) == 0:
        raise ValueError(f"{name} is empty: pass at least one image")
    x, y = gather(data)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} must be images [N, 3, H, W]; got shape {tuple(x.shape)}")
    return x, y


def _randint(high: int, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.randint(0, high, (n,), generator=generator, device=gen_device).to(device)


def _resize(images: Tensor, height: int, width: int) -> Tensor:
    """Bilinear, antialiased resize (the convex weights keep values in [0, 1])."""
    return F.interpolate(images, size=(height, width), mode="bilinear", antialias=True, align_corners=False)


def make_composites(
    source_images: ImageData,
    target_images: ImageData,
    scale: float = 0.4,
    generator: torch.Generator | int | None = None,
    target_labels: Tensor | None = None,
    target_index: Tensor | None = None,
    boxes: Tensor | None = None,
    source_labels: Tensor | None = None,
    batch_size: int = 256,
) -> Composites:
    """I(c_s): on each source image, a target image resized to ``round(scale*H) x round(scale*W)`` and
    pasted fully inside (paper: scale 0.4, 16% of the area), on ``source_images``' device.

    The target image (or ``target_index``) and the place (or ``boxes`` ``[N, 4]``: top, left, height,
    width) are drawn uniformly from ``generator`` (or an int seed). ``target_labels`` /
    ``source_labels`` default to the datasets' labels, else -1.
    """
    check_range("scale", scale, 0, 1, lo_open=True)
    check_int_range("batch_size", batch_size, 1)
    gen = as_generator(generator)
    src, src_labels = _collect(source_images, "source_images")
    tgt, tgt_labels = _collect(target_images, "target_images")
    n, _, h, w = src.shape
    device = src.device
    if target_labels is not None:
        target_labels = torch.as_tensor(target_labels)
        check_same_length("target_images", tgt, "target_labels", target_labels)
        tgt_labels = target_labels
    if source_labels is not None:
        source_labels = torch.as_tensor(source_labels)
        check_same_length("source_images", src, "source_labels", source_labels)
        src_labels = source_labels
    if target_index is None:
        t_idx = _randint(len(tgt), n, gen, device)
    else:
        t_idx = torch.as_tensor(target_index, dtype=torch.long).to(device)
        check_same_length("source_images", src, "target_index", t_idx)
        if int(t_idx.min()) < 0 or int(t_idx.max()) >= len(tgt):
            raise ValueError(
                f"target_index must be in [0, {len(tgt) - 1}]; got [{int(t_idx.min())}, {int(t_idx.max())}]"
            )
    if boxes is None:
        ph, pw = max(1, round(scale * h)), max(1, round(scale * w))
        top = _randint(h - ph + 1, n, gen, device)
        left = _randint(w - pw + 1, n, gen, device)
        bx = torch.stack([top, left, torch.full_like(top, ph), torch.full_like(top, pw)], dim=1)
    else:
        bx = torch.as_tensor(boxes, dtype=torch.long).to(device)
        if bx.ndim != 2 or bx.shape[1] != 4:
            raise ValueError(f"boxes must be [N, 4] (top, left, height, width); got shape {tuple(bx.shape)}")
        check_same_length("source_images", src, "boxes", bx)
        t_, l_, bh, bw = bx.unbind(1)
        if bool(((t_ < 0) | (l_ < 0) | (bh < 1) | (bw < 1) | (t_ + bh > h) | (l_ + bw > w)).any()):
            raise ValueError(f"boxes must lie fully inside the {h}x{w} images with height and width >= 1")
    images = src.clone()
    masks = torch.zeros(n, h, w, dtype=torch.bool, device=device)
    tgt = tgt.to(device)
    sizes = torch.unique(bx[:, 2:], dim=0).tolist()
    corners = bx[:, :2].tolist()
    for ph, pw in sizes:
        sel = torch.nonzero((bx[:, 2] == ph) & (bx[:, 3] == pw)).flatten()
        for start in range(0, len(sel), batch_size):
            chunk = sel[start : start + batch_size]
            patches = _resize(tgt[t_idx[chunk]].to(src.dtype), ph, pw)
            for j, i in enumerate(chunk.tolist()):
                t0, l0 = corners[i]
                images[i, :, t0 : t0 + ph, l0 : l0 + pw] = patches[j]
                masks[i, t0 : t0 + ph, l0 : l0 + pw] = True
    label = (
        tgt_labels.to(device).long()[t_idx]
        if tgt_labels is not None
        else torch.full((n,), -1, dtype=torch.long, device=device)
    )
    s_label = src_labels.to(device).long() if src_labels is not None else None
    return Composites(
        images=images,
        masks=masks,
        target_index=t_idx,
        target_label=label,
        source_index=torch.arange(n, device=device),
        boxes=bx,
        source_label=s_label,
    )


def paste(backgrounds: Tensor, composites: Composites) -> Composites:
    """The same target patches at the same places on other ``backgrounds`` ``[N, 3, H, W]``.

    For paired controls (neutral or shared-class backgrounds): only the pixels outside the masks change.
    """
    if backgrounds.shape != composites.images.shape:
        raise ValueError(
            f"backgrounds must match the composites' shape {tuple(composites.images.shape)}; "
            f"got {tuple(backgrounds.shape)}"
        )
    bg = backgrounds.to(composites.images.device, composites.images.dtype)
    out = {f.name: getattr(composites, f.name).clone() for f in fields(composites) if f.name != "images"}
    return Composites(images=torch.where(composites.masks[:, None], composites.images, bg), **out)


def _gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur with replicate padding (any sigma, any image size)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    xs = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    k = torch.exp(-0.5 * (xs / sigma) ** 2)
    k = k / k.sum()
    c = images.shape[1]
    out = F.pad(images, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def neutral_backgrounds(
    like: Tensor, kind: str = "blur", generator: torch.Generator | int | None = None, sigma: float | None = None
) -> Tensor:
    """Object-free backgrounds, one per image of ``like`` ``[N, 3, H, W]``, for paired controls.

    ``"blur"`` (default): a heavy Gaussian blur (``sigma``, default ``min(H, W) / 6``) of the image
    itself, keeping its colours and layout, so the control differs only in the object. ``"plain"``:
    each image's mean colour. ``"noise"``: Gaussian noise with each image's channel mean and std.
    """
    check_choice("kind", kind, ("blur", "plain", "noise"))
    if like.ndim != 4:
        raise ValueError(f"like must be images [N, C, H, W]; got shape {tuple(like.shape)}")
    if kind == "blur":
        s = min(like.shape[-2:]) / 6 if sigma is None else check_range("sigma", sigma, 0, lo_open=True)
        return _gaussian_blur(like, float(s)).clamp(0, 1)
    mean = like.mean(dim=(2, 3), keepdim=True)
    if kind == "plain":
        return mean.expand_as(like).clone()
    gen = as_generator(generator)
    gen_device = gen.device if gen is not None else torch.device("cpu")
    z = torch.randn(like.shape, generator=gen, device=gen_device, dtype=like.dtype).to(like.device)
    std = like.std(dim=(2, 3), keepdim=True)
    return (mean + std * z).clamp(0, 1)


def occlude(images: Tensor, masks: Tensor, fill: str | float = "mean") -> Tensor:
    """``images`` with the ``masks`` ``[N, H, W]`` region filled (paper, Fig. 1c and Fig. 5).

    ``fill="mean"``: each image's mean colour over its unmasked pixels; a float: that grey level in [0, 1].
    """
    if masks.shape != images.shape[:1] + images.shape[2:]:
        raise ValueError(
            f"masks must be [N, H, W] = {tuple(images.shape[:1] + images.shape[2:])}; got {tuple(masks.shape)}"
        )
    m = masks.to(images.device, torch.bool)[:, None]
    if isinstance(fill, str):
        check_choice("fill", fill, ("mean",))
        keep = (~m).to(images.dtype)
        denom = keep.sum(dim=(2, 3), keepdim=True)
        value = (images * keep).sum(dim=(2, 3), keepdim=True) / denom.clamp(min=1)
        value = torch.where(denom > 0, value, images.mean(dim=(2, 3), keepdim=True))
    else:
        value = torch.tensor(check_range("fill", fill, 0, 1), dtype=images.dtype, device=images.device)
    return torch.where(m, value, images)
