"""Retraining the source model without some classes (Sec. 5.1), where the world carries what it takes."""

from __future__ import annotations

from typing import Any, Iterable

import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from .. import training as _training
from .._data import labels_of
from .._validation import check_int_range
from .registry import NotFeasible

__all__ = ["retrain_source"]


def _kept(data: Any, exclude: list[int]) -> Tensor:
    """Indices of the items of ``data`` whose label is not in ``exclude``."""
    y = labels_of(data).long()
    return torch.nonzero(~torch.isin(y, torch.as_tensor(exclude, dtype=torch.long))).flatten()


def retrain_source(
    world: Any,
    exclude: Iterable[int],
    *,
    seed: int | None = None,
    device: Any = None,
    cache: bool = True,
    progress: bool = False,
) -> tuple[nn.Module, pd.DataFrame]:
    """Sec. 5.1 "Retraining the source model": M^s trained again without the classes ``exclude``.

    For a world that carries M^s's training set (``spec.source_train``) and recipe
    (``spec.source_recipe``: the ``shapes`` world), that recipe is repeated (``training.train_scratch``
    from ``world.make_scratch`` with one output per source class, the world's seed) on the images of the
    other classes; validation on the kept classes of ``world.source_data``. Raises
    :class:`NotFeasible` (with the reason) elsewhere: retraining an ImageNet model is not a smoke job.
    """
    if isinstance(exclude, Tensor):
        exclude = exclude.flatten().tolist()
    exclude = sorted({check_int_range("exclude", c, 0) for c in exclude})
    seed = world.seed if seed is None else check_int_range("seed", seed, 0)
    spec = world.spec
    if spec.source_train is None or spec.source_recipe is None:
        raise NotFeasible(
            f"world {world.name!r} does not carry its source training set and recipe: retraining "
            f"its source model (e.g. on ImageNet) is not feasible here"
        )
    data = spec.source_train
    keep = _kept(data, exclude)
    if len(keep) == 0:
        raise ValueError("exclude removes every source class: keep at least one")
    val = world.source_data
    keep_v = _kept(val, exclude).tolist()
    val_sel = TensorDataset(*(t[keep_v] for t in val.tensors)) if isinstance(val, TensorDataset) else None
    recipe = spec.source_recipe.replace(train_subset=keep.tolist())
    return _training.train_scratch(
        world.make_scratch,
        data,
        val_sel,
        recipe,
        num_classes=len(world.source_classes),
        seed=seed,
        device=device,
        cache=cache,
        progress=progress,
    )
