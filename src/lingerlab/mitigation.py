"""Remedies for lingering memories (paper, Sec. 5.1 and Appendix B), as options of fine-tuning.

Each remedy is a small, testable piece that plugs into :func:`lingerlab.training.finetune`:

- :func:`l1_penultimate`: an L1 penalty on the penultimate activations B(M)(x) (App. B, last
  paragraph), as an ``extra_loss``. No second forward pass: a forward hook on the head H(M) keeps
  the head's input from the training forward pass (see :class:`L1Penultimate`).
- :func:`feature_set`, :func:`channel_sets`, :func:`channels_to_prune`, :func:`prune_channels`:
  App. B, Eqs. 6-7. ``F^c = {f : activation(f, x) > a_t for all x in D^c}``; prune
  ``(union_{c in source-only} F^c) minus (union_{c in target} F^c)`` by a fixed zero mask in front
  of the head (:class:`ChannelMask`). The mask lives in the backbone, so it survives
  ``replace_head`` (fine-tuning a pruned source model) and ``source_target_model`` (M^st).
- :func:`unlearning_loss`: an ``extra_loss`` that pushes M^st's prediction on the lingering classes'
  own images towards uniform (App. B: "training objectives that can unlearn source-only features").
- :func:`composite_augment`: fine-tuning on composites (a target image pasted on a source image,
  with the target label; DESIGN.md, second trial).
- "Retraining the source model" (Sec. 5.1) and BatchNorm/learning-rate policies are rows of
  :func:`lingerlab.sweeps.remedy_table`, which measures all of them.

Extra-loss objects hold hooks while training; use them as context managers (``with
l1_penultimate(1e-3) as extra: finetune(..., extra_loss=extra)``) or call ``.remove()``, so the
returned model carries no hook.
"""
from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ._data import ImageData, batches, model_device
from ._validation import check_int_range, check_range
from .cache import fingerprint
from .models import _set_submodule, eval_mode, find_head

__all__ = ["L1Penultimate", "l1_penultimate", "UnlearningLoss", "unlearning_loss", "ChannelMask",
           "penultimate_features", "feature_set", "channel_sets", "channels_to_prune", "prune_channels",
           "images_by_class", "composite_augment", "CompositeAugment", "kl_to_uniform"]


# --------------------------------------------------------------------------------------------
# capturing the head's input (the penultimate activations) during the ordinary forward pass
# --------------------------------------------------------------------------------------------

class _HeadInput:
    """Forward hooks that keep the input of ``model``'s head H(M), tagged with the model input.

    A pre-hook on the whole model records which tensor ``x`` the current forward pass started from;
    a hook on the head stores its input. ``get(x)`` returns the stored features only when they came
    from ``model(x)`` for this very ``x`` (object identity), else None.
    """

    def __init__(self) -> None:
        self.model: nn.Module | None = None
        self.handles: list[Any] = []
        self._x: Tensor | None = None
        self._cur: Tensor | None = None
        self._feats: Tensor | None = None
        self._feats_x: Tensor | None = None

    def attach(self, model: nn.Module, head: str | None) -> None:
        self.remove()
        _, head_mod = find_head(model, head)

        def pre(_m: nn.Module, args: tuple) -> None:
            self._cur = args[0] if args else None

        def hook(_m: nn.Module, args: tuple, _out: Any) -> None:
            self._feats, self._feats_x = args[0], self._cur

        self.handles = [model.register_forward_pre_hook(pre), head_mod.register_forward_hook(hook)]
        self.model = model

    def get(self, x: Tensor) -> Tensor | None:
        if self._feats is not None and self._feats_x is x:
            return self._feats
        return None

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles, self.model = [], None
        self._cur = self._feats = self._feats_x = None


@contextmanager
def _keep_bn_stats(model: nn.Module) -> Iterator[None]:
    """Run a forward pass without changing any BatchNorm running statistic.

    The forward pass updates clones of the buffers; the original tensors are put back afterwards
    (untouched, so an autograd graph that saved them stays valid).
    """
    saved = []
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            for k, b in list(m.named_buffers(recurse=False)):
                saved.append((m, k, b))
                setattr(m, k, b.clone())
    try:
        yield
    finally:
        for m, k, b in saved:
            setattr(m, k, b)


