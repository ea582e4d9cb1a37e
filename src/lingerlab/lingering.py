"""Lingering memories: source-only classes that M^st = B(M^t) + H(M^s) still recognises (paper, Eq. 3)."""

from __future__ import annotations

import warnings
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from ._data import ImageData, batches, model_device
from ._validation import check_int_range, check_range
from .distributed import autocast_context, check_autocast
from .features import _sum_over_shards
from .models import eval_mode


def _sum_pass(
    models: Sequence[nn.Module],
    source_data: ImageData,
    num_classes: int | None,
    batch_size: int,
    devices: Sequence[torch.device],
    amps: Sequence[str | None],
) -> list[Tensor] | None:
    """One pass over ``source_data``: per-class sums of p_c (float64) for each model, then the per-class
    counts (None when it yields no batch)."""
    sums: list[Tensor] | None = None
    counts: Tensor | None = None
    with eval_mode(*models), torch.no_grad():
        for x, y in batches(source_data, batch_size):
            if y is None:
                raise ValueError("source_data has no labels: pass a Dataset of (image, source class id) pairs")
            y = y.long()
            for i, (model, dev) in enumerate(zip(models, devices)):
                with autocast_context(dev, amps[i]):
                    out = model(x.to(dev))
                p = out.float().softmax(dim=1)
                if sums is None:
                    c = p.shape[1] if num_classes is None else num_classes
                    if c != p.shape[1]:
                        raise ValueError(f"num_classes must match the model's {p.shape[1]} outputs; got {num_classes}")
                    sums = [torch.zeros(c, dtype=torch.float64, device=d) for d in devices]
                    counts = torch.zeros(c, dtype=torch.long, device=devices[0])
                if p.shape[1] != len(sums[i]):
                    raise ValueError(f"all models must have {len(sums[i])} outputs; model {i} has {p.shape[1]}")
                yd = y.to(dev)
                if i == 0:
                    if len(yd) and (int(yd.min()) < 0 or int(yd.max()) >= len(sums[0])):
                        raise ValueError(
                            f"source_data labels must be in [0, {len(sums[0]) - 1}]; got "
                            f"[{int(yd.min())}, {int(yd.max())}]"
                        )
                    counts += torch.bincount(yd, minlength=len(sums[0]))  # type: ignore[operator]
                sums[i].index_add_(0, yd, p.gather(1, yd[:, None])[:, 0].double())
    return None if sums is None or counts is None else [*sums, counts]


def _class_mean_probs_many(
    models: Sequence[nn.Module],
    source_data: ImageData,
    num_classes: int | None,
    batch_size: int,
    autocast: str | None = None,
) -> tuple[list[Tensor], Tensor]:
    """One pass over ``source_data``: per-class mean softmax p_c for each model, and per-class counts.
    Distributed, the float64 sums and int64 counts are summed over processes, then divided (the means
    equal one process's to float rounding)."""
    check_int_range("batch_size", batch_size, 1)
    if num_classes is not None:
        check_int_range("num_classes", num_classes, 1)
    devices = [model_device(m) for m in models]
    amps = [check_autocast(autocast, d) for d in devices]
    out = _sum_over_shards(
        lambda data: _sum_pass(models, data, num_classes, batch_size, devices, amps),
        source_data,
        lambda c: [
            *(torch.zeros(c, dtype=torch.float64, device=d) for d in devices),
            torch.zeros(c, dtype=torch.long, device=devices[0]),
        ],
    )
    if out is None:
        raise ValueError("source_data is empty: pass at least one image")
    sums, counts = out[:-1], out[-1]
    means = [(s / counts.to(s.device)).float() for s in sums]  # 0/0 -> NaN for classes without images
    return means, counts


def default_p_lo(num_source_classes: int) -> float:
    """Eq. 3's threshold scaled to the source label space: ten times the chance level 1/n, capped at
    0.5; the paper's 0.01 for ImageNet's 1000 classes ("10 times higher than the expected score with a
    no-skill ImageNet classifier")."""
    if num_source_classes < 2:
        raise ValueError(f"num_source_classes must be >= 2; got {num_source_classes}")
    return min(0.5, 10.0 / num_source_classes)


