"""``paper``: the paper's setting. ResNet-18 (torchvision IMAGENET1K_V1) fine-tuned on Dogs-vs-Cats,
with ImageNet validation images (or ImageNetV2) as D^c, read lazily from local copies:

- Dogs-vs-Cats (``dogscats_root=`` or ``$LINGERLAB_DOGSCATS``): Kaggle's ``<root>/[train/]cat.0.jpg`` or
  Microsoft's ``<root>/[PetImages/]Cat/0.jpg``; unreadable files are skipped with a counted warning.
- ImageNet (``imagenet_root=`` or ``$LINGERLAB_IMAGENET``): ``<root>/[val/]<wnid>/*.JPEG`` or
  ImageNetV2's ``<root>/<class index>/*.jpeg``.

Nothing touches the network unless ``download=True``: a missing folder or file raises
FileNotFoundError saying what to fetch and where to put it. With it, the missing pieces are fetched
through ``lingerlab.downloads`` (the weights into torch hub's checkpoint folder, ``dogscats_asset`` /
``imagenet_asset`` into the roots; unpublished hashes need ``$LINGERLAB_SHA256_<NAME>`` or
``allow_unverified=True``; ``base_url=`` replaces every URL's host).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import cache as _cache
from .. import downloads as _dl
from .._validation import check_bool, check_choice, check_int_range
from ..models import IMAGENET_MEAN, IMAGENET_STD, Normalized
from ..profiles import PaperProfile
from ..identities import weights_fingerprint
from .base import World, WorldSpec, world_device
from .custom import IMAGE_EXTENSIONS, ImageFiles, scan_images
from .lite_models import imagenet_classes

__all__ = [
    "resnet18_source_model",
    "resnet18_weights_path",
    "dogscats_files",
    "imagenet_files",
    "imagenet_wnids",
    "load_paper",
    "dogscats_help",
    "imagenet_help",
]

TARGET_CLASSES = ["cat", "dog"]

KAGGLE_DOGSCATS_URL = "https://www.kaggle.com/c/dogs-vs-cats/data"
MICROSOFT_DOGSCATS_URL = "https://www.microsoft.com/en-us/download/details.aspx?id=54765"
IMAGENETV2_URL = "https://huggingface.co/datasets/vaishaal/ImageNetV2/resolve/main/imagenetv2-matched-frequency.tar.gz"
ILSVRC2012_URL = "https://image-net.org/download.php"
RESNET18_FILE = "resnet18-f37072fd.pth"


def dogscats_help(root: str | os.PathLike | None = None) -> str:
    """What to fetch for Dogs-vs-Cats and where to put it (the exact paths when ``root`` is known)."""
    r = "<root>" if root is None else str(Path(root).expanduser())
    return (
        "Download Dogs-vs-Cats (or pass download=True to fetch Microsoft's archive) and pass its folder as "
        "dogscats_root= (or set LINGERLAB_DOGSCATS): either Kaggle's train.zip from "
        f"{KAGGLE_DOGSCATS_URL} unpacked as {r}/train/cat.0.jpg, {r}/train/dog.0.jpg, ... or Microsoft's "
        f"kagglecatsanddogs archive from {MICROSOFT_DOGSCATS_URL} unpacked as {r}/PetImages/Cat/0.jpg and "
        f"{r}/PetImages/Dog/0.jpg"
    )


def imagenet_help(root: str | os.PathLike | None = None) -> str:
    """What to fetch for the ImageNet D^c images and where to put them (exact paths when ``root`` is known)."""
    r = "<root>" if root is None else str(Path(root).expanduser())
    return (
        "Provide ImageNet images for D^c (or pass download=True to fetch ImageNetV2) and pass their folder "
        "as imagenet_root= (or set LINGERLAB_IMAGENET): ImageNetV2 matched-frequency "
        f"({IMAGENETV2_URL}, from https://huggingface.co/datasets/vaishaal/ImageNetV2) unpacked as "
        f"{r}/<class index>/*.jpeg (e.g. {r}/281/*.jpeg; the archive's folder "
        "imagenetv2-matched-frequency-format-val/ is such a root), or the ILSVRC2012 validation set "
        f"({ILSVRC2012_URL}, registration required) arranged as {r}/<wnid>/*.JPEG (or torchvision.datasets.ImageNet's "
        f"{r}/val/<wnid>/*.JPEG)"
    )


def resnet18_weights_path() -> Path:
    """Where the ResNet-18 IMAGENET1K_V1 weights must be: torch hub's checkpoint folder
    (``$TORCH_HOME/hub/checkpoints``, ``~/.cache/torch/hub/checkpoints`` by default)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_FILE


