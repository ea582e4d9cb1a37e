"""How much Eq. 3's L hangs on the learning rate a search picked (:func:`rate_sensitivity`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .arm_roles import distinct_seeds, is_fine_tuned
from .audit import Audit

__all__ = ["rate_sensitivity"]


def rate_sensitivity(audit: Audit, arm: str, seeds: Sequence[int] = (0, 1, 2, 3, 4)) -> pd.DataFrame:
    """How much Eq. 3's L depends on the learning rate the search picked for the fine-tuned ``arm``: for
    every rate of ``spec.lr_search`` (or the recipe's own rate), the arm's recipe at that rate trained
    for ``seeds``, one row per rate: ``lr``, ``picked``, the mean target validation accuracy and |L| (Eq. 3)
    per seed with its median. A verdict about L holds for the picked rate only; this table says whether
    another rate the validation set could not rule out would have left an L at all."""
    seed_list = distinct_seeds(seeds)
    recipe = audit.recipe(arm)
    if not is_fine_tuned(audit, arm):
        raise ValueError(f"arm must be a fine-tuned arm (L is defined for M^st); got {arm!r}")
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
