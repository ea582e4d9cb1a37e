"""detection: AUROC / FPR@95TPR against slow references; Eq. 5 as a detector on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lingerlab.composites import make_composites
from lingerlab.detection import auroc, evaluate_detection, fpr_at_tpr, threshold_at_fpr
from lingerlab.models import source_target_model

from test_audit import N_SRC, TinyNet


def _auroc_pairwise(neg, pos) -> float:
    neg, pos = np.asarray(neg, float), np.asarray(pos, float)
    gt = (pos[:, None] > neg[None, :]).sum()
    eq = (pos[:, None] == neg[None, :]).sum()
    return float((gt + 0.5 * eq) / (len(pos) * len(neg)))


def _fpr_slow(neg, pos, tpr) -> float:
    # scan every candidate threshold from high to low; first one reaching the TPR wins
    for t in sorted(set(pos), reverse=True):
        if np.mean(np.asarray(pos) >= t) >= tpr:
            return float(np.mean(np.asarray(neg) >= t))
    raise AssertionError


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_pairwise_with_ties(seed):
    rng = np.random.default_rng(seed)
    neg = rng.integers(0, 6, size=37).astype(float)  # many ties
    pos = rng.integers(2, 9, size=23).astype(float)
    assert auroc(neg, pos) == pytest.approx(_auroc_pairwise(neg, pos), abs=1e-12)
    neg, pos = rng.normal(size=50), rng.normal(0.7, size=41)
    assert auroc(torch.as_tensor(neg), torch.as_tensor(pos)) == pytest.approx(_auroc_pairwise(neg, pos), abs=1e-12)
    for tpr in (0.5, 0.9, 0.95, 1.0):
        assert fpr_at_tpr(neg, pos, tpr) == pytest.approx(_fpr_slow(neg, pos, tpr))


def test_auroc_edges_and_errors():
    assert auroc([0, 1], [2, 3]) == 1.0 and auroc([2, 3], [0, 1]) == 0.0 and auroc([1, 1], [1]) == 0.5
    assert fpr_at_tpr([0.0, 0.1], [0.5, 0.6]) == 0.0
    with pytest.raises(ValueError, match="non-empty"):
        auroc([], [1.0])
    with pytest.raises(ValueError, match="tpr"):
        fpr_at_tpr([0.0], [1.0], tpr=0)
    with pytest.raises(ValueError, match="NaN"):
        auroc([float("nan")], [1.0])


def test_logit_scores_are_pytorch_ood_and_match_their_formulas():
    from lingerlab.ood import DETECTORS

    logits = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    msp, energy = (DETECTORS[n].fit(None, None, None) for n in ("MaxSoftmax", "EnergyBased"))
    assert torch.allclose(msp(None, logits), -logits.softmax(1).amax(1))
    assert torch.allclose(energy(None, logits), -torch.logsumexp(logits, 1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_and_fpr_agree_with_pytorch_ood(seed):
    from pytorch_ood.metrics import AUROC, FPRAtTPR

    g = torch.Generator().manual_seed(seed)
    neg = torch.randn(200, generator=g).round(decimals=1)  # rounded: ties, which both count half
    pos = (torch.randn(150, generator=g) + 0.8).round(decimals=1)
    scores, labels = (
        torch.cat([neg, pos]),
        torch.cat([torch.zeros(200, dtype=torch.long), -torch.ones(150, dtype=torch.long)]),
    )
    assert auroc(neg, pos) == pytest.approx(AUROC().update(scores, labels).compute()["AUROC"], abs=1e-9)
    lib = FPRAtTPR(tpr=0.95).update(scores, labels).compute()
    assert fpr_at_tpr(neg, pos, 0.95) == pytest.approx(next(iter(lib.values())), abs=1e-9)


def test_threshold_at_fpr_bounds_the_clean_flag_rate():
    neg = torch.arange(100, dtype=torch.float64)
    t = threshold_at_fpr(neg, 0.05)
    assert float((neg > t).double().mean()) == 0.05  # exact on these negatives
    assert threshold_at_fpr(neg, 0.0) == 99.0 and float((neg > threshold_at_fpr(neg, 0.0)).sum()) == 0
    with pytest.raises(ValueError, match="fpr"):
        threshold_at_fpr(neg, 1.0)


def test_evaluate_detection_on_tiny_models():
    torch.manual_seed(0)
    src, tgt = TinyNet(N_SRC).eval(), TinyNet(2).eval()
    mst = source_target_model(tgt, src)
    g = torch.Generator().manual_seed(1)
    clean = torch.rand(20, 3, 16, 16, generator=g)
    labels = torch.arange(20) % 2
    comp = make_composites(torch.rand(15, 3, 16, 16, generator=g), clean, generator=0, target_labels=labels)
    out = evaluate_detection(mst, tgt, clean, labels, comp, [2, 3], p_lo=0.01)
    t = out["table"]
    assert list(t["score"]) == ["eq5", "MaxSoftmax", "MaxLogit", "EnergyBased"]  # no training images: no fitted ones
    assert set(out["skipped"]) == set()  # only the logit detectors were asked for
    assert t["error_flagged"].dropna().between(0, 1).all() and set(out["scores"]) == set(t["score"])
    assert t["auroc"].between(0, 1).all() and t["fpr_at_95tpr"].between(0, 1).all()
    assert out["n_clean"] == 20 and out["n_composites"] == 15 and out["n_lingering"] == 2
    # damage bookkeeping is consistent with the raw predictions
    pred = tgt(comp.images).argmax(1)
    assert out["error_composites"] == pytest.approx(float((pred != comp.target_label).float().mean()))
    # an empty L flags nothing: Eq. 5 scores are all 0, AUROC 0.5
    empty = evaluate_detection(mst, tgt, clean, labels, comp, [], p_lo=0.01)
    assert empty["table"].set_index("score").loc["eq5", "auroc"] == 0.5 and empty["flag_rate_composites"] == 0.0
    with pytest.raises(ValueError, match="p_lo"):
        evaluate_detection(mst, tgt, clean, labels, comp, [2], p_lo=0)
