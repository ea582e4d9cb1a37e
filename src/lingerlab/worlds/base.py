"""A world: everything one experiment needs, from source model to target data, and its facts as a
typed :class:`WorldSpec` (like timm's ``PretrainedCfg``: one config object per model/world)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from torch import nn
from torch.utils.data import Dataset

from ..recipe import Recipe

__all__ = ["World", "WorldSpec", "PlantedTruth"]


@dataclass(frozen=True)
class PlantedTruth:
    """Ground truth of a procedural world (``shapes``).

    Attributes:
        shared: source classes planted in target images (they must not be in F).
        source_only: source classes never planted in target images (the F that Eq. 2 should find).
        co_occurring: shared classes that co-occur with the target object (the paper's tennis ball).
        lookalike: source classes that resemble a target class (the paper's weasel).
        class_attributes: per source class, its (shape, texture, colour).
        target_train_has_shared, target_train_shared_class: per target training image, whether it
            shows a shared object and which (-1: none).
    """

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
        arch: the architecture's name (``"SmallResNet"``, ``"EfficientNet-Lite0"``, ``"ResNet-18"``).
        head: qualified name of the classification head H(M) in the source model.
        cam_layer: the layer Grad-CAM reads (None: the architecture's default, ``cam_layers``).
        input_size: image side in pixels that the models take.
        mean, std: the normalisation inside the models (``models.Normalized``); images are in [0, 1].
        recipes: the world's own arms by name: ``"M^t"`` (standard fine-tuning) and ``"M^b"`` (the
            competent scratch baseline), as :class:`recipe.Recipe`, and any further arm the world
            defines (``shapes``: ``"M^t (zoom-out)"``, M^t's recipe with M^b's augmentation).
        comparison_arms: the arms ``comparison.fair_test`` uses by default in this world: arm names, or
            a mapping table label -> arm name (a label says what the arm is, e.g. ``"M^t (no aug.)"``).
        comparison_reference: the label (of ``comparison_arms``) of the fine-tuned arm every baseline
            is tested against: the one trained with the same augmentation as the scratch arms.
        composite_scale: overlay scale of the composites along each side (paper: 0.4).
        v_lo: Eq. 2's threshold for this world (None: 1% of D^t).
        n_composites_per_class: |I(c)| by default (None: every image of D^c).
        planted: the planted truth of a procedural world, else None.
        source_train: M^s's own training images, when the world has them (held-out source images for
            remedies; retraining the source).
        source_recipe: how M^s was trained from ``make_source`` (None: it cannot be retrained here).
        make_source: builds a fresh source architecture with one output per source class.
        source_groups: per image of ``source_data``, the photo it comes from (augmented views of one
            photo are one cluster); None: every image is its own.
        make_cluttered: ``make_cluttered(seed)`` -> the target validation images with non-source
            clutter (a competence control), or None.
        given: models the user already has, by arm name (``"M^t"``: their fine-tuned model,
            ``"M^b"``: their own baseline): the audit measures them instead of training those arms
            (every seed gives the same model). Empty: every arm is trained from its recipe.
        lr_search: the learning rates every arm of the comparison is tuned over (the same grid, one run
            per rate at seed 0, picked by target validation accuracy: ``arms.Zoo.search``); empty: each
            recipe keeps its own rate.
        companion: the world the book shows beside this one in the fair test (``shapes`` beside a
            real-photo world, ``lite0`` beside ``shapes``).
        provenance: what the loader found, for display only (layouts, weights file, skipped files,
            source photos); the method never reads it.
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
        spec: the world's facts (:class:`WorldSpec`): head, CAM layer, recipes, planted truth...
        fingerprint: a short hash of everything that defines the world (name, profile, seed,
            source weights, data), used as the root of every cache key.
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
