"""lingering: Eq. 3 per-class mean probabilities and the lingering table."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lingerlab.lingering import class_mean_probs, lingering

C = 6


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, C)).eval()


def _data(labels: list[int]) -> TensorDataset:
    x = torch.rand(len(labels), 3, 4, 4, generator=torch.Generator().manual_seed(5))
    return TensorDataset(x, torch.tensor(labels))


LABELS = [0, 0, 1, 2, 2, 2, 4, 4, 5, 0, 1]  # class 3 has no images


def _reference(model: nn.Module, data: TensorDataset) -> dict[int, float]:
    x, y = data.tensors
    with torch.no_grad():
        p = model(x).softmax(1)
    out: dict[int, list[float]] = {}
    for i in range(len(y)):
        out.setdefault(int(y[i]), []).append(float(p[i, int(y[i])]))
    return {c: sum(v) / len(v) for c, v in out.items()}


def test_class_mean_probs_matches_loops():
    model, data = _model(0), _data(LABELS)
    mean_p, counts = class_mean_probs(model, data, batch_size=4)
    ref = _reference(model, data)
    assert counts.tolist() == [3, 2, 3, 0, 2, 1]
    for c in range(C):
        if c in ref:
            assert mean_p[c].item() == pytest.approx(ref[c], abs=1e-6)
        else:
            assert math.isnan(mean_p[c].item())


def test_class_mean_probs_validation():
    with pytest.raises(ValueError, match="no labels"):
        class_mean_probs(_model(0), torch.rand(3, 3, 4, 4))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 5\]"):
        class_mean_probs(_model(0), _data([0, 9]))
    with pytest.raises(ValueError, match="num_classes"):
        class_mean_probs(_model(0), _data([0, 1]), num_classes=4)


def test_lingering_table():
    mst, src, bn = _model(0), _model(1), _model(2)
    data = _data(LABELS)
    ref_st, ref_s, ref_bn = _reference(mst, data), _reference(src, data), _reference(bn, data)
    p_lo = sorted(ref_st.values())[2]  # some classes above, some not
    names = [f"c{i}" for i in range(C)]
    v = torch.tensor([9, 0, 1, 0, 2, 0])
    with pytest.warns(UserWarning, match=r"no images.*\[3\]"):
        t = lingering(
            mst,
            data,
            torch.tensor([1, 3, 5, 0]),
            p_lo,
            source_model=src,
            mst_source_bn=bn,
            v=v,
            class_names=names,
            batch_size=3,
        )
    assert list(t.columns) == ["class", "name", "v", "n_images", "p_source", "p_st", "p_st_source_bn", "lingering"]
    assert t["class"].tolist() == [1, 3, 5, 0]
    assert t["name"].tolist() == ["c1", "c3", "c5", "c0"]
    assert t["v"].tolist() == [0, 0, 0, 9]
    assert t["n_images"].tolist() == [2, 0, 1, 3]
    for row in t.itertuples():
        if row.n_images == 0:
            assert math.isnan(row.p_st) and math.isnan(row.p_source) and not row.lingering
            continue
        assert row.p_st == pytest.approx(ref_st[row._1], abs=1e-6)
        assert row.p_source == pytest.approx(ref_s[row._1], abs=1e-6)
        assert row.p_st_source_bn == pytest.approx(ref_bn[row._1], abs=1e-6)
        assert row.lingering == (ref_st[row._1] > p_lo)


def test_lingering_optional_columns_are_nan():
    t = lingering(_model(0), _data(LABELS), [0, 1])
    assert t["p_source"].isna().all() and t["p_st_source_bn"].isna().all()
    assert t["v"].isna().all() and t["name"].tolist() == ["0", "1"]
    assert t["lingering"].dtype == bool
    assert isinstance(t, pd.DataFrame)


def test_lingering_validation():
    data = _data(LABELS)
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"p_lo must be in \(0, 1\)"):
            lingering(_model(0), data, [0], bad)
    with pytest.raises(ValueError, match=r"classes must be in \[0, 5\]"):
        lingering(_model(0), data, [7])
    with pytest.raises(ValueError, match="class_names"):
        lingering(_model(0), data, [0], class_names=["a"])


def test_precomputed_source_means_give_the_same_table():
    """``p_source`` (M^s's class means, computed once per world) stands in for ``source_model``."""
    mst, src, bn = _model(0), _model(1), _model(2)
    data = _data([c for c in LABELS if c != 3] + [3])
    cls = [0, 1, 2, 3, 5]
    t1 = lingering(mst, data, cls, 0.2, source_model=src, mst_source_bn=bn, batch_size=4)
    t2 = lingering(
        mst, data, cls, 0.2, p_source=class_mean_probs(src, data, batch_size=4)[0], mst_source_bn=bn, batch_size=4
    )
    pd.testing.assert_frame_equal(t1, t2)
    with pytest.raises(ValueError, match="not both"):
        lingering(mst, data, cls, 0.2, source_model=src, p_source=t1["p_source"])
    with pytest.raises(ValueError, match="one mean per source class"):
        lingering(mst, data, cls, 0.2, p_source=torch.zeros(3))
