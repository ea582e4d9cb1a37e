"""The procedural renderer of the ``shapes`` world: source objects (shape x texture x colour) on
noisy gradient backgrounds, target glyphs, shared objects and non-source clutter; every draw seeded."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..profiles import ShapesProfile

SHAPES = (
    "tee",
    "aitch",
    "disc",
    "square",
    "triangle",
    "ring",
    "star",
    "diamond",
    "cross",
    "hexagon",
    "crescent",
    "heart",
)
TEXTURES = ("solid", "striped", "checked", "dotted")
COLOURS = ("red", "green", "blue")  # hue families when n_colours == 3 (n_colours == 1: any hue)
GLYPHS = ("tee", "aitch")  # the target classes' shapes
TARGET_CLASSES = ["T", "H"]
_SS = 2  # supersampling factor (anti-aliasing)
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
        return (r < 0.85) & ((u - 0.38) ** 2 + (v + 0.12) ** 2 > 0.62**2)
    if shape == "heart":
        x, y = u * 1.25, -v * 1.25 + 0.25
        return (x * x + y * y - 1) ** 3 - x * x * y**3 < 0
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
    low = F.interpolate(
        torch.randn(n, 3, 4, 4, generator=g) * 0.06, size=(size, size), mode="bilinear", align_corners=False
    )
    fine = torch.randn(n, 3, size, size, generator=g) * 0.035
    return img.add_(low).add_(fine)


def _clutter_params(g: torch.Generator, n: int, lines: tuple[int, int]) -> dict[str, Tensor]:
    k = lines[1]
    count = torch.randint(lines[0], lines[1] + 1, (n,), generator=g)
    return {
        "p0": torch.rand(n, k, 2, generator=g) * 1.2 - 0.1,
        "p1": torch.rand(n, k, 2, generator=g) * 1.2 - 0.1,
        "width": _uniform(g, n * k, 0.012, 0.03).view(n, k),
        "colour": _hsv(torch.rand(n * k, generator=g), _uniform(g, n * k, 0.0, 1.0), _uniform(g, n * k, 0.1, 1.0)).view(
            n, k, 3
        ),
        "on": torch.arange(k).view(1, k) < count.view(n, 1),
    }


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


def _object_params(
    g: torch.Generator, n: int, cx: Tensor, cy: Tensor, scale: Tensor, family: Tensor, n_colours: int
) -> dict[str, Tensor]:
    # rotation within +-0.3 rad: a square never turns into a diamond (their ranges stay 28 deg apart)
    return {
        "cx": cx,
        "cy": cy,
        "scale": scale,
        "rot": _uniform(g, n, -0.3, 0.3),
        "freq": _uniform(g, n, 3.0, 4.5),
        "phase": _uniform(g, n, 0, 2 * math.pi),
        "colour": _colours(g, family, n_colours),
        "dark": _uniform(g, n, 0.25, 0.45),
    }


def _draw_objects(
    img: Tensor, shape: Tensor, texture: Tensor, prm: dict[str, Tensor], size: int, active: Tensor | None = None
) -> Tensor:
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
    return [
        (s, t, c) for c in range(profile.n_colours) for s in range(profile.n_shapes) for t in range(profile.n_textures)
    ]


def _class_name(shape: int, texture: int, colour: int, n_colours: int) -> str:
    parts = ([COLOURS[colour]] if n_colours > 1 else []) + [TEXTURES[texture], SHAPES[shape]]
    return " ".join(parts)


def render_source(profile: ShapesProfile, labels: Tensor, generator: torch.Generator, chunk: int = 2048) -> Tensor:
    """Source images [N, 3, S, S] in [0, 1], one centred object of class ``labels[i]`` each."""
    table = torch.as_tensor(class_table(profile))
    out = []
    for i in range(0, len(labels), chunk):
        lab = labels[i : i + chunk]
        n = len(lab)
        img = _background(generator, n, profile.image_size)
        clut = _clutter_params(generator, n, (1, 4))
        img = _draw_clutter(img, clut, profile.image_size, torch.rand(n, generator=generator) < profile.clutter_prob)
        trip = table[lab]
        prm = _object_params(
            generator,
            n,
            _uniform(generator, n, 0.38, 0.62),
            _uniform(generator, n, 0.38, 0.62),
            _uniform(generator, n, 0.27, 0.4),
            trip[:, 2],
            profile.n_colours,
        )
        img = _draw_objects(img, trip[:, 0], trip[:, 1], prm, profile.image_size)
        out.append(_finish(img))
    return torch.cat(out)


def _target_params(profile: ShapesProfile, labels: Tensor, shared: Tensor, g: torch.Generator) -> dict[str, Any]:
    """Every random draw of a target set except its clutter (so clutter can be re-drawn alone).

    ``shared_prob`` of the images also show a co-occurring object: half beside the glyph (at
    ``glyph_scale``), half as the subject with a smaller glyph (``glyph_scale_beside``) beside it.
    """
    n = len(labels)
    table = torch.as_tensor(class_table(profile))
    has_shared = torch.rand(n, generator=g) < profile.shared_prob
    object_subject = has_shared & (torch.rand(n, generator=g) < 0.5)
    which = (
        shared[torch.randint(0, len(shared), (n,), generator=g)] if len(shared) else torch.zeros(n, dtype=torch.long)
    )
    ang = _uniform(g, n, 0, 2 * math.pi)
    osc = _uniform(g, n, 0.27, 0.4)
    # glyph as subject, object beside it
    gx, gy, gsc = _uniform(g, n, 0.3, 0.7), _uniform(g, n, 0.3, 0.7), _uniform(g, n, *profile.glyph_scale)
    dist = _uniform(g, n, 0.38, 0.5)
    ox = (gx + dist * torch.cos(ang)).clamp(osc * 0.8, 1 - osc * 0.8)
    oy = (gy + dist * torch.sin(ang)).clamp(osc * 0.8, 1 - osc * 0.8)
    # object as subject, smaller glyph beside it
    ox2, oy2, gsc2 = _uniform(g, n, 0.4, 0.6), _uniform(g, n, 0.4, 0.6), _uniform(g, n, *profile.glyph_scale_beside)
    dist2 = _uniform(g, n, 0.32, 0.42)
    gx2 = (ox2 + dist2 * torch.cos(ang)).clamp(gsc2 * 0.9, 1 - gsc2 * 0.9)
    gy2 = (oy2 + dist2 * torch.sin(ang)).clamp(gsc2 * 0.9, 1 - gsc2 * 0.9)
    pick = lambda a, b: torch.where(object_subject, b, a)  # noqa: E731
    glyph = _object_params(g, n, pick(gx, gx2), pick(gy, gy2), pick(gsc, gsc2), torch.full((n,), -1), profile.n_colours)
    glyph_tex = torch.randint(0, profile.n_textures, (n,), generator=g)
    trip = table[which]
    obj = _object_params(g, n, pick(ox, ox2), pick(oy, oy2), osc, trip[:, 2], profile.n_colours)
    return {
        "labels": labels,
        "glyph": glyph,
        "glyph_tex": glyph_tex,
        "has_shared": has_shared,
        "which": which,
        "object_subject": object_subject,
        "obj": obj,
        "obj_shape": trip[:, 0],
        "obj_tex": trip[:, 1],
        "bg_seed": int(torch.randint(0, 2**31 - 1, (1,), generator=g)),
    }


def render_target(
    profile: ShapesProfile,
    params: dict[str, Any],
    clutter_generator: torch.Generator,
    clutter_prob: float,
    lines: tuple[int, int] = (1, 4),
    chunk: int = 2048,
) -> Tensor:
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
        img = _draw_objects(
            img,
            params["obj_shape"][sl],
            params["obj_tex"][sl],
            obj,
            profile.image_size,
            active=params["has_shared"][sl],
        )
        glyph = {k: v[sl] for k, v in params["glyph"].items()}
        shapes = torch.as_tensor([SHAPES.index(GLYPHS[int(c)]) for c in params["labels"][sl]])
        img = _draw_objects(img, shapes, params["glyph_tex"][sl], glyph, profile.image_size)
        out.append(_finish(img))
    return torch.cat(out)