class L1Penultimate:
    """``weight * mean(|B(M)(x)|)``: the L1 activation penalty of App. B on the head's input.

    Called as ``extra_loss(model, x, y)`` by :func:`lingerlab.training.finetune` right after the
    loop's ``model(x)``. On the first call it hooks the model's head (found by
    :func:`lingerlab.models.find_head`, or ``head``); from then on it reuses the features the loop's
    own forward pass produced (no second forward). Only that first step, before the hook exists,
    runs one extra forward pass (with BatchNorm statistics left untouched). The mean runs over the
    batch and the feature dimension, so ``weight`` does not scale with the backbone's width.
    """

    def __init__(self, weight: float, head: str | None = None) -> None:
        self.weight = float(check_range("weight", weight, 0))
        self.head = head
        self._cap = _HeadInput()
        self.cache_key = ("l1_penultimate", self.weight, head)

    def features(self, model: nn.Module, x: Tensor) -> Tensor:
        """The head's input for ``model(x)``: from the hook when that forward just ran, else recomputed."""
        if self._cap.model is not model:
            self._cap.attach(model, self.head)
        f = self._cap.get(x)
        if f is None:
            with _keep_bn_stats(model):
                model(x)
            f = self._cap.get(x)
        assert f is not None
        return f

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor | None = None) -> Tensor:
        if self.weight == 0:
            return x.new_zeros(())
        return self.weight * self.features(model, x).abs().mean()

    def remove(self) -> None:
        """Remove the hooks from the model they were attached to."""
        self._cap.remove()

    def __enter__(self) -> "L1Penultimate":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def l1_penultimate(weight: float, head: str | None = None) -> L1Penultimate:
    """An ``extra_loss`` for ``finetune``: L1 penalty ``weight * mean(|B(M)(x)|)`` (App. B).

    ``weight`` >= 0 (0 adds nothing). See :class:`L1Penultimate` for how the features are obtained.
    """
    return L1Penultimate(weight, head)


# --------------------------------------------------------------------------------------------
# unlearning: M^st's prediction on the lingering classes' images pushed towards uniform
# --------------------------------------------------------------------------------------------

def kl_to_uniform(logits: Tensor) -> Tensor:
    """``KL(softmax(logits) || uniform)`` per row: ``sum_c p_c log p_c + log K`` (0 iff uniform)."""
    logp = logits.float().log_softmax(dim=1)
    return (logp.exp() * logp).sum(dim=1) + math.log(logits.shape[1])


def _as_image_tensor(data: ImageData | Sequence[ImageData], name: str) -> Tensor:
    if isinstance(data, (list, tuple)):
        parts = [_as_image_tensor(d, name) for d in data]
        return torch.cat(parts) if parts else torch.empty(0)
    if isinstance(data, Tensor):
        x = data
    else:
        xs = [xb for xb, _ in batches(data, 256)]
        x = torch.cat(xs) if xs else torch.empty(0)
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"{name} must hold at least one image [N, 3, H, W]; got shape {tuple(x.shape)}")
    return x


class UnlearningLoss:
    """``weight * mean_{x in batch} KL(softmax(H_s(B(M)(x))) || uniform)`` over the source classes.

    Each call draws ``batch`` images of the lingering classes (``lingering_images``, i.e. D^c for
    c in L), passes them through the *current* backbone B(M) and a frozen copy of the source head
    H(M^s), and returns the divergence of that M^st prediction from uniform: minimising it unlearns
    the source memory without touching the target head. BatchNorm layers run in eval mode for this
    pass, as M^st does when Eq. 3 is measured (no statistics change; the target batch's forward
    pass is untouched). Draws come from a generator seeded with ``seed``, re-seeded whenever the
    loss meets a new model, so a fine-tuning run is reproducible.
    """

    def __init__(self, source_head: nn.Linear, lingering_images: ImageData | Sequence[ImageData],
                 weight: float, batch: int = 32, seed: int = 0, head: str | None = None) -> None:
        self.weight = float(check_range("weight", weight, 0))
        self.batch = check_int_range("batch", batch, 1)
        check_int_range("seed", seed, 0)
        if not isinstance(source_head, nn.Linear):
            raise ValueError(f"source_head must be the source model's nn.Linear head H(M^s); got "
                             f"{type(source_head).__name__}")
        self.source_head = copy.deepcopy(source_head).eval().requires_grad_(False)
        self.images = _as_image_tensor(lingering_images, "lingering_images").detach()
        self.seed, self.head = seed, head
        self._cap = _HeadInput()
        self._gen = torch.Generator().manual_seed(seed)
        self.cache_key = ("unlearning", self.weight, self.batch, seed, head,
                          fingerprint(self.source_head), fingerprint(self.images))

    def __call__(self, model: nn.Module, x: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        dev = model_device(model)
        if self._cap.model is not model:
            self._cap.attach(model, self.head)
            self._gen = torch.Generator().manual_seed(self.seed)
        if self.weight == 0:
            return torch.zeros((), device=dev)
        idx = torch.randint(0, len(self.images), (min(self.batch, len(self.images)),), generator=self._gen)
        xl = self.images[idx].to(dev)
        bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.training]
        for m in bns:
            m.eval()
        try:
            model(xl)
        finally:
            for m in bns:
                m.train()
        feats = self._cap.get(xl)
        assert feats is not None
        head = self.source_head.to(device=feats.device, dtype=feats.dtype)
        return self.weight * kl_to_uniform(head(feats)).mean()

    def remove(self) -> None:
        """Remove the hooks from the model they were attached to."""
        self._cap.remove()

    def __enter__(self) -> "UnlearningLoss":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def unlearning_loss(source_head: nn.Linear, lingering_images: ImageData | Sequence[ImageData], weight: float,
                    batch: int = 32, seed: int = 0, head: str | None = None) -> UnlearningLoss:
    """An ``extra_loss`` for ``finetune`` that unlearns lingering memories (App. B; Eq. 3's M^st).

    ``source_head``: H(M^s) (e.g. ``split_model(source)[1]``), copied and frozen;
    ``lingering_images``: images of the lingering classes L (a tensor, dataset, or a list of them);
    ``weight`` >= 0; ``batch`` >= 1 images per step. See :class:`UnlearningLoss`.
    """
    return UnlearningLoss(source_head, lingering_images, weight, batch, seed, head)


