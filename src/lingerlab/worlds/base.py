"""A world: everything one experiment needs, from source model to target data, and its facts as a
typed :class:`WorldSpec` (like timm's ``PretrainedCfg``: one config object per model/world)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn
from torch.utils.data import Dataset

from ..recipe import Recipe

__all__ = ["World", "WorldSpec", "PlantedTruth"]


@dataclass(frozen=True)
class PlantedTruth:
    """Ground truth of a procedural world (``shapes``): ``shared`` source classes are planted in target
    images (co-occurring like the paper's tennis ball, or look-alikes like its weasel), ``source_only``
    never are (the F that Eq. 2 should find); per target training image, whether and which is shown."""

    shared: frozenset[int]
    source_only: frozenset[int]
    co_occurring: frozenset[int] = frozenset()
    lookalike: frozenset[int] = frozenset()
    class_attributes: tuple[tuple[str, str, str], ...] = ()
    target_train_has_shared: Any = None
    target_train_shared_class: Any = None


@dataclass(frozen=True, eq=False)
class WorldSpec:
    """The facts of a world that the method reads: one typed object, no free-form dict.

    Attributes:
        arch, head, cam_layer: the architecture's name, the qualified name of the head H(M) and the
            layer Grad-CAM reads (None: ``cam_layers``' default).
        input_size, mean, std: image side in pixels; the normalisation inside the models (images in [0, 1]).
        recipes: the world's arms by name: ``"M^t"`` (fine-tuning), ``"M^b"`` (competent scratch baseline)
            and any further arm (``shapes``: ``"M^t (zoom-out)"``).
        comparison_arms: the arms ``comparison.fair_test`` uses: names, or a mapping table label -> arm.
        comparison_reference: the label of the fine-tuned arm every baseline is tested against.
        composite_scale: overlay scale of the composites along each side (paper: 0.4).
        v_lo: Eq. 2's threshold (None: 1% of D^t); n_composites_per_class: |I(c)| (None: all of D^c).
        planted: the planted truth of a procedural world, else None.
        source_train, source_recipe, make_source: M^s's training images, recipe and fresh architecture
            (for remedies that retrain the source), when the world has them.
        source_groups: per image of ``source_data``, the photo it comes from (None: each its own).
        make_cluttered: ``make_cluttered(seed)`` -> target validation images with non-source clutter.
        given: the user's own models by arm name (``"M^t"``, ``"M^b"``), measured instead of trained.
        lr_search: the learning rates every arm is tuned over (``arms.Zoo.search``); empty: none.
        companion: the world the book shows beside this one in the fair test.
        provenance: what the loader found, for display only.
    """

    arch: str
    head: str
    recipes: Mapping[str, Recipe]
    cam_layer: str | None = None
    input_size: int = 224
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    comparison_arms: tuple[str, ...] | Mapping[str, str] = ("M^t", "M^b (same data)", "M^b (competent)")
    comparison_reference: str = "M^t"
    composite_scale: float = 0.4
    v_lo: float | None = None
    n_composites_per_class: int | None = None
    planted: PlantedTruth | None = None
    source_train: Dataset | None = None
    source_recipe: Recipe | None = None
    make_source: Callable[[], nn.Module] | None = None
    source_groups: tuple[str, ...] | None = None
    make_cluttered: Callable[[int], Dataset] | None = None
    given: Mapping[str, nn.Module] = field(default_factory=dict)
    lr_search: tuple[float, ...] = ()
    companion: str = "shapes"
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [k for k in ("M^t", "M^b") if k not in self.recipes]
        if missing:
            raise ValueError(f"recipes must define {missing} (the world's fine-tuning and scratch recipes)")
        bad = sorted(set(self.given) - {"M^t", "M^b"})
        if bad:
            raise ValueError(f"given may hold only 'M^t' and 'M^b' (models the user supplies); got {bad}")
        for k, m in self.given.items():
            if not isinstance(m, nn.Module):
                raise TypeError(f"given[{k!r}] must be an nn.Module; got {type(m).__name__}")
        if self.comparison_reference not in self.comparison:
            raise ValueError(
                f"comparison_reference must be a label of comparison_arms {list(self.comparison)}; "
                f"got {self.comparison_reference!r}"
            )

    @property
    def comparison(self) -> dict[str, str]:
        """``comparison_arms`` as a mapping table label -> arm name."""
        arms = self.comparison_arms
        return dict(arms) if isinstance(arms, Mapping) else {a: a for a in arms}

    @property
    def reference_arm(self) -> str:
        """The arm name of ``comparison_reference``."""
        return self.comparison[self.comparison_reference]


@dataclass
class World:
    """What an audit needs: M^s, D^c, the target data and the world's facts (``spec``).

    Images are float tensors [3, H, W] in [0, 1]; models normalise inside (``models.Normalized``).
    ``make_scratch`` returns a fresh M^b architecture with ``len(target_classes)`` outputs;
    ``fingerprint`` hashes everything that defines the world (the root of every cache key).
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
    spec: WorldSpec
    fingerprint: str = ""

    @property
    def planted_shared(self) -> frozenset[int] | None:
        """Planted shared classes (``spec.planted.shared``), None outside procedural worlds."""
        return None if self.spec.planted is None else self.spec.planted.shared

    @property
    def planted_source_only(self) -> frozenset[int] | None:
        """Planted source-only classes (``spec.planted.source_only``), None outside procedural worlds."""
        return None if self.spec.planted is None else self.spec.planted.source_only

    def recipe(self, name: str) -> Recipe:
        """The world's recipe ``name`` (a key of ``spec.recipes``: ``"M^t"``, ``"M^b"``, ...)."""
        if name not in self.spec.recipes:
            raise ValueError(f"name must be one of {', '.join(map(repr, self.spec.recipes))}; got {name!r}")
        return self.spec.recipes[name]


def world_device(device: str | torch.device | None) -> torch.device:
    """``device``, or CUDA when available (else CPU) for None or ``"auto"``."""
    if device not in (None, "auto"):
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
