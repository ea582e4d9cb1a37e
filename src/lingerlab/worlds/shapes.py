"""``shapes``: a procedural world with planted ground truth, fully offline.

Source domain: ``n_shapes x n_textures x n_colours`` object classes (e.g. "striped star") on noisy,
low-saturation gradient backgrounds, sometimes with non-source clutter (thin random lines). M^s is a
small ResNet-like CNN (BatchNorm momentum 0.1) trained on them here, cached on disk.

Target domain: a ``T`` glyph ("tee", this world's cats) vs an ``H`` glyph ("aitch", its dogs), in any
source texture and colour. A chosen set of co-occurring source classes (the paper's tennis ball and
kerchief) is pasted into ``shared_prob`` of the target images, the other classes never are. The
source classes whose shape is a target glyph (the paper's cat breeds) also count as shared. So
``planted_shared`` = glyph look-alikes + co-occurring classes, ``planted_source_only`` = the rest.

The scratch baseline (same CNN from random weights) trains on all ``target_train`` images with
"zoom-out" augmentation (the target image shrunk to 35-80% and pasted on a plain or cluttered
background); M^t fine-tunes on the ``finetune_train``-image subset ``extra["finetune_subset"]``.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from .. import cache as _cache
from .._validation import check_int_range, check_range
from ..models import Normalized
from ..profiles import ShapesProfile
from ..training import evaluate, train_scratch, weights_fingerprint
from .base import World

__all__ = ["SHAPES", "TEXTURES", "COLOURS", "SmallResNet", "ZoomOut", "load_shapes", "shapes_v_lo", "render_source",
           "render_target", "class_table"]

SHAPES = ("tee", "aitch", "disc", "square", "triangle", "ring", "star", "diamond", "cross", "hexagon",
          "crescent", "heart")
TEXTURES = ("solid", "striped", "checked", "dotted")
COLOURS = ("red", "green", "blue")          # hue families when n_colours == 3 (n_colours == 1: any hue)
GLYPHS = ("tee", "aitch")                   # the target classes' shapes
TARGET_CLASSES = ["T", "H"]
_SS = 2                                     # supersampling factor (anti-aliasing)
_MEAN, _STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


# --------------------------------------------------------------------------------------------
# rendering (vectorised over a batch; every random draw comes from an explicit generator)
# --------------------------------------------------------------------------------------------

def _grid(size: int, ss: int = _SS) -> tuple[Tensor, Tensor]:
    s = size * ss
    c = (torch.arange(s, dtype=torch.float32) + 0.5) / s
    return c.view(1, 1, s).expand(1, s, s), c.view(1, s, 1).expand(1, s, s)  # x, y in [0, 1]


def _uniform(g: torch.Generator, n: int, lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _hsv(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """HSV in [0, 1] -> RGB [N, 3]."""
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], 1)
    return v[:, None] - v[:, None] * s[:, None] * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def _shape_mask(shape: str, u: Tensor, v: Tensor) -> Tensor:
    """Boolean mask of ``shape`` in object coordinates (u right, v down, both in [-1, 1])."""
    au, av = u.abs(), v.abs()
    r = torch.sqrt(u * u + v * v)
    if shape == "tee":
        return ((v + 0.6).abs() < 0.25) & (au < 0.85) | (au < 0.25) & (v > -0.85) & (v < 0.85)
    if shape == "aitch":
        return (((u - 0.58).abs() < 0.24) | ((u + 0.58).abs() < 0.24)) & (av < 0.85) | (av < 0.22) & (au < 0.8)
    if shape == "disc":
        return r < 0.82
    if shape == "square":
        return torch.maximum(au, av) < 0.7
    if shape == "triangle":
        return (v < 0.6) & (v > 1.732 * au - 1.0)
    if shape == "ring":
        return (r < 0.85) & (r > 0.48)
    if shape == "star":
        th = torch.atan2(v, u)
        return r < 0.42 + 0.45 * torch.cos(5 * th).clamp(min=0) ** 2
    if shape == "diamond":
        return au + av < 0.9
    if shape == "cross":
        return (au < 0.24) & (av < 0.85) | (av < 0.24) & (au < 0.85)
    if shape == "hexagon":
        return torch.maximum(au * 0.866 + av * 0.5, av) < 0.75
    if shape == "crescent":
        return (r < 0.85) & ((u - 0.38) ** 2 + (v + 0.12) ** 2 > 0.62 ** 2)
    if shape == "heart":
        x, y = u * 1.25, -v * 1.25 + 0.25
        return (x * x + y * y - 1) ** 3 - x * x * y ** 3 < 0
    raise ValueError(f"shape must be one of {', '.join(SHAPES)}; got {shape!r}")


def _texture(texture: str, u: Tensor, v: Tensor, freq: Tensor, phase: Tensor) -> Tensor:
    """1 where the object shows its main colour, 0 where it shows the dark second colour."""
    f = freq.view(-1, 1, 1)
    p = phase.view(-1, 1, 1)
    if texture == "solid":
        return torch.ones_like(u, dtype=torch.bool)
    if texture == "striped":
        return torch.sin(math.pi * f * (u + v) * 0.7071 + p) > 0
    if texture == "checked":
        return torch.sin(math.pi * f * u + p) * torch.sin(math.pi * f * v + p) > 0
    if texture == "dotted":
        fu, fv = torch.frac(f * u / 2 + 10 + p / 7) - 0.5, torch.frac(f * v / 2 + 10) - 0.5
        return fu * fu + fv * fv > 0.09
    raise ValueError(f"texture must be one of {', '.join(TEXTURES)}; got {texture!r}")


def _colours(g: torch.Generator, family: Tensor, n_colours: int) -> Tensor:
    """Saturated object colours [N, 3]; family -1 (or n_colours == 1) draws any hue."""
    n = len(family)
    if n_colours == 1:
        h = torch.rand(n, generator=g)
    else:
        h = (family.float() / 3.0 + _uniform(g, n, -1 / 12, 1 / 12)) % 1.0
        h = torch.where(family < 0, torch.rand(n, generator=g), h)
    return _hsv(h, _uniform(g, n, 0.75, 1.0), _uniform(g, n, 0.8, 1.0))


def _background(g: torch.Generator, n: int, size: int) -> Tensor:
    """Noisy, low-saturation gradients [N, 3, S, S] (images are composited at output resolution)."""
    x, y = _grid(size, 1)
    c1 = _hsv(torch.rand(n, generator=g), _uniform(g, n, 0.0, 0.3), _uniform(g, n, 0.15, 0.85))
    c2 = _hsv(torch.rand(n, generator=g), _uniform(g, n, 0.0, 0.3), _uniform(g, n, 0.15, 0.85))
    ang = _uniform(g, n, 0, 2 * math.pi)
    t = (torch.cos(ang).view(-1, 1, 1) * (x - 0.5) + torch.sin(ang).view(-1, 1, 1) * (y - 0.5) + 0.5).clamp(0, 1)
    img = c1.view(n, 3, 1, 1) * (1 - t[:, None]) + c2.view(n, 3, 1, 1) * t[:, None]
    low = F.interpolate(torch.randn(n, 3, 4, 4, generator=g) * 0.06, size=(size, size),
                        mode="bilinear", align_corners=False)
    fine = torch.randn(n, 3, size, size, generator=g) * 0.035
    return img.add_(low).add_(fine)


def _clutter_params(g: torch.Generator, n: int, lines: tuple[int, int]) -> dict[str, Tensor]:
    k = lines[1]
    count = torch.randint(lines[0], lines[1] + 1, (n,), generator=g)
    return {"p0": torch.rand(n, k, 2, generator=g) * 1.2 - 0.1, "p1": torch.rand(n, k, 2, generator=g) * 1.2 - 0.1,
            "width": _uniform(g, n * k, 0.012, 0.03).view(n, k),
            "colour": _hsv(torch.rand(n * k, generator=g), _uniform(g, n * k, 0.0, 1.0),
                           _uniform(g, n * k, 0.1, 1.0)).view(n, k, 3),
            "on": torch.arange(k).view(1, k) < count.view(n, 1)}


def _draw_clutter(img: Tensor, prm: dict[str, Tensor], size: int, active: Tensor) -> Tensor:
    """Paint thin line segments (non-source clutter) on the images where ``active``."""
    x, y = _grid(size)
    x, y = x.to(img.device), y.to(img.device)
    n, k = prm["on"].shape
    for j in range(k):
        idx = (prm["on"][:, j] & active).nonzero().flatten()
        if len(idx) == 0:
            continue
        a, b = prm["p0"][idx, j].to(img.device), prm["p1"][idx, j].to(img.device)
        d = b - a
        ax, ay, dx, dy = (t[:, None, None] for t in (a[:, 0], a[:, 1], d[:, 0], d[:, 1]))
        t = (((x - ax) * dx + (y - ay) * dy) / (d * d).sum(1).clamp(min=1e-6)[:, None, None]).clamp_(0, 1)
        dist2 = (x - ax - t * dx) ** 2 + (y - ay - t * dy) ** 2
        m = dist2 < (prm["width"][idx, j].to(img.device) ** 2)[:, None, None]
        fill = prm["colour"][idx, j].to(img.device)[:, :, None, None] * m[:, None]
        _paste(img, idx.to(img.device), m, fill)
    return img


def _paste(img: Tensor, idx: Tensor, mask: Tensor, fill: Tensor) -> None:
    """Composite a supersampled layer (binary ``mask`` [M, S*ss, S*ss], ``fill`` premultiplied by it)
    over ``img[idx]`` at output resolution, with coverage as alpha (anti-aliased edges)."""
    alpha = F.avg_pool2d(mask[:, None].to(img.dtype), _SS)
    img[idx] = img[idx] * (1 - alpha) + F.avg_pool2d(fill, _SS)


def _object_params(g: torch.Generator, n: int, cx: Tensor, cy: Tensor, scale: Tensor, family: Tensor,
                   n_colours: int) -> dict[str, Tensor]:
    # rotation within +-0.3 rad: a square never turns into a diamond (their ranges stay 28 deg apart)
    return {"cx": cx, "cy": cy, "scale": scale, "rot": _uniform(g, n, -0.3, 0.3),
            "freq": _uniform(g, n, 3.0, 4.5), "phase": _uniform(g, n, 0, 2 * math.pi),
            "colour": _colours(g, family, n_colours), "dark": _uniform(g, n, 0.25, 0.45)}


def _draw_objects(img: Tensor, shape: Tensor, texture: Tensor, prm: dict[str, Tensor], size: int,
                  active: Tensor | None = None) -> Tensor:
    """Paint one object per image (shape/texture indices per image) over ``img``."""
    x, y = _grid(size)
    for si in shape.unique().tolist():
        for ti in texture.unique().tolist():
            sel = (shape == si) & (texture == ti)
            if active is not None:
                sel &= active
            idx = sel.nonzero().flatten()
            if len(idx) == 0:
                continue
            cx, cy, sc, rot = (prm[k][idx].view(-1, 1, 1) for k in ("cx", "cy", "scale", "rot"))
            dx, dy = x - cx, y - cy
            u = (dx * torch.cos(rot) + dy * torch.sin(rot)) / sc
            v = (-dx * torch.sin(rot) + dy * torch.cos(rot)) / sc
            mask = _shape_mask(SHAPES[si], u, v)
            pat = _texture(TEXTURES[ti], u, v, prm["freq"][idx], prm["phase"][idx])
            col = prm["colour"][idx].view(-1, 3, 1, 1)
            fill = torch.where(pat[:, None], col, col * prm["dark"][idx].view(-1, 1, 1, 1)) * mask[:, None]
            _paste(img, idx, mask, fill)
    return img


def _finish(img: Tensor) -> Tensor:
    """Clamp to [0, 1] and quantise to 8 bits (so images stored as uint8 come back identical)."""
    return (img.clamp(0, 1) * 255).round() / 255


def class_table(profile: ShapesProfile) -> list[tuple[int, int, int]]:
    """``(shape, texture, colour family)`` index triples, one per source class (class id = position)."""
    return [(s, t, c) for c in range(profile.n_colours) for s in range(profile.n_shapes)
            for t in range(profile.n_textures)]


def _class_name(shape: int, texture: int, colour: int, n_colours: int) -> str:
    parts = ([COLOURS[colour]] if n_colours > 1 else []) + [TEXTURES[texture], SHAPES[shape]]
    return " ".join(parts)


def render_source(profile: ShapesProfile, labels: Tensor, generator: torch.Generator,
                  chunk: int = 2048) -> Tensor:
    """Source images [N, 3, S, S] in [0, 1], one centred object of class ``labels[i]`` each."""
    table = torch.as_tensor(class_table(profile))
    out = []
    for i in range(0, len(labels), chunk):
        lab = labels[i:i + chunk]
        n = len(lab)
        img = _background(generator, n, profile.image_size)
        clut = _clutter_params(generator, n, (1, 4))
        img = _draw_clutter(img, clut, profile.image_size, torch.rand(n, generator=generator) < profile.clutter_prob)
        trip = table[lab]
        prm = _object_params(generator, n, _uniform(generator, n, 0.38, 0.62), _uniform(generator, n, 0.38, 0.62),
                             _uniform(generator, n, 0.27, 0.4), trip[:, 2], profile.n_colours)
        img = _draw_objects(img, trip[:, 0], trip[:, 1], prm, profile.image_size)
        out.append(_finish(img))
    return torch.cat(out)


def _target_params(profile: ShapesProfile, labels: Tensor, shared: Tensor, g: torch.Generator) -> dict[str, Any]:
    """Every random draw of a target set except its clutter (so clutter can be re-drawn alone).

    A fraction ``shared_prob`` of the images also shows a co-occurring object, at the scale source
    objects have (0.27-0.40). In half of those the glyph is the subject (central, 0.26-0.36) and the
    object stands beside it; in the other half the object is the subject and a smaller glyph
    (0.20-0.28) stands beside it, like a photo of a dog whose ball fills the frame. Images without an
    object show a central glyph. The glyph is always drawn last (never hidden).
    """
    n = len(labels)
    table = torch.as_tensor(class_table(profile))
    has_shared = torch.rand(n, generator=g) < profile.shared_prob
    object_subject = has_shared & (torch.rand(n, generator=g) < 0.5)
    which = shared[torch.randint(0, len(shared), (n,), generator=g)] if len(shared) else torch.zeros(n, dtype=torch.long)
    ang = _uniform(g, n, 0, 2 * math.pi)
    osc = _uniform(g, n, 0.27, 0.4)
    # glyph as subject, object beside it
    gx, gy, gsc = _uniform(g, n, 0.3, 0.7), _uniform(g, n, 0.3, 0.7), _uniform(g, n, 0.26, 0.36)
    dist = _uniform(g, n, 0.38, 0.5)
    ox = (gx + dist * torch.cos(ang)).clamp(osc * 0.8, 1 - osc * 0.8)
    oy = (gy + dist * torch.sin(ang)).clamp(osc * 0.8, 1 - osc * 0.8)
    # object as subject, smaller glyph beside it
    ox2, oy2, gsc2 = _uniform(g, n, 0.4, 0.6), _uniform(g, n, 0.4, 0.6), _uniform(g, n, 0.2, 0.28)
    dist2 = _uniform(g, n, 0.32, 0.42)
    gx2 = (ox2 + dist2 * torch.cos(ang)).clamp(gsc2 * 0.9, 1 - gsc2 * 0.9)
    gy2 = (oy2 + dist2 * torch.sin(ang)).clamp(gsc2 * 0.9, 1 - gsc2 * 0.9)
    pick = lambda a, b: torch.where(object_subject, b, a)  # noqa: E731
    glyph = _object_params(g, n, pick(gx, gx2), pick(gy, gy2), pick(gsc, gsc2), torch.full((n,), -1),
                           profile.n_colours)
    glyph_tex = torch.randint(0, profile.n_textures, (n,), generator=g)
    trip = table[which]
    obj = _object_params(g, n, pick(ox, ox2), pick(oy, oy2), osc, trip[:, 2], profile.n_colours)
    return {"labels": labels, "glyph": glyph, "glyph_tex": glyph_tex, "has_shared": has_shared, "which": which,
            "object_subject": object_subject, "obj": obj, "obj_shape": trip[:, 0], "obj_tex": trip[:, 1],
            "bg_seed": int(torch.randint(0, 2 ** 31 - 1, (1,), generator=g))}


def render_target(profile: ShapesProfile, params: dict[str, Any], clutter_generator: torch.Generator,
                  clutter_prob: float, lines: tuple[int, int] = (1, 4), chunk: int = 2048) -> Tensor:
    """Target images [N, 3, S, S]: background, clutter (probability ``clutter_prob``), shared object, glyph."""
    n = len(params["labels"])
    bg_g = torch.Generator().manual_seed(params["bg_seed"])
    out = []
    for i in range(0, n, chunk):
        sl = slice(i, min(i + chunk, n))
        m = sl.stop - sl.start
        img = _background(bg_g, m, profile.image_size)
        clut = _clutter_params(clutter_generator, m, lines)
        img = _draw_clutter(img, clut, profile.image_size, torch.rand(m, generator=clutter_generator) < clutter_prob)
        obj = {k: v[sl] for k, v in params["obj"].items()}
        img = _draw_objects(img, params["obj_shape"][sl], params["obj_tex"][sl], obj, profile.image_size,
                            active=params["has_shared"][sl])
        glyph = {k: v[sl] for k, v in params["glyph"].items()}
        shapes = torch.as_tensor([SHAPES.index(GLYPHS[int(c)]) for c in params["labels"][sl]])
        img = _draw_objects(img, shapes, params["glyph_tex"][sl], glyph, profile.image_size)
        out.append(_finish(img))
    return torch.cat(out)


# --------------------------------------------------------------------------------------------
# augmentation and architecture
# --------------------------------------------------------------------------------------------

class ZoomOut:
    """Zoom-out augmentation: with probability ``prob`` shrink an image to ``lo``-``hi`` of its side
    and paste it at a random place on a fresh plain or (half the time) cluttered background."""

    def __init__(self, lo: float = 0.35, hi: float = 0.8, prob: float = 0.5) -> None:
        check_range("zoom_min", lo, 0, 1, lo_open=True)
        check_range("zoom_max", hi, lo, 1)
        check_range("zoom_prob", prob, 0, 1)
        self.lo, self.hi, self.prob = lo, hi, prob
        self.cache_key = ("ZoomOut", lo, hi, prob, 1)

    def __repr__(self) -> str:
        return f"ZoomOut(lo={self.lo}, hi={self.hi}, prob={self.prob})"

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        n, _, h, w = x.shape
        apply = torch.rand(n, generator=generator) < self.prob
        if not bool(apply.any()):
            return x
        idx = apply.nonzero().flatten()
        m = len(idx)
        s = _uniform(generator, m, self.lo, self.hi)
        tx, ty = (torch.rand(m, generator=generator) * 2 - 1) * (1 - s), (torch.rand(m, generator=generator) * 2 - 1) * (1 - s)
        bg = _background(generator, m, h)
        clut = _clutter_params(generator, m, (2, 5))
        bg = _finish(_draw_clutter(bg, clut, h, torch.rand(m, generator=generator) < 0.5)).to(x.device, x.dtype)
        theta = torch.zeros(m, 2, 3)
        theta[:, 0, 0], theta[:, 1, 1] = 1 / s, 1 / s
        theta[:, 0, 2], theta[:, 1, 2] = -tx / s, -ty / s
        grid = F.affine_grid(theta.to(x.device, x.dtype), [m, 3, h, w], align_corners=False)
        small = F.grid_sample(x[idx], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        mask = F.grid_sample(torch.ones(m, 1, h, w, device=x.device, dtype=x.dtype), grid, mode="bilinear",
                             padding_mode="zeros", align_corners=False)
        out = x.clone()
        out[idx] = small + (1 - mask) * bg
        return out


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout, momentum=0.1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, momentum=0.1)
        self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, momentum=0.1))
                      if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.short(x))


class SmallResNet(nn.Module):
    """A small ResNet-like CNN for 32 px images: stem, three residual stages (w, 2w, 4w), pool, ``fc``."""

    def __init__(self, num_classes: int, width: int = 24) -> None:
        super().__init__()
        check_int_range("num_classes", num_classes, 1)
        check_int_range("width", width, 4)
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width, momentum=0.1),
                                  nn.ReLU(inplace=True))
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
    for f in ("source_train_per_class", "source_val_per_class", "target_val", "finetune_train"):
        check_int_range(f, getattr(p, f), 1)
    check_int_range("target_train", p.target_train, p.finetune_train)


_SOURCE_FIELDS = ("image_size", "n_shapes", "n_textures", "n_colours", "clutter_prob", "source_train_per_class",
                  "source_val_per_class")
_TARGET_FIELDS = _SOURCE_FIELDS + ("n_shared", "shared_prob", "target_train", "finetune_train", "target_val")
_COMMON_CODE = (_grid, _uniform, _hsv, _shape_mask, _texture, _colours, _background, _clutter_params, _draw_clutter,
                _paste, _object_params, _draw_objects, _finish, class_table)


def _code_version(*funcs: Any) -> str:
    """Hash of the renderer's source: editing it invalidates cached data (and the models trained on it)."""
    import inspect
    return _cache.fingerprint([inspect.getsource(f) for f in _COMMON_CODE + funcs], SHAPES, TEXTURES, COLOURS,
                              GLYPHS, _SS)


