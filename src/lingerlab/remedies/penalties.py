"""Extra losses for fine-tuning (paper, App. B), as ``extra_loss`` of :func:`lingerlab.training.finetune`:
an L1 penalty on the penultimate activations and an unlearning term. Both hold hooks while training; use
them as context managers (``with L1Penultimate(1e-3) as extra: ...``) or call ``.remove()``."""

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


@contextmanager
def _keep_bn_stats(model: nn.Module) -> Iterator[None]:
    """A forward pass that leaves every BatchNorm running statistic as it was (it updates clones)."""
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

    A pre-hook on the model records which ``x`` a forward pass started from and a hook on the head keeps
    its input, so the training loop's own forward pass is reused; only the first step, before the hooks
    exist, runs one extra forward pass (BatchNorm statistics untouched). Leaving the context removes the
    hooks.
    """

    def __init__(self, head: str | None = None) -> None:
        self.head = head
        self.model: nn.Module | None = None
        self.handles: list[Any] = []
        self._cur = self._feats = self._feats_x = None

    def _attach(self, model: nn.Module) -> None:
        self.remove()
        _, head_mod = find_head(model, self.head)

        def pre(_m: nn.Module, args: tuple) -> None:
            self._cur = args[0] if args else None

        def hook(_m: nn.Module, args: tuple, _out: Any) -> None:
            self._feats, self._feats_x = args[0], self._cur

        self.handles = [model.register_forward_pre_hook(pre), head_mod.register_forward_hook(hook)]
        self.model = model

    def _kept(self, x: Tensor) -> Tensor | None:
        """The stored head input when it came from ``model(x)`` for this very ``x``, else None."""
        return self._feats if self._feats is not None and self._feats_x is x else None

    def features(self, model: nn.Module, x: Tensor) -> Tensor:
        """The head's input for ``model(x)``: from the hook when that forward just ran, else recomputed."""
        if self.model is not model:
            self._attach(model)
        f = self._kept(x)
        if f is None:
            with _keep_bn_stats(model):
                model(x)
            f = self._kept(x)
        assert f is not None
        return f

    def remove(self) -> None:
        """Remove the hooks from the model they were attached to."""
        for h in self.handles:
            h.remove()
        self.handles, self.model = [], None
        self._cur = self._feats = self._feats_x = None

    def __enter__(self) -> "HeadFeatures":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


class L1Penultimate(HeadFeatures):
    """``weight * mean(|B(M)(x)|)``: App. B's L1 activation penalty on the head's input (mean over batch
    and features, so ``weight`` does not scale with the backbone's width; 0 adds nothing)."""

    def __init__(self, weight: float, head: str | None = None) -> None:
        super().__init__(head)
        self.weight = float(check_range("weight", weight, 0))
        self.cache_key = ("l1_penultimate", self.weight, head)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor | None = None) -> Tensor:
        if self.weight == 0:
            return x.new_zeros(())
        return self.weight * self.features(model, x).abs().mean()


#: An ``extra_loss`` for ``finetune``: the L1 penalty of App. B (see :class:`L1Penultimate`).
l1_penultimate = L1Penultimate


def kl_to_uniform(logits: Tensor) -> Tensor:
    """``KL(softmax(logits) || uniform)`` per row: ``sum_c p_c log p_c + log K`` (0 iff uniform)."""
    logp = logits.float().log_softmax(dim=1)
    return (logp.exp() * logp).sum(dim=1) + math.log(logits.shape[1])


class UnlearningLoss(HeadFeatures):
    """``weight * mean KL(softmax(H_s(B(M)(x))) || uniform)`` over ``batch`` images x of the lingering
    classes (App. B: "training objectives that can unlearn source-only features"; Eq. 3's M^st).

    Each call passes the drawn images through the *current* backbone (BatchNorm in eval mode, as when
    Eq. 3 is measured) and a frozen copy of ``source_head`` H(M^s). Draws come from a generator seeded
    with ``seed``, re-seeded whenever the loss meets a new model, so a run is reproducible.
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
        super().__init__(head)
        self.weight = float(check_range("weight", weight, 0))
        self.batch = check_int_range("batch", batch, 1)
        check_int_range("seed", seed, 0)
        if not isinstance(source_head, nn.Linear):
            raise ValueError(
                f"source_head must be the source model's nn.Linear head H(M^s); got {type(source_head).__name__}"
            )
        self.source_head = copy.deepcopy(source_head).eval().requires_grad_(False)
        self.images = as_image_tensor(lingering_images, "lingering_images").detach()
        self.seed = seed
        self._gen = torch.Generator().manual_seed(seed)
        fps = fingerprint(self.source_head), fingerprint(self.images)
        self.cache_key = ("unlearning", self.weight, self.batch, seed, head, *fps)

    def __call__(self, model: nn.Module, x: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        dev = model_device(model)
        if self.model is not model:
            self._attach(model)
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
        feats = self._kept(xl)
        assert feats is not None
        head = self.source_head.to(device=feats.device, dtype=feats.dtype)
        return self.weight * kl_to_uniform(head(feats)).mean()


#: An ``extra_loss`` for ``finetune`` that unlearns lingering memories (see :class:`UnlearningLoss`).
unlearning_loss = UnlearningLoss
