"""The training-set size sweep, App. B, Fig. 7 as numbers (:func:`size_sweep`), and its trends in words."""

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
    """The arm's own training images (seeded permutation), then the rest of ``target_train``: nested subsets."""
    g = torch.Generator().manual_seed(seed)
    first = list(range(n_all)) if own is None else list(own)
    rest = sorted(set(range(n_all)) - set(first))
    return [first[i] for i in torch.randperm(len(first), generator=g).tolist()] + [
        rest[i] for i in torch.randperm(len(rest), generator=g).tolist()
    ]


def size_sweep(audit: Any, sizes: Sequence[int], seeds: Sequence[int] = (0, 1, 2)) -> pd.DataFrame:
    """App. B, Fig. 7: fine-tune with M^t's recipe on the first ``n`` images of :func:`_growth_order` for
    each ``n`` in ``sizes`` (the epochs stay the recipe's; F stays the audit's). One row per (size,
    seed): ``target_acc``, Eq. 3's ``n_lingering`` and ``mean_p_st``, the fair test's controls on the
    composites of that model's own L (NaN where L is empty), ``n_composites_L`` and ``train_s``."""
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
    """Figure 7 in words: per measure, Spearman's correlation of the per-seed values (NaN left out) with
    ``n_train``, its p and the trend (``falls``/``rises`` where p < ``alpha``, ``no monotone trend``,
    ``not measured`` with fewer than three points)."""
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
