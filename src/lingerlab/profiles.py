"""Profiles: the sizes of a world as data (``smoke`` for a CPU in minutes, ``full`` for a GPU), one
frozen dataclass per world; :func:`get_profile` returns one with fields overridden.

Each profile holds its training recipes (:class:`~lingerlab.recipe.Recipe`): ``finetune``, how M^t
fine-tunes M^s, ``scratch``, how M^b trains from random weights, and in ``shapes`` ``source``, how M^s
trains. A world's loader takes them and sets only what it decides itself (:data:`LOADER_DECIDES`, and
for some arms the augmentation and data-loading workers)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._validation import _is_bool, _is_int, _is_real
from .recipe import Recipe

__all__ = [
    "LOADER_DECIDES",
    "ShapesProfile",
    "LiteProfile",
    "PaperProfile",
    "CustomProfile",
    "PROFILES",
    "get_profile",
    "profile_names",
    "split_overrides",
]


#: the recipe fields a world's loader sets itself: a profile override may not set them
LOADER_DECIDES = ("name", "init", "head", "train_subset", "description")


class _Recipes:
    """A profile's recipe fields hold recipes (checked where a profile is built, not in its loader)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if isinstance(f.default, Recipe) and not isinstance(getattr(self, f.name), Recipe):
                raise TypeError(
                    f"{type(self).__name__}.{f.name} must be a Recipe (get_profile also takes a dict of its "
                    f"fields); got {type(getattr(self, f.name)).__name__}"
                )


@dataclass(frozen=True)
class ShapesProfile(_Recipes):
    """Sizes of the procedural ``shapes`` world: ``n_shapes x n_textures x n_colours`` source classes
    (the first two shapes look like the target glyphs); the scratch baseline trains on ``target_train``
    images, fine-tuning on a seeded ``finetune_train`` of them (the paper's small D^t). ``source``,
    ``finetune`` and ``scratch``: the recipes of M^s, M^t and M^b."""

    name: str
    image_size: int = 32
    n_shapes: int = 8
    n_textures: int = 3
    n_colours: int = 1
    n_shared: int = 4  # co-occurring source classes planted in target images
    shared_prob: float = 0.75  # fraction of target images that contain a shared object
    clutter_prob: float = 0.3  # fraction of source/target images with non-source clutter
    source_train_per_class: int = 600
    source_val_per_class: int = 40  # D^c per class
    n_composites_per_class: int = 20  # |I(c)|: composites per source-only class (Audit default)
    target_train: int = 2500  # scratch baseline's training set (= world.target_train)
    finetune_train: int = 400  # fine-tuning subset of target_train (spec.recipes["M^t"].train_subset)
    target_val: int = 500
    # CNN base width: 16 trains 2.0x faster than 24 on a 2-core CPU (benchmarks/training.py) and, with a
    # fourth source epoch, recovers the planted truth as well (Eqs. 1-2)
    width: int = 16
    source: Recipe = Recipe(
        "M^s", init="scratch", epochs=4, lr=3e-3, lr_schedule="cosine", optimizer="adam", batch_size=128
    )
    # both fair-test arms' budget (on 200 images the scratch arm falls below the competence gate);
    # Adam: SGD at lr 0.01 ranged 0.68-0.95 target accuracy over seeds
    finetune: Recipe = Recipe("M^t", epochs=20, lr=3e-4, lr_schedule="cosine", optimizer="adam", batch_size=32)
    lr_search: tuple[float, ...] = (3e-4, 1e-3, 3e-3)  # the grid every fair-test arm is tuned over
    scratch: Recipe = Recipe(
        "M^b", init="scratch", epochs=8, lr=2e-3, lr_schedule="cosine", optimizer="adam", batch_size=64
    )
    zoom_min: float = 0.35  # zoom-out augmentation of the scratch baseline
    zoom_max: float = 0.8
    zoom_prob: float = 0.5
    # the glyph's scale as a target image's subject and beside a shared object (still about 10 px in a
    # target pasted at 40% of the side)
    glyph_scale: tuple[float, float] = (0.4, 0.5)
    glyph_scale_beside: tuple[float, float] = (0.3, 0.36)
    # fraction of M^s's training images with an occluder at 30-50% of the side, as in photos
    source_occlusion: float = 0.5
    # notebook 4's scratch baselines; notebook 5's further remedy worlds and Figure 7's training-set sizes
    comparison_baselines: tuple[str, ...] = ("M^b (same data)",)
    remedy_worlds: tuple[str, ...] = ()
    size_sweep: tuple[int, ...] = (50, 100, 200, 400)


