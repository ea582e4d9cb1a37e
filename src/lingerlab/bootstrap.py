"""Bootstrap intervals that resample what varies independently (clusters, seeds, classes), never rows
of a pooled table (Field and Welsh 2007; Cameron, Gelbach and Miller 2008; Davison and Hinkley 1997,
sec. 3.8). Inputs and seeds follow ``_stat_inputs``.
"""

from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np
import pandas as pd
import torch

from ._stat_inputs import BLOCK, ArrayLike, Seed, as_values, rng_of
from ._validation import check_choice, check_int_range, check_range

__all__ = ["cluster_bootstrap_ci", "paired_cluster_bootstrap_ci", "hierarchical_bootstrap"]


def cluster_bootstrap_ci(
    values: ArrayLike,
    clusters: Sequence[Hashable] | np.ndarray | torch.Tensor,
    *,
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: Seed = 0,
    statistic: str = "mean",
) -> tuple[float, float, float]:
    """``(pooled mean, lo, hi)``: a cluster (block) percentile bootstrap of the mean of ``values``.

    Rows sharing a label in ``clusters`` (e.g. the source photo of augmented composites) are one
    cluster; each of ``n_boot`` replicates draws as many clusters as there are, with replacement, and
    takes the mean over their rows (Field and Welsh 2007; Cameron, Gelbach and Miller 2008).
    ``statistic``: only ``"mean"``. NaN rows are dropped; no rows: all NaN; one cluster: NaN interval.
    """
    statistic = check_choice("statistic", statistic, ("mean",))
    level = check_range("level", level, 0, 1, lo_open=True, hi_open=True)
    n_boot = check_int_range("n_boot", n_boot, 1)
    rng = rng_of(seed)
    v = as_values("values", values, drop_nan=False)
    if isinstance(clusters, torch.Tensor):
        clusters = clusters.detach().cpu().numpy()
    if isinstance(clusters, (str, bytes)) or np.isscalar(clusters):
        raise TypeError(f"clusters must be a sequence of labels, one per value; got {type(clusters).__name__}")
    labels = list(clusters)
    if len(labels) != len(v):
        raise ValueError(f"values and clusters must have one entry per row; got {len(v)} and {len(labels)}")
    keep = ~np.isnan(v)
    v = v[keep]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    codes, _ = pd.factorize(pd.Series([lab for lab, k in zip(labels, keep) if k], dtype=object))
    if (codes < 0).any():
        raise ValueError("clusters must not hold missing labels (None/NaN)")
    sums = np.bincount(codes, weights=v)
    sizes = np.bincount(codes).astype(np.float64)
    g = len(sizes)
    estimate = float(v.mean())
    if g < 2:
        return estimate, float("nan"), float("nan")
    rows = max(1, BLOCK // g)
    boot = np.empty(n_boot)
    for start in range(0, n_boot, rows):
        m = min(rows, n_boot - start)
        idx = rng.integers(0, g, size=(m, g))
        boot[start : start + m] = sums[idx].sum(axis=1) / sizes[idx].sum(axis=1)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [tail, 1.0 - tail])
    return estimate, float(lo), float(hi)


def paired_cluster_bootstrap_ci(
    a: ArrayLike,
    b: ArrayLike,
    clusters: Sequence[Hashable] | np.ndarray | torch.Tensor,
    *,
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: Seed = 0,
    statistic: str = "mean",
) -> tuple[float, float, float]:
    """``(mean(a - b), lo, hi)``: :func:`cluster_bootstrap_ci` of the per-row difference ``a - b`` (two
    measurements of the same row; rows where either is NaN are dropped)."""
    x, y = as_values("a", a, drop_nan=False), as_values("b", b, drop_nan=False)
    if len(x) != len(y):
        raise ValueError(f"a and b must have one value per row; got {len(x)} and {len(y)}")
    return cluster_bootstrap_ci(x - y, clusters, level=level, n_boot=n_boot, seed=seed, statistic=statistic)


def hierarchical_bootstrap(units: Sequence[Sequence[ArrayLike]], *, n_boot: int = 4000, seed: Seed = 0) -> np.ndarray:
    """Bootstrap draws of ``mean over seeds of [mean(g_0) - mean(g_1)]`` (or ``mean(g_0)``).

    ``units``: per seed, one or two 1-D arrays of class means (e.g. L, and F \\ L). Each draw resamples
    the seeds, then the classes of each group of every drawn seed (Davison and Hinkley 1997, sec. 3.8).
    Seeds with an empty group drop out. Returns ``n_boot`` draws (all NaN when no seed is left).
    """
    n_boot = check_int_range("n_boot", n_boot, 1)
    rng = rng_of(seed)
    kept = []
    for i, unit in enumerate(units):
        groups = [as_values(f"units[{i}][{j}]", g) for j, g in enumerate(unit)]
        if not 1 <= len(groups) <= 2:
            raise ValueError(f"units[{i}] must hold one or two arrays of class means; got {len(groups)}")
        if all(len(g) for g in groups):
            kept.append(groups)
    if not kept:
        return np.full(n_boot, np.nan)
    s = len(kept)
    pick = rng.integers(0, s, size=(n_boot, s))
    total = np.zeros(n_boot)
    for j in range(s):
        for u, groups in enumerate(kept):
            rows = np.flatnonzero(pick[:, j] == u)
            if len(rows) == 0:
                continue
            value = np.zeros(len(rows))
            for sign, g in zip((1.0, -1.0), groups):
                value += sign * g[rng.integers(0, len(g), size=(len(rows), len(g)))].mean(axis=1)
            total[rows] += value
    return total / s
