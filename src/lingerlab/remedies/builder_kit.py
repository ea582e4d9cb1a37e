"""What the remedy builders share: M^t's recipe trained with some fields changed, plain M^t trained once
per table, the held-out images a remedy may use, and the notes and seconds an :class:`~.registry.Arm`
reports.

A remedy that changes how M^t is trained is ``audit.recipe("M^t").replace(...)`` trained by
``audit.zoo.train(recipe, seed, source=...)``: the same training arguments as plain fine-tuning but
for the fields it changes, so plain fine-tuning and its remedies differ only where the table says.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd
from torch import Tensor, nn

from .._validation import check_range
from .images import images_by_class
from .registry import NotFeasible

__all__ = [
    "train_mt",
    "wall_s",
    "join_notes",
    "plain_model",
    "held_out_source",
    "target_by_class",
    "check_weight",
]


def train_mt(audit: Any, seed: int, source: nn.Module | None = None, **changes: Any) -> tuple[nn.Module, pd.DataFrame]:
    """M^t's recipe with ``changes``, fine-tuning ``source`` (None: the world's M^s)."""
    return audit.zoo.train(audit.recipe("M^t").replace(**changes), seed, source=source)


def wall_s(hist: pd.DataFrame | None) -> float:
    """The wall-clock seconds a training history took (0 for none)."""
    return float(hist["wall_s"].iloc[-1]) if hist is not None and len(hist) else 0.0


def join_notes(*parts: str) -> str:
    """The non-empty ``parts``, joined by ``"; "``."""
    return "; ".join(x for x in parts if x)


def plain_model(audit: Any, seed: int, memo: dict | None) -> tuple[nn.Module, pd.DataFrame]:
    """Plain M^t for ``seed`` and its history, trained once per ``memo`` (the table's rows share it)."""
    if memo is not None and ("plain", seed) in memo:
        return memo[("plain", seed)]
    out = train_mt(audit, seed)
    if memo is not None:
        memo[("plain", seed)] = out
    return out


def held_out_source(
    audit: Any, classes: Sequence[int], per_class: int = 64, missing: str | None = None
) -> tuple[dict[int, Tensor], str]:
    """Images of ``classes`` that the audit does not evaluate on: the world's source *training* images
    (``spec.source_train``) when it has them, else D^c itself (with a note saying so). With
    ``missing``, no image at all raises :class:`NotFeasible` with that reason."""
    data = audit.world.spec.source_train
    note = ""
    if data is None:
        data = audit.world.source_data
        note = "trained on the same D^c images it is evaluated on (this world has no separate source training set)"
    by = images_by_class(data, classes)
    out = {c: x[:per_class] for c, x in by.items() if len(x)}
    if missing is not None and not out:
        raise NotFeasible(missing)
    return out, note


def target_by_class(audit: Any, max_per_class: int = 256) -> dict[int, Tensor]:
    """D^t split by target class (M^t's training images)."""
    by = images_by_class(audit.target_data())
    return {c: x[:max_per_class] for c, x in by.items()}


def check_weight(p: Mapping[str, Any]) -> None:
    """The check of a remedy whose one parameter is a non-negative ``weight`` (params complete)."""
    check_range("weight", p["weight"], 0)