def resnet18_source_model(download: bool = False, *, base_url: str | None = None, progress: bool = False) -> nn.Module:
    """M^s: torchvision's ResNet-18 with IMAGENET1K_V1 weights (from ``resnet18_weights_path()``) in
    ``Normalized``. A missing file raises FileNotFoundError naming the URL and path, or with
    ``download=True`` is fetched (``downloads.ASSETS["resnet18-imagenet1k-v1"]``, from ``base_url``)."""
    check_bool("download", download)
    from torchvision.models import ResNet18_Weights, resnet18

    weights = ResNet18_Weights.IMAGENET1K_V1
    path = resnet18_weights_path()
    help_msg = (
        f"download {weights.url} and save it as {path} (torch hub's checkpoint folder: "
        "$TORCH_HOME/hub/checkpoints, ~/.cache/torch/hub/checkpoints by default), pass download=True "
        "to let lingerlab fetch it, or pass source_model="
    )
    if not path.is_file():
        if not download:
            raise FileNotFoundError(f"ResNet-18 ImageNet weights not found at {path} and download=False: {help_msg}")
        try:
            _dl.fetch_asset(_dl.ASSETS["resnet18-imagenet1k-v1"], path, base_url=base_url, progress=progress)
        except OSError as e:  # URLError, socket errors, interrupted transfers (a sha256 mismatch is a ValueError)
            raise FileNotFoundError(f"ResNet-18 ImageNet weights could not be downloaded ({e}): {help_msg}") from e
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated or corrupt file
        raise OSError(
            f"ResNet-18 ImageNet weights at {path} cannot be read ({e}): delete the file and {help_msg}"
        ) from e
    model = resnet18()
    model.load_state_dict(state)
    return Normalized(model, IMAGENET_MEAN, IMAGENET_STD).eval()


def _resolve_root(value: str | os.PathLike | None, env: str, help_fn: Any, what: str, must_exist: bool = True) -> Path:
    raw = value if value is not None else os.environ.get(env)
    if not raw:
        raise FileNotFoundError(f"no {what} folder given (parameter and ${env} are both unset). {help_fn()}")
    root = Path(raw).expanduser()
    if must_exist and not root.is_dir():
        raise FileNotFoundError(f"{what} folder {str(root)!r} does not exist. {help_fn(root)}")
    return root


def _pick_asset(what: str, value: Any, choices: tuple[str, ...]) -> _dl.Asset:
    if isinstance(value, _dl.Asset):
        return value
    check_choice(what, value, choices)
    return _dl.ASSETS[value]


def _has_layout(root: Path, find: Any) -> bool:
    if not root.is_dir():
        return False
    try:
        find(root)
    except FileNotFoundError:
        return False
    return True


def _download_data(
    jobs: list[tuple[str, Path, _dl.Asset]], *, base_url: str | None, allow_unverified: bool, progress: bool
) -> None:
    """Fetch and unpack each ``(what, root, asset)``; every URL, hash and target is checked before any
    network access. The archive goes beside ``root`` and is deleted once unpacked (or found corrupt)."""
    plans, problems = [], []
    for what, root, asset in jobs:
        try:
            url = _dl.asset_url(asset, base_url)
        except ValueError as e:
            problems.append(f"{what}: {e}")
            continue
        sha = _dl.asset_sha256(asset)
        if sha is None and not allow_unverified:
            problems.append(
                f"{what}: no sha256 is known for {asset.name} ({url}): set "
                f"$LINGERLAB_SHA256_{_dl.env_name(asset.name)} to its sha256, or pass allow_unverified=True"
            )
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            problems.append(
                f"{what} folder {str(root)!r} exists, is not empty and has no usable layout: "
                "download=True unpacks only into a new or empty folder"
            )
        plans.append((what, root, asset, url, sha))
    if problems:
        raise ValueError("download=True cannot proceed (nothing was downloaded): " + "; ".join(problems))
    for what, root, asset, url, sha in plans:
        archive = root.parent / asset.filename
        _dl.fetch(url, archive, sha256=sha, allow_unverified=allow_unverified, progress=progress, name=asset.name)
        try:
            _dl.extract(archive, root, expect=asset.expect, strip=asset.strip)
        except _dl.ArchiveError as e:
            archive.unlink(missing_ok=True)
            raise _dl.ArchiveError(f"{what}: {e} (the archive was deleted; download=True fetches it again)") from e
        archive.unlink(missing_ok=True)


_KAGGLE = re.compile(r"^(cat|dog)\.\d+\.(jpe?g|png)$", re.IGNORECASE)