@dataclass(frozen=True)
class LiteProfile(_Recipes):
    """Sizes of the ``lite0``/``lite1``/``lite2`` worlds (EfficientNet-Lite, LFW faces vs non-faces):
    ``smoke`` at 112 px for all three, ``full`` at each model's native 224 / 240 / 260 px.
    ``finetune`` and ``scratch``: the recipes of M^t and M^b."""

    name: str
    # the smallest size of 96-128 px at which each model still names chelsea and coffee right
    image_size: int = 112
    dc_per_class: int = 4  # seeded augmented views per D^c photo
    target_val_fraction: float = 0.3  # of scikit-image's 200 LFW-subset images
    finetune: Recipe = Recipe("M^t", epochs=3, lr=1e-4, optimizer="adam", bn="update", batch_size=16)
    source_bn_momentum: float = 0.01  # M^s's BatchNorm momentum while fine-tuning with bn="update"
    # as many epochs as M^t's: with precise BatchNorm statistics three reach validation 0.95-1.0 (without,
    # the nets sit at chance until epoch 6)
    scratch: Recipe = Recipe("M^b", init="scratch", epochs=3, lr=1e-3, optimizer="adam", batch_size=16, precise_bn=True)
    scratch_bn_momentum: float = 0.1
    lr_search: tuple[float, ...] = (1e-4, 3e-4, 1e-3)  # the grid every fair-test arm is tuned over


def _lite_full(image_size: int) -> LiteProfile:
    smoke = LiteProfile("smoke")
    return LiteProfile(
        "full",
        image_size=image_size,
        dc_per_class=16,
        finetune=smoke.finetune.replace(epochs=10, batch_size=32),
        scratch=smoke.scratch.replace(epochs=40, batch_size=32),
    )


@dataclass(frozen=True)
class PaperProfile(_Recipes):
    """Sizes of the ``paper`` world (ResNet-18 ImageNet, Dogs-vs-Cats, ImageNet val as D^c);
    ``finetune`` and ``scratch``: the recipes of M^t and M^b."""

    name: str
    image_size: int = 224
    n_train: int = 200  # target training images (balanced cats/dogs)
    n_val: int = 200
    dc_per_class: int = 2  # D^c images per ImageNet class (at most what exists)
    finetune: Recipe = Recipe("M^t", epochs=2, lr=1e-3, optimizer="sgd", bn="update", batch_size=32)
    scratch: Recipe = Recipe("M^b", init="scratch", epochs=2, lr=1e-3, optimizer="adam", batch_size=32)
    num_workers: int = 0  # data-loading workers of both recipes


@dataclass(frozen=True)
class CustomProfile(_Recipes):
    """Sizes of a ``custom`` world built from the user's folders and model; ``finetune`` and
    ``scratch``: the recipes of M^t and M^b."""

    name: str
    image_size: int = 224
    val_fraction: float = 0.2  # used when target_root has no train/ and val/ folders
    dc_per_class: int = 0  # 0: every image of source_root
    finetune: Recipe = Recipe("M^t", epochs=3, lr=1e-3, optimizer="sgd", bn="update", batch_size=32)
    scratch: Recipe = Recipe("M^b", init="scratch", epochs=10, lr=1e-3, optimizer="adam", batch_size=32)
    num_workers: int = 0  # data-loading workers of both recipes


PROFILES: dict[str, dict[str, Any]] = {
    "shapes": {
        "smoke": ShapesProfile("smoke"),
        # 144 classes; M^s is sized so that `make test-full` can check Eqs. 1-2 on a 2-core CPU
        "full": ShapesProfile(
            "full",
            n_shapes=12,
            n_textures=4,
            n_colours=3,
            n_shared=12,
            source_train_per_class=400,
            source_val_per_class=50,
            target_train=8000,
            target_val=2000,
            width=32,
            source=ShapesProfile("smoke").source.replace(epochs=6),
            scratch=ShapesProfile("smoke").scratch.replace(epochs=30),
            comparison_baselines=("M^b (same data)", "M^b (matched acc)"),
            remedy_worlds=("lite0",),
            size_sweep=(100, 200, 500, 1000, 2000),
        ),
    },
    "lite0": {"smoke": LiteProfile("smoke"), "full": _lite_full(224)},
    "lite1": {"smoke": LiteProfile("smoke"), "full": _lite_full(240)},
    "lite2": {"smoke": LiteProfile("smoke"), "full": _lite_full(260)},
    "paper": {
        "smoke": PaperProfile("smoke"),
        "full": PaperProfile(
            "full",
            n_train=20000,
            n_val=5000,
            dc_per_class=50,
            finetune=PaperProfile("smoke").finetune.replace(epochs=5, batch_size=64),
            scratch=PaperProfile("smoke").scratch.replace(epochs=30, batch_size=64),
            num_workers=8,
        ),
    },
    "custom": {
        "smoke": CustomProfile(
            "smoke",
            image_size=128,
            finetune=CustomProfile("full").finetune.replace(epochs=2),
            scratch=CustomProfile("full").scratch.replace(epochs=2),
        ),
        "full": CustomProfile("full"),
    },
}


