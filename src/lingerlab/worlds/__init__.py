"""Worlds: ready-made experiments (source model, source images, target data, recipes).

``load_world(name, profile="smoke", seed=0, **overrides)`` builds one. ``overrides`` may change any
field of the world's profile (see ``lingerlab.profiles``) or pass a world's own options (e.g.
``source_model=``, ``root=``, ``device=``, ``progress=``, ``cache=``).
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any

from ..profiles import PROFILES, get_profile, split_overrides
from .base import World

__all__ = ["World", "load_world", "available_worlds"]

_LOADERS = {
    "shapes": ("lingerlab.worlds.shapes", "load_shapes"),
    "lite0": ("lingerlab.worlds.lite0", "load_lite0"),
    "paper": ("lingerlab.worlds.paper", "load_paper"),
    "custom": ("lingerlab.worlds.custom", "load_custom"),
}


def available_worlds() -> dict[str, list[str]]:
    """World names and the profiles each defines, e.g. ``{"shapes": ["smoke", "full"], ...}``."""
    return {name: list(PROFILES[name]) for name in _LOADERS}


def load_world(name: str, profile: Any = "smoke", seed: int = 0, **overrides: Any) -> World:
    """Build world ``name`` under ``profile`` (``"smoke"`` or ``"full"``) with data drawn from ``seed``.

    Profile fields in ``overrides`` replace the profile's values; the rest go to the world's loader.
    Unknown names, profiles or options raise ValueError listing the valid ones.
    """
    if name not in _LOADERS:
        raise ValueError(f"name must be one of {', '.join(map(repr, _LOADERS))}; got {name!r}")
    fields, options = split_overrides(name, overrides)
    prof = get_profile(name, profile, **fields)
    module, attr = _LOADERS[name]
    loader = getattr(importlib.import_module(module), attr)
    params = inspect.signature(loader).parameters
    unknown = sorted(k for k in options if k not in params)
    if unknown:
        valid_opts = [p for p in params if p not in ("profile", "seed")]
        raise ValueError(f"unknown option(s) {', '.join(map(repr, unknown))} for world {name!r}; valid options: "
                         f"{', '.join(valid_opts)}; profile fields: "
                         f"{', '.join(f for f in prof.__dataclass_fields__ if f != 'name')}")
    return loader(prof, seed, **options)
