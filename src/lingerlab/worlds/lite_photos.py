"""The real photos of the ``lite0``-``lite2`` worlds, all shipped by installed packages.

D^c (:func:`photo_table`): foolbox's 20 labelled ImageNet validation photos and the scikit-image
photos of one ImageNet class, labelled by M^s's top-1 (:data:`SAMPLE_PHOTOS`), with seeded
:func:`augmented_views`. The photos that show a face serve the paper's Figure 1 (:func:`target_photos`).
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

from .._data import as_image, square_resize
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
    return as_image(arr).contiguous()


def _load_photo(path: Path) -> Tensor:
    from PIL import Image

    with Image.open(path) as im:
        return _to_tensor(np.asarray(im.convert("RGB")))


def _resize(img: Tensor, size: int) -> Tensor:
    return F.interpolate(img[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]


def augmented_views(img: Tensor, n: int, size: int, generator: torch.Generator) -> Tensor:
    """``n`` views [n, 3, size, size] of a photo: the centre crop, then seeded random resized crops
    (35-100% of the area, aspect 3/4-4/3), horizontal flips and colour jitter (brightness, contrast,
    saturation +-25%)."""
    views = [square_resize(img, size)]
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
    """A sample image shipped by an installed package; ``use``: ``"source"`` (a D^c photo of one ImageNet
    class), ``"target"`` (a face: Figure 1) or ``"excluded"`` (``reason`` says why)."""

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


def _top1(source: nn.Module, images: list[Tensor], size: int) -> tuple[list[int], list[float], Tensor]:
    """M^s's top-1 class, its probability and all class probabilities on each photo's centre crop."""
    dev = next(source.parameters()).device
    with torch.no_grad():
        x = torch.stack([square_resize(img, size) for img in images]).to(dev)
        p = source(x).softmax(1).cpu()
    conf, top = p.max(1)
    return top.tolist(), conf.tolist(), p


def photo_table(source: nn.Module, size: int) -> pd.DataFrame:
    """Every candidate photo (foolbox's and :data:`SAMPLE_PHOTOS`): its use, its label (the file's, else
    M^s's top-1) and M^s's probabilities of that label and of its top-1 on the centre crop at ``size`` px."""
    classes = imagenet_classes()
    fool = foolbox_photos()
    images = [_load_photo(path) for path, _ in fool] + [_to_tensor(ph.load()) for ph in SAMPLE_PHOTOS]
    top, conf, probs = _top1(source, images, size)
    keys = ("photo", "package", "use", "reason", "label", "label_from")
    rows = [dict(zip(keys, (p.name, "foolbox", "source", "ImageNet validation photo", y, "file"))) for p, y in fool]
    rows += [
        dict(zip(keys, (ph.name, ph.name.split(".")[0], ph.use, ph.reason, None, "M^s top-1"))) for ph in SAMPLE_PHOTOS
    ]
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
    out = {ph.name: _to_tensor(ph.load()) for ph in SAMPLE_PHOTOS if ph.use == "target"}
    if size is not None:
        size = check_int_range("size", size, 8, 4096)
        out = {k: square_resize(v, size) for k, v in out.items()}
    return out


def source_photos(source: nn.Module, size: int) -> tuple[list[tuple[str, Tensor, int]], pd.DataFrame]:
    """``(name, image, label)`` of the D^c photos (``use == "source"`` in :func:`photo_table`), and the table."""
    table = photo_table(source, size)
    by_name = {ph.name: ph for ph in SAMPLE_PHOTOS}
    paths = {path.name: path for path, _ in foolbox_photos()}
    out = []
    for row in table[table.use == "source"].itertuples():
        img = _load_photo(paths[row.photo]) if row.package == "foolbox" else _to_tensor(by_name[row.photo].load())
        out.append((row.photo, img, int(row.label)))
    return out, table
