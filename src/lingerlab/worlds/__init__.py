"""Worlds: ready-made experiments (source model, source images, target data, recipes).

``load_world(name, profile="smoke", seed=0, **overrides)`` builds one; ``overrides`` change profile
fields (``lingerlab.profiles``) or pass the world's own options (``source_model=``, ``device=``...).
The training recipes are the profile fields ``finetune`` (M^t), ``scratch`` (M^b) and, in ``shapes``,
``source`` (M^s): a Recipe, or a dict of Recipe fields merged into the profile's
(``load_world("shapes", finetune={"epochs": 2})``).
A world's facts are typed in ``world.spec`` (:class:`WorldSpec`).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from .._validation import check_int_range
from ..profiles import get_profile, split_overrides
from .base import PlantedTruth, World, WorldSpec

__all__ = ["World", "WorldSpec", "PlantedTruth", "load_world"]

# world name -> (module, loader, the loader's fixed keyword arguments: a variant is data, not a branch)
_LOADERS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "shapes": ("lingerlab.worlds.shapes", "load_shapes", {}),
    **{name: ("lingerlab.worlds.lite", "load_lite", {"variant": name}) for name in ("lite0", "lite1", "lite2")},
    "paper": ("lingerlab.worlds.paper", "load_paper", {}),
    "custom": ("lingerlab.worlds.custom", "load_custom", {}),
}


def _loader(name: str) -> tuple[Any, dict[str, Any], dict[str, inspect.Parameter]]:
    """World ``name``'s loader, its fixed keyword arguments and the parameters a caller may pass."""
    module, attr, fixed = _LOADERS[name]
    loader = getattr(importlib.import_module(module), attr)
    params = {k: p for k, p in inspect.signature(loader).parameters.items() if k not in fixed}
    return loader, fixed, params


def load_world(name: str, profile: Any = "smoke", seed: int = 0, **overrides: Any) -> World:
    """Build world ``name`` under ``profile`` (``"smoke"`` or ``"full"``) with data drawn from ``seed``.

    ``seed`` is a non-negative integer (a NumPy integer is accepted and converted to ``int``).
    Profile fields in ``overrides`` replace the profile's values (a dict for ``finetune`` or
    ``scratch`` is merged into the profile's recipe); the rest go to the world's loader.
    Unknown names, profiles or options raise ValueError listing the valid ones.
    """
    if name not in _LOADERS:
        raise ValueError(f"name must be one of {', '.join(map(repr, _LOADERS))}; got {name!r}")
    seed = check_int_range("seed", seed, 0)
    fields, options = split_overrides(name, overrides)
    prof = get_profile(name, profile, **fields)
    loader, fixed, params = _loader(name)
    unknown = sorted(k for k in options if k not in params)
    if unknown:
        valid_opts = [p for p in params if p not in ("profile", "seed")]
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for world {name!r}; valid options: "
            f"{', '.join(valid_opts)}; profile fields: "
            f"{', '.join(f for f in prof.__dataclass_fields__ if f != 'name')}"
        )
    return loader(prof, seed, **fixed, **options)


def load_arch(
    name: str, arch: str | None, profile: Any = "smoke", seed: int = 0, *, download: bool = False, **options: Any
) -> World:
    """World ``name`` with architecture ``arch`` (App. B, Fig. 8); ``arch`` None: the world's own.

    A loader taking ``arch=`` gets it; one taking ``source_model=`` accepts a torchvision classification
    model name (``"resnet18"``, ``"vit_b_16"``): M^s is that ImageNet model from the torch hub cache
    (downloaded only with ``download=True``) and the spec gets its head, Grad-CAM layer and name.
    Otherwise ``arch`` must be the world's own; one it cannot have raises ``remedies.NotFeasible``.
    """
    import dataclasses
    from pathlib import Path
    from urllib.parse import urlparse

    from .._validation import check_bool
    from ..models import IMAGENET_MEAN, IMAGENET_STD, Normalized, find_head, unwrap
    from ..remedies.registry import NotFeasible

    download = check_bool("download", download)
    if name not in _LOADERS:
        raise ValueError(f"name must be one of {', '.join(map(repr, _LOADERS))}; got {name!r}")
    if arch is not None and not isinstance(arch, str):
        raise TypeError(f"arch must be an architecture name or None; got {type(arch).__name__} {arch!r}")
    if arch == "":
        raise ValueError("arch must be an architecture name or None; got ''")
    _, _, params = _loader(name)
    opts = {**options, **({"download": download} if "download" in params else {})}
    if arch is None:
        return load_world(name, profile, seed, **opts)
    if "arch" in params:
        return load_world(name, profile, seed, **opts, arch=arch)
    tv_names: list[str] = []
    if "source_model" in params:
        import torchvision

        tv_names = torchvision.models.list_models(module=torchvision.models)
    if arch not in tv_names:
        world = load_world(name, profile, seed, **opts)
        own = (world.spec.arch, type(unwrap(world.source_model)[1]).__name__)
        if arch.lower() not in {a.lower() for a in own}:
            also = " or a torchvision classification model (e.g. 'resnet18')" if tv_names else ""
            raise NotFeasible(f"world {name!r} offers only {world.spec.arch!r}{also}; got arch={arch!r}")
        return world
    import torch
    import torchvision

    from ..cam_layers import _pick  # the default Grad-CAM layer, None when there is none (no raise)

    weights = torchvision.models.get_model_weights(arch).DEFAULT
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    if not download and not path.is_file():
        raise FileNotFoundError(
            f"the ImageNet weights of {arch!r} are not in the torch hub cache: download "
            f"{weights.url} to {path}, or pass download=True"
        )
    source = Normalized(torchvision.models.get_model(arch, weights="DEFAULT"), IMAGENET_MEAN, IMAGENET_STD).eval()
    world = load_world(name, profile, seed, **opts, source_model=source)
    head, _ = find_head(world.source_model)
    prefix, inner = unwrap(world.source_model)
    picked = _pick(inner)
    layer = None if picked is None else prefix + picked[0]
    cam_layer = layer if layer is not None and not layer.endswith(".ln_1") else None  # ViT: gradcam reshapes
    spec = dataclasses.replace(
        world.spec,
        head=head,
        cam_layer=cam_layer,
        arch=arch,
        recipes={k: r.replace(head=head) for k, r in world.spec.recipes.items()},
    )
    return dataclasses.replace(world, spec=spec)
