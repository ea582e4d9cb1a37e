"""The real photos of the ``lite0``, ``lite1`` and ``lite2`` worlds, all shipped by installed packages.

D^c's photos: every real photo the installed packages ship that shows one ImageNet class
(:data:`SAMPLE_PHOTOS`, :func:`photo_table`): the 20 labelled ImageNet validation photos inside the
``foolbox`` wheel, and scikit-image's ``chelsea``, ``coffee``, ``rocket`` and ``stereo_motorcycle``
labelled by M^s's top-1 (its probability kept in the table); :func:`augmented_views` makes a photo's
centre crop and seeded augmented views. Sample photos that show a face (scikit-image's ``astronaut``
and ``camera``, matplotlib's ``grace_hopper``) are target-class images: they are kept out of D^c and
serve the paper's Figure 1 (:func:`target_photos`).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import check_int_range
from .lite_models import imagenet_classes

__all__ = [
    "SamplePhoto",
    "SAMPLE_PHOTOS",
    "foolbox_photos",
    "augmented_views",
    "photo_table",
    "target_photos",
    "source_photos",
]


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the lite worlds need the PyPI package {name!r} (pip install {name})")
    return Path(list(spec.submodule_search_locations)[0])


def foolbox_photos() -> list[tuple[Path, int]]:
    """``(path, ImageNet label)`` of the 20 ImageNet validation photos in the foolbox wheel, in order."""
    folder = _package_dir("foolbox") / "data"
    files = sorted(folder.glob("imagenet_*_*.jpg"))
    if not files:
        raise FileNotFoundError(
            f"no foolbox/data/imagenet_<idx>_<label>.jpg photos in {folder}: reinstall foolbox>=3.3"
        )
    return [(p, int(p.stem.split("_")[2])) for p in files]


def _to_tensor(arr: np.ndarray) -> Tensor:
    """HxW or HxWxC uint8/float array -> float [3, H, W] in [0, 1]."""
    t = torch.from_numpy(np.array(arr, copy=True))
    t = t.float() / 255 if t.dtype == torch.uint8 else t.float()
    if t.ndim == 2:
        t = t[None].expand(3, -1, -1)
    else:
        t = t.permute(2, 0, 1)[:3]
    return t.clamp(0, 1).contiguous()


def _load_photo(path: Path) -> Tensor:
    from PIL import Image

    with Image.open(path) as im:
        return _to_tensor(np.asarray(im.convert("RGB")))


def _resize(img: Tensor, size: int) -> Tensor:
    return F.interpolate(img[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]


def _center_crop(img: Tensor) -> Tensor:
    _, h, w = img.shape
    s = min(h, w)
    return img[:, (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]


def augmented_views(img: Tensor, n: int, size: int, generator: torch.Generator) -> Tensor:
    """``n`` views [n, 3, size, size] of a photo: the centre crop, then seeded random resized crops
    (35-100% of the area, aspect 3/4-4/3), horizontal flips and colour jitter (brightness, contrast,
    saturation +-25%)."""
    views = [_resize(_center_crop(img), size)]
    _, h, w = img.shape
    for _ in range(n - 1):
        area = h * w * float(torch.empty(1).uniform_(0.35, 1.0, generator=generator))
        ratio = float(torch.exp(torch.empty(1).uniform_(np.log(3 / 4), np.log(4 / 3), generator=generator)))
        cw = int(round(min(w, (area * ratio) ** 0.5)))
        ch = int(round(min(h, (area / ratio) ** 0.5)))
        y0 = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
        x0 = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
        v = _resize(img[:, y0 : y0 + ch, x0 : x0 + cw], size)
        if float(torch.rand(1, generator=generator)) < 0.5:
            v = v.flip(-1)
        b, c, s = (float(x) for x in torch.empty(3).uniform_(0.75, 1.25, generator=generator))
        v = v * b
        v = (v - v.mean()) * c + v.mean()
        grey = (0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2])[None]
        v = (v - grey) * s + grey
        views.append(v.clamp(0, 1))
    return torch.stack(views)


def _skimage(name: str, index: int | None = None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data as skd

        out = getattr(skd, name)()
        return out[index] if index is not None else out

    return load


def _matplotlib(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import matplotlib
        from PIL import Image

        with Image.open(Path(matplotlib.get_data_path()) / "sample_data" / filename) as im:
            return np.asarray(im.convert("RGB"))

    return load


@dataclass(frozen=True)
class SamplePhoto:
    """A sample image shipped by an installed package, and what the worlds do with it.

    ``use``: ``"source"`` (a D^c photo: it shows one ImageNet class; labelled by M^s's top-1, since the
    package gives no class), ``"target"`` (it shows a face, the target class: kept out of D^c, used for
    the paper's Figure 1) or ``"excluded"`` (``reason`` says why).
    """

    name: str
    load: Callable[[], np.ndarray]
    use: str
    reason: str


SAMPLE_PHOTOS: tuple[SamplePhoto, ...] = (
    SamplePhoto("skimage.chelsea", _skimage("chelsea"), "source", "a cat"),
    SamplePhoto("skimage.coffee", _skimage("coffee"), "source", "a cup of coffee"),
    SamplePhoto("skimage.rocket", _skimage("rocket"), "source", "a rocket on its launch pad"),
    SamplePhoto("skimage.stereo_motorcycle", _skimage("stereo_motorcycle", 0), "source", "a motorcycle"),
    SamplePhoto("skimage.astronaut", _skimage("astronaut"), "target", "a face (astronaut Eileen Collins)"),
    SamplePhoto("skimage.camera", _skimage("camera"), "target", "a face (the cameraman, with a tripod)"),
    SamplePhoto(
        "matplotlib.grace_hopper", _matplotlib("grace_hopper.jpg"), "target", "a face (Grace Hopper, in uniform)"
    ),
    SamplePhoto("skimage.clock", _skimage("clock"), "excluded", "a motion-blurred test image"),
    SamplePhoto("skimage.coins", _skimage("coins"), "excluded", "two dozen coins: no single ImageNet class"),
    SamplePhoto("skimage.horse", _skimage("horse"), "excluded", "a binary silhouette, not a photo"),
    SamplePhoto(
        "matplotlib.Minduka_Present_Blue_Pack",
        _matplotlib("Minduka_Present_Blue_Pack.png"),
        "excluded",
        "a drawing, not a photo",
    ),
)


def _sample_tensor(photo: SamplePhoto) -> Tensor:
    return _to_tensor(photo.load())


def _top1(source: nn.Module, images: list[Tensor], size: int) -> tuple[list[int], list[float], Tensor]:
    """M^s's top-1 class, its probability and all class probabilities on each photo's centre crop."""
    dev = next(source.parameters()).device
    with torch.no_grad():
        x = torch.stack([_resize(_center_crop(img), size) for img in images]).to(dev)
        p = source(x).softmax(1).cpu()
    conf, top = p.max(1)
    return top.tolist(), conf.tolist(), p


def photo_table(source: nn.Module, size: int) -> pd.DataFrame:
    """Every candidate photo: foolbox's 20 labelled ImageNet photos and :data:`SAMPLE_PHOTOS`.

    Columns: ``photo``, ``package``, ``use`` (``source``, ``target`` or ``excluded``), ``reason``,
    ``label`` and ``label_name`` (the file's ImageNet class for foolbox; M^s's top-1 otherwise),
    ``label_from`` (``file`` or ``M^s top-1``), ``p_label`` (M^s's probability of that label on the centre
    crop at ``size`` px), ``top1_name`` and ``p_top1``.
    """
    classes = imagenet_classes()
    fool = foolbox_photos()
    images = [_load_photo(path) for path, _ in fool] + [_sample_tensor(ph) for ph in SAMPLE_PHOTOS]
    top, conf, probs = _top1(source, images, size)
    rows = []
    for path, label in fool:
        rows.append(
            {
                "photo": path.name,
                "package": "foolbox",
                "use": "source",
                "reason": "ImageNet validation photo",
                "label": label,
                "label_from": "file",
            }
        )
    for ph in SAMPLE_PHOTOS:
        rows.append(
            {
                "photo": ph.name,
                "package": ph.name.split(".")[0],
                "use": ph.use,
                "reason": ph.reason,
                "label": None,
                "label_from": "M^s top-1",
            }
        )
    for i, row in enumerate(rows):
        if row["label"] is None:
            row["label"] = top[i]
        row["label_name"] = classes[row["label"]]
        row["p_label"] = float(probs[i, row["label"]])
        row["top1_name"], row["p_top1"] = classes[top[i]], conf[i]
    cols = ["photo", "package", "use", "reason", "label", "label_name", "label_from", "p_label", "top1_name", "p_top1"]
    return pd.DataFrame(rows)[cols]


def target_photos(size: int | None = None) -> dict[str, Tensor]:
    """The sample photos that show a face (``use="target"``), as [3, H, W] tensors in [0, 1] (Figure 1);
    with ``size``, each centre-cropped to a square and resized to ``size`` px."""
    out = {ph.name: _sample_tensor(ph) for ph in SAMPLE_PHOTOS if ph.use == "target"}
    if size is not None:
        size = check_int_range("size", size, 8, 4096)
        out = {k: _resize(_center_crop(v), size) for k, v in out.items()}
    return out


def source_photos(source: nn.Module, size: int) -> tuple[list[tuple[str, Tensor, int]], pd.DataFrame]:
    """``(name, image, label)`` of the D^c photos (``use == "source"`` in :func:`photo_table`), and the table."""
    table = photo_table(source, size)
    by_name = {ph.name: ph for ph in SAMPLE_PHOTOS}
    paths = {path.name: path for path, _ in foolbox_photos()}
    out = []
    for row in table[table.use == "source"].itertuples():
        img = _load_photo(paths[row.photo]) if row.package == "foolbox" else _sample_tensor(by_name[row.photo])
        out.append((row.photo, img, int(row.label)))
    return out, table