def _data_key(profile: ShapesProfile, seed: int, fields: tuple[str, ...], *funcs: Any) -> str:
    return _cache.fingerprint({f: getattr(profile, f) for f in fields}, seed, _code_version(*funcs), length=24)


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


def _make_target_data(profile: ShapesProfile, seed: int, co: Tensor) -> dict[str, Any]:
    """Render the target images (uint8) and draw the fine-tuning subset."""
    g_tgt = torch.Generator().manual_seed(30_000 + seed)
    t_lab = torch.arange(profile.target_train) % 2
    t_lab = t_lab[torch.randperm(len(t_lab), generator=g_tgt)]
    t_prm = _target_params(profile, t_lab, co, g_tgt)
    x_ttr = render_target(profile, t_prm, torch.Generator().manual_seed(31_000 + seed), profile.clutter_prob)
    v_lab = torch.arange(profile.target_val) % 2
    v_lab = v_lab[torch.randperm(len(v_lab), generator=g_tgt)]
    v_prm = _target_params(profile, v_lab, co, g_tgt)
    x_tva = render_target(profile, v_prm, torch.Generator().manual_seed(32_000 + seed), profile.clutter_prob)
    subset = sorted(torch.randperm(profile.target_train, generator=g_tgt)[:profile.finetune_train].tolist())
    return {"x_tgt_train": _u8(x_ttr), "y_tgt_train": t_lab, "x_tgt_val": _u8(x_tva), "y_tgt_val": v_lab,
            "val_params": v_prm, "finetune_subset": subset,
            "target_train_has_shared": t_prm["has_shared"], "target_train_shared_class": t_prm["which"]}


