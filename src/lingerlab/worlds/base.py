"""A world: everything one experiment needs, from source model to target data (see DESIGN.md)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn
from torch.utils.data import Dataset


@dataclass
class World:
    """What an audit needs. Images everywhere are float tensors in [0, 1], shape [3, H, W];
    every model takes such images (normalisation lives inside the model, see ``models.Normalized``).

    Attributes:
        name: world name (``shapes``, ``lite0``, ``paper`` or a user's).
        profile: the profile's sizes (``smoke`` or ``full``), as data.
        seed: seed the world's data were drawn with.
        source_model: M^s, in eval mode.
        source_classes: names of C(D^s), index = source class id.
        source_data: labelled source images ``(image, source class id)``: D^c for every class c.
        target_train, target_val: labelled target images ``(image, target class id)``.
        target_classes: names of C(D^t).
        make_scratch: returns a fresh, randomly initialised M^b architecture with
            ``len(target_classes)`` outputs (it takes the same [0, 1] images).
        finetune_defaults, scratch_defaults: keyword arguments for ``training.finetune`` /
            ``training.train_scratch`` that suit this world and profile.
        planted_shared, planted_source_only: ground truth of a procedural world, else None.
        fingerprint: a short hash of everything that defines the world (name, profile, seed,
            source weights, data), used as the root of every cache key.
        extra: world-specific objects (e.g. clutter generators for controls).
    """

    name: str
    profile: Any
    seed: int
    source_model: nn.Module
    source_classes: list[str]
    source_data: Dataset
    target_train: Dataset
    target_val: Dataset
    target_classes: list[str]
    make_scratch: Callable[[], nn.Module]
    finetune_defaults: dict[str, Any] = field(default_factory=dict)
    scratch_defaults: dict[str, Any] = field(default_factory=dict)
    planted_shared: frozenset[int] | None = None
    planted_source_only: frozenset[int] | None = None
    fingerprint: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
