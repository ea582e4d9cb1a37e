"""Eq. 5 as a deployable check: how well does the interference flag separate inputs that carry a
lingering source object from clean target inputs, and how much of M^t's damage does it catch?

Scores are oriented so that *higher means more suspicious* everywhere:

- ``eq5``: ``max_{c in L} p_c(M^st(x))`` (the score Eq. 5 thresholds at ``p_lo``);
- ``msp``: ``1 - max_y softmax(M^t(x))_y`` (maximum softmax probability, Hendrycks & Gimpel 2017);
- ``energy``: ``-logsumexp(M^t(x))`` (free energy at T = 1, Liu et al. 2020).

Negatives are clean target images, positives composites (a target image on a source-only image).
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from ._data import ImageData, labels_of
from ._validation import check_range, check_same_length
from .composites import Composites
from .interference import interference_scores
from .training import predict

__all__ = ["detection_over_seeds", "auroc", "fpr_at_tpr", "evaluate_detection", "msp_score", "energy_score"]


def _as_np(x: Tensor | np.ndarray | Iterable[float], name: str) -> np.ndarray:
    a = x.detach().double().cpu().numpy() if isinstance(x, Tensor) else np.asarray(list(x) if not isinstance(x, np.ndarray) else x, dtype=float)
    a = a.astype(float).ravel()
    if np.isnan(a).any():
        raise ValueError(f"{name} contains NaN scores")
    return a


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x), dtype=float)
    i = 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def auroc(negatives: Tensor | np.ndarray | Iterable[float], positives: Tensor | np.ndarray | Iterable[float]) -> float:
    """Area under the ROC curve of a score (higher = positive), via the Mann-Whitney rank statistic:
    ``P(s_pos > s_neg) + 0.5 P(s_pos = s_neg)``. Ties get mid-ranks."""
    neg, pos = _as_np(negatives, "negatives"), _as_np(positives, "positives")
    if len(neg) == 0 or len(pos) == 0:
        raise ValueError(f"negatives and positives must both be non-empty; got {len(neg)} and {len(pos)}")
    ranks = _midranks(np.concatenate([neg, pos]))
    r_pos = ranks[len(neg):].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def fpr_at_tpr(negatives: Tensor | np.ndarray | Iterable[float], positives: Tensor | np.ndarray | Iterable[float],
               tpr: float = 0.95) -> float:
    """False-positive rate at the largest threshold t whose TPR ``P(s_pos >= t)`` is at least ``tpr``."""
    check_range("tpr", tpr, 0, 1, lo_open=True)
    neg, pos = _as_np(negatives, "negatives"), _as_np(positives, "positives")
    if len(neg) == 0 or len(pos) == 0:
        raise ValueError(f"negatives and positives must both be non-empty; got {len(neg)} and {len(pos)}")
    pos_sorted = np.sort(pos)[::-1]
    need = int(np.ceil(tpr * len(pos) - 1e-12))  # number of positives that must be at or above t
    t = pos_sorted[max(need, 1) - 1]
    return float((neg >= t).mean())


def msp_score(logits: Tensor) -> Tensor:
    """``1 - max softmax``: higher = less confident = more suspicious."""
    return 1 - logits.float().softmax(1).amax(1)


def energy_score(logits: Tensor) -> Tensor:
    """``-logsumexp(logits)`` (energy, T = 1): higher = more suspicious."""
    return -torch.logsumexp(logits.float(), dim=1)


def evaluate_detection(mst: nn.Module, target_model: nn.Module, clean_images: ImageData,
                       clean_labels: Tensor | None, composites: Composites | Tensor,
                       lingering_classes: Tensor | Iterable[int], p_lo: float = 0.01, *,
                       composite_labels: Tensor | None = None, tpr: float = 0.95) -> dict[str, Any]:
    """Eq. 5 as a detector of composites among clean target images, against M^t's own uncertainty.

    Args:
        mst: M^st = B(M^t) + H(M^s) (``models.source_target_model``).
        target_model: M^t (its logits give the MSP and energy baselines and the damage).
        clean_images, clean_labels: clean target images (negatives) and their labels (None: taken
            from a labelled dataset).
        composites: positives; a ``Composites`` (labels = ``target_label``) or images with
            ``composite_labels``.
        lingering_classes: L (Eq. 3). With an empty L the Eq. 5 score is 0 everywhere (AUROC 0.5).
        p_lo: Eq. 5's threshold.

    Returns a dict: ``table`` (DataFrame, one row per score ``eq5``/``msp``/``energy`` with ``auroc``
    and ``fpr_at_95tpr``), and for the Eq. 5 flag at ``p_lo``: ``flag_rate_clean`` (its false-positive
    rate), ``flag_rate_composites`` (its true-positive rate), ``error_flagged``/``error_unflagged``
    (M^t's error rate on flagged / unflagged composites), ``errors_caught`` (share of M^t's composite
    errors that are flagged), ``error_composites``, ``error_clean`` and the counts ``n_clean``,
    ``n_composites``, ``n_lingering``.
    """
    check_range("p_lo", p_lo, 0, 1, lo_open=True, hi_open=True)
    if isinstance(composites, Composites):
        comp_x, comp_y = composites.images, composites.target_label if composite_labels is None else composite_labels
    else:
        comp_x, comp_y = composites, composite_labels
    if comp_y is None:
        raise ValueError("composite_labels must be given when composites is a plain image tensor")
    if clean_labels is None:
        clean_labels = labels_of(clean_images)
    comp_y = torch.as_tensor(comp_y).long().cpu()
    clean_labels = torch.as_tensor(clean_labels).long().cpu()
    check_same_length("composites", comp_x, "composite labels", comp_y)
    check_same_length("clean_images", clean_images, "clean_labels", clean_labels)  # type: ignore[arg-type]
    L = [int(c) for c in (lingering_classes.flatten().tolist() if isinstance(lingering_classes, Tensor)
                          else lingering_classes)]
    s_clean = interference_scores(mst, clean_images, L).cpu()
    s_comp = interference_scores(mst, comp_x, L).cpu()
    lg_clean, _ = predict(target_model, clean_images)
    lg_comp, _ = predict(target_model, comp_x)
    rows = []
    for name, neg, pos in (("eq5", s_clean, s_comp), ("msp", msp_score(lg_clean), msp_score(lg_comp)),
                           ("energy", energy_score(lg_clean), energy_score(lg_comp))):
        rows.append({"score": name, "auroc": auroc(neg, pos), "fpr_at_95tpr": fpr_at_tpr(neg, pos, tpr)})
    table = pd.DataFrame(rows)
    flag_clean, flag_comp = s_clean > p_lo, s_comp > p_lo
    wrong = lg_comp.argmax(1) != comp_y
    n_wrong = int(wrong.sum())

    def rate(mask: Tensor) -> float:
        return float(wrong[mask].double().mean()) if bool(mask.any()) else float("nan")

    return {
        "table": table,
        "flag_rate_clean": float(flag_clean.double().mean()),
        "flag_rate_composites": float(flag_comp.double().mean()),
        "error_flagged": rate(flag_comp),
        "error_unflagged": rate(~flag_comp),
        "errors_caught": float((wrong & flag_comp).sum()) / n_wrong if n_wrong else float("nan"),
        "error_composites": float(wrong.double().mean()),
        "error_clean": float((lg_clean.argmax(1) != clean_labels).double().mean()),
        "n_clean": len(s_clean), "n_composites": len(s_comp), "n_lingering": len(L),
    }


def detection_over_seeds(audit: Any, seeds: Sequence[int], *, n_boot: int = 10_000,
                         composites_seed: int = 0) -> dict[str, pd.DataFrame]:
    """Eq. 5 scored fairly (issue 15): for each seed, positives are the composites of *that seed's*
    lingering classes L (Eq. 3 of M^t), negatives the clean target validation images, and every
    score (Eq. 5, and M^t's max-softmax and energy) ranks the same positives.

    Returns ``per_seed`` (one row per (seed, score): ``auroc, fpr_at_95tpr, n_lingering,
    n_positives``, plus the Eq. 5 flag's rates) and ``summary`` (one row per score: mean AUROC and
    FPR@95 over the seeds with a non-empty L, each with a 95% bootstrap-over-seeds interval, and the
    chance levels: AUROC 0.5, FPR 0.95 for a random score at 95% TPR). Seeds with an empty L have
    no positives and are left out (``n_lingering`` 0 in ``per_seed``)."""
    from .stats import cluster_bootstrap_ci

    rows = []
    for seed in seeds:
        L = audit.lingering_classes(seed)
        if not L:
            rows.append({"seed": seed, "score": "eq5", "auroc": float("nan"), "fpr_at_95tpr": float("nan"),
                         "n_lingering": 0, "n_positives": 0})
            continue
        det = audit.detection(seed, classes=L, composites_seed=composites_seed)
        extra = {k: det[k] for k in ("flag_rate_clean", "flag_rate_composites", "errors_caught")}
        for r in det["table"].to_dict("records"):
            rows.append({"seed": seed, **r, "n_lingering": len(L), "n_positives": det["n_composites"],
                         **(extra if r["score"] == "eq5" else {})})
    per_seed = pd.DataFrame(rows)
    out = []
    for score, g in per_seed.dropna(subset=["auroc"]).groupby("score", sort=False):
        row: dict[str, Any] = {"score": score, "seeds": len(g)}
        for col in ("auroc", "fpr_at_95tpr"):
            v = g[col].to_numpy(float)
            mean, lo, hi = cluster_bootstrap_ci(v, np.arange(len(v)), n_boot=n_boot, seed=0)
            row.update({col: mean, f"{col}_ci_lo": lo, f"{col}_ci_hi": hi})
        out.append(row)
    summary = pd.DataFrame(out)
    summary["auroc_chance"] = 0.5
    summary["fpr_chance"] = 0.95
    return {"per_seed": per_seed, "summary": summary}