def class_mean_probs(
    model: nn.Module,
    source_data: ImageData,
    num_classes: int | None = None,
    batch_size: int = 64,
    *,
    autocast: str | None = None,
) -> tuple[Tensor, Tensor]:
    """For every class c: ``mean_{x in D^c} p_c(model(x))`` (the statistic of Eq. 3) and ``|D^c|``.

    ``source_data`` yields ``(image, source class id)``. Returns ``(mean_p [C], counts [C])`` on the
    model's device; classes without images get NaN. ``autocast="bf16"`` runs the forward in bfloat16;
    the means stay float32 (tolerances: tests/test_precision.py). Distributed, each process sums its
    shard and the sums are combined: the same counts, and means within 1e-6 of one process.
    """
    means, counts = _class_mean_probs_many([model], source_data, num_classes, batch_size, autocast)
    return means[0], counts.to(means[0].device)


def lingering(
    mst: nn.Module,
    source_data: ImageData,
    classes: Tensor | Iterable[int],
    p_lo: float = 0.01,
    *,
    source_model: nn.Module | None = None,
    mst_source_bn: nn.Module | None = None,
    v: Tensor | Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    batch_size: int = 64,
    autocast: str | None = None,
    p_source: Tensor | None = None,
) -> pd.DataFrame:
    """Eq. 3: ``L = {c in F : mean_{x in D^c} p_c(M^st(x)) > p_lo}``, as a table with one row per class.

    ``classes`` is F (``features.source_only``). Columns: ``class, name, v`` (Eq. 1, when given),
    ``n_images`` (|D^c|), ``p_source`` (under ``source_model``, or its means ``p_source`` already
    computed), ``p_st`` (under M^st), ``p_st_source_bn`` (under ``mst_source_bn``) and ``lingering``
    (``p_st > p_lo``); columns of models not given hold NaN. A class with no images gets ``n_images``
    0, NaN probabilities, ``lingering`` False and a warning. All models share one pass over
    ``source_data``; ``autocast`` and distributed runs as in :func:`class_mean_probs`.
    """
    check_range("p_lo", p_lo, 0, 1, lo_open=True, hi_open=True)
    if p_source is not None and source_model is not None:
        raise ValueError("pass source_model or its class means p_source, not both")
    cls = [int(c) for c in (classes.flatten().tolist() if isinstance(classes, Tensor) else classes)]
    models = [mst] + [m for m in (source_model, mst_source_bn) if m is not None]
    means, counts = _class_mean_probs_many(models, source_data, None, batch_size, autocast)
    n_classes = len(counts)
    if p_source is not None and tuple(p_source.shape) != (n_classes,):
        raise ValueError(
            f"p_source must hold one mean per source class ({n_classes}); got shape {tuple(p_source.shape)}"
        )
    bad = [c for c in cls if not 0 <= c < n_classes]
    if bad:
        raise ValueError(f"classes must be in [0, {n_classes - 1}]; got {bad[:10]}")
    if class_names is not None and len(class_names) != n_classes:
        raise ValueError(f"class_names must have one name per source class ({n_classes}); got {len(class_names)}")
    if v is not None and len(v) != n_classes:
        raise ValueError(f"v must have one count per source class ({n_classes}); got {len(v)}")
    idx = torch.as_tensor(cls, dtype=torch.long)

    def col(t: Tensor | None) -> np.ndarray:
        return np.full(len(cls), np.nan) if t is None else t.detach().cpu()[idx].double().numpy()

    it = iter(means[1:])
    p_source = next(it) if source_model is not None else p_source
    p_bn = next(it) if mst_source_bn is not None else None
    n_img = counts.cpu()[idx].numpy()
    p_st = col(means[0])
    v_col = torch.as_tensor(v).cpu()[idx].long().tolist() if v is not None else [pd.NA] * len(cls)
    table = pd.DataFrame(
        {
            "class": pd.array(cls, dtype="int64"),
            "name": [class_names[c] if class_names is not None else str(c) for c in cls],
            "v": pd.array(v_col, dtype="Int64"),
            "n_images": n_img.astype("int64"),
            "p_source": col(p_source),
            "p_st": p_st,
            "p_st_source_bn": col(p_bn),
            "lingering": np.nan_to_num(p_st, nan=-1.0) > p_lo,
        }
    )
    empty = [c for c, n in zip(cls, n_img) if n == 0]
    if empty:
        warnings.warn(
            f"{len(empty)} classes have no images in source_data and cannot be tested "
            f"(marked not lingering): {empty[:10]}",
            stacklevel=2,
        )
    return table
