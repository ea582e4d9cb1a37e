"""Pruning the channels of source-only classes (paper, App. B, Eqs. 6-7): the channel sets F^c
(:func:`feature_set`, :func:`channel_sets`), the channels to prune (:func:`channels_to_prune`), a fixed
zero mask in the backbone (:func:`prune_channels`), which ``replace_head`` and M^st keep, and the pruning
of a model of an audit (:func:`pruned`, optionally capped at a fraction of the layer: :func:`cap_channels`)."""

from __future__ import annotations

import copy
import math
import time
from typing import Any, Iterable, Mapping

import torch
from torch import Tensor, nn

from .._data import ImageData, batches, model_device
from .._validation import check_int_range, check_range
from ..identities import weights_fingerprint
from ..models import _set_submodule, eval_mode, find_head
from .registry import Arm, held_out_source, join_notes, target_by_class

__all__ = [
    "ChannelMask",
    "penultimate_features",
    "feature_set",
    "channel_sets",
    "channels_to_prune",
    "prune_channels",
    "cap_channels",
    "prune_sets",
    "pruned",
]


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
    """``activation(f, x)`` for every channel f and image x: ``[N, C]`` (eval mode, on the CPU) of the head's
    input B(M)(x), or of ``layer``'s output (a feature map averaged over space)."""
    check_int_range("batch_size", batch_size, 1)
    take_input = layer is None
    mod = find_head(model, head)[1] if layer is None else _submodule(model, layer)
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
    """App. B, Eq. 6 (or Eq. 7): ``F^c = {f : activation(f, x) > a_t for all x in D^c}`` (``images``: D^c),
    as ascending channel indices; activations of :func:`penultimate_features`, ``a_t`` finite."""
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
    """App. B: ``(union_c F^c over source-only classes) minus (union_c F^c over target classes)``, ascending."""

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

    ``layer=None``: the head ``name`` becomes ``nn.Sequential(ChannelMask, head)`` (``find_head`` then finds
    ``name + ".1"``); a named ``layer`` becomes ``nn.Sequential(layer, ChannelMask)``. Pruning twice
    composes the masks.
    """
    new = copy.deepcopy(model)
    if layer is None:
        name, mod = find_head(new, head)
        n_ch = mod.in_features
    else:
        name, mod = layer, _submodule(new, layer)
        n_ch = _out_channels(mod, layer)
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


def _mask_at(mod: nn.Module, i: int) -> ChannelMask | None:
    """The ChannelMask at position ``i`` of a pair ``nn.Sequential`` that ``prune_channels`` made, if any."""
    return mod[i] if isinstance(mod, nn.Sequential) and len(mod) == 2 and isinstance(mod[i], ChannelMask) else None


def _existing_mask(model: nn.Module, name: str, before: bool) -> ChannelMask | None:
    """The ChannelMask a previous ``prune_channels`` put next to module ``name``, if any."""
    parent_name, _, attr = name.rpartition(".")
    if before:
        return _mask_at(model.get_submodule(parent_name), 0) if attr == "1" and parent_name else None
    return _mask_at(model.get_submodule(name), 1)


def _out_channels(mod: nn.Module, layer: str) -> int:
    if (mask := _mask_at(mod, 1)) is not None:
        return len(mask.mask)
    for attr in ("out_channels", "num_features", "out_features"):
        v = getattr(mod, attr, None)
        if isinstance(v, int):
            return v
    raise ValueError(
        f"cannot tell how many channels layer {layer!r} ({type(mod).__name__}) has: pick a "
        "Conv, BatchNorm or Linear layer"
    )


def _a_t(model: nn.Module, audit: Any, params: Mapping[str, Any], head: str) -> float:
    if params["a_t"] is not None:
        return float(params["a_t"])
    x = torch.cat(list(target_by_class(audit).values()))
    acts = penultimate_features(model, x, head=head)
    return float(torch.quantile(acts.flatten().double(), float(params["a_t_quantile"])))


def _sets(
    model: nn.Module, audit: Any, seed: int, params: Mapping[str, Any], head: str, memo: dict | None
) -> tuple[dict[int, Tensor], dict[int, Tensor], float, str, float] | None:
    """Eq. 6's sets of ``model`` per source class of ``params["classes"]`` and per target class, a_t, the
    note and the seconds they took (None: no class to prune for); once per ``memo`` for the same weights."""
    which = params["classes"]
    key = None  # the weights are fingerprinted only where a memo can use the key
    if memo is not None:
        key = (
            "channel_sets",
            weights_fingerprint(model),
            head,
            which,
            seed if which == "lingering" else None,
            params["a_t"],
            params["a_t_quantile"],
        )
        if key in memo:
            return memo[key]
    cls = audit.source_only().tolist() if which == "source_only" else audit.lingering_classes(seed)
    out = None
    if cls:
        t0 = time.perf_counter()
        src, note = held_out_source(audit, cls)
        a_t = _a_t(model, audit, params, head)
        s_sets = channel_sets(model, src, a_t, head=head)
        t_sets = channel_sets(model, target_by_class(audit), a_t, head=head)
        out = (s_sets, t_sets, a_t, note, time.perf_counter() - t0)
    if key is not None:
        memo[key] = out  # type: ignore[index]
    return out


def prune_sets(
    model: nn.Module, audit: Any, seed: int, params: Mapping[str, Any], head: str, memo: dict | None = None
) -> tuple[Tensor, float, str, float]:
    """The channels App. B prunes in ``model`` (Eq. 7, capped at ``max_fraction`` of the layer), a_t, the
    note and the seconds the channel sets took (in full in every row that uses them)."""
    sets = _sets(model, audit, seed, params, head, memo)
    if sets is None:
        return torch.zeros(0, dtype=torch.long), float("nan"), f"no {params['classes']} classes: nothing to prune", 0.0
    s_sets, t_sets, a_t, note, seconds = sets
    chans = channels_to_prune(s_sets, t_sets)
    cap = params["max_fraction"]
    if cap is not None:
        n_max = int(float(cap) * find_head(model, head)[1].in_features)
        if len(chans) > n_max:
            chans = cap_channels(chans, s_sets, n_max)
            note = join_notes(
                f"capped at max_fraction={float(cap):g}: the {n_max} channels in the most source-only classes' sets",
                note,
            )
    return chans, a_t, note, seconds


def cap_channels(channels: Tensor, source_sets: Mapping[int, Tensor], n_max: int) -> Tensor:
    """The ``n_max`` of ``channels`` in the most source-only classes' sets F^c (ties: lower index first),
    ascending: a bounded App. B pruning that removes the most shared memories first."""
    n_max = check_int_range("n_max", n_max, 0)
    count = {int(c): 0 for c in channels.tolist()}
    for s in source_sets.values():
        for c in torch.as_tensor(s).flatten().tolist():
            if int(c) in count:
                count[int(c)] += 1
    keep = sorted(count, key=lambda c: (-count[c], c))[:n_max]
    return torch.as_tensor(sorted(keep), dtype=torch.long)


def pruned(model: nn.Module, audit: Any, seed: int, params: Mapping[str, Any], memo: dict | None, what: str) -> Arm:
    """A copy of ``model`` with the channels of :func:`prune_sets` pruned, as an :class:`Arm` charged the
    seconds it took, with the note (``what``: which channels were pruned when) and the channel counts."""
    head = audit.world.spec.head
    chans, a_t, note, seconds = prune_sets(model, audit, seed, params, head, memo)
    t0 = time.perf_counter()
    out = prune_channels(model, chans, head=head)
    seconds += time.perf_counter() - t0
    note = join_notes(f"a_t={a_t:.3g}, {len(chans)} {what}", note)
    return Arm(out, seconds, note=note, n_pruned=len(chans), n_channels=find_head(model, head)[1].in_features)
