"""Distraction (paper, Eq. 4): do the target and source models look at the same background pixels?

``distraction(x, M) = IoU(P_q(A^b(x, M, c_t)), P_q(A^b(x, M^s, c_s)))``: the sets of background
(non-overlay) pixels whose attribution is above the q-quantile (paper: q = 0.8), compared by IoU;
with its chance level on shuffled pairs and bootstrap intervals. Nothing here is split in a
distributed run: every process computes the same numbers from the gathered maps.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from ._validation import check_int_range, check_range
from .models import as_generator


def _check_maps(name: str, maps: Tensor) -> None:
    if maps.ndim != 3:
        raise ValueError(f"{name} must be attribution maps [N, H, W]; got shape {tuple(maps.shape)}")


def top_quantile_mask(maps: Tensor, q: float, region: Tensor | None = None) -> Tensor:
    """P_q: per map ``[N, H, W]``, the pixels of ``region`` (bool ``[N, H, W]`` or ``[H, W]``; None: all)
    above the map's q-quantile over ``region`` (linear interpolation, as numpy). Returns bool ``[N, H, W]``,
    False outside ``region``; empty for an empty region or a map constant over it."""
    check_range("q", q, 0, 1, lo_open=True, hi_open=True)
    _check_maps("maps", maps)
    n, h, w = maps.shape
    if region is None:
        region = torch.ones(h, w, dtype=torch.bool, device=maps.device)
    region = region.to(maps.device, torch.bool)
    if region.shape not in ((h, w), (n, h, w)):
        raise ValueError(f"region must be [N, H, W] or [H, W] = {(n, h, w)}; got {tuple(region.shape)}")
    region = region.expand(n, h, w)
    flat = maps.reshape(n, -1)
    r = region.reshape(n, -1)
    count = r.sum(dim=1)
    pos = q * (count - 1).clamp(min=0).double()
    lo = pos.floor().long()
    hi = pos.ceil().long()
    # the two order statistics around the quantile, read from a partial top-k (values outside the region
    # as -inf): ascending position p of the ``count`` region values is descending position count - 1 - p
    k = max(1, min(flat.shape[1], int((count - lo).max()) if n else 1))
    top = torch.where(r, flat, torch.full_like(flat, float("-inf"))).topk(k, dim=1).values
    a = top.gather(1, (count - 1 - lo).clamp(min=0)[:, None])[:, 0].double()
    b = top.gather(1, (count - 1 - hi).clamp(min=0)[:, None])[:, 0].double()
    t = pos - lo.double()
    diff = b - a
    thr = torch.where(t >= 0.5, b - diff * (1 - t), a + diff * t)  # numpy's _lerp, for bit-equal thresholds
    thr = torch.where(count > 0, thr, torch.full_like(thr, float("inf")))
    return (flat.double() > thr[:, None]).reshape(n, h, w) & region


def _iou(a: Tensor, b: Tensor) -> Tensor:
    inter = (a & b).flatten(1).sum(1)
    union = (a | b).flatten(1).sum(1)
    return torch.where(
        union > 0,
        inter.double() / union.clamp(min=1).double(),
        torch.full_like(inter, float("nan"), dtype=torch.float64),
    ).float()


def distraction(map_t: Tensor, map_s: Tensor, overlay_mask: Tensor, q: float = 0.8) -> Tensor:
    """Eq. 4, per image: IoU of the top-(1-q) background pixels of ``map_t`` = A(x, M, c_t) and of
    ``map_s`` = A(x, M^s, c_s), both ``[N, H, W]`` as ``overlay_mask`` (True on the excluded overlay).
    NaN where both top sets are empty. Returns float ``[N]``."""
    background = _background(map_t, map_s, overlay_mask, q)
    return _iou(top_quantile_mask(map_t, q, background), top_quantile_mask(map_s.to(map_t.device), q, background))


def _background(map_t: Tensor, map_s: Tensor, overlay_mask: Tensor, q: float) -> Tensor:
    """The checks Eq. 4 and its null share; returns the background (``~overlay_mask``) on map_t's device."""
    check_range("q", q, 0, 1, lo_open=True, hi_open=True)
    _check_maps("map_t", map_t)
    _check_maps("map_s", map_s)
    if map_t.shape != map_s.shape or overlay_mask.shape != map_t.shape:
        raise ValueError(
            "map_t, map_s and overlay_mask must have the same shape [N, H, W] (upsample maps to the "
            f"input resolution); got {tuple(map_t.shape)}, {tuple(map_s.shape)}, {tuple(overlay_mask.shape)}"
        )
    return ~overlay_mask.to(map_t.device, torch.bool)