def profile_names(world: str) -> list[str]:
    """The profiles a world defines."""
    if world not in PROFILES:
        raise ValueError(f"world must be one of {', '.join(map(repr, PROFILES))}; got {world!r}")
    return list(PROFILES[world])


def split_overrides(world: str, overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split keyword overrides into ``(profile fields, everything else)``."""
    fields = {f.name for f in dataclasses.fields(type(next(iter(PROFILES[world].values()))))} - {"name"}
    return (
        {k: v for k, v in overrides.items() if k in fields},
        {k: v for k, v in overrides.items() if k not in fields},
    )


def get_profile(world: str, profile: Any = "smoke", **overrides: Any) -> Any:
    """Profile ``profile`` (a name or an instance of the world's class) of ``world`` with ``overrides``
    applied; an unknown field raises ValueError, a value of the wrong type TypeError. A recipe
    (``finetune``, ``scratch``, ``source``) is overridden by a :class:`~lingerlab.recipe.Recipe` or by a
    dict of Recipe fields merged into the profile's, e.g. ``finetune={"epochs": 2}`` (not the fields of
    :data:`LOADER_DECIDES`)."""
    names = profile_names(world)
    cls = type(PROFILES[world][names[0]])
    if isinstance(profile, cls):
        base = profile
    elif isinstance(profile, str) and profile in PROFILES[world]:
        base = PROFILES[world][profile]
    else:
        raise ValueError(
            f"profile must be one of {', '.join(map(repr, names))} (or a {cls.__name__}) for world "
            f"{world!r}; got {profile!r}"
        )
    valid = {f.name: f for f in dataclasses.fields(cls)}
    bad = sorted(set(overrides) - set(valid) | ({"name"} & set(overrides)))
    if bad:
        recipes = [n for n, f in valid.items() if isinstance(f.default, Recipe)]
        hint = [f"{r}={{{k[len(r) + 1 :]!r}: ...}}" for k in bad for r in recipes if k.startswith(r + "_")]
        also = f" (a recipe setting: {', '.join(hint)})" if hint else ""
        raise ValueError(
            f"unknown {world} profile field(s) {', '.join(map(repr, bad))}; valid fields: "
            f"{', '.join(n for n in valid if n != 'name')}{also}"
        )
    clean = {k: _coerce_field(world, k, v, getattr(base, k)) for k, v in overrides.items()}
    return dataclasses.replace(base, **clean) if clean else base


def _coerce_field(world: str, field: str, value: Any, default: Any) -> Any:
    """``value`` as the type of the field's ``default`` (NumPy scalars become Python ones; ints are
    not bools or floats, floats may be ints; a dict for a recipe is merged into ``default``); anything
    else raises TypeError."""
    if isinstance(default, Recipe):
        if isinstance(value, Recipe):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(
                f"{world} profile field {field!r} must be a Recipe or a dict of Recipe fields; "
                f"got {type(value).__name__} {value!r}"
            )
        decided = sorted(set(value) & set(LOADER_DECIDES))
        if decided:
            raise ValueError(
                f"{world} profile field {field!r}: the world's loader sets {', '.join(map(repr, decided))} itself; "
                f"override the other recipe fields"
            )
        try:
            return default.replace(**value)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{world} profile field {field!r}: {e}") from None
    if _is_bool(default):
        ok, want, cast = _is_bool(value), "a bool", bool
    elif isinstance(default, int):
        ok, want, cast = _is_int(value), "an int", int
    elif isinstance(default, float):
        ok, want, cast = _is_real(value), "a float (or an int)", float
    else:
        ok, want = isinstance(value, type(default)), f"a {type(default).__name__}"
        cast = str if isinstance(default, str) else (lambda x: x)  # np.str_ -> str
    if not ok:
        raise TypeError(
            f"{world} profile field {field!r} must be {want} like {default!r}; got {type(value).__name__} {value!r}"
        )
    return cast(value)
