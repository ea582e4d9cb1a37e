"""The training-set size sweep: App. B, Fig. 7 as numbers.

:func:`size_sweep` fine-tunes on nested subsets of the target training set and measures each model
(Eq. 3, and the fair test's controls on the composites of its own L); :func:`size_trends` and
:func:`describe_trends` say which measures fall or rise as the set grows. Every model is trained
through the audit's ``arms.Zoo`` (cached on disk); a model read from the cache reports the training
time stored when it was trained.
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
import torch
from scipy.stats import spearmanr

from .controls import controls
from .fair_test import subset_per_seed
from ._validation import check_int_range, check_seeds

__all__ = ["size_sweep", "size_trends", "describe_trends", "SIZE_MEASURES"]

#: the measures :func:`size_trends` reads by default
SIZE_MEASURES = ("n_lingering", "distraction", "distraction_excess", "err_source_only", "excess_error", "flip_rate")
#: the fair test's measures on L that :func:`size_sweep` reports per (size, seed)
_CONTROLS = ("distraction", "distraction_null", "distraction_excess", "err_source_only", "excess_error", "flip_rate")


def _growth_order(own: Sequence[int] | None, n_all: int, seed: int) -> list[int]:
    """The order in which :func:`size_sweep` adds images: the arm's own training images first (a seeded
    permutation of them), then the rest of ``target_train`` (a seeded permutation), so the subsets are
    nested and the size of the arm's own set is the arm itself."""
    g = torch.Generator().manual_seed(seed)
    first = list(range(n_all)) if own is None else list(own)
    rest = sorted(set(range(n_all)) - set(first))
    return [first[i] for i in torch.randperm(len(first), generator=g).tolist()] + [
        rest[i] for i in torch.randperm(len(rest), generator=g).tolist()
    ]


def size_sweep(
    audit: Any,
    sizes: Sequence[int],
    seeds: Sequence[int] = (0, 1, 2),
) -> pd.DataFrame:
    """App. B, Fig. 7 measured on distraction: fine-tune on the first ``n`` images of one seeded
    ordering of ``world.target_train`` (:func:`_growth_order`: the arm's own D^t first, so the subsets
    are nested and ``n = |D^t|`` is the arm itself) for each ``n`` in ``sizes``, with the recipe of
    M^t (``train_subset`` replaced).

    The number of epochs stays the recipe's, so a larger set also means more
    steps, as it would in practice. F (Eq. 2) is the audit's, fixed across sizes. One row per (size,
    seed): ``n_train, seed, target_acc``; Eq. 3: ``n_lingering`` (|L| of that model) and ``mean_p_st``
    (mean p_c over F under its M^st); and on the composites of *its own* L (``controls.controls``):
    ``distraction``, its per-class ``distraction_null``, ``distraction_excess``, ``err_source_only``,
    ``excess_error``, ``flip_rate`` and ``n_composites_L`` (NaN measures where L is empty);
    ``train_s``.
    """
    seeds = check_seeds(seeds)
    n_all = len(audit.world.target_train)
    sizes = [check_int_range("sizes", n, 2, n_all) for n in sizes]
    if not sizes:
        raise ValueError("sizes is empty: pass at least one training-set size")
    perm = _growth_order(audit.recipe("M^t").train_subset, n_all, 0)
    recipes = {f"n={n}": audit.recipe("M^t").replace(name=f"M^t, n={n}", train_subset=sorted(perm[:n])) for n in sizes}
    ctl = controls(audit, recipes, seeds, reference=next(iter(recipes)))
    ps = subset_per_seed(ctl)
    ps = ps[ps.subset == "L"].set_index(["arm", "seed"])
    rows = []
    for n, (label, recipe) in zip(sizes, recipes.items()):
        for seed in seeds:
            model, hist = audit.zoo.train(recipe, seed)
            table = audit.lingering(seed, model)
            r = ps.loc[(label, seed)]
            rows.append(
                {
                    "n_train": n,
                    "seed": seed,
                    "target_acc": float(r["target_acc"]),
                    "n_lingering": int(table["lingering"].sum()),
                    "mean_p_st": float(table["p_st"].mean()),
                    **{k: float(r[k]) for k in _CONTROLS},
                    "n_composites_L": int(r["n_composites"]),
                    "train_s": float(hist["wall_s"].iloc[-1]) if hist is not None and len(hist) else 0.0,
                }
            )
    return pd.DataFrame(rows)


def size_trends(size: pd.DataFrame, measures: Sequence[str] = SIZE_MEASURES, alpha: float = 0.05) -> pd.DataFrame:
    """Figure 7 in words: for each measure of :func:`size_sweep`, Spearman's rank correlation between the
    number of target training images and the per-seed values (every size and seed one point; NaN
    values, where L is empty, left out), its p-value, and the trend: ``falls`` or ``rises`` where
    p < ``alpha``, else ``no monotone trend`` (``not measured`` with fewer than three points)."""
    rows = []
    for m in measures:
        d = size[["n_train", m]].dropna()
        rho, p = spearmanr(d["n_train"], d[m]) if len(d) > 2 and d[m].nunique() > 1 else (float("nan"), float("nan"))
        trend = "no monotone trend" if not p < alpha else ("falls" if rho < 0 else "rises")
        trend = "not measured" if len(d) < 3 else trend
        rows.append({"measure": m, "points": len(d), "spearman_rho": float(rho), "p": float(p), "trend": trend})
    return pd.DataFrame(rows)


def describe_trends(trends: pd.DataFrame, world: str) -> str:
    """One sentence from :func:`size_trends`: which measures fall, which rise, which show no trend."""
    parts = [
        f"{t}: {', '.join(trends.loc[trends['trend'] == t, 'measure'])}"
        for t in ("falls", "rises", "no monotone trend", "not measured")
        if (trends["trend"] == t).any()
    ]
    return f"`{world}`, as the target set grows (Spearman's rank correlation, p < 0.05): " + "; ".join(parts) + "."
