"""``shapes``: a procedural world with planted ground truth, fully offline.

Source: ``n_shapes x n_textures x n_colours`` object classes (e.g. "striped star") on noisy gradient
backgrounds, sometimes with non-source clutter; M^s is a small ResNet-like CNN trained here (cached).
Target: a ``T`` glyph (this world's cats) vs an ``H`` glyph (its dogs). Co-occurring source classes
(the paper's tennis ball) are pasted into ``shared_prob`` of the target images; with the glyph
look-alikes (its cat breeds) they are ``planted_shared``, the rest ``planted_source_only``.
M^b trains on all ``target_train`` images with zoom-out augmentation; M^t fine-tunes on a seeded
subset of ``finetune_train`` without it, and ``"M^t (zoom-out)"`` with it: the reference arm.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from .. import cache as _cache
from .._validation import check_int_range, check_range
from ..models import Normalized
from ..profiles import ShapesProfile
from ..identities import weights_fingerprint
from ..training import train_scratch
from .base import PlantedTruth, World, WorldSpec
from .shapes_augment import Occlude, ZoomOut
from .shapes_render import (
    COLOURS,
    GLYPHS,
    SHAPES,
    TARGET_CLASSES,
    TEXTURES,
    _MEAN,
    _STD,
    _class_name,
    _target_params,
    class_table,
    render_source,
    render_target,
)

__all__ = ["SmallResNet", "load_shapes", "shapes_v_lo"]


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout, momentum=0.1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, momentum=0.1)
        self.short = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, momentum=0.1))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.short(x))


class SmallResNet(nn.Module):
    """A small ResNet-like CNN for 32 px images: stem, three residual stages (w, 2w, 4w), pool, ``fc``."""

    def __init__(self, num_classes: int, width: int = 24) -> None:
        super().__init__()
        check_int_range("num_classes", num_classes, 1)
        check_int_range("width", width, 4)
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width, momentum=0.1), nn.ReLU(inplace=True)
        )
        self.layer1 = _Block(width, width, 1)
        self.layer2 = _Block(width, 2 * width, 2)
        self.layer3 = _Block(2 * width, 4 * width, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class _MakeModel:
    """Picklable, fingerprintable factory for a ``Normalized(SmallResNet)``."""

    def __init__(self, num_classes: int, width: int) -> None:
        self.num_classes, self.width = num_classes, width
        self.cache_key = ("shapes.SmallResNet", num_classes, width, _MEAN, _STD)

    def __call__(self) -> nn.Module:
        return Normalized(SmallResNet(self.num_classes, self.width), _MEAN, _STD)


# --------------------------------------------------------------------------------------------
# the world
# --------------------------------------------------------------------------------------------


def _check_profile(p: ShapesProfile) -> None:
    check_int_range("image_size", p.image_size, 16, 256)
    check_int_range("n_shapes", p.n_shapes, 3, len(SHAPES))
    check_int_range("n_textures", p.n_textures, 1, len(TEXTURES))
    check_int_range("n_colours", p.n_colours, 1, len(COLOURS))
    if p.n_colours == 2:
        raise ValueError("n_colours must be 1 (any hue) or 3 (red, green, blue families); got 2")
    n_other = (p.n_shapes - len(GLYPHS)) * p.n_textures * p.n_colours
    check_int_range("n_shared", p.n_shared, 0, n_other - 1)
    check_range("shared_prob", p.shared_prob, 0, 1)
    check_range("clutter_prob", p.clutter_prob, 0, 1)
    check_range("source_occlusion", p.source_occlusion, 0, 1)
    for f in ("glyph_scale", "glyph_scale_beside"):
        lo, hi = getattr(p, f)
        check_range(f, lo, 0, 0.6, lo_open=True)
        check_range(f, hi, lo, 0.6)
    for f in ("source_train_per_class", "source_val_per_class", "target_val", "finetune_train"):
        check_int_range(f, getattr(p, f), 1)
    check_int_range("target_train", p.target_train, p.finetune_train)
    for lr in p.lr_search:
        check_range("lr_search", lr, 0, None, lo_open=True)
    allowed = ("M^b (same data)", "M^b (competent)", "M^b (matched acc)")
    bad = [b for b in p.comparison_baselines if b not in allowed]
    if bad or not p.comparison_baselines:
        raise ValueError(f"comparison_baselines must name at least one of {allowed}; got {p.comparison_baselines!r}")


# the profile fields the rendered source images depend on, then those the target images depend on
_SOURCE_FIELDS = (
    "image_size",
    "n_shapes",
    "n_textures",
    "n_colours",
    "clutter_prob",
    "source_train_per_class",
    "source_val_per_class",
)
_TARGET_FIELDS = _SOURCE_FIELDS + (
    "n_shared",
    "shared_prob",
    "target_train",
    "finetune_train",
    "target_val",
    "glyph_scale",
    "glyph_scale_beside",
)


def _data_key(profile: ShapesProfile, seed: int, fields: tuple[str, ...]) -> str:
    """Key of rendered data: the profile ``fields`` it depends on, the seed and the renderer's code
    (``cache.code_hash``: editing the renderer re-renders the data and retrains its models)."""
    return _cache.fingerprint({f: getattr(profile, f) for f in fields}, seed, _cache.code_hash(__name__), length=24)


def _u8(x: Tensor) -> Tensor:
    return (x * 255).round().to(torch.uint8)


def _make_source_data(profile: ShapesProfile, seed: int) -> dict[str, Tensor]:
    """Render the source images (uint8, so a cached copy is bit-identical)."""
    n_cls = len(class_table(profile))
    g_src = torch.Generator().manual_seed(20_000 + seed)
    y_tr = torch.arange(n_cls).repeat_interleave(profile.source_train_per_class)
    y_tr = y_tr[torch.randperm(len(y_tr), generator=g_src)]
    x_tr = render_source(profile, y_tr, g_src)
    y_va = torch.arange(n_cls).repeat_interleave(profile.source_val_per_class)
    x_va = render_source(profile, y_va, g_src)
    return {"x_src_train": _u8(x_tr), "y_src_train": y_tr, "x_src_val": _u8(x_va), "y_src_val": y_va}


def _target_split(
    profile: ShapesProfile, n: int, co: Tensor, g: torch.Generator, clutter_seed: int
) -> tuple[Tensor, dict[str, Any], Tensor]:
    """Labels, draws and images of ``n`` target images (half each class, shuffled by ``g``)."""
    lab = torch.arange(n) % 2
    lab = lab[torch.randperm(len(lab), generator=g)]
    prm = _target_params(profile, lab, co, g)
    return lab, prm, render_target(profile, prm, torch.Generator().manual_seed(clutter_seed), profile.clutter_prob)


def _make_target_data(profile: ShapesProfile, seed: int, co: Tensor) -> dict[str, Any]:
    """Render the target images (uint8) and draw the fine-tuning subset."""
    g_tgt = torch.Generator().manual_seed(30_000 + seed)
    (t_lab, t_prm, x_ttr), (v_lab, v_prm, x_tva) = (
        _target_split(profile, n, co, g_tgt, 31_000 + i * 1000 + seed)
        for i, n in enumerate((profile.target_train, profile.target_val))
    )
    subset = sorted(torch.randperm(profile.target_train, generator=g_tgt)[: profile.finetune_train].tolist())
    return {
        "x_tgt_train": _u8(x_ttr),
        "y_tgt_train": t_lab,
        "x_tgt_val": _u8(x_tva),
        "y_tgt_val": v_lab,
        "val_params": v_prm,
        "finetune_subset": subset,
        "target_train_has_shared": t_prm["has_shared"],
        "target_train_shared_class": t_prm["which"],
    }


def shapes_v_lo(profile: ShapesProfile) -> int:
    """This world's Eq. 2 threshold over D^t (the fine-tuning subset): 1% of its images, at least 1."""
    return max(1, round(0.01 * profile.finetune_train))


