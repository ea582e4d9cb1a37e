"""``custom``: a world from your own model and folders, and the lazy image-folder data it uses.

``load_world("custom", source_model=..., source_classes=[...], target_root="pets/",
source_root="imagenet_bits/", image_size=224)``: ``target_root`` is an ImageFolder (with ``train/``
and ``val/`` subfolders, else a seeded, stratified ``val_fraction`` is held out); ``source_root`` has
one folder per source class (its name or index); ``source_model`` takes [0, 1] images and M^b
defaults to its architecture re-initialised. ``target_model`` / ``baseline_model``: the user's own
M^t (fine-tuned on ``target_root``'s training images) / M^b, measured instead of trained
(``WorldSpec.given``). The recipes are the profile's ``finetune`` and ``scratch``.
"""

from __future__ import annotations

import copy
import os
import re
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from .. import cache as _cache
from .._validation import check_int_range, check_range
from ..models import batchnorm_layers, find_head, replace_head, unwrap
from ..profiles import CustomProfile
from ..identities import weights_fingerprint
from .base import World, WorldSpec, world_device

__all__ = ["IMAGE_EXTENSIONS", "ImageFiles", "scan_images", "list_image_folder", "load_custom", "ReinitCopy"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _readable(path: str) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:  # verify() leaves the file unusable; decode a thumbnail-sized draft
            im.draft("RGB", (64, 64))
            im.convert("RGB").load()
        return True
    except Exception:  # noqa: BLE001 - PIL raises many kinds of errors on corrupt files
        return False


def scan_images(paths: Sequence[Path], *, what: str = "images", cache: bool = True) -> tuple[list[Path], list[Path]]:
    """``(readable, unreadable)`` among ``paths`` (decoded once with PIL; the verdicts are cached on disk,
    keyed by path, size and modification time). Warns with the count of unreadable files."""
    paths = [Path(p) for p in paths]
    stats = [(str(p), *(lambda s: (s.st_size, s.st_mtime_ns))(p.stat())) for p in paths]
    key = _cache.fingerprint("scan", stats, length=24)
    ok = _cache.cached("image_scan", key, lambda: [_readable(str(p)) for p in paths], enabled=cache)
    good = [p for p, k in zip(paths, ok) if k]
    bad = [p for p, k in zip(paths, ok) if not k]
    if bad:
        shown = ", ".join(p.name for p in bad[:5]) + (" ..." if len(bad) > 5 else "")
        warnings.warn(
            f"skipped {len(bad)} unreadable {what} of {len(paths)} (corrupt or not an image): {shown}", stacklevel=3
        )
    return good, bad


class ImageFiles(Dataset):
    """Lazy labelled images from files: ``(image [3, S, S] in [0, 1], label)``, read as RGB on access,
    the shorter side resized to ``round(S * resize_ratio)`` and centre cropped (ImageNet's evaluation
    transform); ``fingerprint`` hashes paths relative to ``root``, sizes, labels and the transform."""

    def __init__(
        self,
        paths: Sequence[Path],
        labels: Sequence[int],
        image_size: int,
        *,
        root: Path | None = None,
        resize_ratio: float = 256 / 224,
    ) -> None:
        if len(paths) != len(labels):
            raise ValueError(f"paths and labels must have one entry per image; got {len(paths)} and {len(labels)}")
        check_int_range("image_size", image_size, 8, 4096)
        check_range("resize_ratio", resize_ratio, 1, 4)
        self.paths = [Path(p) for p in paths]
        self.targets = [int(y) for y in labels]
        self.image_size, self.resize_ratio = image_size, resize_ratio
        rel = [str(p.relative_to(root)) if root is not None and p.is_relative_to(root) else str(p) for p in self.paths]
        self.fingerprint = _cache.fingerprint(
            "ImageFiles", rel, [p.stat().st_size for p in self.paths], self.targets, image_size, resize_ratio
        )

    @classmethod
    def of(cls, items: Sequence[tuple[Path, int]], image_size: int, root: Path | None = None) -> "ImageFiles":
        """The images of ``(path, label)`` pairs ``items``."""
        return cls([p for p, _ in items], [y for _, y in items], image_size, root=root)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> Tensor:
        """Image ``i`` as a float tensor [3, S, S] in [0, 1]."""
        from PIL import Image
        import numpy as np

        path = self.paths[i]
        try:
            with Image.open(path) as im:
                rgb = im.convert("RGB")
        except Exception as e:  # noqa: BLE001
            raise OSError(f"cannot read image {path}: {e}") from e
        s = self.image_size
        short = max(1, round(s * self.resize_ratio))
        w, h = rgb.size
        scale = short / min(w, h)
        rgb = rgb.resize((max(s, round(w * scale)), max(s, round(h * scale))), Image.BILINEAR)
        w, h = rgb.size
        left, top = (w - s) // 2, (h - s) // 2
        rgb = rgb.crop((left, top, left + s, top + s))
        return torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.load(i), self.targets[i]


def list_image_folder(root: Path, *, what: str = "root") -> dict[str, list[Path]]:
    """``{class folder name: sorted image paths}`` of an ImageFolder-style ``root`` (non-empty folders)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{what} {str(root)!r} is not a folder: expected <{what}>/<class>/<image files>")
    out = {
        d.name: sorted(p for p in d.iterdir() if _is_image(p))
        for d in sorted(root.iterdir())
        if d.is_dir() and not d.name.startswith(".")
    }
    out = {k: v for k, v in out.items() if v}
    if not out:
        raise FileNotFoundError(
            f"{what} {str(root)!r} has no class folders with images "
            f"({', '.join(IMAGE_EXTENSIONS)}): expected <{what}>/<class>/<image files>"
        )
    return out


def stratified_split(
    labels: Sequence[int], val_fraction: float, seed: int, keep_both: bool = True
) -> tuple[list[int], list[int]]:
    """Sorted train and validation indices: a seeded ``val_fraction`` of each class held out (with
    ``keep_both``, at least one image on each side of a class that has two)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.as_tensor(labels)
    tr, va = [], []
    for c in sorted(set(y.tolist())):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val = int(round(len(idx) * val_fraction))
        if keep_both:
            n_val = min(max(n_val, 1), len(idx) - 1) if len(idx) > 1 else 0
        va += idx[:n_val].tolist()
        tr += idx[n_val:].tolist()
    return sorted(tr), sorted(va)


class ReinitCopy:
    """The scratch baseline of a custom world: a deep copy of the source architecture with every
    module's ``reset_parameters()`` applied (BatchNorm statistics reset) and a new head."""

    def __init__(self, source_model: nn.Module, num_classes: int, head: str | None = None) -> None:
        self._template = copy.deepcopy(source_model).cpu()
        self.num_classes, self.head = num_classes, head
        find_head(self._template, head)  # fail early with the candidates listed
        self.cache_key = (
            "ReinitCopy",
            type(source_model).__qualname__,
            num_classes,
            head,
            [(n, type(m).__name__) for n, m in self._template.named_modules()],
        )

    def __call__(self) -> nn.Module:
        m = copy.deepcopy(self._template)
        for mod in m.modules():
            if hasattr(mod, "reset_running_stats"):
                mod.reset_running_stats()
            if hasattr(mod, "reset_parameters") and callable(mod.reset_parameters):
                mod.reset_parameters()
        return replace_head(m, self.num_classes, head=self.head, generator=int(torch.randint(0, 2**31 - 1, (1,))))


def _source_class_id(name: str, source_classes: list[str], root: Path) -> int:
    if name in source_classes:
        return source_classes.index(name)
    if re.fullmatch(r"\d+", name) and int(name) < len(source_classes):
        return int(name)
    raise ValueError(
        f"source_root folder {str(root / name)!r} names no source class: folder names must be "
        f"a class name from source_classes (e.g. {source_classes[0]!r}) or an index in "
        f"[0, {len(source_classes) - 1}]"
    )


def _check_outputs(what: str, head: nn.Linear, target_classes: list[str]) -> None:
    if head.out_features != len(target_classes):
        raise ValueError(
            f"{what}'s head has {head.out_features} outputs but target_root has "
            f"{len(target_classes)} classes {target_classes}: pass one output per target class"
        )


def load_custom(
    profile: CustomProfile,
    seed: int = 0,
    *,
    source_model: nn.Module | None = None,
    source_classes: Sequence[str] | None = None,
    target_root: str | os.PathLike | None = None,
    source_root: str | os.PathLike | None = None,
    make_scratch: Callable[[], nn.Module] | None = None,
    head: str | None = None,
    cam_layer: str | None = None,
    name: str = "custom",
    device: str | torch.device | None = None,
    progress: bool = True,
    cache: bool = True,
    target_model: nn.Module | None = None,
    baseline_model: nn.Module | None = None,
) -> World:
    """Build a World from ``source_model``, ``source_classes`` and the folders ``target_root`` and
    ``source_root`` (see the module docstring); ``progress`` is accepted for symmetry."""
    needed = dict(
        source_model=source_model, source_classes=source_classes, target_root=target_root, source_root=source_root
    )
    missing = [n for n, v in needed.items() if v is None]
    if missing:
        raise ValueError(
            f"the custom world needs {', '.join(missing)}: load_world('custom', source_model=<nn.Module "
            "taking [0, 1] images>, source_classes=[names], target_root=<ImageFolder>, "
            "source_root=<folder of source-class folders>)"
        )
    assert (
        source_model is not None and source_classes is not None and target_root is not None and source_root is not None
    )
    if not isinstance(source_model, nn.Module):
        raise ValueError(f"source_model must be an nn.Module; got {type(source_model).__name__}")
    for flag, m in (("target_model", target_model), ("baseline_model", baseline_model)):
        if m is not None and not isinstance(m, nn.Module):
            raise ValueError(f"{flag} must be an nn.Module taking [0, 1] images (or None); got {type(m).__name__}")
    classes = [str(c) for c in source_classes]
    _, src_head = find_head(source_model, head)
    if src_head.out_features != len(classes):
        raise ValueError(
            f"source_classes has {len(classes)} names but the source model's head has "
            f"{src_head.out_features} outputs: pass one name per output"
        )
    check_int_range("image_size", profile.image_size, 8, 4096)
    check_range("val_fraction", profile.val_fraction, 0, 1, lo_open=True, hi_open=True)
    check_int_range("dc_per_class", profile.dc_per_class, 0)
    seed = check_int_range("seed", seed, 0)
    size = profile.image_size
    troot, sroot = Path(target_root), Path(source_root)

    # target
    if (troot / "train").is_dir() and (troot / "val").is_dir():
        tr_folders = list_image_folder(troot / "train", what="target_root/train")
        va_folders = list_image_folder(troot / "val", what="target_root/val")
        target_classes = sorted(set(tr_folders) | set(va_folders))
        tr, va = (
            [(p, y) for y, c in enumerate(target_classes) for p in fs.get(c, [])] for fs in (tr_folders, va_folders)
        )
        good_t, bad_t = scan_images([p for p, _ in tr + va], what="target images", cache=cache)
        good = set(good_t)
        tr, va = ([(p, y) for p, y in items if p in good] for items in (tr, va))
    else:
        folders = list_image_folder(troot, what="target_root")
        target_classes = list(folders)
        ps = [p for c in target_classes for p in folders[c]]
        good_t, bad_t = scan_images(ps, what="target images", cache=cache)
        good = set(good_t)
        items = [(p, target_classes.index(c)) for c in target_classes for p in folders[c] if p in good]
        tr_i, va_i = stratified_split([y for _, y in items], profile.val_fraction, 70_000 + seed)
        tr, va = [items[i] for i in tr_i], [items[i] for i in va_i]
    if len(target_classes) < 2:
        raise ValueError(f"target_root {str(troot)!r} must have at least 2 class folders; found {target_classes}")
    if not tr or not va:
        raise ValueError(
            f"target_root {str(troot)!r} gives {len(tr)} training and {len(va)} validation images: "
            "both must be non-empty (add images or change val_fraction)"
        )
    target_train, target_val = (ImageFiles.of(items, size, troot) for items in (tr, va))

    # source images (D^c)
    sfolders = list_image_folder(sroot, what="source_root")
    s_items: list[tuple[Path, int]] = []
    g = torch.Generator().manual_seed(80_000 + seed)
    skipped = [str(p) for p in bad_t]
    for fname, paths in sfolders.items():
        cid = _source_class_id(fname, classes, sroot)
        good_s, bad_s = scan_images(paths, what=f"source images of {fname!r}", cache=cache)
        skipped += [str(p) for p in bad_s]
        if profile.dc_per_class and len(good_s) > profile.dc_per_class:
            pick = sorted(torch.randperm(len(good_s), generator=g)[: profile.dc_per_class].tolist())
            good_s = [good_s[i] for i in pick]
        s_items += [(p, cid) for p in good_s]
    if not s_items:
        raise ValueError(f"source_root {str(sroot)!r} has no readable images")
    source_data = ImageFiles.of(s_items, size, sroot)

    dev = world_device(device)
    source = source_model.to(dev).eval()
    scratch = make_scratch if make_scratch is not None else ReinitCopy(source, len(target_classes), head)
    head_name = find_head(source, head)[0]
    arch = type(unwrap(source)[1]).__name__
    given: dict[str, nn.Module] = {}
    if target_model is not None:
        try:
            _, t_head = find_head(target_model, head_name)
        except ValueError as e:
            raise ValueError(
                f"target_model has no head where the source model has one ({head_name!r}): it must "
                f"be a fine-tuned copy of the source architecture ({e})"
            ) from None
        _check_outputs("target_model", t_head, target_classes)
        if t_head.in_features != src_head.in_features:
            raise ValueError(
                f"target_model's backbone gives {t_head.in_features} features but the source head takes "
                f"{src_head.in_features}: it must be a fine-tuned copy of the source architecture"
            )
        bn_t, bn_s = set(batchnorm_layers(target_model)), set(batchnorm_layers(source))
        if bn_t != bn_s:
            raise ValueError(
                f"target_model's BatchNorm layers differ from the source model's (only in target_model: "
                f"{sorted(bn_t - bn_s)[:3]}, only in the source: {sorted(bn_s - bn_t)[:3]}): it must be "
                "a fine-tuned copy of the source architecture, wrapped the same way"
            )
        given["M^t"] = target_model.to(dev).eval()
    if baseline_model is not None:
        try:
            _, b_head = find_head(baseline_model, head)
        except ValueError:
            _, b_head = find_head(baseline_model)  # a baseline of another architecture names its head its own way
        _check_outputs("baseline_model", b_head, target_classes)
        given["M^b"] = baseline_model.to(dev).eval()
    # no head in the scratch recipe: models.find_head finds it in make_scratch()'s model
    recipes = {
        "M^t": profile.finetune.replace(
            name="M^t",
            init="source",
            head=head_name,
            num_workers=profile.num_workers,
            description="the user's fine-tuned model (given: measured, not trained)"
            if "M^t" in given
            else "standard fine-tuning of M^s on D^t, no augmentation",
        ),
        "M^b": profile.scratch.replace(
            name="M^b (competent)",
            init="scratch",
            num_workers=profile.num_workers,
            description="the user's own baseline (given: measured, not trained)"
            if "M^b" in given
            else f"scratch {arch} on D^t, no augmentation",
        ),
    }
    # mean/std: the source model normalises its own inputs and this loader cannot see how, so the
    # spec keeps WorldSpec's defaults (identity), which do not describe the model
    provenance: dict[str, object] = dict(target_root=str(troot), source_root=str(sroot), skipped_files=sorted(skipped))
    provenance.update({f"given {k}": type(unwrap(m)[1]).__name__ for k, m in given.items()})
    spec = WorldSpec(
        arch=arch,
        head=head_name,
        cam_layer=cam_layer,
        input_size=size,
        recipes=recipes,
        given=given,
        provenance=provenance,
    )
    parts = [
        name,
        profile.__dict__,
        seed,
        weights_fingerprint(source),
        classes,
        [d.fingerprint for d in (source_data, target_train, target_val)],
    ]
    if given:  # a world with the user's own models is another world
        parts.append(sorted((k, weights_fingerprint(m)) for k, m in given.items()))
    fp = _cache.fingerprint(*parts)
    return World(
        name=name,
        profile=profile,
        seed=seed,
        source_model=source,
        source_classes=classes,
        source_data=source_data,
        target_train=target_train,
        target_val=target_val,
        target_classes=target_classes,
        make_scratch=scratch,
        spec=spec,
        fingerprint=fp,
    )