def dogscats_files(root: Path) -> tuple[str, list[Path], list[int]]:
    """``(layout, paths, labels)`` of every Dogs-vs-Cats image under ``root`` (0 = cat, 1 = dog)."""
    for folder in (root, root / "train"):
        if folder.is_dir():
            files = sorted(p for p in folder.iterdir() if p.is_file() and _KAGGLE.match(p.name))
            if files:
                return "kaggle", files, [0 if p.name.lower().startswith("cat") else 1 for p in files]
    for folder in (root / "PetImages", root):
        cat, dog = folder / "Cat", folder / "Dog"
        if cat.is_dir() and dog.is_dir():
            paths, labels = [], []
            for label, d in ((0, cat), (1, dog)):
                fs = sorted(
                    (p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                    key=lambda p: (len(p.stem), p.stem),
                )
                paths += fs
                labels += [label] * len(fs)
            return "microsoft", paths, labels
    found = ", ".join(sorted(p.name for p in root.iterdir())[:10]) or "nothing"
    raise FileNotFoundError(f"dogscats_root {str(root)!r} has neither layout (found: {found}). {dogscats_help(root)}")


def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet-1k WordNet ids in class-index order (timm's bundled list)."""
    try:
        import importlib.resources as ir

        text = (ir.files("timm.data") / "_info" / "imagenet_synsets.txt").read_text()
        wnids = [w.strip() for w in text.split() if w.strip()]
        if len(wnids) == 1000:
            return wnids
    except (ImportError, FileNotFoundError, ModuleNotFoundError):
        pass
    raise ImportError(
        "cannot map ImageNet WordNet ids to class indices: install timm (it ships the list), or use "
        "the ImageNetV2 layout <root>/<class index>/*.jpeg"
    )


_WNID = re.compile(r"^n\d{8}$")


def imagenet_files(root: Path, per_class: int, seed: int) -> tuple[str, list[Path], list[int]]:
    """``(layout, paths, class ids)``: up to ``per_class`` seeded images of each class found under ``root``."""
    base = (
        root / "val" if (root / "val").is_dir() and any(_WNID.match(d.name) for d in (root / "val").iterdir()) else root
    )
    dirs = sorted(d for d in base.iterdir() if d.is_dir())
    wnid_dirs = [d for d in dirs if _WNID.match(d.name)]
    idx_dirs = [d for d in dirs if re.fullmatch(r"\d+", d.name) and int(d.name) < 1000]
    if wnid_dirs:
        layout = "imagenet-val" if base != root else "imagefolder"
        lookup = {w: i for i, w in enumerate(imagenet_wnids())}
        unknown = [d.name for d in wnid_dirs if d.name not in lookup]
        if unknown:
            raise ValueError(f"imagenet_root folders {unknown[:5]} are not ImageNet-1k WordNet ids")
        classes = [(d, lookup[d.name]) for d in wnid_dirs]
    elif idx_dirs:
        layout = "imagenetv2"
        classes = [(d, int(d.name)) for d in idx_dirs]
    else:
        raise FileNotFoundError(
            f"imagenet_root {str(root)!r} has no <wnid>/ or <class index>/ folders. {imagenet_help(root)}"
        )
    g = torch.Generator().manual_seed(90_000 + seed)
    paths: list[Path] = []
    labels: list[int] = []
    for d, cid in sorted(classes, key=lambda t: t[1]):
        fs = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if per_class and len(fs) > per_class:
            fs = [fs[i] for i in sorted(torch.randperm(len(fs), generator=g)[:per_class].tolist())]
        paths += fs
        labels += [cid] * len(fs)
    if not paths:
        raise FileNotFoundError(f"imagenet_root {str(root)!r} has class folders but no images. {imagenet_help(root)}")
    return layout, paths, labels


class _MakeResNet18:
    """Picklable, fingerprintable factory of the scratch baseline (ResNet-18, 2 outputs, Normalized)."""

    cache_key = ("paper.resnet18", 2, IMAGENET_MEAN, IMAGENET_STD)

    def __call__(self) -> nn.Module:
        from torchvision.models import resnet18

        return Normalized(resnet18(num_classes=2), IMAGENET_MEAN, IMAGENET_STD)


def load_paper(
    profile: PaperProfile,
    seed: int = 0,
    *,
    source_model: nn.Module | None = None,
    dogscats_root: str | os.PathLike | None = None,
    imagenet_root: str | os.PathLike | None = None,
    download: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
    cache: bool = True,
    base_url: str | None = None,
    allow_unverified: bool = False,
    dogscats_asset: str | _dl.Asset = "dogscats-microsoft",
    imagenet_asset: str | _dl.Asset = "imagenetv2-matched-frequency",
) -> World:
    """Build the ``paper`` world (see the module docstring); ``source_model`` replaces the ResNet-18 (it
    takes [0, 1] images, 1000 outputs). With ``download=True`` a missing or empty root is filled from
    its asset (a name in ``downloads.ASSETS`` or an :class:`~lingerlab.downloads.Asset`)."""
    check_int_range("image_size", profile.image_size, 32, 1024)
    check_int_range("n_train", profile.n_train, 2)
    check_int_range("n_val", profile.n_val, 2)
    check_int_range("dc_per_class", profile.dc_per_class, 0)
    check_int_range("seed", seed, 0)
    check_bool("download", download)
    check_bool("allow_unverified", allow_unverified)
    dc_asset = _pick_asset("dogscats_asset", dogscats_asset, ("dogscats-microsoft", "dogscats-kaggle"))
    in_asset = _pick_asset("imagenet_asset", imagenet_asset, ("imagenetv2-matched-frequency", "imagenet-val"))
    dc_root = _resolve_root(dogscats_root, "LINGERLAB_DOGSCATS", dogscats_help, "Dogs-vs-Cats", not download)
    in_root = _resolve_root(imagenet_root, "LINGERLAB_IMAGENET", imagenet_help, "ImageNet", not download)
    if download:
        jobs = [
            (what, root, asset)
            for what, root, asset, find in (
                ("Dogs-vs-Cats", dc_root, dc_asset, dogscats_files),
                ("ImageNet", in_root, in_asset, lambda r: imagenet_files(r, 1, 0)),
            )
            if not _has_layout(root, find)
        ]
        _download_data(jobs, base_url=base_url, allow_unverified=allow_unverified, progress=progress)
    # everything that can be missing (folder layouts, then the weights) before the slow image scans
    layout, paths, labels = dogscats_files(dc_root)
    in_layout, s_paths, s_labels = imagenet_files(in_root, profile.dc_per_class, seed)
    source = (
        source_model
        if source_model is not None
        else resnet18_source_model(download, base_url=base_url, progress=progress)
    )

    good = set(scan_images(paths, what="Dogs-vs-Cats images", cache=cache)[0])
    g = torch.Generator().manual_seed(95_000 + seed)
    tr, va = [], []
    for c in (0, 1):
        cls = [p for p, y in zip(paths, labels) if y == c and p in good]
        n_tr, n_va = (n // 2 + (n % 2) * (1 - c) for n in (profile.n_train, profile.n_val))
        if len(cls) < n_tr + n_va:
            raise ValueError(
                f"n_train={profile.n_train} and n_val={profile.n_val} need {n_tr + n_va} readable "
                f"{TARGET_CLASSES[c]} images; {str(dc_root)!r} has {len(cls)}: lower n_train/n_val"
            )
        order = torch.randperm(len(cls), generator=g).tolist()
        va += [(cls[i], c) for i in sorted(order[:n_va])]
        tr += [(cls[i], c) for i in sorted(order[n_va : n_va + n_tr])]
    size = profile.image_size
    target_train, target_val = (ImageFiles.of(items, size, dc_root) for items in (tr, va))

    s_good = set(scan_images(s_paths, what="ImageNet images", cache=cache)[0])
    keep = [(p, y) for p, y in zip(s_paths, s_labels) if p in s_good]
    source_data = ImageFiles.of(keep, size, in_root)

    dev = world_device(device)
    source = source.to(dev).eval()
    classes = imagenet_classes()
    recipes = {
        "M^t": profile.finetune.replace(
            name="M^t",
            init="source",
            head="model.fc",
            num_workers=profile.num_workers,
            description="standard fine-tuning of M^s on D^t, no augmentation",
        ),
        "M^b": profile.scratch.replace(
            name="M^b (competent)",
            init="scratch",
            head="model.fc",
            num_workers=profile.num_workers,
            description=f"scratch ResNet-18 on {len(target_train):,} images, no augmentation",
        ),
    }
    fp = _cache.fingerprint(
        "paper",
        profile.__dict__,
        seed,
        weights_fingerprint(source),
        [d.fingerprint for d in (source_data, target_train, target_val)],
    )
    spec = WorldSpec(
        arch="ResNet-18",
        head="model.fc",
        cam_layer="model.layer4",
        input_size=size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        recipes=recipes,
        v_lo=round(profile.n_train / 1000),
        provenance={
            "dogscats_layout": layout,
            "imagenet_layout": in_layout,
            "skipped_files": (
                sorted(str(p) for p in set(paths) - good) + sorted(str(p) for p in set(s_paths) - s_good)
            ),
        },
    )
    return World(
        name="paper",
        profile=profile,
        seed=seed,
        source_model=source,
        source_classes=classes,
        source_data=source_data,
        target_train=target_train,
        target_val=target_val,
        target_classes=list(TARGET_CLASSES),
        make_scratch=_MakeResNet18(),
        spec=spec,
        fingerprint=fp,
    )
