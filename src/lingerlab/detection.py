"""Eq. 5 as a deployable check: how well the interference score ``max_{c in L} p_c(M^st(x))`` separates
composites (positives) from clean target images (negatives), against the detectors of
:data:`lingerlab.ood.DETECTORS` on M^t, and how much of M^t's damage each flag catches (each score also
flags at the threshold that flags 5% of the clean images). Higher scores mean more suspicious.
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
from .interference import class_list, interference_scores
from .ood import DETECTORS, OODBaselines, features_and_logits

__all__ = ["detection_over_seeds", "auroc", "fpr_at_tpr", "evaluate_detection", "threshold_at_fpr"]

Scores = Tensor | np.ndarray | Iterable[float]


def _as_np(x: Scores, name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().double().cpu().numpy()
    a = np.asarray(x if isinstance(x, np.ndarray) else list(x), dtype=float).ravel()
    if np.isnan(a).any():
        raise ValueError(f"{name} contains NaN scores")
    return a


def _pair(negatives: Scores, positives: Scores) -> tuple[np.ndarray, np.ndarray]:
    neg, pos = _as_np(negatives, "negatives"), _as_np(positives, "positives")
    if len(neg) == 0 or len(pos) == 0:
        raise ValueError(f"negatives and positives must both be non-empty; got {len(neg)} and {len(pos)}")
    return neg, pos


def auroc(negatives: Scores, positives: Scores) -> float:
    """Area under the ROC curve of a score (higher = positive), via the Mann-Whitney rank statistic:
    ``P(s_pos > s_neg) + 0.5 P(s_pos = s_neg)``. Ties get mid-ranks."""
    from scipy.stats import rankdata

    neg, pos = _pair(negatives, positives)
    r_pos = rankdata(np.concatenate([neg, pos]))[len(neg) :].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def fpr_at_tpr(negatives: Scores, positives: Scores, tpr: float = 0.95) -> float:
    """False-positive rate at the largest threshold t whose TPR ``P(s_pos >= t)`` is at least ``tpr``."""
    check_range("tpr", tpr, 0, 1, lo_open=True)
    neg, pos = _pair(negatives, positives)
    pos_sorted = np.sort(pos)[::-1]
    need = int(np.ceil(tpr * len(pos) - 1e-12))  # number of positives that must be at or above t
    t = pos_sorted[max(need, 1) - 1]
    return float((neg >= t).mean())


def threshold_at_fpr(negatives: Scores, fpr: float = 0.05) -> float:
    """The threshold ``t`` such that ``score > t`` flags at most ``fpr`` of ``negatives``: their
    ``1 - fpr`` quantile (the higher order statistic, so the bound holds exactly on these negatives)."""
    check_range("fpr", fpr, 0, 1, hi_open=True)
    neg = np.sort(_as_np(negatives, "negatives"))
    k = int(np.ceil((1 - fpr) * len(neg))) - 1
    return float(neg[min(max(k, 0), len(neg) - 1)])


def evaluate_detection(
    mst: nn.Module,
    target_model: nn.Module,
    clean_images: ImageData,
    clean_labels: Tensor | None,
    composites: Composites,
    lingering_classes: Tensor | Iterable[int],
    p_lo: float = 0.01,
    *,
    baselines: OODBaselines | None = None,
) -> dict[str, Any]:
    """Eq. 5 (M^st, lingering classes L, threshold ``p_lo``) as a detector of ``composites`` among clean
    target images, against ``baselines`` on M^t (None: the detectors that need no fitting).

    Returns a dict: ``table`` (one row per score, ``eq5`` first: ``auroc``, ``fpr_at_95tpr`` and, for the
    flag at 5% clean FPR, ``flag_rate_composites``, M^t's ``error_flagged`` / ``error_unflagged`` on
    composites and the share of its errors caught, ``errors_caught``); the same flag statistics and
    ``flag_rate_clean`` for the Eq. 5 flag at ``p_lo``; ``scores`` (name -> (clean, composite scores));
    ``error_composites``, ``error_clean``, ``skipped`` (baselines this model does not allow, with the
    reason) and ``n_clean``, ``n_composites``, ``n_lingering``.
    """
    check_range("p_lo", p_lo, 0, 1, lo_open=True, hi_open=True)
    comp_x, comp_y = composites.images, composites.target_label
    if clean_labels is None:
        clean_labels = labels_of(clean_images)
    comp_y = torch.as_tensor(comp_y).long().cpu()
    clean_labels = torch.as_tensor(clean_labels).long().cpu()
    check_same_length("composites", comp_x, "composite labels", comp_y)
    check_same_length("clean_images", clean_images, "clean_labels", clean_labels)  # type: ignore[arg-type]
    L = class_list(lingering_classes)
    if baselines is None:
        baselines = OODBaselines(
            target_model, None, None, detectors=[n for n, d in DETECTORS.items() if d.reads == "logits"]
        )
    f_clean, lg_clean = features_and_logits(target_model, clean_images, baselines.head)
    f_comp, lg_comp = features_and_logits(target_model, comp_x, baselines.head)
    scores = {"eq5": (interference_scores(mst, clean_images, L).cpu(), interference_scores(mst, comp_x, L).cpu())}
    b_clean, b_comp = baselines.scores(f_clean, lg_clean), baselines.scores(f_comp, lg_comp)
    scores.update({n: (b_clean[n], b_comp[n]) for n in b_clean})
    wrong = lg_comp.argmax(1) != comp_y
    n_wrong = int(wrong.sum())

    def rate(mask: Tensor) -> float:
        return float(wrong[mask].double().mean()) if bool(mask.any()) else float("nan")

    def flag_stats(flag: Tensor) -> dict[str, float]:
        return {
            "flag_rate_composites": float(flag.double().mean()),
            "error_flagged": rate(flag),
            "error_unflagged": rate(~flag),
            "errors_caught": float((wrong & flag).sum()) / n_wrong if n_wrong else float("nan"),
        }

    rows = []
    for name, (neg, pos) in scores.items():
        flag = pos.double() > threshold_at_fpr(neg, 0.05)
        rows.append({"score": name, "auroc": auroc(neg, pos), "fpr_at_95tpr": fpr_at_tpr(neg, pos), **flag_stats(flag)})
    s_clean, s_comp = scores["eq5"]
    return {
        "table": pd.DataFrame(rows),
        "flag_rate_clean": float((s_clean > p_lo).double().mean()),
        **flag_stats(s_comp > p_lo),
        "error_composites": float(wrong.double().mean()),
        "error_clean": float((lg_clean.argmax(1) != clean_labels).double().mean()),
        "skipped": dict(baselines.skipped),
        "scores": dict(scores),
        "n_clean": len(s_clean),
        "n_composites": len(s_comp),
        "n_lingering": len(L),
    }


def detection_over_seeds(audit: Any, seeds: Sequence[int]) -> dict[str, pd.DataFrame]:
    """Eq. 5 against pytorch-ood's detectors, per seed on the composites of that seed's lingering classes L
    and the clean target validation images: ``per_seed`` (one row per (seed, score) of
    :func:`evaluate_detection`'s table, ``n_lingering``, ``n_positives`` and, for ``eq5``, its flag at
    ``p_lo`` as ``p_lo_*``) and ``summary`` (per score, the mean over the seeds with a non-empty L of
    AUROC, FPR@95 and M^t's error on flagged and unflagged composites with 95% bootstrap-over-seeds
    intervals, and the chance levels ``auroc_chance`` 0.5, ``fpr_chance`` 0.95)."""
    from .bootstrap import cluster_bootstrap_ci

    rows = []
    for seed in seeds:
        L = audit.lingering_classes(seed)
        if not L:
            nan = float("nan")
            rows.append(dict(seed=seed, score="eq5", auroc=nan, fpr_at_95tpr=nan, n_lingering=0, n_positives=0))
            continue
        det = audit.detection(seed, classes=L)
        extra = {f"p_lo_{k}": det[k] for k in ("flag_rate_clean", "flag_rate_composites", "errors_caught")}
        for r in det["table"].to_dict("records"):
            tail = extra if r["score"] == "eq5" else {}
            rows.append({"seed": seed, **r, "n_lingering": len(L), "n_positives": det["n_composites"], **tail})
    per_seed = pd.DataFrame(rows)
    out = []
    for score, g in per_seed.dropna(subset=["auroc"]).groupby("score", sort=False):
        row: dict[str, Any] = {"score": score, "seeds": len(g)}
        for col in ("auroc", "fpr_at_95tpr", "error_flagged", "error_unflagged"):
            v = g[col].to_numpy(float)
            v = v[np.isfinite(v)]
            mean, lo, hi = (
                cluster_bootstrap_ci(v, np.arange(len(v)), n_boot=10_000, seed=0) if len(v) else (float("nan"),) * 3
            )
            row.update({col: mean, f"{col}_ci_lo": lo, f"{col}_ci_hi": hi})
        out.append(row)
    summary = pd.DataFrame(out)
    summary["auroc_chance"] = 0.5
    summary["fpr_chance"] = 0.95
    return {"per_seed": per_seed, "summary": summary}
