"""One call sets up a notebook of the book: device, seeds, world and audit (:func:`chapter`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import warnings

import torch

from ._validation import check_int_range
from .audit import Audit
from .report import resolve_device
from .worlds import load_world

__all__ = ["Chapter", "chapter", "profile_table"]


@dataclass
class Chapter:
    """A chapter's ``device``, training ``seeds``, ``world`` and ``audit`` (None without a world)."""

    device: torch.device
    seed: int
    seeds: tuple[int, ...]
    profile: str
    world: Any = None
    audit: Any = None


def _short_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """A warning as ``Category: message``, without the file path."""
    return f"{category.__name__}: {message}\n"


def chapter(
    world: str | None,
    profile: str = "smoke",
    seed: int = 0,
    device: str | torch.device = "auto",
    *,
    n_seeds: int = 3,
    progress: bool = True,
    **audit_params: Any,
) -> Chapter:
    """Set up a notebook: pick the device, seed torch with ``seed``, show pandas tables uncut, print
    warnings without file paths, and load ``world`` at ``profile`` (None: no world) with its ``Audit``
    (``audit_params``: :class:`config.AuditConfig` fields); ``seeds``: ``seed .. seed + n_seeds - 1``."""
    import pandas as pd

    check_int_range("seed", seed, 0)
    check_int_range("n_seeds", n_seeds, 1)
    dev = resolve_device(device)
    torch.manual_seed(int(seed))
    # the book never shows a table cut with "..."
    pd.set_option(
        "display.width", 160, "display.max_columns", None, "display.max_rows", 500, "display.max_colwidth", 200
    )
    warnings.formatwarning = _short_warning
    out = Chapter(device=dev, seed=int(seed), seeds=tuple(int(seed) + i for i in range(n_seeds)), profile=profile)
    if world is not None:
        out.world = load_world(world, profile=profile, seed=int(seed), progress=progress)
        out.audit = Audit(out.world, device=dev, **audit_params)
    return out


def profile_table(worlds: Any = ("shapes", "lite0", "lite1", "lite2", "paper")) -> Any:
    """What profile ``full`` changes against ``smoke``: one row per (world, field) that differs, read
    from ``profiles.PROFILES``; a recipe field gives a row per recipe setting (``finetune.epochs``)."""
    import dataclasses

    import pandas as pd

    from .profiles import PROFILES

    rows = []
    for w in worlds:
        if w not in PROFILES or not {"smoke", "full"} <= set(PROFILES[w]):
            raise ValueError(
                f"worlds must name worlds with a smoke and a full profile, from "
                f"{', '.join(map(repr, PROFILES))}; got {w!r}"
            )
        smoke, full = PROFILES[w]["smoke"], PROFILES[w]["full"]
        for f in dataclasses.fields(smoke):
            a, b = getattr(smoke, f.name), getattr(full, f.name)
            if f.name == "name" or a == b:
                continue
            if dataclasses.is_dataclass(a):  # a recipe: one row per setting in it that differs
                for g in dataclasses.fields(a):
                    ga, gb = getattr(a, g.name), getattr(b, g.name)
                    if ga != gb:
                        rows.append({"world": w, "setting": f"{f.name}.{g.name}", "smoke": ga, "full": gb})
            else:
                rows.append({"world": w, "setting": f.name, "smoke": a, "full": b})
    return pd.DataFrame(rows, columns=["world", "setting", "smoke", "full"])
