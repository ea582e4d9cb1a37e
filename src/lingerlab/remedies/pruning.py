"""Pruning the channels of source-only classes (paper, App. B, Eqs. 6-7).

``F^c = {f : activation(f, x) > a_t for all x in D^c}`` (:func:`feature_set`, :func:`channel_sets`);
prune ``(union_{c in source-only} F^c) minus (union_{c in target} F^c)`` (:func:`channels_to_prune`)
by a fixed zero mask in front of the head (:func:`prune_channels`, :class:`ChannelMask`). The mask
lives in the backbone, so it survives ``replace_head`` (fine-tuning a pruned source model) and
``source_target_model`` (M^st).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Iterable, Mapping

import torch
from torch import Tensor, nn

from .._data import ImageData, batches, model_device
from .._validation import check_int_range, check_range
from ..models import _set_submodule, eval_mode, find_head

__all__ = ["ChannelMask", "penultimate_features", "feature_set", "channel_sets", "channels_to_prune", "prune_channels"]


class ChannelMask(nn.Module):
    """Multiply channel dimension 1 by a fixed 0/1 mask (a buffer): zeroes the pruned channels."""

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        if mask.ndim != 1:
            raise ValueError(f"mask must be 1-d (one entry per channel); got shape {tuple(mask.shape)}")
        self.register_buffer("mask", mask.detach().float().clone())

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return x * self.mask.to(x.dtype).view(shape)

    def extra_repr(self) -> str:
        return f"channels={len(self.mask)}, pruned={int((self.mask == 0).sum())}"


def _submodule(model: nn.Module, layer: str) -> nn.Module:
    """``model``'s submodule ``layer``; ValueError naming the layer when there is none."""
    modules = dict(model.named_modules())
    if layer not in modules:
        raise ValueError(f"layer {layer!r} is not a submodule of {type(model).__name__}")
    return modules[layer]


@torch.no_grad()
def penultimate_features(
    model: nn.Module, images: ImageData, layer: str | None = None, head: str | None = None, batch_size: int = 64
) -> Tensor:
    """``activation(f, x)`` for every channel f and image x: ``[N, C]`` (eval mode, on the CPU).

    ``layer=None``: the head's input B(M)(x) (the penultimate features). A named ``layer``: that
    module's output; a feature map ``[N, C, h, w]`` is averaged over space (the global-average-pooled
    channel activation).
    """
    check_int_range("batch_size", batch_size, 1)
    if layer is None:
        _, mod = find_head(model, head)
        take_input = True
    else:
        mod = _submodule(model, layer)
        take_input = False
    got: list[Tensor] = []

    def hook(_m: nn.Module, args: tuple, out: Any) -> None:
        t = args[0] if take_input else out
        if not isinstance(t, Tensor):
            raise ValueError(f"layer {layer!r} does not produce a Tensor")
        got.append(t.flatten(2).mean(2) if t.ndim > 2 else t)

    dev = model_device(model)
    handle = mod.register_forward_hook(hook)
    out = []
    try:
        with eval_mode(model):
            for x, _ in batches(images, batch_size, dev):
                got.clear()
                model(x)
                if not got:
                    raise ValueError(f"layer {layer!r} did not run in the model's forward pass")
                out.append(got[0].float().cpu())
    finally:
        handle.remove()
    if not out:
        raise ValueError("images is empty: pass at least one image")
    return torch.cat(out)


def feature_set(
    model: nn.Module,
    images: ImageData,
    a_t: float,
    layer: str | None = None,
    head: str | None = None,
    batch_size: int = 64,
) -> Tensor:
    """App. B, Eq. 6 (or Eq. 7): ``F^c = {f : activation(f, x) > a_t for all x in D^c}``.

    ``images`` is D^c. Returns the channel indices, ascending (LongTensor). ``a_t`` is any real
    threshold (finite); activations are those of :func:`penultimate_features`.
    """
    a_t = check_range("a_t", a_t)
    if not math.isfinite(a_t):
        raise ValueError(f"a_t must be a finite number (the activation threshold of Eqs. 6-7); got {a_t!r}")
    acts = penultimate_features(model, images, layer, head, batch_size)
    return torch.nonzero((acts > a_t).all(dim=0)).flatten()