def shapes_v_lo(profile: ShapesProfile) -> int:
    """This world's Eq. 2 threshold over D^t (the fine-tuning subset): 1% of its images, at least 1.

    A class that M^s ranks top-k in at most 1% of the target images counts as source-only: rare
    enough that fine-tuning never sees it, the paper's reading of Eq. 2.
    """
    return max(1, round(0.01 * profile.finetune_train))


def load_shapes(profile: ShapesProfile, seed: int = 0, *, device: str | torch.device | None = None,
                progress: bool = True, cache: bool = True) -> World:
    """Build the ``shapes`` world: data (seeded), M^s (trained here, cached), recipes for M^t and M^b."""
    _check_profile(profile)
    check_int_range("seed", seed, 0)
    table = class_table(profile)
    n_cls = len(table)
    names = [_class_name(*t, profile.n_colours) for t in table]
    glyph_idx = {SHAPES.index(gl) for gl in GLYPHS}
    lookalike = [c for c, t in enumerate(table) if t[0] in glyph_idx]
    others = [c for c, t in enumerate(table) if t[0] not in glyph_idx]
    g = torch.Generator().manual_seed(10_000 + seed)
    co_occurring = sorted(others[int(i)] for i in torch.randperm(len(others), generator=g)[:profile.n_shared])
    shared = frozenset(lookalike) | frozenset(co_occurring)
    source_only = frozenset(range(n_cls)) - shared

    # source and target images are cached apart: a change to the target renderer keeps M^s
    src_key = _data_key(profile, seed, _SOURCE_FIELDS, render_source, _u8, _make_source_data)
    tgt_key = _data_key(profile, seed, _TARGET_FIELDS, render_source, _target_params, render_target, _u8,
                        _make_target_data)
    co = torch.as_tensor(co_occurring, dtype=torch.long)
    data = {**_cache.cached("shapes_data", src_key, lambda: _make_source_data(profile, seed), enabled=cache),
            **_cache.cached("shapes_data", tgt_key + ("-co" + "-".join(map(str, co_occurring))),
                            lambda: _make_target_data(profile, seed, co), enabled=cache)}
    as_float = lambda t: t.float() / 255  # noqa: E731
    source_train = TensorDataset(as_float(data["x_src_train"]), data["y_src_train"])
    source_val = TensorDataset(as_float(data["x_src_val"]), data["y_src_val"])
    target_train = TensorDataset(as_float(data["x_tgt_train"]), data["y_tgt_train"])
    target_val = TensorDataset(as_float(data["x_tgt_val"]), data["y_tgt_val"])
    for part, ds in (("source_train", source_train), ("source_val", source_val), ("target_train", target_train),
                     ("target_val", target_val)):
        key = src_key if part.startswith("source") else tgt_key
        ds.fingerprint = _cache.fingerprint("shapes", key, part)  # type: ignore[attr-defined]
    finetune_subset: list[int] = data["finetune_subset"]
    v_prm, v_lab = data["val_params"], data["y_tgt_val"]

    def make_cluttered(seed: int = 0, lines: tuple[int, int] = (3, 6)) -> TensorDataset:
        """The target validation images again, identical except for non-source clutter (line segments)
        drawn on every background, seeded by ``seed``."""
        check_int_range("seed", seed, 0)
        x = render_target(profile, v_prm, torch.Generator().manual_seed(40_000 + seed), 1.0, lines=tuple(lines))
        return TensorDataset(x, v_lab.clone())

    # M^s
    make_source = _MakeModel(n_cls, profile.width)
    source_model, source_history = train_scratch(
        make_source, source_train, source_val, lr=profile.source_lr, epochs=profile.source_epochs,
        optimizer="adam", batch_size=profile.source_batch_size, lr_schedule="cosine", seed=seed,
        device=device, cache=cache, progress=progress)
    source_model.eval()

    zoom = ZoomOut(profile.zoom_min, profile.zoom_max, profile.zoom_prob)
    finetune_defaults = {"num_classes": 2, "lr": profile.finetune_lr, "epochs": profile.finetune_epochs,
                         "optimizer": profile.finetune_optimizer, "batch_size": profile.finetune_batch_size, "bn": "update",
                         "train_subset": finetune_subset}
    scratch_defaults = {"lr": profile.scratch_lr, "epochs": profile.scratch_epochs, "optimizer": "adam",
                        "batch_size": profile.scratch_batch_size, "lr_schedule": "cosine", "augment": zoom}
    fp = _cache.fingerprint("shapes", profile.__dict__, seed, weights_fingerprint(source_model),
                            {k: _cache.fingerprint(v) for k, v in data.items() if isinstance(v, Tensor)})
    extra = {
        "source_train": source_train,
        "source_history": source_history,
        "source_accuracy": float(source_history["val_acc"].iloc[-1]) if len(source_history) else float("nan"),
        "finetune_subset": finetune_subset,
        "target_train_has_shared": data["target_train_has_shared"],
        "target_train_shared_class": data["target_train_shared_class"],
        "make_cluttered": make_cluttered,
        "zoom_out": zoom,
        "co_occurring": frozenset(co_occurring),
        "lookalike": frozenset(lookalike),
        "class_attributes": [(SHAPES[s], TEXTURES[t], COLOURS[c] if profile.n_colours > 1 else "any")
                             for s, t, c in table],
        # composites: the target image at 60% of each side (at the paper's 40% a 32 px glyph is ~8 px
        # tall and M^t is at chance even on an object-free background; measured in notebook 4)
        "composite_scale": 0.6,
        "cam_layer": "model.layer3",
        "head": "model.fc",
        "arch": "SmallResNet",
        "v_lo": shapes_v_lo(profile),
        "evaluate": evaluate,
    }
    return World(name="shapes", profile=profile, seed=seed, source_model=source_model, source_classes=names,
                 source_data=source_val, target_train=target_train, target_val=target_val,
                 target_classes=list(TARGET_CLASSES), make_scratch=_MakeModel(2, profile.width),
                 finetune_defaults=finetune_defaults, scratch_defaults=scratch_defaults,
                 planted_shared=shared, planted_source_only=source_only, fingerprint=fp, extra=extra)
