"""Checks the distraction measure (Eq. 4) needs before it can mean anything (``gates`` turns them into
rules): the source object survives the overlay (:func:`source_survival`), the blurred control is neutral
(:func:`neutral_check`), and Grad-CAM is faithful for each model (:func:`deletion_test`: the deletion test
of Samek et al. 2017 and Petsiuk et al. 2018, at one fraction). Intervals over composites are cluster
bootstraps by source photo.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from .bootstrap import cluster_bootstrap_ci
from ._data import gather
from ._validation import check_range
from .models import as_generator
from .inference import predict

__all__ = [
    "composite_clusters",
    "SURVIVAL_RATIO",
    "NEUTRAL_RATIO",
    "class_probability",
    "source_survival",
    "neutral_check",
    "faithfulness",
    "delete_pixels",
    "deletion_test",
    "deletion_summary",
]

#: a class survives the overlay when M^s's mean p(c_s) on its composites is at least this share of
#: its mean p(c_s) on the same source images alone
SURVIVAL_RATIO = 0.5
#: the blurred control is neutral for a class when M^s's mean p(c_s) on it is at most this multiple
#: of chance, ``1 / |C(D^s)|`` ("falls to near chance")
NEUTRAL_RATIO = 2.0


def composite_clusters(audit: Any, comp: Any) -> np.ndarray:
    """The source photo of every composite (``spec.source_groups``; else its source image)."""
    groups = audit.world.spec.source_groups
    idx = comp.source_index.cpu().numpy()
    return np.asarray([groups[i] for i in idx], dtype=object) if groups is not None else idx.astype(object)


def class_probability(
    model: nn.Module, images: Tensor, classes: Tensor, *, device: torch.device | None = None
) -> Tensor:
    """``softmax(model(x_i))[classes_i]`` for every image (CPU, float64)."""
    logits, _ = predict(model, images, device=device)
    p = torch.softmax(logits.double(), dim=1)
    return p.gather(1, torch.as_tensor(classes, dtype=torch.long).view(-1, 1).cpu()).flatten()


def _class_table(audit: Any, comp: Any, a: tuple[str, Tensor], b: tuple[str, Tensor]) -> pd.DataFrame:
    """Per source class of ``comp``: M^s's mean ``p(c_s)`` on two image sets paired with the composites
    (``a`` and ``b``: column name and images) and ``n``; ``attrs["overall"]`` holds the pooled means with
    cluster-bootstrap intervals (by source photo)."""
    cs = audit.composite_classes(comp)
    ms = audit.source_model()
    names = list(audit.world.source_classes)
    frame = pd.DataFrame({"source_class": cs.numpy(), "source_name": [names[int(c)] for c in cs]})
    for col, images in (a, b):
        frame[col] = class_probability(ms, images, cs, device=audit.device).numpy()
    g = frame.groupby(["source_class", "source_name"], sort=True)
    out = g[[a[0], b[0]]].mean()
    out["n"] = g.size()
    out = out.reset_index()
    clusters = composite_clusters(audit, comp)
    out.attrs["overall"] = {k: cluster_bootstrap_ci(frame[k].to_numpy(), clusters, n_boot=2000) for k in (a[0], b[0])}
    return out


def source_survival(audit: Any, composites: Any) -> pd.DataFrame:
    """Per source class: M^s's mean ``p(c_s)`` on the source images alone (``p_alone``) and on their
    composites (``p_composite``), ``ratio = p_composite / p_alone`` and ``survives``
    (ratio >= :data:`SURVIVAL_RATIO`). ``attrs["overall"]`` holds the pooled means with
    cluster-bootstrap intervals (by source photo)."""
    src, _ = gather(audit.world.source_data, composites.source_index.tolist())
    out = _class_table(audit, composites, ("p_alone", src), ("p_composite", composites.images))
    out["ratio"] = out["p_composite"] / out["p_alone"].where(out["p_alone"] > 0)
    out["survives"] = out["ratio"] >= SURVIVAL_RATIO
    return out


def neutral_check(audit: Any, composites: Any, neutral: Any) -> pd.DataFrame:
    """Per source class: M^s's mean ``p(c_s)`` on the composites and on the blurred controls
    (``neutral``: the same patches on ``neutral_backgrounds``), ``chance = 1 / |C(D^s)|``,
    ``ratio = p_neutral / chance`` and ``neutral`` (ratio <= :data:`NEUTRAL_RATIO`: the
    blurred background leaves M^s near chance for the source class)."""
    pair = (("p_composite", composites.images), ("p_neutral", neutral.images))
    out = _class_table(audit, composites, *pair)
    out["chance"] = 1.0 / len(audit.world.source_classes)
    out["ratio"] = out["p_neutral"] / out["chance"]
    out["neutral"] = out["ratio"] <= NEUTRAL_RATIO
    return out


def delete_pixels(images: Tensor, order_scores: Tensor, frac: float) -> Tensor:
    """``images`` ``[N, 3, H, W]`` with the ``frac`` share of pixels that ``order_scores`` ``[N, H, W]``
    ranks highest replaced by each image's mean colour (ties broken by position)."""
    check_range("frac", frac, 0, 1, lo_open=True, hi_open=True)
    n, _, h, w = images.shape
    if order_scores.shape != (n, h, w):
        raise ValueError(
            f"order_scores must have shape {(n, h, w)} (one score per pixel); got {tuple(order_scores.shape)}"
        )
    k = max(1, int(round(frac * h * w)))
    top = torch.topk(order_scores.reshape(n, -1).float(), k, dim=1).indices
    mask = torch.zeros(n, h * w, dtype=torch.bool, device=images.device)
    mask.scatter_(1, top.to(images.device), True)
    mask = mask.view(n, 1, h, w)
    fill = images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    return torch.where(mask, fill, images)