def channel_sets(
    model: nn.Module,
    data_by_class: Mapping[int, ImageData],
    a_t: float,
    layer: str | None = None,
    head: str | None = None,
    batch_size: int = 64,
) -> dict[int, Tensor]:
    """Eqs. 6-7 for every class: ``{c: F^c}`` (see :func:`feature_set`); ``data_by_class`` maps c to D^c."""
    if not data_by_class:
        raise ValueError("data_by_class is empty: pass {class: images} for at least one class")
    return {int(c): feature_set(model, d, a_t, layer, head, batch_size) for c, d in data_by_class.items()}


def channels_to_prune(
    source_sets: Mapping[int, Tensor] | Iterable[Tensor], target_sets: Mapping[int, Tensor] | Iterable[Tensor]
) -> Tensor:
    """App. B: ``(union_c F^c over source-only classes) minus (union_c F^c over target classes)``.

    Returns the channel indices to suppress, ascending (LongTensor).
    """

    def union(sets: Mapping[int, Tensor] | Iterable[Tensor]) -> set[int]:
        vals = sets.values() if isinstance(sets, Mapping) else sets
        out: set[int] = set()
        for s in vals:
            out |= {int(i) for i in torch.as_tensor(s).flatten().tolist()}
        return out

    return torch.as_tensor(sorted(union(source_sets) - union(target_sets)), dtype=torch.long)


def prune_channels(
    model: nn.Module, channels: Tensor | Iterable[int], layer: str | None = None, head: str | None = None
) -> nn.Module:
    """A copy of ``model`` whose ``channels`` are zeroed by a :class:`ChannelMask` (App. B pruning).

    ``layer=None``: the penultimate features; the head module ``name`` becomes
    ``nn.Sequential(ChannelMask, head)`` (so ``find_head`` now finds ``name + ".1"``; pass that as
    ``head=`` where a head name is given explicitly). The mask belongs to the backbone: fine-tuning
    the pruned model (``replace_head``) and M^st keep it. A named ``layer``: the mask follows that
    module's output (``nn.Sequential(layer, ChannelMask)``). Pruning twice composes the masks.
    The model's output equals the original's with those channels of the feature set to 0.
    """
    new = copy.deepcopy(model)
    if layer is None:
        name, mod = find_head(new, head)
        n_ch = mod.in_features
    else:
        mod = _submodule(new, layer)
        name = layer
        n_ch = _out_channels(new, mod, layer)
    idx = torch.as_tensor(
        [int(c) for c in (channels.flatten().tolist() if isinstance(channels, Tensor) else channels)], dtype=torch.long
    )
    if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= n_ch):
        raise ValueError(f"channels must be in [0, {n_ch - 1}]; got [{int(idx.min())}, {int(idx.max())}]")
    mask = torch.ones(n_ch)
    mask[idx] = 0
    existing = _existing_mask(new, name, layer is None)
    if existing is not None:  # already pruned here: compose the masks
        existing.mask.mul_(mask.to(existing.mask.device))
        return new
    cm = ChannelMask(mask).to(model_device(new))
    _set_submodule(new, name, nn.Sequential(cm, mod) if layer is None else nn.Sequential(mod, cm))
    return new


def _existing_mask(model: nn.Module, name: str, before: bool) -> ChannelMask | None:
    """The ChannelMask a previous ``prune_channels`` put next to module ``name``, if any."""
    parent_name, _, attr = name.rpartition(".")
    if before and attr == "1" and parent_name:
        parent = model.get_submodule(parent_name)
        if isinstance(parent, nn.Sequential) and len(parent) == 2 and isinstance(parent[0], ChannelMask):
            return parent[0]
    mod = model.get_submodule(name)
    if not before and isinstance(mod, nn.Sequential) and len(mod) == 2 and isinstance(mod[1], ChannelMask):
        return mod[1]
    return None


def _out_channels(model: nn.Module, mod: nn.Module, layer: str) -> int:
    if isinstance(mod, nn.Sequential) and len(mod) == 2 and isinstance(mod[1], ChannelMask):
        return len(mod[1].mask)
    for attr in ("out_channels", "num_features", "out_features"):
        v = getattr(mod, attr, None)
        if isinstance(v, int):
            return v
    raise ValueError(
        f"cannot tell how many channels layer {layer!r} ({type(mod).__name__}) has: pick a "
        "Conv, BatchNorm or Linear layer"
    )
