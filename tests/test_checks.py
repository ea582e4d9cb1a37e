"""checks: the overlay survival, the neutral blur and the Grad-CAM deletion test, on planted models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from lingerlab.checks import deletion_summary, deletion_test, delete_pixels


CORNERS = ((0, 0), (0, 12), (12, 0), (12, 12))


class Corners(nn.Module):
    """Class 1's logit is the summed brightness of the four 4x4 corners of a 16 px image: the only
    pixels that matter."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = sum(x[:, :, r : r + 4, c : c + 4].mean(dim=(1, 2, 3)) for r, c in CORNERS) * 5
        return torch.stack([torch.zeros_like(s), s], dim=1)


def test_delete_pixels_exact_share_and_fill():
    x = torch.rand(3, 3, 10, 10, generator=torch.Generator().manual_seed(0))
    scores = torch.rand(3, 10, 10, generator=torch.Generator().manual_seed(1))
    out = delete_pixels(x, scores, 0.2)
    changed = (out != x).any(1)
    assert (changed.flatten(1).sum(1) <= 20).all()
    top = torch.topk(scores.flatten(1), 20).indices
    fill = x.mean(dim=(2, 3))
    for i in range(3):
        got = out[i].flatten(1)[:, top[i]]
        assert torch.allclose(got, fill[i][:, None].expand_as(got))
    with pytest.raises(ValueError, match="order_scores"):
        delete_pixels(x, scores[:, :5], 0.2)
    with pytest.raises(ValueError, match="frac"):
        delete_pixels(x, scores, 1.0)


def test_deletion_test_separates_a_faithful_map_from_an_unfaithful_one():
    n, h = 40, 16
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, h, h, generator=gen) * 0.1
    where = torch.randint(0, 4, (n,), generator=gen)  # each image's evidence sits in one corner
    faithful = 1e-3 * torch.rand(n, h, h, generator=gen)
    for i, k in enumerate(where.tolist()):
        r, c = CORNERS[k]
        x[i, :, r : r + 4, c : c + 4] = 1.0
        faithful[i, r : r + 4, c : c + 4] += 1.0
    unfaithful = 1e-3 * torch.rand(n, h, h, generator=gen)
    unfaithful[:, 6:10, 6:10] += 1.0  # the centre, where nothing matters
    model = Corners().eval()
    good = deletion_test(model, x, faithful, 1, frac=0.0625, generator=0)
    bad = deletion_test(model, x, unfaithful, 1, frac=0.0625, generator=0)
    assert (good["gain"] >= -1e-6).all() and good["gain"].mean() > 0.1
    assert bad["drop_top"].abs().max() < 1e-5 and bad["gain"].abs().max() < 1e-5  # nothing of value deleted
    clusters = np.arange(n) // 2
    assert deletion_summary(good, clusters)["faithful"] is True
    assert deletion_summary(bad, clusters)["faithful"] is False
    # same generator, same null deletions
    pd.testing.assert_frame_equal(good, deletion_test(model, x, faithful, 1, frac=0.0625, generator=0))
    with pytest.raises(ValueError, match="targets"):
        deletion_test(model, x, faithful, [1, 0], frac=0.2)


def test_survival_and_neutral_checks_on_a_tiny_world(tmp_path, monkeypatch):
    from lingerlab.audit import Audit
    from lingerlab.checks import neutral_check, source_survival
    from lingerlab.controls import control_sets

    from test_audit import make_tiny_world

    monkeypatch.setenv("LINGERLAB_CACHE", str(tmp_path))
    audit = Audit(make_tiny_world(), device="cpu")
    comp = audit.composites([2, 3])
    surv = source_survival(audit, comp)
    assert list(surv["source_class"]) == [2, 3] and (surv["n"] == 3).all()
    assert np.allclose(surv["ratio"], surv["p_composite"] / surv["p_alone"])
    assert (surv["survives"] == (surv["ratio"] >= 0.5)).all()
    neut = neutral_check(audit, comp, control_sets(audit, [2, 3])["neutral"])
    assert np.allclose(neut["chance"], 1 / 6) and np.allclose(neut["ratio"], neut["p_neutral"] * 6)
    assert (neut["neutral"] == (neut["ratio"] <= 2.0)).all()
    lo_hi = surv.attrs["overall"]["p_alone"]
    assert lo_hi[1] <= lo_hi[0] <= lo_hi[2]
