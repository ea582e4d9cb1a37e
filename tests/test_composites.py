"""composites: I(c_s) geometry, determinism, pasted content, controls."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from lingerlab.composites import Composites, make_composites, neutral_backgrounds, occlude, paste

G = torch.Generator().manual_seed(0)
SRC = torch.rand(12, 3, 37, 29, generator=G)
TGT = torch.rand(5, 3, 20, 24, generator=G)
TGT_Y = torch.tensor([0, 1, 1, 0, 1])


@pytest.mark.parametrize("scale", [0.4, 0.25, 1.0, 0.05])
def test_mask_area_and_inside(scale):
    c = make_composites(SRC, TGT, scale=scale, generator=torch.Generator().manual_seed(1))
    n, _, h, w = SRC.shape
    assert len(c) == n and c.masks.shape == (n, h, w) and c.masks.dtype == torch.bool
    ph, pw = c.boxes[0, 2].item(), c.boxes[0, 3].item()
    assert abs(ph - scale * h) <= 0.5 and abs(pw - scale * w) <= 0.5 and ph >= 1 and pw >= 1
    for i in range(n):
        area = int(c.masks[i].sum())
        # within one pixel row and one column of scale^2 of the image
        assert abs(area - scale * h * scale * w) <= scale * h + scale * w + 1
        top, left, bh, bw = c.boxes[i].tolist()
        assert 0 <= top and top + bh <= h and 0 <= left and left + bw <= w
        assert area == bh * bw and c.masks[i, top : top + bh, left : left + bw].all()


def test_pasted_pixels_and_background():
    c = make_composites(SRC, TgtDS := TensorDataset(TGT, TGT_Y), generator=torch.Generator().manual_seed(2))
    assert c.target_label.tolist() == TGT_Y[c.target_index].tolist()
    assert c.source_index.tolist() == list(range(12))
    for i in range(len(c)):
        top, left, bh, bw = c.boxes[i].tolist()
        ref = F.interpolate(
            TGT[c.target_index[i]][None], size=(bh, bw), mode="bilinear", antialias=True, align_corners=False
        )[0]
        torch.testing.assert_close(c.images[i, :, top : top + bh, left : left + bw], ref)
        torch.testing.assert_close(c.images[i][:, ~c.masks[i]], SRC[i][:, ~c.masks[i]])
    assert c.images.min() >= 0 and c.images.max() <= 1
    assert len(TgtDS) == 5


def test_determinism_and_draws():
    a = make_composites(SRC, TGT, generator=torch.Generator().manual_seed(3))
    b = make_composites(SRC, TGT, generator=3)
    for f in ("images", "masks", "target_index", "boxes"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    d = make_composites(SRC, TGT, generator=4)
    assert not torch.equal(a.boxes, d.boxes)
    assert (a.target_label == -1).all() and (a.source_label == -1).all()
    assert a.target_index.min() >= 0 and a.target_index.max() < len(TGT)


def test_given_index_boxes_and_labels():
    idx = torch.arange(12) % 5
    boxes = torch.tensor([[i, i, 5 + i % 3, 4 + i % 2] for i in range(12)])
    c = make_composites(SRC, TGT, target_index=idx, boxes=boxes, target_labels=TGT_Y)
    assert torch.equal(c.target_index, idx) and torch.equal(c.boxes, boxes)
    assert torch.equal(c.target_label, TGT_Y[idx])
    src_y = torch.arange(12) // 3
    from_ds = make_composites(TensorDataset(SRC, src_y), TGT, generator=1)
    assert torch.equal(from_ds.source_label, src_y)
    assert torch.equal(make_composites(SRC, TGT, generator=1, source_labels=src_y).images, from_ds.images)
    with pytest.raises(ValueError, match="source_images and source_labels"):
        make_composites(SRC, TGT, source_labels=src_y[:2])
    assert [int(m.sum()) for m in c.masks] == [int(b[2] * b[3]) for b in boxes]


def test_validation():
    for bad in (0, 1.2, -0.5):
        with pytest.raises(ValueError, match=r"scale must be in \(0, 1\]"):
            make_composites(SRC, TGT, scale=bad)
    with pytest.raises(ValueError, match="source_images is empty"):
        make_composites(SRC[:0], TGT)
    with pytest.raises(ValueError, match="target_images is empty"):
        make_composites(SRC, TGT[:0])
    with pytest.raises(ValueError, match="target_images and target_labels"):
        make_composites(SRC, TGT, target_labels=TGT_Y[:3])
    with pytest.raises(ValueError, match="target_index must be in"):
        make_composites(SRC, TGT, target_index=torch.full((12,), 5))
    with pytest.raises(ValueError, match="boxes must lie fully inside"):
        make_composites(SRC, TGT, boxes=torch.tensor([[30, 0, 10, 10]] * 12))


def test_paste_reproduces_geometry():
    c = make_composites(SRC, TGT, generator=5)
    bg = neutral_backgrounds(SRC, "plain")
    p = paste(bg, c)
    assert isinstance(p, Composites)
    for f in ("masks", "boxes", "target_index", "target_label", "source_index", "source_label"):
        assert torch.equal(getattr(p, f), getattr(c, f))
    m = c.masks[:, None].expand_as(c.images)
    torch.testing.assert_close(p.images[m], c.images[m])
    torch.testing.assert_close(p.images[~m], bg[~m])
    with pytest.raises(ValueError, match="backgrounds must match"):
        paste(bg[:3], c)


def test_subset():
    c = make_composites(SRC, TGT, generator=6)
    s = c.subset(torch.tensor([3, 1]))
    assert len(s) == 2 and torch.equal(s.images[0], c.images[3]) and s.source_index.tolist() == [3, 1]
    assert s.source_label.tolist() == [-1, -1]
    assert len(c.subset(c.source_index < 4)) == 4 and len(c.subset(slice(0, 5))) == 5 and len(c.subset([0])) == 1


def test_neutral_backgrounds():
    x = SRC[:4]
    blur = neutral_backgrounds(x, "blur")
    assert blur.shape == x.shape and blur.min() >= 0 and blur.max() <= 1
    # keeps the colour statistics (approximately), destroys the detail
    torch.testing.assert_close(blur.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.03, rtol=0)
    assert blur.std(dim=(2, 3)).max() < 0.5 * x.std(dim=(2, 3)).min()
    plain = neutral_backgrounds(x, "plain")
    assert (plain == x.mean(dim=(2, 3), keepdim=True)).all()
    n1 = neutral_backgrounds(x, "noise", generator=7)
    n2 = neutral_backgrounds(x, "noise", generator=torch.Generator().manual_seed(7))
    assert torch.equal(n1, n2) and n1.min() >= 0 and n1.max() <= 1
    torch.testing.assert_close(n1.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.05, rtol=0)
    with pytest.raises(ValueError, match="kind must be one of"):
        neutral_backgrounds(x, "gray")


def test_occlude():
    c = make_composites(SRC, TGT, generator=8)
    o = occlude(c.images, c.masks)
    m = c.masks[:, None].expand_as(c.images)
    assert torch.equal(o[~m], c.images[~m])
    bg_mean = torch.stack([c.images[i][:, ~c.masks[i]].mean(1) for i in range(len(c))])
    torch.testing.assert_close(o[:, :, c.boxes[0, 0], c.boxes[0, 1]][0], bg_mean[0])
    g = occlude(c.images, c.masks, fill=0.5)
    assert (g[m] == 0.5).all()
    with pytest.raises(ValueError, match=r"fill must be in \[0, 1\]"):
        occlude(c.images, c.masks, fill=2.0)
    with pytest.raises(ValueError, match="fill must be one of"):
        occlude(c.images, c.masks, fill="median")
