"""features: Eq. 1 counts against a slow reference, Eq. 2 monotonicity, validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lingerlab.features import default_k, precision_recall, source_class_counts, source_only


def _model(n_classes: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, n_classes)).eval()


def _images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def _reference_counts(model: nn.Module, images: torch.Tensor, k: int) -> list[int]:
    """Plain loops: for every image, rank classes by logit and count the top k."""
    with torch.no_grad():
        logits = model(images).tolist()
    counts = [0] * len(logits[0])
    for row in logits:
        ranked = sorted(range(len(row)), key=lambda c: -row[c])
        for c in range(len(row)):
            if c in ranked[:k]:
                counts[c] += 1
    return counts


@pytest.mark.parametrize("k,n_classes", [(1, 24), (3, 24), (5, 40)])
def test_counts_match_reference(k, n_classes):
    model, x = _model(n_classes), _images(37)
    v = source_class_counts(model, x, k=k, batch_size=8)
    assert v.dtype == torch.long and v.shape == (n_classes,)
    assert v.tolist() == _reference_counts(model, x, k)
    assert int(v.sum()) == k * len(x)


def test_counts_accept_datasets_and_default_k():
    model, x = _model(24), _images(20)
    y = torch.zeros(20, dtype=torch.long)
    ref = source_class_counts(model, x)  # default k = 1 for 24 classes
    assert int(ref.sum()) == 20
    assert torch.equal(source_class_counts(model, TensorDataset(x, y), batch_size=7), ref)
    assert torch.equal(source_class_counts(model, DataLoader(TensorDataset(x, y), batch_size=6)), ref)
    v = source_class_counts(model, x)
    v[0] = 99  # a normal tensor, editable outside inference mode
    assert not model.training


def test_counts_keep_training_mode():
    model = _model(5).train()
    source_class_counts(model, _images(4), k=1)
    assert model.training


def test_counts_validation():
    model = _model(10)
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 10\]"):
        source_class_counts(model, _images(3), k=11)
    with pytest.raises(ValueError, match=r"k must be an integer in \[1"):
        source_class_counts(model, _images(3), k=0)
    with pytest.raises(ValueError, match="target_data is empty"):
        source_class_counts(model, torch.zeros(0, 3, 8, 8), k=1)


def test_default_k():
    assert default_k(1000) == 5
    assert default_k(24) == 1
    assert default_k(1) == 1
    assert default_k(2000) == 10
    with pytest.raises(ValueError, match="num_source_classes"):
        default_k(0)


def test_source_only_monotone():
    v = source_class_counts(_model(30), _images(50), k=2)
    previous: set[int] = set()
    for v_lo in [0, 0.5, 1, 2, 3, 5, 8, 100]:
        f = source_only(v, v_lo)
        assert f.dtype == torch.long
        assert f.tolist() == [c for c in range(30) if int(v[c]) <= v_lo]
        assert previous <= set(f.tolist())
        previous = set(f.tolist())
    assert previous == set(range(30))
    assert source_only([0, 3, 1], 1).tolist() == [0, 2]
    with pytest.raises(ValueError, match=r"v_lo must be in \[0, inf\)"):
        source_only(v, -1)


def test_precision_recall():
    assert precision_recall([1, 2, 3, 4], {2, 4, 6, 8}) == (0.5, 0.5)
    assert precision_recall(torch.tensor([2, 4]), frozenset({2, 4, 6, 8})) == (1.0, 0.5)
    assert precision_recall([], {1}) == (0.0, 0.0)
