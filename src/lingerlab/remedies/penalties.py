"""Extra losses for fine-tuning (paper, App. B): an L1 penalty on the penultimate activations and an
unlearning term, both plugged into :func:`lingerlab.training.finetune` as ``extra_loss``.

- :func:`l1_penultimate`: ``weight * mean(|B(M)(x)|)`` on the head's input (App. B, last paragraph).
  No second forward pass: a forward hook on the head H(M) keeps the head's input from the training
  forward pass (see :class:`L1Penultimate`).
- :func:`unlearning_loss`: pushes M^st's prediction on the lingering classes' own images towards
  uniform (App. B: "training objectives that can unlearn source-only features").

Both hold hooks while training; use them as context managers (``with l1_penultimate(1e-3) as extra:
finetune(..., extra_loss=extra)``) or call ``.remove()``, so the returned model carries no hook.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from .._data import ImageData, model_device
from .._validation import check_int_range, check_range
from ..cache import fingerprint
from ..models import find_head
from .images import as_image_tensor

__all__ = ["HeadFeatures", "L1Penultimate", "l1_penultimate", "UnlearningLoss", "unlearning_loss", "kl_to_uniform"]


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


class HeadFeatures:
    """The head's input B(M)(x) during training, for penalties on the penultimate features.

    On the first call it hooks the model's head (found by :func:`lingerlab.models.find_head`, or
    ``head``); from then on it reuses the features the training loop's own forward pass produced (no
    second forward). Only that first step, before the hook exists, runs one extra forward pass (with
    BatchNorm statistics left untouched). A context manager: leaving it removes the hooks.
    """

    def __init__(self, head: str | None = None) -> None:
        self.head = head
        self._cap = _HeadInput()

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

    def remove(self) -> None:
        """Remove the hooks from the model they were attached to."""
        self._cap.remove()

    def __enter__(self) -> "HeadFeatures":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


class L1Penultimate(HeadFeatures):
    """``weight * mean(|B(M)(x)|)``: the L1 activation penalty of App. B on the head's input.

    Called as ``extra_loss(model, x, y)`` by :func:`lingerlab.training.finetune` right after the
    loop's ``model(x)``; the features come from :class:`HeadFeatures`. The mean runs over the batch
    and the feature dimension, so ``weight`` does not scale with the backbone's width.
    """

    def __init__(self, weight: float, head: str | None = None) -> None:
        super().__init__(head)
        self.weight = float(check_range("weight", weight, 0))
        self.cache_key = ("l1_penultimate", self.weight, head)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor | None = None) -> Tensor:
        if self.weight == 0:
            return x.new_zeros(())
        return self.weight * self.features(model, x).abs().mean()


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

    def __init__(
        self,
        source_head: nn.Linear,
        lingering_images: ImageData | Sequence[ImageData],
        weight: float,
        batch: int = 32,
        seed: int = 0,
        head: str | None = None,
    ) -> None:
        self.weight = float(check_range("weight", weight, 0))
        self.batch = check_int_range("batch", batch, 1)
        check_int_range("seed", seed, 0)
        if not isinstance(source_head, nn.Linear):
            raise ValueError(
                f"source_head must be the source model's nn.Linear head H(M^s); got {type(source_head).__name__}"
            )
        self.source_head = copy.deepcopy(source_head).eval().requires_grad_(False)
        self.images = as_image_tensor(lingering_images, "lingering_images").detach()
        self.seed, self.head = seed, head
        self._cap = _HeadInput()
        self._gen = torch.Generator().manual_seed(seed)
        self.cache_key = (
            "unlearning",
            self.weight,
            self.batch,
            seed,
            head,
            fingerprint(self.source_head),
            fingerprint(self.images),
        )

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


def unlearning_loss(
    source_head: nn.Linear,
    lingering_images: ImageData | Sequence[ImageData],
    weight: float,
    batch: int = 32,
    seed: int = 0,
    head: str | None = None,
) -> UnlearningLoss:
    """An ``extra_loss`` for ``finetune`` that unlearns lingering memories (App. B; Eq. 3's M^st).

    ``source_head``: H(M^s) (e.g. ``split_model(source)[1]``), copied and frozen;
    ``lingering_images``: images of the lingering classes L (a tensor, dataset, or a list of them);
    ``weight`` >= 0; ``batch`` >= 1 images per step. See :class:`UnlearningLoss`.
    """
    return UnlearningLoss(source_head, lingering_images, weight, batch, seed, head)