def _partners(n: int, n_perm: int, groups: Tensor | None, gen: torch.Generator | None, device: torch.device) -> Tensor:
    """``[n_perm, n]`` partner indices j != i, uniform among the other images (of the same group when
    ``groups`` is given; -1 for an image alone in its group)."""
    gen_device = gen.device if gen is not None else torch.device("cpu")
    if groups is None:
        offsets = torch.randint(1, n, (n_perm, n), generator=gen, device=gen_device).to(device)
        return (torch.arange(n, device=device) + offsets) % n
    g = torch.as_tensor(groups).flatten().cpu()
    if len(g) != n:
        raise ValueError(f"groups must have one entry per map ({n}); got {len(g)}")
    order = torch.argsort(g, stable=True)
    _, inverse, counts = torch.unique(g[order], return_inverse=True, return_counts=True)
    start = torch.cumsum(counts, 0) - counts  # first sorted position of each group
    size = counts[inverse]  # group size of each sorted position
    rank = torch.arange(n) - start[inverse]  # position within its group
    u = torch.rand(n_perm, n, generator=gen, device=gen_device).cpu()
    offset = 1 + (u * (size - 1).clamp(min=1)).long().clamp(max=(size - 2).clamp(min=0))
    partner_sorted = order[start[inverse] + (rank + offset) % size]
    out = torch.empty(n_perm, n, dtype=torch.long)
    out[:, order] = torch.where(size > 1, partner_sorted, torch.full_like(partner_sorted, -1))
    return out.to(device)


def distraction_null(
    map_t: Tensor,
    map_s: Tensor,
    overlay_mask: Tensor,
    q: float = 0.8,
    n_perm: int = 20,
    generator: torch.Generator | int | None = None,
    groups: Tensor | None = None,
) -> Tensor:
    """Chance level of Eq. 4: the same IoU for unrelated pairs (``map_t[i]`` vs ``map_s[j]``, j != i
    uniform, with image i's overlay mask), ``n_perm`` draws per image. With ``groups`` (e.g. the source
    class c_s) j is drawn within i's group, the per-class null (NaN for an image alone in its group).
    Returns ``[n_perm, N]``. Needs at least two images.
    """
    check_int_range("n_perm", n_perm, 1)
    background = _background(map_t, map_s, overlay_mask, q)
    n = map_t.shape[0]
    if n < 2:
        raise ValueError(f"map_t must hold at least 2 maps to shuffle pairs; got {n}")
    partners = _partners(n, n_perm, groups, as_generator(generator), map_t.device)
    map_s = map_s.to(map_t.device)
    top_t = top_quantile_mask(map_t, q, background)  # image i's own map and background: the same in every draw
    out = []
    for j in partners:
        d = _iou(top_t, top_quantile_mask(map_s[j.clamp(min=0)], q, background))
        out.append(torch.where(j >= 0, d, torch.full_like(d, float("nan"))))
    return torch.stack(out)


def distraction_with_null(
    map_t: Tensor,
    map_s: Tensor,
    overlay_mask: Tensor,
    q: float = 0.8,
    n_null: int = 20,
    seed: int = 0,
    groups: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Eq. 4 per composite and its chance level: ``(distraction, null)``, ``null`` the mean over ``n_null``
    shuffled pairs (:func:`distraction_null`, within ``groups``; NaN for a composite with no partner),
    drawn by generator ``1000 * seed + 7`` (distinct per seed, never the composites' seed)."""
    d = distraction(map_t, map_s, overlay_mask, q)
    if len(map_t) < 2:
        return d, torch.full((len(map_t),), float("nan"), dtype=d.dtype)
    generator = 1000 * int(seed) + 7
    null = distraction_null(map_t, map_s, overlay_mask, q, n_perm=n_null, generator=generator, groups=groups)
    with warnings.catch_warnings():  # an image alone in its group: all-NaN column, NaN mean
        warnings.simplefilter("ignore", RuntimeWarning)
        return d, null.nanmean(0)


def bootstrap_ci(
    values: Tensor, n_boot: int = 2000, generator: torch.Generator | int | None = None
) -> tuple[float, float, float]:
    """Percentile bootstrap of the mean with a 95% interval: ``(mean, lo, hi)``. NaN values are dropped first."""
    check_int_range("n_boot", n_boot, 1)
    v = torch.as_tensor(values).flatten().double()
    v = v[~torch.isnan(v)]
    if len(v) == 0:
        raise ValueError("values is empty (or all NaN): pass at least one value")
    gen = as_generator(generator)
    gen_device = gen.device if gen is not None else torch.device("cpu")
    n = len(v)
    v_cpu = v.to(gen_device)
    chunk = max(1, 2_000_000 // n)
    means = []
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = torch.randint(0, n, (m, n), generator=gen, device=gen_device)
        means.append(v_cpu[idx].mean(dim=1))
    boot = torch.cat(means)
    alpha = (1 - 0.95) / 2
    lo, hi = torch.quantile(boot, torch.tensor([alpha, 1 - alpha], dtype=boot.dtype, device=boot.device)).tolist()
    return float(v.mean()), float(lo), float(hi)