def deletion_test(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    targets: Tensor | Sequence[int],
    *,
    frac: float = 0.2,
    generator: torch.Generator | int | None = 0,
    device: torch.device | None = None,
) -> pd.DataFrame:
    """The deletion test of one model's maps: per image, the probability of ``targets`` intact (``p``), after
    deleting the ``frac`` share of pixels the map ranks highest (``p_top``) and after deleting those another
    image's map ranks highest (``p_random``), and the drops of ``log p``: ``drop_top``, ``drop_random`` and
    ``gain = drop_top - drop_random`` (> 0 on average for a faithful map)."""
    check_range("frac", frac, 0, 1, lo_open=True, hi_open=True)
    images, maps = images.cpu(), maps.cpu()
    if len(maps) != len(images):
        raise ValueError(f"maps must have one map per image ({len(images)}); got {len(maps)}")
    t = torch.as_tensor(targets, dtype=torch.long).cpu()
    if t.ndim == 0:
        t = t.expand(len(images))
    if len(t) != len(images):
        raise ValueError(f"targets must have one class per image ({len(images)}); got {len(t)}")
    g = as_generator(generator)
    n = len(images)
    if n < 2:
        raise ValueError(f"images must hold at least 2 images (the null deletes another image's top pixels); got {n}")
    # the null: the top pixels of *another* image's map (as smooth and contiguous as the real one); a
    # scattered random 20% of single pixels hurts a CNN more than any contiguous region
    other = (torch.arange(n) + torch.randint(1, n, (n,), generator=g)) % n
    noise = maps[other] + 1e-6 * torch.rand(maps.shape, generator=g)
    p = class_probability(model, images, t, device=device)
    p_top = class_probability(model, delete_pixels(images, maps, frac), t, device=device)
    p_rand = class_probability(model, delete_pixels(images, noise, frac), t, device=device)
    log = lambda v: torch.log(v.clamp(min=1e-12))  # noqa: E731
    return pd.DataFrame(
        {
            "p": p.numpy(),
            "p_top": p_top.numpy(),
            "p_random": p_rand.numpy(),
            "drop_top": (log(p) - log(p_top)).numpy(),
            "drop_random": (log(p) - log(p_rand)).numpy(),
            "gain": (log(p_rand) - log(p_top)).numpy(),
        }
    )


def deletion_summary(rows: pd.DataFrame, clusters: Sequence[object] | np.ndarray, *, seed: int = 0) -> dict[str, float]:
    """Mean ``drop_top``, ``drop_random`` and ``gain`` of :func:`deletion_test` rows, the gain's
    cluster-bootstrap 95% interval (by source photo) and ``faithful`` (the interval's lower end > 0)."""
    gain, lo, hi = cluster_bootstrap_ci(rows["gain"].to_numpy(float), list(clusters), n_boot=2000, seed=seed)
    return {
        "drop_top": float(rows["drop_top"].mean()),
        "drop_random": float(rows["drop_random"].mean()),
        "gain": gain,
        "gain_ci_lo": lo,
        "gain_ci_hi": hi,
        "faithful": bool(lo > 0),
    }


def faithfulness(audit: Any, arms: dict[str, str], seeds: Sequence[int], composites: Any) -> pd.DataFrame:
    """The deletion test on ``composites`` for M^s (maps for c_s, seed-free) and every arm of ``arms``
    (label -> arm name) and seed (maps for the pasted target class): one row per (model, seed) with
    :func:`deletion_summary`. The random deletions are seeded by the model's training seed."""
    comp = composites
    cs = audit.composite_classes(comp)
    clusters = composite_clusters(audit, comp)
    y = comp.target_label.cpu()
    rows = []
    jobs = [("M^s", "M^s", 0, cs)] + [(label, arm, s, y) for label, arm in arms.items() for s in seeds]
    for label, arm, s, t in jobs:
        model = audit.model(arm, s)
        maps = audit.maps(model, comp, t)
        d = deletion_test(model, comp.images, maps, t, generator=10_000 + int(s), device=audit.device)
        rows.append({"model": label, "seed": s, **deletion_summary(d, clusters, seed=int(s))})
    return pd.DataFrame(rows)
