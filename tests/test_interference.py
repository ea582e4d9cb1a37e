"""interference: Eq. 5 scores and flags."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lingerlab.interference import interference, interference_scores


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 8)).eval()


X = torch.rand(13, 3, 4, 4, generator=torch.Generator().manual_seed(2)) * 4


def test_scores_are_max_over_lingering_classes():
    model = _model()
    L = [1, 4, 6]
    with torch.no_grad():
        p = model(X).softmax(1)
    ref = torch.tensor([max(float(p[i, c]) for c in L) for i in range(len(X))])
    s = interference_scores(model, X, L, batch_size=5)
    torch.testing.assert_close(s, ref)
    torch.testing.assert_close(interference_scores(model, TensorDataset(X, torch.zeros(13)), torch.tensor(L)), ref)
    p_lo = float(ref.median())
    scores, flags = interference(model, X, L, p_lo=p_lo)
    assert flags.dtype == torch.bool and flags.tolist() == (ref > p_lo).tolist()
    # more lingering classes can only raise the score
    assert (interference_scores(model, X, L + [0, 2]) >= s).all()


def test_empty_lingering_set():
    scores, flags = interference(_model(), X, [])
    assert scores.shape == (13,) and (scores == 0).all() and not flags.any()


def test_validation():
    with pytest.raises(ValueError, match=r"p_lo must be in \(0, 1\)"):
        interference(_model(), X, [1], p_lo=1.0)
    with pytest.raises(ValueError, match=r"lingering_classes must be in \[0, 7\]"):
        interference(_model(), X, [8])
