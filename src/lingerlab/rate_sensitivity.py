"""How much Eq. 3's L hangs on the learning rate a search picked (:func:`rate_sensitivity`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .arm_roles import distinct_seeds, is_fine_tuned
from .audit import Audit

__all__ = ["rate_sensitivity", "rate_text"]


def rate_sensitivity(audit: Audit, arm: str, seeds: Sequence[int] = (0, 1, 2, 3, 4)) -> pd.DataFrame:
    """How much Eq. 3's L hangs on the rate picked for the fine-tuned ``arm``: per rate of ``spec.lr_search``
    (or the recipe's own), the recipe trained for ``seeds``: ``lr``, ``picked``, mean target accuracy,
    |L| per seed and its median."""
    seed_list = distinct_seeds(seeds)
    if not is_fine_tuned(audit, arm):
        raise ValueError(f"arm must be a fine-tuned arm (L is defined for M^st); got {arm!r}")
    recipe = audit.recipe(arm)
    rows = []
    for lr in audit.world.spec.lr_search or (recipe.lr,):
        models = [audit.zoo.train(recipe.replace(lr=lr), s)[0] for s in seed_list]
        sizes = [int(audit.lingering(s, m)["lingering"].sum()) for s, m in zip(seed_list, models)]
        rows.append(
            {
                "lr": lr,
                "picked": lr == recipe.lr,
                "target acc (mean)": round(float(np.mean([audit.accuracy(m) for m in models])), 3),
                "|L| per seed": ", ".join(map(str, sizes)),
                "|L| (median)": float(np.median(sizes)),
            }
        )
    return pd.DataFrame(rows)


def rate_text(table: pd.DataFrame, world: str) -> str:
    """One Markdown sentence from :func:`rate_sensitivity`: |L| at the picked rate against the other rates."""
    picked = table.loc[table["picked"]]
    if len(picked) != 1:
        raise ValueError(f"table must have exactly one picked rate; got {len(picked)}")
    p, others = picked.iloc[0], table.loc[~table["picked"]]
    said = (
        f"`{world}`: L depends on the learning rate; at the picked {p['lr']:g} (target accuracy "
        f"{p['target acc (mean)']:.3f}) the median |L| per seed is {p['|L| (median)']:g}"
    )
    if others.empty:
        return said + " (no other rate was searched)."
    rest = "; ".join(
        f"{r['lr']:g}: {r['|L| (median)']:g} (accuracy {r['target acc (mean)']:.3f})" for _, r in others.iterrows()
    )
    said += f", at the search's other rates {rest}."
    if (others["|L| (median)"] == 0).any():
        said += (
            " Where the median is 0, fine-tuning forgot the source-only classes: the verdicts about L hold for the "
            "picked rate, and say nothing of those."
        )
    return said