def load_shapes(
    profile: ShapesProfile,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    progress: bool = True,
    cache: bool = True,
) -> World:
    """Build the ``shapes`` world: data (seeded), M^s (trained here, cached), recipes for M^t and M^b."""
    _check_profile(profile)
    seed = check_int_range("seed", seed, 0)
    table = class_table(profile)
    n_cls = len(table)
    names = [_class_name(*t, profile.n_colours) for t in table]
    glyph_idx = {SHAPES.index(gl) for gl in GLYPHS}
    lookalike = [c for c, t in enumerate(table) if t[0] in glyph_idx]
    others = [c for c, t in enumerate(table) if t[0] not in glyph_idx]
    g = torch.Generator().manual_seed(10_000 + seed)
    co_occurring = sorted(others[int(i)] for i in torch.randperm(len(others), generator=g)[: profile.n_shared])
    shared = frozenset(lookalike) | frozenset(co_occurring)
    source_only = frozenset(range(n_cls)) - shared

    # source and target images are cached apart (the target set depends on more profile fields)
    src_key = _data_key(profile, seed, _SOURCE_FIELDS)
    tgt_key = _data_key(profile, seed, _TARGET_FIELDS)
    co = torch.as_tensor(co_occurring, dtype=torch.long)
    data = {
        **_cache.cached("shapes_data", src_key, lambda: _make_source_data(profile, seed), enabled=cache),
        **_cache.cached(
            "shapes_data",
            tgt_key + ("-co" + "-".join(map(str, co_occurring))),
            lambda: _make_target_data(profile, seed, co),
            enabled=cache,
        ),
    }
    sets = []
    for part in ("source_train", "source_val", "target_train", "target_val"):
        tag = part.replace("source", "src").replace("target", "tgt")
        ds = TensorDataset(data[f"x_{tag}"].float() / 255, data[f"y_{tag}"])
        key = src_key if part.startswith("source") else tgt_key
        ds.fingerprint = _cache.fingerprint("shapes", key, part)  # type: ignore[attr-defined]
        sets.append(ds)
    source_train, source_val, target_train, target_val = sets
    finetune_subset: list[int] = data["finetune_subset"]
    v_prm, v_lab = data["val_params"], data["y_tgt_val"]

    def make_cluttered(seed: int = 0, lines: tuple[int, int] = (3, 6)) -> TensorDataset:
        """The target validation images with seeded non-source clutter on every background."""
        check_int_range("seed", seed, 0)
        x = render_target(profile, v_prm, torch.Generator().manual_seed(40_000 + seed), 1.0, lines=tuple(lines))
        return TensorDataset(x, v_lab.clone())

    make_source = _MakeModel(n_cls, profile.width)
    source_recipe = profile.source.replace(
        name="M^s",
        init="scratch",
        augment=Occlude(profile.source_occlusion) if profile.source_occlusion > 0 else None,
        description=f"source model: scratch on {len(source_train):,} source images ({n_cls} classes), "
        f"{profile.source.lr_schedule} schedule",
    )
    source_model, source_history = train_scratch(
        make_source, source_train, source_val, source_recipe, seed=seed, device=device, cache=cache, progress=progress
    )
    source_model.eval()

    zoom = ZoomOut(profile.zoom_min, profile.zoom_max, profile.zoom_prob)
    recipes = {
        "M^t": profile.finetune.replace(
            name="M^t",
            init="source",
            train_subset=finetune_subset,
            description="standard fine-tuning of M^s on D^t, no augmentation",
        ),
        "M^b": profile.scratch.replace(
            name="M^b (competent)",
            init="scratch",
            augment=zoom,
            description=f"scratch, {profile.target_train:,} images with zoom-out augmentation",
        ),
    }
    # the fair partner of the scratch arms: M^t's recipe with the same zoom-out augmentation as M^b
    recipes["M^t (zoom-out)"] = recipes["M^t"].replace(
        name="M^t (zoom-out)", augment=zoom, description="fine-tuning of M^s on D^t with M^b's zoom-out augmentation"
    )
    planted = PlantedTruth(
        shared=shared,
        source_only=source_only,
        co_occurring=frozenset(co_occurring),
        lookalike=frozenset(lookalike),
        class_attributes=tuple(
            (SHAPES[s], TEXTURES[t], COLOURS[c] if profile.n_colours > 1 else "any") for s, t, c in table
        ),
        target_train_has_shared=data["target_train_has_shared"],
        target_train_shared_class=data["target_train_shared_class"],
    )
    spec = WorldSpec(
        arch="SmallResNet",
        head="model.fc",
        cam_layer="model.layer3",
        input_size=profile.image_size,
        mean=_MEAN,
        std=_STD,
        recipes=recipes,
        # the fair test's arms: the profile's baselines (the competent M^b trains on 12.5x M^t's images,
        # a difference that is not the point of the comparison, so it is not one; it stays a zoo arm)
        comparison_arms={"M^t (zoom-out)": "M^t (zoom-out)", **{b: b for b in profile.comparison_baselines}},
        comparison_reference="M^t (zoom-out)",
        lr_search=tuple(profile.lr_search),
        # composites at the paper's 40% of each side; the gates say what that scale can test here
        composite_scale=0.4,
        v_lo=shapes_v_lo(profile),
        n_composites_per_class=profile.n_composites_per_class,
        planted=planted,
        source_train=source_train,
        source_recipe=source_recipe,
        make_source=make_source,
        make_cluttered=make_cluttered,
        companion="lite0",
        provenance={
            "source_history": source_history,
            "source_accuracy": (float(source_history["val_acc"].iloc[-1]) if len(source_history) else float("nan")),
        },
    )
    fp = _cache.fingerprint(
        "shapes",
        profile.__dict__,
        seed,
        weights_fingerprint(source_model),
        {k: _cache.fingerprint(v) for k, v in data.items() if isinstance(v, Tensor)},
    )
    return World(
        name="shapes",
        profile=profile,
        seed=seed,
        source_model=source_model,
        source_classes=names,
        source_data=source_val,
        target_train=target_train,
        target_val=target_val,
        target_classes=list(TARGET_CLASSES),
        make_scratch=_MakeModel(2, profile.width),
        spec=spec,
        fingerprint=fp,
    )
