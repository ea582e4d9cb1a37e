"""``paper``: the paper's setting. ResNet-18 (torchvision IMAGENET1K_V1) fine-tuned on Dogs-vs-Cats,
with ImageNet validation images (or ImageNetV2) as D^c. Needs local copies of the data:

- Dogs-vs-Cats (``dogscats_root=`` or ``$LINGERLAB_DOGSCATS``), either public layout:
  Kaggle ``<root>/train/cat.0.jpg`` (or ``<root>/cat.0.jpg``) or Microsoft
  ``<root>/PetImages/Cat/0.jpg`` (or ``<root>/Cat/0.jpg``). Unreadable files (Microsoft's archive
  has some) are skipped with a counted warning; greyscale/CMYK/RGBA images are converted to RGB.
- ImageNet images (``imagenet_root=`` or ``$LINGERLAB_IMAGENET``): an ImageFolder
  ``<root>/<wnid>/*.JPEG``, torchvision's ImageNet layout ``<root>/val/<wnid>/*.JPEG``, or the
  ImageNetV2 matched-frequency folder ``<root>/<class index>/*.jpeg``.

All datasets are lazy (files are read on access) at ``image_size`` px with the standard
resize-to-256/224 and centre crop. The weights come from torchvision's cache
(``~/.cache/torch/hub/checkpoints/resnet18-f37072fd.pth``), downloaded only where there is internet.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import cache as _cache
from .._validation import check_choice, check_int_range
from ..models import IMAGENET_MEAN, IMAGENET_STD, Normalized
from ..profiles import PaperProfile
from ..training import evaluate, weights_fingerprint
from .base import World
from .custom import IMAGE_EXTENSIONS, ImageFiles, scan_images
from .lite0 import imagenet_classes

__all__ = ["resnet18_source_model", "dogscats_files", "imagenet_files", "imagenet_wnids", "load_paper",
           "DOGSCATS_HELP", "IMAGENET_HELP"]

TARGET_CLASSES = ["cat", "dog"]

DOGSCATS_HELP = (
    "Download Dogs-vs-Cats and pass its folder as dogscats_root= (or set LINGERLAB_DOGSCATS): either Kaggle's "
    "train.zip from https://www.kaggle.com/c/dogs-vs-cats/data unpacked as <root>/train/cat.0.jpg, dog.0.jpg, ... "
    "or Microsoft's kagglecatsanddogs archive from https://www.microsoft.com/en-us/download/details.aspx?id=54765 "
    "unpacked as <root>/PetImages/Cat/0.jpg and <root>/PetImages/Dog/0.jpg")
IMAGENET_HELP = (
    "Provide ImageNet images for D^c and pass their folder as imagenet_root= (or set LINGERLAB_IMAGENET): the "
    "ILSVRC2012 validation set arranged as <root>/<wnid>/*.JPEG (or torchvision.datasets.ImageNet's "
    "<root>/val/<wnid>/*.JPEG), or ImageNetV2 matched-frequency (imagenetv2-matched-frequency.tar.gz from "
    "https://huggingface.co/datasets/vaishaal/ImageNetV2) unpacked as <root>/<class index>/*.jpeg")
RESNET18_FILE = "resnet18-f37072fd.pth"


def resnet18_source_model(allow_download: bool = True) -> nn.Module:
    """M^s: torchvision's ResNet-18 with IMAGENET1K_V1 weights in ``Normalized`` (ImageNet mean/std).

    Uses the torch hub cache; downloads only when the file is missing and ``allow_download``.
    """
    from torchvision.models import ResNet18_Weights, resnet18
    weights = ResNet18_Weights.IMAGENET1K_V1
    fname = os.path.basename(weights.url)
    path = Path(torch.hub.get_dir()) / "checkpoints" / fname
    help_msg = (f"ResNet-18 ImageNet weights are not available offline: download {weights.url} and save it as "
                f"{path} (torch hub's checkpoint folder, ~/.cache/torch/hub/checkpoints by default), or pass "
                "source_model=")
    if not path.is_file() and not allow_download:
        raise FileNotFoundError(help_msg)
    try:
        state = weights.get_state_dict(progress=False, check_hash=True)
    except Exception as e:  # noqa: BLE001 - URLError, socket errors, hash mismatch...
        raise FileNotFoundError(f"{help_msg} (download failed: {e})") from e
    model = resnet18()
    model.load_state_dict(state)
    return Normalized(model, IMAGENET_MEAN, IMAGENET_STD).eval()


def _resolve_root(value: str | os.PathLike | None, env: str, help_msg: str, what: str) -> Path:
    raw = value if value is not None else os.environ.get(env)
    if not raw:
        raise FileNotFoundError(f"no {what} folder given (parameter and ${env} are both unset). {help_msg}")
    root = Path(raw).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{what} folder {str(root)!r} does not exist. {help_msg}")
    return root


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
                fs = sorted((p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                            key=lambda p: (len(p.stem), p.stem))
                paths += fs
                labels += [label] * len(fs)
            return "microsoft", paths, labels
    found = ", ".join(sorted(p.name for p in root.iterdir())[:10]) or "nothing"
    raise FileNotFoundError(f"dogscats_root {str(root)!r} has neither layout (found: {found}). {DOGSCATS_HELP}")


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
    raise ImportError("cannot map ImageNet WordNet ids to class indices: install timm (it ships the list), or use "
                      "the ImageNetV2 layout <root>/<class index>/*.jpeg")


_WNID = re.compile(r"^n\d{8}$")


def imagenet_files(root: Path, per_class: int, seed: int) -> tuple[str, list[Path], list[int]]:
    """``(layout, paths, class ids)``: up to ``per_class`` seeded images of each class found under ``root``."""
    base = root / "val" if (root / "val").is_dir() and any(_WNID.match(d.name) for d in (root / "val").iterdir()) else root
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
        raise FileNotFoundError(f"imagenet_root {str(root)!r} has no <wnid>/ or <class index>/ folders. {IMAGENET_HELP}")
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
        raise FileNotFoundError(f"imagenet_root {str(root)!r} has class folders but no images. {IMAGENET_HELP}")
    return layout, paths, labels


class _MakeResNet18:
    """Picklable, fingerprintable factory of the scratch baseline (ResNet-18, 2 outputs, Normalized)."""

    cache_key = ("paper.resnet18", 2, IMAGENET_MEAN, IMAGENET_STD)

    def __call__(self) -> nn.Module:
        from torchvision.models import resnet18
        return Normalized(resnet18(num_classes=2), IMAGENET_MEAN, IMAGENET_STD)


def load_paper(profile: PaperProfile, seed: int = 0, *, source_model: nn.Module | None = None,
               dogscats_root: str | os.PathLike | None = None, imagenet_root: str | os.PathLike | None = None,
               allow_download: bool = True, device: str | torch.device | None = None, progress: bool = True,
               cache: bool = True) -> World:
    """Build the ``paper`` world (see the module docstring). ``source_model`` replaces the torchvision
    ResNet-18 (it must take [0, 1] images and have 1000 outputs); nothing is downloaded then."""
    check_int_range("image_size", profile.image_size, 32, 1024)
    check_int_range("n_train", profile.n_train, 2)
    check_int_range("n_val", profile.n_val, 2)
    check_int_range("dc_per_class", profile.dc_per_class, 0)
    check_choice("finetune_bn", profile.finetune_bn, ("update", "freeze"))
    check_int_range("seed", seed, 0)
    dc_root = _resolve_root(dogscats_root, "LINGERLAB_DOGSCATS", DOGSCATS_HELP, "Dogs-vs-Cats")
    in_root = _resolve_root(imagenet_root, "LINGERLAB_IMAGENET", IMAGENET_HELP, "ImageNet")

    layout, paths, labels = dogscats_files(dc_root)
    good = set(scan_images(paths, what="Dogs-vs-Cats images", cache=cache)[0])
    g = torch.Generator().manual_seed(95_000 + seed)
    tr, va = [], []
    for c in (0, 1):
        cls = [p for p, y in zip(paths, labels) if y == c and p in good]
        n_tr, n_va = profile.n_train // 2 + (profile.n_train % 2) * (1 - c), profile.n_val // 2 + (profile.n_val % 2) * (1 - c)
        if len(cls) < n_tr + n_va:
            raise ValueError(f"n_train={profile.n_train} and n_val={profile.n_val} need {n_tr + n_va} readable "
                             f"{TARGET_CLASSES[c]} images; {str(dc_root)!r} has {len(cls)}: lower n_train/n_val")
        order = torch.randperm(len(cls), generator=g).tolist()
        va += [(cls[i], c) for i in sorted(order[:n_va])]
        tr += [(cls[i], c) for i in sorted(order[n_va:n_va + n_tr])]
    size = profile.image_size
    target_train = ImageFiles([p for p, _ in tr], [y for _, y in tr], size, root=dc_root)
    target_val = ImageFiles([p for p, _ in va], [y for _, y in va], size, root=dc_root)

    in_layout, s_paths, s_labels = imagenet_files(in_root, profile.dc_per_class, seed)
    s_good = set(scan_images(s_paths, what="ImageNet images", cache=cache)[0])
    keep = [(p, y) for p, y in zip(s_paths, s_labels) if p in s_good]
    source_data = ImageFiles([p for p, _ in keep], [y for _, y in keep], size, root=in_root)

    source = source_model if source_model is not None else resnet18_source_model(allow_download)
    dev = torch.device(device) if device not in (None, "auto") else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    source = source.to(dev).eval()
    classes = imagenet_classes()
    finetune_defaults = {"num_classes": 2, "lr": profile.finetune_lr, "epochs": profile.finetune_epochs,
                         "optimizer": profile.finetune_optimizer, "bn": profile.finetune_bn,
                         "batch_size": profile.finetune_batch_size, "head": "model.fc",
                         "num_workers": profile.num_workers}
    scratch_defaults = {"lr": profile.scratch_lr, "epochs": profile.scratch_epochs, "optimizer": "adam",
                        "batch_size": profile.scratch_batch_size, "head": "model.fc",
                        "num_workers": profile.num_workers}
    fp = _cache.fingerprint("paper", profile.__dict__, seed, weights_fingerprint(source),
                            [d.fingerprint for d in (source_data, target_train, target_val)])
    extra: dict[str, Any] = {
        "head": "model.fc", "cam_layer": "model.layer4", "arch": "ResNet-18",
        "v_lo": round(profile.n_train / 1000),
        "dogscats_layout": layout, "imagenet_layout": in_layout,
        "skipped_files": sorted(str(p) for p in set(paths) - good) + sorted(str(p) for p in set(s_paths) - s_good),
        "evaluate": evaluate,
    }
    return World(name="paper", profile=profile, seed=seed, source_model=source, source_classes=classes,
                 source_data=source_data, target_train=target_train, target_val=target_val,
                 target_classes=list(TARGET_CLASSES), make_scratch=_MakeResNet18(),
                 finetune_defaults=finetune_defaults, scratch_defaults=scratch_defaults,
                 fingerprint=fp, extra=extra)
