"""Eq. 5 as a deployable check: how well does the interference flag separate inputs that carry a
lingering source object from clean target inputs, against the field's out-of-distribution detectors,
and how much of M^t's damage does each flag catch?

Scores are outlier scores, oriented so that *higher means more suspicious* everywhere (pytorch-ood's
convention, :mod:`lingerlab.ood`):

- ``eq5``: ``max_{c in L} p_c(M^st(x))`` (the score Eq. 5 thresholds at ``p_lo``);
- the baselines of :data:`lingerlab.ood.DETECTORS` (pytorch-ood), each reading M^t only: MaxSoftmax,
  MaxLogit, EnergyBased; and, fitted on M^t's own clean training images, Mahalanobis, KNN, ViM, ReAct.

Negatives are clean target images, positives composites (a target image on a source-only image).
Each score is also turned into a flag at the threshold that flags 5% of the clean images, so M^t's
error on flagged and on unflagged composites compares the scores at one false-positive rate.
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
from .ood import DETECTORS, OODBaselines, features_and_logits

__all__ = [
    "detection_over_seeds",
    "auroc",
    "fpr_at_tpr",
    "evaluate_detection",
    "threshold_at_fpr",
]


def _as_np(x: Tensor | np.ndarray | Iterable[float], name: str) -> np.ndarray:
    a = (
        x.detach().double().cpu().numpy()
        if isinstance(x, Tensor)
        else np.asarray(list(x) if not isinstance(x, np.ndarray) else x, dtype=float)
    )
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
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def auroc(negatives: Tensor | np.ndarray | Iterable[float], positives: Tensor | np.ndarray | Iterable[float]) -> float:
    """Area under the ROC curve of a score (higher = positive), via the Mann-Whitney rank statistic:
    ``P(s_pos > s_neg) + 0.5 P(s_pos = s_neg)``. Ties get mid-ranks."""
    neg, pos = _as_np(negatives, "negatives"), _as_np(positives, "positives")
    if len(neg) == 0 or len(pos) == 0:
        raise ValueError(f"negatives and positives must both be non-empty; got {len(neg)} and {len(pos)}")
    ranks = _midranks(np.concatenate([neg, pos]))
    r_pos = ranks[len(neg) :].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def fpr_at_tpr(
    negatives: Tensor | np.ndarray | Iterable[float],
    positives: Tensor | np.ndarray | Iterable[float],
    tpr: float = 0.95,
) -> float:
    """False-positive rate at the largest threshold t whose TPR ``P(s_pos >= t)`` is at least ``tpr``."""
    check_range("tpr", tpr, 0, 1, lo_open=True)
    neg, pos = _as_np(negatives, "negatives"), _as_np(positives, "positives")
    if len(neg) == 0 or len(pos) == 0:
        raise ValueError(f"negatives and positives must both be non-empty; got {len(neg)} and {len(pos)}")
    pos_sorted = np.sort(pos)[::-1]
    need = int(np.ceil(tpr * len(pos) - 1e-12))  # number of positives that must be at or above t
    t = pos_sorted[max(need, 1) - 1]
    return float((neg >= t).mean())


def threshold_at_fpr(negatives: Tensor | np.ndarray | Iterable[float], fpr: float = 0.05) -> float:
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
    """Eq. 5 as a detector of composites among clean target images, against pytorch-ood's detectors on M^t.

    Args:
        mst: M^st = B(M^t) + H(M^s) (``models.source_target_model``).
        target_model: M^t (its logits and features feed the baselines; its errors are the damage).
        clean_images, clean_labels: clean target images (negatives) and their labels (None: taken
            from a labelled dataset).
        composites: positives (labels = ``target_label``).
        lingering_classes: L (Eq. 3). With an empty L the Eq. 5 score is 0 everywhere (AUROC 0.5).
        p_lo: Eq. 5's threshold.
        baselines: an :class:`lingerlab.ood.OODBaselines` built over ``target_model`` (fitted on its
            training images); None: the detectors that need no fitting (MaxSoftmax, MaxLogit,
            EnergyBased).

    Each score's flag is ``score > threshold_at_fpr(clean scores, 0.05)``.

    Returns a dict: ``table`` (DataFrame, one row per score, ``eq5`` first: ``auroc``, ``fpr_at_95tpr``,
    and for its flag: ``flag_rate_composites``, ``error_flagged``, ``error_unflagged``
    (M^t's error rate on flagged / unflagged composites) and ``errors_caught`` (share of M^t's composite
    errors flagged)); for the Eq. 5 flag at ``p_lo``: ``flag_rate_clean`` (its false-positive rate),
    ``flag_rate_composites`` (its true-positive rate), ``error_flagged``, ``error_unflagged``,
    ``errors_caught``; ``scores`` (name -> (clean scores, composite scores), for ROC curves);
    ``error_composites``, ``error_clean``, ``skipped`` (baselines this model does
    not allow, with the reason) and the counts ``n_clean``, ``n_composites``, ``n_lingering``.
    """
    check_range("p_lo", p_lo, 0, 1, lo_open=True, hi_open=True)
    comp_x, comp_y = composites.images, composites.target_label
    if clean_labels is None:
        clean_labels = labels_of(clean_images)
    comp_y = torch.as_tensor(comp_y).long().cpu()
    clean_labels = torch.as_tensor(clean_labels).long().cpu()
    check_same_length("composites", comp_x, "composite labels", comp_y)
    check_same_length("clean_images", clean_images, "clean_labels", clean_labels)  # type: ignore[arg-type]
    L = [
        int(c)
        for c in (lingering_classes.flatten().tolist() if isinstance(lingering_classes, Tensor) else lingering_classes)
    ]
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
    table = pd.DataFrame(rows)
    s_clean, s_comp = scores["eq5"]
    return {
        "table": table,
        "flag_rate_clean": float((s_clean > p_lo).double().mean()),
        **flag_stats(s_comp > p_lo),
        "error_composites": float(wrong.double().mean()),
        "error_clean": float((lg_clean.argmax(1) != clean_labels).double().mean()),
        "skipped": dict(baselines.skipped),
        "scores": {name: (neg, pos) for name, (neg, pos) in scores.items()},
        "n_clean": len(s_clean),
        "n_composites": len(s_comp),
        "n_lingering": len(L),
    }


def detection_over_seeds(audit: Any, seeds: Sequence[int]) -> dict[str, pd.DataFrame]:
    """Eq. 5 scored fairly against pytorch-ood's detectors: for each seed,
    positives are the composites of *that seed's* lingering classes L (Eq. 3 of M^t), negatives the
    clean target validation images, and every score (Eq. 5, and each of ``ood.DETECTORS`` on M^t, fitted
    on M^t's own training images) ranks the same positives.

    Returns ``per_seed`` (one row per (seed, score): ``auroc, fpr_at_95tpr``, the flag at 5% clean
    FPR (``flag_rate_composites, error_flagged, error_unflagged, errors_caught``), ``n_lingering,
    n_positives``, and for ``eq5`` the flag at ``p_lo``: ``p_lo_flag_rate_clean,
    p_lo_flag_rate_composites, p_lo_errors_caught``) and ``summary`` (one row per score: the mean over
    the seeds with a non-empty L of AUROC, FPR@95, and M^t's error on flagged and on unflagged
    composites, each with a 95% bootstrap-over-seeds interval; the chance levels AUROC 0.5 and FPR
    0.95 for a random score at 95% TPR). Seeds with an empty L have no positives and are left out
    (``n_lingering`` 0 in ``per_seed``)."""
    from .bootstrap import cluster_bootstrap_ci

    rows = []
    for seed in seeds:
        L = audit.lingering_classes(seed)
        if not L:
            rows.append(
                {
                    "seed": seed,
                    "score": "eq5",
                    "auroc": float("nan"),
                    "fpr_at_95tpr": float("nan"),
                    "n_lingering": 0,
                    "n_positives": 0,
                }
            )
            continue
        det = audit.detection(seed, classes=L)
        extra = {f"p_lo_{k}": det[k] for k in ("flag_rate_clean", "flag_rate_composites", "errors_caught")}
        for r in det["table"].to_dict("records"):
            rows.append(
                {
                    "seed": seed,
                    **r,
                    "n_lingering": len(L),
                    "n_positives": det["n_composites"],
                    **(extra if r["score"] == "eq5" else {}),
                }
            )
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