# --------------------------------------------------------------------------------------------
# pruning (App. B, Eqs. 6-7)
# --------------------------------------------------------------------------------------------

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


@torch.no_grad()
def penultimate_features(model: nn.Module, images: ImageData, layer: str | None = None, head: str | None = None,
                         batch_size: int = 64) -> Tensor:
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
        try:
            mod = model.get_submodule(layer)
        except AttributeError:
            raise ValueError(f"layer {layer!r} is not a submodule of {type(model).__name__}") from None
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


def feature_set(model: nn.Module, images: ImageData, a_t: float, layer: str | None = None,
                head: str | None = None, batch_size: int = 64) -> Tensor:
    """App. B, Eq. 6 (or Eq. 7): ``F^c = {f : activation(f, x) > a_t for all x in D^c}``.

    ``images`` is D^c. Returns the channel indices, ascending (LongTensor). ``a_t`` is any real
    threshold (finite); activations are those of :func:`penultimate_features`.
    """
    if isinstance(a_t, bool) or not isinstance(a_t, (int, float)) or not math.isfinite(a_t):
        raise ValueError(f"a_t must be a finite number (the activation threshold of Eqs. 6-7); got {a_t!r}")
    acts = penultimate_features(model, images, layer, head, batch_size)
    return torch.nonzero((acts > a_t).all(dim=0)).flatten()


def images_by_class(data: ImageData, classes: Iterable[int] | None = None) -> dict[int, Tensor]:
    """Split a labelled dataset into ``{class: images [n, 3, H, W]}`` (only ``classes``, if given)."""
    xs, ys = [], []
    for x, y in batches(data, 256):
        if y is None:
            raise ValueError("data has no labels: pass a Dataset of (image, class id) pairs")
        xs.append(x)
        ys.append(y)
    if not xs:
        raise ValueError("data is empty: pass at least one image")
    x, y = torch.cat(xs), torch.cat(ys).long()
    wanted = sorted({int(c) for c in y.tolist()}) if classes is None else [int(c) for c in classes]
    return {c: x[y == c] for c in wanted}


def channel_sets(model: nn.Module, data_by_class: Mapping[int, ImageData], a_t: float, layer: str | None = None,
                 head: str | None = None, batch_size: int = 64) -> dict[int, Tensor]:
    """Eqs. 6-7 for every class: ``{c: F^c}`` (see :func:`feature_set`); ``data_by_class`` maps c to D^c."""
    if not data_by_class:
        raise ValueError("data_by_class is empty: pass {class: images} for at least one class")
    return {int(c): feature_set(model, d, a_t, layer, head, batch_size) for c, d in data_by_class.items()}


def channels_to_prune(source_sets: Mapping[int, Tensor] | Iterable[Tensor],
                      target_sets: Mapping[int, Tensor] | Iterable[Tensor]) -> Tensor:
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


def prune_channels(model: nn.Module, channels: Tensor | Iterable[int], layer: str | None = None,
                   head: str | None = None) -> nn.Module:
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
        try:
            mod = new.get_submodule(layer)
        except AttributeError:
            raise ValueError(f"layer {layer!r} is not a submodule of {type(model).__name__}") from None
        name = layer
        n_ch = _out_channels(new, mod, layer)
    idx = torch.as_tensor([int(c) for c in (channels.flatten().tolist() if isinstance(channels, Tensor)
                                            else channels)], dtype=torch.long)
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
    raise ValueError(f"cannot tell how many channels layer {layer!r} ({type(mod).__name__}) has: pick a "
                     "Conv, BatchNorm or Linear layer")


# --------------------------------------------------------------------------------------------
# fine-tuning on composites (DESIGN.md, second trial)
# --------------------------------------------------------------------------------------------

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
        self.backgrounds = _as_image_tensor(backgrounds, "backgrounds").detach()
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
            img[:, t0:t0 + ph, l0:l0 + pw] = patches[j]
            out[i] = img
        return out


def composite_augment(backgrounds: ImageData | Sequence[ImageData], p: float = 0.5,
                      scale: float = 0.4) -> CompositeAugment:
    """An ``augment`` for ``finetune`` that trains on composites (see :class:`CompositeAugment`)."""
    return CompositeAugment(backgrounds, p, scale)
