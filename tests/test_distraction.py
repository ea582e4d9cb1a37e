"""distraction: Eq. 4 against a slow reference, its invariances, the null and the statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lingerlab.distraction import bootstrap_ci, distraction, distraction_null, top_quantile_mask

G = torch.Generator().manual_seed(0)
N, H, W = 16, 12, 10
MAP_T = torch.rand(N, H, W, generator=G)
MAP_S = torch.rand(N, H, W, generator=G)
MASK = torch.zeros(N, H, W, dtype=torch.bool)
for i in range(N):
    MASK[i, i % 5 : i % 5 + 5, (2 * i) % 6 : (2 * i) % 6 + 4] = True


def _reference(map_t: torch.Tensor, map_s: torch.Tensor, mask: torch.Tensor, q: float) -> list[float]:
    out = []
    for i in range(len(map_t)):
        bg = [(r, c) for r in range(H) for c in range(W) if not mask[i, r, c]]
        tops = []
        for m in (map_t[i].numpy(), map_s[i].numpy()):
            vals = np.array([m[r, c] for r, c in bg], dtype=np.float64)
            thr = np.quantile(vals, q)
            tops.append({p for p in bg if m[p] > thr})
        union = tops[0] | tops[1]
        out.append(len(tops[0] & tops[1]) / len(union) if union else math.nan)
    return out


@pytest.mark.parametrize("q", [0.8, 0.5, 0.93])
def test_matches_slow_reference(q):
    d = distraction(MAP_T, MAP_S, MASK, q)
    assert d.shape == (N,)
    assert d.tolist() == pytest.approx(_reference(MAP_T, MAP_S, MASK, q), abs=1e-6)


def test_top_quantile_mask():
    m = top_quantile_mask(MAP_T, 0.8, ~MASK)
    assert not (m & MASK).any()
    for i in range(N):
        n_bg = int((~MASK[i]).sum())
        assert abs(int(m[i].sum()) - 0.2 * n_bg) <= 1
    whole = top_quantile_mask(MAP_T, 0.75)  # no region: whole map, quantile over all pixels
    assert [int(x) for x in whole.flatten(1).sum(1)] == [30] * N
    shared = top_quantile_mask(MAP_T, 0.75, torch.ones(H, W, dtype=torch.bool))
    assert torch.equal(whole, shared)
    assert not top_quantile_mask(torch.ones(2, H, W), 0.8).any()  # a constant map has no top set


@pytest.mark.parametrize("q", [0.8, 0.5, 0.07, 0.93])
def test_top_quantile_mask_is_numpys_threshold_exactly(q):
    """Regions of different sizes (one empty, one a single pixel) and tied values: the mask is exactly
    ``map > np.quantile(map[region], q)`` per map (the partial top-k picks numpy's order statistics)."""
    g = torch.Generator().manual_seed(3)
    maps = (torch.rand(6, 9, 7, generator=g) * 10).round() / 10  # many ties
    region = torch.rand(6, 9, 7, generator=g) < torch.tensor([0.0, 0.02, 0.3, 0.6, 0.9, 1.0])[:, None, None]
    region[1] = False
    region[1, 4, 3] = True
    got = top_quantile_mask(maps, q, region)
    for i in range(6):
        vals = maps[i][region[i]].numpy().astype(np.float64)
        want = (
            np.zeros((9, 7), bool)
            if len(vals) == 0
            else (maps[i].numpy().astype(np.float64) > np.quantile(vals, q)) & region[i].numpy()
        )
        assert np.array_equal(got[i].numpy(), want), i


def test_null_is_eq4_of_the_shuffled_pairs():
    """distraction_null reuses map_t's mask across draws: each draw equals Eq. 4 of the pairs (i, j)."""
    from lingerlab.distraction import _partners

    groups = torch.arange(N) % 3
    null = distraction_null(MAP_T, MAP_S, MASK, 0.8, n_perm=5, generator=11, groups=groups)
    partners = _partners(N, 5, groups, torch.Generator().manual_seed(11), MAP_T.device)
    for row, j in zip(null, partners):
        assert torch.equal(row, distraction(MAP_T, MAP_S[j], MASK, 0.8))


def test_invariances():
    d = distraction(MAP_T, MAP_S, MASK)
    torch.testing.assert_close(d, distraction(MAP_S, MAP_T, MASK))  # symmetric
    assert (distraction(MAP_T, MAP_T.clone(), MASK) == 1).all()  # identical maps
    # monotone transforms of a map do not change its top set
    torch.testing.assert_close(d, distraction(MAP_T * 3 + 1, MAP_S.sqrt(), MASK))
    # changing values inside the overlay changes nothing
    t2, s2 = MAP_T.clone(), MAP_S.clone()
    t2[MASK] = 100.0
    s2[MASK] = torch.rand(int(MASK.sum()), generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(d, distraction(t2, s2, MASK))
    assert torch.isnan(distraction(torch.ones(1, H, W), torch.ones(1, H, W), MASK[:1])).all()


def test_validation():
    for bad in (0, 1, 80, -0.2):
        with pytest.raises(ValueError, match=r"q must be in \(0, 1\)"):
            distraction(MAP_T, MAP_S, MASK, q=bad)
    with pytest.raises(ValueError, match="same shape"):
        distraction(MAP_T, MAP_S[:, :4], MASK)
    with pytest.raises(ValueError, match="at least 2"):
        distraction_null(MAP_T[:1], MAP_S[:1], MASK[:1])


def test_null_matches_chance_for_random_maps():
    g = torch.Generator().manual_seed(1)
    n, h, w = 40, 20, 20
    t, s = torch.rand(n, h, w, generator=g), torch.rand(n, h, w, generator=g)
    mask = torch.zeros(n, h, w, dtype=torch.bool)
    mask[:, 4:12, 4:12] = True
    null = distraction_null(t, s, mask, q=0.8, n_perm=10, generator=2)
    assert null.shape == (10, n)
    p = 0.2
    expected = p * p / (2 * p - p * p)  # IoU of two independent random 20% sets
    assert float(null.mean()) == pytest.approx(expected, abs=0.015)
    assert float(distraction(t, s, mask).mean()) == pytest.approx(expected, abs=0.03)
    assert torch.equal(null, distraction_null(t, s, mask, n_perm=10, generator=torch.Generator().manual_seed(2)))
    # a null pair is never an image with itself: identical maps still give chance, not 1
    assert float(distraction_null(t, t, mask, n_perm=3, generator=0).max()) < 0.5


def test_bootstrap_ci():
    v = torch.rand(200, generator=torch.Generator().manual_seed(3))
    mean, lo, hi = bootstrap_ci(v, n_boot=500, generator=4)
    assert mean == pytest.approx(float(v.double().mean()))
    assert lo < mean < hi
    se = float(v.std()) / math.sqrt(200)
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.25)
    assert (mean, lo, hi) == bootstrap_ci(v, n_boot=500, generator=4)
    with_nan = torch.cat([v, torch.tensor([float("nan")])])
    assert bootstrap_ci(with_nan, n_boot=500, generator=4) == (mean, lo, hi)
    assert bootstrap_ci(torch.tensor([0.3]), n_boot=10) == pytest.approx((0.3, 0.3, 0.3))
    with pytest.raises(ValueError, match="values is empty"):
        bootstrap_ci(torch.tensor([]))


def test_per_class_null_pairs_within_the_class():
    """With groups, every shuffled partner comes from the same class: a class whose source maps all
    agree with its target maps has null = distraction = 1, the others stay lower."""
    from lingerlab.distraction import _partners, distraction_with_null

    g = torch.tensor([0, 0, 0, 1, 1, 2, 0, 1])
    part = _partners(len(g), 50, g, torch.Generator().manual_seed(0), torch.device("cpu"))
    ok = part >= 0
    assert torch.equal(g[part.clamp(min=0)][ok], g.expand_as(part)[ok])  # same group
    assert not (part == torch.arange(len(g))).any()  # never itself
    assert (part[:, 5] == -1).all() and ok[:, [0, 1, 2, 3, 4, 6, 7]].all()  # class 2 is alone
    # class 0's maps are one fixed blob for every image; class 1's are random
    h = 8
    blob = torch.zeros(h, h)
    blob[:3, :3] = 1.0
    gen = torch.Generator().manual_seed(1)
    maps = torch.rand(len(g), h, h, generator=gen)
    maps[g == 0] = blob
    masks = torch.zeros(len(g), h, h, dtype=torch.bool)
    d, null = distraction_with_null(maps, maps.clone(), masks, q=0.8, n_null=30, seed=0, groups=g)
    assert torch.allclose(null[g == 0], torch.ones(int((g == 0).sum())))
    assert torch.isnan(null[5])
    assert float(null[g == 1].mean()) < 0.9
    # without groups the null mixes classes and is lower for class 0
    _, pooled = distraction_with_null(maps, maps.clone(), masks, q=0.8, n_null=30, seed=0)
    assert float(pooled[g == 0].mean()) < 1.0
