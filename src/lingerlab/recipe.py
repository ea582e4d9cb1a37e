"""A training recipe as data: :class:`Recipe`, every knob of ``training.finetune`` /
``training.train_scratch``, frozen, hashable and validated where it is built."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ._validation import check_bool, check_choice, check_int_range, check_range
from .identities import callable_key

__all__ = ["Recipe", "subset_of", "Augment", "ExtraLoss"]

Augment = Callable[[Tensor, torch.Generator], Tensor]
ExtraLoss = Callable[[nn.Module, Tensor, Tensor], Tensor]

#: fields that leave the trained weights unchanged or that the training set's fingerprint covers
_OUTSIDE_KEY = ("name", "description", "train_subset", "num_workers")


def subset_of(indices: Any) -> tuple[int, ...] | None:
    """Indices (a sequence, tensor or None) as a tuple of Python ints (None stays None)."""
    if indices is None:
        return None
    if isinstance(indices, Tensor):
        return tuple(int(i) for i in indices.flatten().tolist())
    return tuple(int(i) for i in indices)


@dataclass(frozen=True)
class Recipe:
    """How one arm is trained, as data.

    ``init``: ``"source"`` (fine-tune M^s with a new ``head``; None: ``models.find_head``'s) or
    ``"scratch"`` (``world.make_scratch()``); ``train_subset``: indices of ``world.target_train``
    (None: all); ``augment(x, generator) -> x`` per batch; ``bn``: ``"update"`` or ``"freeze"`` the
    BatchNorm statistics; ``precise_bn``: recompute them after the last step (needs ``bn="update"``,
    ``batch_size >= 2``); ``freeze``: parameter-name prefixes kept fixed; ``extra_loss``: a term added
    to the cross-entropy (remedies); ``description``: one line for the recipe table.
    """

    name: str
    init: str = "source"
    train_subset: tuple[int, ...] | None = None
    augment: Augment | None = None
    epochs: int = 5
    optimizer: str = "sgd"
    lr: float = 1e-3
    lr_schedule: str = "constant"
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 32
    bn: str = "update"
    precise_bn: bool = False
    freeze: tuple[str, ...] = ()
    head: str | None = None
    extra_loss: ExtraLoss | None = None
    num_workers: int = 0
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty string; got {self.name!r}")
        # each value as a plain Python value (NumPy scalars, an int lr), so equal recipes have equal keys
        clean = {
            "init": check_choice("init", self.init, ("source", "scratch")),
            "epochs": check_int_range("epochs", self.epochs, 0),
            "optimizer": check_choice("optimizer", self.optimizer, ("sgd", "adam")),
            "lr": float(check_range("lr", self.lr, 0, None, lo_open=True)),
            "lr_schedule": check_choice("lr_schedule", self.lr_schedule, ("constant", "cosine")),
            "momentum": float(check_range("momentum", self.momentum, 0, 1, hi_open=True)),
            "weight_decay": float(check_range("weight_decay", self.weight_decay, 0, None)),
            "batch_size": check_int_range("batch_size", self.batch_size, 1),
            "bn": check_choice("bn", self.bn, ("update", "freeze")),
            "num_workers": check_int_range("num_workers", self.num_workers, 0),
            "precise_bn": check_bool("precise_bn", self.precise_bn),
        }
        if clean["precise_bn"] and clean["bn"] == "freeze":
            raise ValueError(
                "precise_bn=True recomputes the BatchNorm statistics that bn='freeze' keeps fixed: "
                "use bn='update' with precise_bn, or precise_bn=False"
            )
        if clean["precise_bn"] and clean["batch_size"] < 2:  # refused here, not after the last epoch
            raise ValueError(
                f"precise_bn=True needs batch_size >= 2 (a batch of one has no BatchNorm variance); "
                f"got batch_size={clean['batch_size']}"
            )
        clean["freeze"] = (self.freeze,) if isinstance(self.freeze, str) else tuple(self.freeze)
        clean["train_subset"] = subset_of(self.train_subset)
        for k, v in clean.items():
            object.__setattr__(self, k, v)

    def replace(self, **changes: Any) -> "Recipe":
        """A copy with ``changes`` (field names of :class:`Recipe`)."""
        bad = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if bad:
            raise ValueError(f"unknown recipe field(s) {bad}; valid: {[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **changes)

    def cache_key(self) -> dict[str, Any]:
        """The fields that define the trained weights, as plain data for a cache key (callables by
        :func:`identities.callable_key`, which raises ``TypeError`` for one it cannot hash stably)."""
        key = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in _OUTSIDE_KEY}
        key.update(
            augment=callable_key(self.augment),
            extra_loss=callable_key(self.extra_loss),
            freeze=sorted(self.freeze),
            momentum=self.momentum if self.optimizer == "sgd" else None,
        )
        return key

    def row(self, n_images: int) -> dict[str, Any]:
        """One row of :func:`recipe_table` (``n_images``: how many images ``train_subset`` None means)."""
        aug = "none" if self.augment is None else getattr(self.augment, "label", type(self.augment).__name__)
        return {
            "arm": self.name,
            "init": "M^s (fine-tuned)" if self.init == "source" else "random (scratch)",
            "training images": n_images if self.train_subset is None else len(self.train_subset),
            "augmentation": aug,
            "epochs": self.epochs,
            "optimiser": self.optimizer,
            "lr": self.lr,
            "schedule": self.lr_schedule,
            "batch": self.batch_size,
            "BatchNorm": self.bn + (", precise statistics" if self.precise_bn else ""),
            "frozen": ", ".join(self.freeze) or "none",
            "extra loss": "none" if self.extra_loss is None else type(self.extra_loss).__name__,
            "what it is": self.description,
        }
